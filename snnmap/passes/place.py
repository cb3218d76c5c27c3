"""Placement: tiles onto (chip, core) slots of a board, and the two baselines kept for comparison
(sequential greedy fill, as PACMAN and the PAICORE toolchain do, and random placement).

The searching placers live in place_curve.py (space-filling curve) and place_cpsat.py (CP-SAT).
Every placer works on slot numbers of the board's global grid (slot = gy * width + gx) and turns
them into coordinates once, so all of them share one notion of distance: address.route_hops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snnmap.chip import address
from snnmap.chip.spec import MAX_BOARD_CORES, ChipSpec
from snnmap.errors import SnnmapError


@dataclass
class Placement:
    coords: np.ndarray  # int64 (n_tiles, 4): chip_x, chip_y, core_x, core_y, in all_tiles order

    @property
    def chips(self) -> int:
        """Chips holding at least one tile (what pays static power)."""
        return len({(int(a), int(b)) for a, b in self.coords[:, :2]}) if len(self.coords) else 0


@dataclass(frozen=True)
class Board:
    spec: ChipSpec
    chips_x: int
    chips_y: int

    @property
    def width(self) -> int:
        return self.chips_x * self.spec.mesh_w

    @property
    def height(self) -> int:
        return self.chips_y * self.spec.mesh_h

    @property
    def slots(self) -> int:
        return self.width * self.height

    def coords(self, slots: np.ndarray) -> np.ndarray:
        """(n, 4) chip_x, chip_y, core_x, core_y of slot numbers."""
        gy, gx = np.divmod(np.asarray(slots, np.int64), self.width)
        cx, x = np.divmod(gx, self.spec.mesh_w)
        cy, y = np.divmod(gy, self.spec.mesh_h)
        return np.stack([cx, cy, x, y], axis=1)

    def slots_of(self, coords: np.ndarray) -> np.ndarray:
        c = np.asarray(coords, np.int64).reshape(-1, 4)
        return (c[:, 1] * self.spec.mesh_h + c[:, 3]) * self.width + c[:, 0] * self.spec.mesh_w + c[:, 2]

    def placement(self, slot_of_tile: np.ndarray) -> Placement:
        return Placement(self.coords(slot_of_tile))

    def hops(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Mesh hops between slots (the chip's topology: X then Y, chip links costlier)."""
        return address.route_hops(self.spec, self.coords(a).T, self.coords(b).T)


def make_board(spec: ChipSpec, n_tiles: int, chips: tuple[int, int] | None = None) -> Board:
    """The board the tiles go on: chips=(W, H) as asked, else as few chips as fit, in a row."""
    if chips is None:
        need = max(1, -(-n_tiles // spec.cores_per_chip))
        chips = (need, 1)
    w, h = chips
    if w > 1 << spec.chip_x_bits or h > 1 << spec.chip_y_bits:
        raise SnnmapError(f"--chips {w}x{h}: the chip address holds at most {1 << spec.chip_x_bits} x "
                          f"{1 << spec.chip_y_bits} chips (chip_x_bits={spec.chip_x_bits}, "
                          f"chip_y_bits={spec.chip_y_bits})")
    if w * h * spec.cores_per_chip > MAX_BOARD_CORES:
        raise SnnmapError(f"--chips {w}x{h}: a board of {w * h * spec.cores_per_chip} cores, over the "
                          f"{MAX_BOARD_CORES} snnmap places")
    if w * h * spec.cores_per_chip < n_tiles:
        raise SnnmapError(f"--chips {w}x{h}: {n_tiles} tiles need {-(-n_tiles // spec.cores_per_chip)} chips of "
                          f"{spec.cores_per_chip} cores, the board has {w * h}")
    return Board(spec, w, h)


def sequential_slots(n_tiles: int, board: Board) -> np.ndarray:
    """Tile i to core i: cores of a chip row by row, chips row by row (the PACMAN-style baseline)."""
    spec = board.spec
    chip, slot = np.divmod(np.arange(n_tiles), spec.cores_per_chip)
    cy, cx = np.divmod(chip, board.chips_x)
    y, x = np.divmod(slot, spec.mesh_w)
    return board.slots_of(np.stack([cx, cy, x, y], axis=1))


def random_slots(n_tiles: int, board: Board, seed: int) -> np.ndarray:
    """Tiles on distinct slots drawn uniformly (the baseline every placer should beat)."""
    return np.random.default_rng(seed).permutation(board.slots)[:n_tiles]


def place_sequential(tiles: list, spec: ChipSpec, chips: tuple[int, int] | None = None) -> Placement:
    board = make_board(spec, len(tiles), chips)
    return board.placement(sequential_slots(len(tiles), board))

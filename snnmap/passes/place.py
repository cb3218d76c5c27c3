"""Placement: tiles onto (chip, core) slots. The simplest correct placer fills cores in layer order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snnmap.chip.spec import ChipSpec
from snnmap.passes.tiling import Tile


@dataclass
class Placement:
    coords: np.ndarray  # int64 (n_tiles, 4): chip_x, chip_y, core_x, core_y, in all_tiles order

    @property
    def chips(self) -> int:
        return int(self.coords[:, 0].max()) + 1 if len(self.coords) else 0


def place_sequential(tiles: list[Tile], spec: ChipSpec) -> Placement:
    """Tile i goes to core i of a row of chips, cores filled row by row (the PACMAN-style baseline)."""
    i = np.arange(len(tiles))
    chip, slot = np.divmod(i, spec.cores_per_chip)
    core_y, core_x = np.divmod(slot, spec.mesh_w)
    return Placement(np.stack([chip, np.zeros_like(chip), core_x, core_y], axis=1))

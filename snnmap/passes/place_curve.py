"""Initial placement: tiles along a space-filling curve over the board.

Cores that are close on a Hilbert-like curve are close on the mesh, and one chip's cores are
visited before the next chip's, so consecutive tiles seldom pay a chip-to-chip link. Tiles start
in layer order; taken so, each layer would sit a whole layer's length from the next, so the order
is first smoothed by the traffic (curve_order): tiles that exchange many spikes end up close on
the line, hence on the board. The CP-SAT passes start from this.
"""

from __future__ import annotations

import numpy as np

from snnmap.passes.place import Board
from snnmap.passes.traffic import Traffic

# Measured on the published LeNet and VGG (docs/benchmarks.md): spike-hops stop falling by 100.
BARYCENTER_ITERATIONS = 100


def _gilbert(x: int, y: int, ax: int, ay: int, bx: int, by: int, out: list) -> None:
    """Cells of the rectangle spanned from (x, y) by the major axis (ax, ay) and the minor axis
    (bx, by), in generalized-Hilbert order (any width and height, not only powers of two)."""
    w, h = abs(ax + ay), abs(bx + by)
    dax, day = (ax > 0) - (ax < 0), (ay > 0) - (ay < 0)
    dbx, dby = (bx > 0) - (bx < 0), (by > 0) - (by < 0)
    if h == 1 or w == 1:  # a single line of cells
        n, sx, sy = (w, dax, day) if h == 1 else (h, dbx, dby)
        out.extend((x + i * sx, y + i * sy) for i in range(n))
        return
    ax2, ay2, bx2, by2 = ax // 2, ay // 2, bx // 2, by // 2
    if 2 * w > 3 * h:  # long rectangle: two halves along the major axis
        if abs(ax2 + ay2) % 2 and w > 2:
            ax2, ay2 = ax2 + dax, ay2 + day
        _gilbert(x, y, ax2, ay2, bx, by, out)
        _gilbert(x + ax2, y + ay2, ax - ax2, ay - ay2, bx, by, out)
        return
    if abs(bx2 + by2) % 2 and h > 2:
        bx2, by2 = bx2 + dbx, by2 + dby
    _gilbert(x, y, bx2, by2, ax2, ay2, out)  # up the minor axis,
    _gilbert(x + bx2, y + by2, ax, ay, bx - bx2, by - by2, out)  # across,
    _gilbert(x + (ax - dax) + (bx2 - dbx), y + (ay - day) + (by2 - dby),  # and back down
             -bx2, -by2, -(ax - ax2), -(ay - ay2), out)


def chip_curve(w: int, h: int) -> np.ndarray:
    """(w*h, 2) core x, y of one chip in curve order, from (0, 0)."""
    out: list = []
    if w >= h:
        _gilbert(0, 0, w, 0, 0, h, out)
    else:
        _gilbert(0, 0, 0, h, w, 0, out)
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def curve_slots(board: Board) -> np.ndarray:
    """Every slot of the board in curve order: chips in a boustrophedon (snake), each chip's cores
    along its own curve, mirrored on the rows of chips walked right to left."""
    spec = board.spec
    cells = chip_curve(spec.mesh_w, spec.mesh_h)
    out = []
    for cy in range(board.chips_y):
        cxs = range(board.chips_x) if cy % 2 == 0 else range(board.chips_x - 1, -1, -1)
        for cx in cxs:
            x = cells[:, 0] if cy % 2 == 0 else spec.mesh_w - 1 - cells[:, 0]
            coords = np.stack([np.full(len(x), cx), np.full(len(x), cy), x, cells[:, 1]], axis=1)
            out.append(board.slots_of(coords))
    return np.concatenate(out)


def curve_order(n_tiles: int, traffic: Traffic, iterations: int = BARYCENTER_ITERATIONS) -> np.ndarray:
    """Tiles in the order they go along the curve: layer order, then barycentric smoothing of each
    tile's position on the line towards the traffic-weighted mean of its partners' (positions
    re-spread evenly after every step, so the order never collapses); a cheap stand-in for the
    spectral ordering that minimizes packets x distance on a line."""
    a = np.concatenate([traffic.src, traffic.dst])
    b = np.concatenate([traffic.dst, traffic.src])
    w = np.concatenate([traffic.packets, traffic.packets])
    deg = np.bincount(a, weights=w, minlength=n_tiles)
    ids = np.arange(n_tiles)
    x = (ids + 0.5) / max(n_tiles, 1)
    for _ in range(iterations):
        mean = np.bincount(a, weights=w * x[b], minlength=n_tiles) / np.where(deg > 0, deg, 1.0)
        x = 0.5 * x + 0.5 * np.where(deg > 0, mean, x)
        rank = np.empty(n_tiles)
        rank[np.lexsort((ids, x))] = ids
        x = (rank + 0.5) / n_tiles
    return np.lexsort((ids, x))


def place_curve(n_tiles: int, board: Board, traffic: Traffic) -> np.ndarray:
    """Slot of every tile: the curve's first n_tiles slots, taken in curve_order."""
    slots = np.empty(n_tiles, dtype=np.int64)
    slots[curve_order(n_tiles, traffic)] = curve_slots(board)[:n_tiles]
    return slots

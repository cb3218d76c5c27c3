"""Placement on a multicast chip: layers along the chip's Morton (Z) order, each starting at a
multiple of the largest multicast block its producer sends to.

The fan-out plan (fanout.py) numbered a layer's tiles so that its multicast blocks are aligned
runs of that order; in Morton order an aligned run of 2^j codes is an aligned square (or 2:1)
block of cores, which is what one PAICORE destination word with a replication mask reaches.
A layer larger than one chip's usable cores starts on a fresh chip and fills each chip's usable
codes in turn (the reserved corner is the end of the order).
"""

from __future__ import annotations

import numpy as np

from snnmap.chip.spec import ChipSpec
from snnmap.errors import DesignRuleError
from snnmap.passes.fanout import slots
from snnmap.passes.place import Placement
from snnmap.passes.tiling import demorton


def place_blocks(layer_tiles: list[tuple[int, int]], spec: ChipSpec, start: int = 0) -> Placement:
    """layer_tiles: per layer in tick order, (tiles, alignment). Returns coords in tile order.
    start: the first free position (chip x cores_per_chip + Morton code), for layers placed after
    those an incremental recompile keeps."""
    return code_placement(block_codes(layer_tiles, spec, start), spec)


def block_codes(layer_tiles: list[tuple[int, int]], spec: ChipSpec, start: int = 0) -> np.ndarray:
    """Global code (chip * cores_per_chip + Morton code) of every tile, in tile order."""
    per_chip, usable = spec.cores_per_chip, spec.usable_cores
    chip, code = divmod(start, per_chip)
    if code >= usable:
        chip, code = chip + 1, 0
    out = []
    for n, align in layer_tiles:
        if n > usable:  # spans chips: starts on a fresh one, tile s at code s % per_chip(spec)
            if code:
                chip, code = chip + 1, 0
            pos = slots(n, spec)
        else:
            code = -(-code // align) * align
            if code + n > usable:
                chip, code = chip + 1, 0
            pos = code + np.arange(n)
        g = chip * per_chip + pos
        out.append(g)
        last = int(g[-1]) if n else chip * per_chip + code - 1
        chip, code = divmod(last + 1, per_chip)
        if code >= usable:
            chip, code = chip + 1, 0
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def code_placement(g: np.ndarray, spec: ChipSpec) -> Placement:
    c, m = np.divmod(g, spec.cores_per_chip)
    row = 1 << spec.chip_x_bits  # chips fill a row of the board, then the next row
    if len(c) and int(c.max()) >= row << spec.chip_y_bits:
        raise DesignRuleError(f"network: the layers need {int(c.max()) + 1} chips, over the limit of "
                              f"{row << spec.chip_y_bits} chips on the board (chip_x_bits={spec.chip_x_bits}, "
                              f"chip_y_bits={spec.chip_y_bits})")
    x, y = demorton(m, spec.core_x_bits)
    cy, cx = np.divmod(c, row)
    return Placement(np.stack([cx, cy, x, y], axis=1))

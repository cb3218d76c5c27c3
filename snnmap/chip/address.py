"""The 32-bit destination word: a spike address on the board, or a host readout slot.

bit 31 = 1: host readout, bits 0..30 = feature index.
bit 31 = 0: chip_x | chip_y | core_x | core_y | axon, packed from the high end down to bit 0,
            field widths from the chip spec (sg64: 5, 5, 5, 5, 10 bits).
"""

from __future__ import annotations

import numpy as np

from snnmap.chip.spec import ChipSpec

HOST_FLAG = np.uint32(1 << 31)


def _shifts(spec: ChipSpec) -> tuple[int, int, int, int]:
    core_y = spec.axon_bits
    core_x = core_y + spec.core_y_bits
    chip_y = core_x + spec.core_x_bits
    chip_x = chip_y + spec.chip_y_bits
    return chip_x, chip_y, core_x, core_y


def encode(spec: ChipSpec, chip_x, chip_y, core_x, core_y, axon) -> np.ndarray:
    sx, sy, cx, cy = _shifts(spec)
    out = (np.asarray(chip_x, np.uint64) << sx) | (np.asarray(chip_y, np.uint64) << sy) \
        | (np.asarray(core_x, np.uint64) << cx) | (np.asarray(core_y, np.uint64) << cy) \
        | np.asarray(axon, np.uint64)
    return out.astype(np.uint32)


def decode(spec: ChipSpec, words: np.ndarray) -> tuple[np.ndarray, ...]:
    """-> (is_host, chip_x, chip_y, core_x, core_y, axon_or_feature)."""
    w = np.asarray(words, np.uint32)
    host = (w & HOST_FLAG) != 0
    sx, sy, cx, cy = _shifts(spec)

    def field(shift: int, bits: int) -> np.ndarray:
        return ((w >> np.uint32(shift)) & np.uint32((1 << bits) - 1)).astype(np.int64)

    low = (w & np.uint32((1 << 31) - 1)).astype(np.int64)
    return (host, field(sx, spec.chip_x_bits), field(sy, spec.chip_y_bits), field(cx, spec.core_x_bits),
            field(cy, spec.core_y_bits), np.where(host, low, field(0, spec.axon_bits)))

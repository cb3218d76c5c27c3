"""The 64-bit destination word: a spike address on the board, or a host readout slot.

bit 63 = 1: host readout, bits 0..62 = feature index.
bit 63 = 0: fields packed from bit 0 upwards: axon, bank, core_y, core_x, chip_y, chip_x, widths
            from the chip spec (sg64: 10, 3, 5, 5, 5, 5 bits). A logical axon index a of a core
            with fan-in level L is bank = a // axons_per_core, axon = a % axons_per_core: the bank
            is the dendrite-combining bank (sub-tick) the spike is delivered in.
            On a multicast chip two more fields follow, mask_y and mask_x (core_y_bits and
            core_x_bits wide): the word reaches every core that equals (core_x, core_y) on the bits
            outside the masks, an aligned power-of-two block, at the same axon.
"""

from __future__ import annotations

import numpy as np

from snnmap.chip.spec import ChipSpec

HOST_FLAG = np.uint64(1 << 63)


def _shifts(spec: ChipSpec) -> tuple[int, int, int, int, int]:
    bank = spec.axon_bits
    core_y = bank + spec.bank_bits
    core_x = core_y + spec.core_y_bits
    chip_y = core_x + spec.core_x_bits
    chip_x = chip_y + spec.chip_y_bits
    return chip_x, chip_y, core_x, core_y, bank


def core_shift(spec: ChipSpec) -> int:
    """Bits below the core address: word >> core_shift identifies the destination core."""
    return spec.axon_bits + spec.bank_bits


def _mask_shifts(spec: ChipSpec) -> tuple[int, int]:
    my = _shifts(spec)[0] + spec.chip_x_bits
    return my + spec.core_y_bits, my


def address_bits(spec: ChipSpec) -> int:
    """Bits a destination word may use (below them, everything; above, nothing)."""
    return _mask_shifts(spec)[1] + (spec.core_x_bits + spec.core_y_bits if spec.multicast else 0)


def encode(spec: ChipSpec, chip_x, chip_y, core_x, core_y, axon, mask_x=0, mask_y=0) -> np.ndarray:
    sx, sy, cx, cy, sb = _shifts(spec)
    bank, low = np.divmod(np.asarray(axon, np.int64), spec.axons_per_core)
    out = (np.asarray(chip_x, np.uint64) << np.uint64(sx)) | (np.asarray(chip_y, np.uint64) << np.uint64(sy)) \
        | (np.asarray(core_x, np.uint64) << np.uint64(cx)) | (np.asarray(core_y, np.uint64) << np.uint64(cy)) \
        | (bank.astype(np.uint64) << np.uint64(sb)) | low.astype(np.uint64)
    if spec.multicast:
        mx, my = _mask_shifts(spec)
        out = out | (np.asarray(mask_x, np.uint64) << np.uint64(mx)) | (np.asarray(mask_y, np.uint64) << np.uint64(my))
    return out.astype(np.uint64)


def masks(spec: ChipSpec, words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (mask_x, mask_y) of each word (zeros on a chip without multicast)."""
    w = np.asarray(words, np.uint64)
    if not spec.multicast:
        z = np.zeros(w.shape, np.int64)
        return z, z
    mx, my = _mask_shifts(spec)
    return (((w >> np.uint64(mx)) & np.uint64((1 << spec.core_x_bits) - 1)).astype(np.int64),
            ((w >> np.uint64(my)) & np.uint64((1 << spec.core_y_bits) - 1)).astype(np.int64))


def expand(spec: ChipSpec, words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Multicast words as the unicast words they deliver: (index of the word, unicast word).
    A masked bit of the core address takes both values; unicast words map to themselves."""
    w = np.asarray(words, np.uint64)
    mask_x, mask_y = masks(spec, w)
    if not (mask_x.any() or mask_y.any()):
        return np.arange(len(w)), w & np.uint64((1 << _mask_shifts(spec)[1]) - 1)
    _, _, cx, cy, _ = _shifts(spec)
    base = w & np.uint64((1 << _mask_shifts(spec)[1]) - 1)
    # spread each mask into the core-address bit positions it frees, then enumerate the subsets
    free = (mask_x.astype(np.uint64) << np.uint64(cx)) | (mask_y.astype(np.uint64) << np.uint64(cy))
    base = base & ~free
    sizes = np.left_shift(1, np.bitwise_count(free).astype(np.int64))
    idx = np.repeat(np.arange(len(w)), sizes)
    k = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    out = base[idx].copy()
    fr = free[idx]
    bit = np.uint64(1)
    kk = k.astype(np.uint64)
    any_free = int(np.bitwise_or.reduce(free))
    for b in (b for b in range(64) if any_free >> b & 1):  # deposit k's bits into the free positions, low to high
        has = (fr & np.uint64(1 << b)) != 0
        out |= np.where(has & ((kk & bit) != 0), np.uint64(1 << b), np.uint64(0))
        kk = np.where(has, kk >> bit, kk)
    return idx, out


def route_hops(spec: ChipSpec, src, dst) -> np.ndarray:
    """Mesh hops from core src to core dst, each (chip_x, chip_y, core_x, core_y) (arrays broadcast):
    X then Y over the board's global grid, a chip-to-chip link counting chip_link_hops."""
    scx, scy, sx, sy = (np.asarray(v, np.int64) for v in src)
    dcx, dcy, dx, dy = (np.asarray(v, np.int64) for v in dst)
    gx0, gy0 = scx * spec.mesh_w + sx, scy * spec.mesh_h + sy
    gx1, gy1 = dcx * spec.mesh_w + dx, dcy * spec.mesh_h + dy
    crossings = np.abs(dcx - scx) + np.abs(dcy - scy)
    return np.abs(gx1 - gx0) + np.abs(gy1 - gy0) + crossings * (spec.chip_link_hops - 1)


def host_words(features: np.ndarray) -> np.ndarray:
    return (HOST_FLAG | np.asarray(features, np.uint64)).astype(np.uint64)


def low_field(spec: ChipSpec, words: np.ndarray) -> np.ndarray:
    """The logical axon of each word (a host word: its feature index): decode's last field, alone."""
    w = np.asarray(words, np.uint64)
    sb = _shifts(spec)[4]
    axon = ((w >> np.uint64(sb)) & np.uint64((1 << spec.bank_bits) - 1)).astype(np.int64) * spec.axons_per_core
    axon += (w & np.uint64((1 << spec.axon_bits) - 1)).astype(np.int64)
    host = (w & HOST_FLAG) != 0
    if host.any():
        axon[host] = (w[host] & np.uint64((1 << 63) - 1)).astype(np.int64)
    return axon


def decode(spec: ChipSpec, words: np.ndarray) -> tuple[np.ndarray, ...]:
    """-> (is_host, chip_x, chip_y, core_x, core_y, logical axon or feature index)."""
    w = np.asarray(words, np.uint64)
    host = (w & HOST_FLAG) != 0
    sx, sy, cx, cy, _ = _shifts(spec)

    def field(shift: int, bits: int) -> np.ndarray:
        return ((w >> np.uint64(shift)) & np.uint64((1 << bits) - 1)).astype(np.int64)

    return (host, field(sx, spec.chip_x_bits), field(sy, spec.chip_y_bits), field(cx, spec.core_x_bits),
            field(cy, spec.core_y_bits), low_field(spec, w))

"""PAICORE 2.0 offline configuration and spike frames (64-bit words), encoded and decoded with numpy.

Field offsets follow paicorelib 1.4 (framelib/frame_defs.py); docs/paicore.md lists them. snnmap
writes and reads these words itself so that paicorelib is needed only by the tests that
cross-check this module against it.
"""

from __future__ import annotations

import numpy as np

from snnmap.errors import SnnmapError

# frame headers: type << 2 | subtype
CONFIG1, CONFIG2, CONFIG3, CONFIG4 = 0x0, 0x1, 0x2, 0x3
WORK1 = 0x8

PAYLOAD_BITS = 30
PAYLOAD_MASK = (1 << PAYLOAD_BITS) - 1
AXONS = 1152  # fan-in of one dendrite in 1-bit input mode
WORDS_PER_COLUMN = AXONS // 64  # one weight-memory address
WORDS_PER_NEURON = 4  # one neuron-memory record (214 bits)
WEIGHT_WIDTH_2BIT = 1  # register code: 0, 1, 2, 3 = 1, 2, 4, 8 bits
WEIGHT_BITS = 2
NRAM_ADDRESSES = 512
THRESHOLD_MAX = (1 << 29) - 1
TICK_WAIT_MAX = (1 << 15) - 1
TIMESLOTS = 256


def _u(x) -> np.ndarray:
    return np.asarray(x, dtype=np.uint64)


def header(kind: int, chip_x, chip_y, core_x, core_y, rid_x=0, rid_y=0) -> np.ndarray:
    """The frame bits above the payload: [63:60] header, [59:50] chip, [49:40] core, [39:30] core*."""
    return (_u(kind) << _u(60)) | (_u(chip_x) << _u(55)) | (_u(chip_y) << _u(50)) \
        | (_u(core_x) << _u(45)) | (_u(core_y) << _u(40)) | (_u(rid_x) << _u(35)) | (_u(rid_y) << _u(30))


def split_header(words: np.ndarray) -> tuple[np.ndarray, ...]:
    """-> (header, chip_x, chip_y, core_x, core_y, rid_x, rid_y, payload), each an int64 array."""
    w = _u(words)

    def f(shift: int, bits: int) -> np.ndarray:
        return ((w >> _u(shift)) & _u((1 << bits) - 1)).astype(np.int64)

    return f(60, 4), f(55, 5), f(50, 5), f(45, 5), f(40, 5), f(35, 5), f(30, 5), f(0, 30)


def package_payload(start: int, count: int) -> int:
    """Payload of a config III / IV package header: start address [29:20], type 0 [19], count [18:0]."""
    return (start << 20) | count


# ---- config II: the core's parameter registers -------------------------------------------------------

REG_FIELDS = ("weight_width", "LCN", "input_width", "spike_width", "num_dendrite", "pool_max",
              "tick_wait_start", "tick_wait_end", "snn_en", "target_LCN", "test_chip_addr")


def core_registers(regs: dict) -> np.ndarray:
    """The three config II payloads of a register set (keys as paicorelib serializes them)."""
    tws, tca = regs["tick_wait_start"], regs["test_chip_addr"]
    f1 = (regs["weight_width"] << 28) | (regs["LCN"] << 24) | (regs["input_width"] << 23) \
        | (regs["spike_width"] << 22) | (regs["num_dendrite"] << 9) | (regs["pool_max"] << 8) | (tws >> 7)
    f2 = ((tws & 0x7F) << 23) | (regs["tick_wait_end"] << 8) | (regs["snn_en"] << 7) \
        | (regs["target_LCN"] << 3) | (tca >> 7)
    f3 = (tca & 0x7F) << 23
    return np.array([f1, f2, f3], dtype=np.uint64)


def parse_registers(payloads: np.ndarray, where: str) -> dict:
    f1, f2, f3 = (int(v) for v in payloads)
    if f3 & ((1 << 23) - 1):
        raise SnnmapError("config II frame 3 sets bits [22:0], which are reserved", where=where)
    return {"weight_width": (f1 >> 28) & 3, "LCN": (f1 >> 24) & 0xF, "input_width": (f1 >> 23) & 1,
            "spike_width": (f1 >> 22) & 1, "num_dendrite": (f1 >> 9) & 0x1FFF, "pool_max": (f1 >> 8) & 1,
            "tick_wait_start": ((f1 & 0xFF) << 7) | ((f2 >> 23) & 0x7F), "tick_wait_end": (f2 >> 8) & 0x7FFF,
            "snn_en": (f2 >> 7) & 1, "target_LCN": (f2 >> 3) & 0xF,
            "test_chip_addr": ((f2 & 7) << 7) | ((f3 >> 23) & 0x7F)}


# ---- config III: neuron memory ---------------------------------------------------------------------

# (name, first bit, width) of the 214-bit neuron record, bit 0 = bit 0 of the record's first word
NEURON_FIELDS = (
    ("voltage", 0, 30), ("bit_truncate", 30, 5), ("weight_det_stoch", 35, 1), ("leak_v", 36, 30),
    ("leak_det_stoch", 66, 1), ("leak_reversal_flag", 67, 1), ("threshold_pos", 68, 29),
    ("threshold_neg", 97, 29), ("threshold_neg_mode", 126, 1), ("threshold_mask_ctrl", 127, 5),
    ("leak_post", 132, 1), ("reset_v", 133, 30), ("reset_mode", 163, 2), ("addr_chip_y", 165, 5),
    ("addr_chip_x", 170, 5), ("addr_core_y_ex", 175, 5), ("addr_core_x_ex", 180, 5), ("addr_core_y", 185, 5),
    ("addr_core_x", 190, 5), ("addr_axon", 195, 11), ("tick_relative", 206, 8),
)
RECORD_BITS = 214
SIGNED_FIELDS = {"voltage", "leak_v", "reset_v"}  # 30-bit two's complement


def pack_neurons(fields: dict[str, np.ndarray], n: int) -> np.ndarray:
    """(n, 4) uint64 records from per-neuron field values (missing fields are 0)."""
    out = np.zeros((n, WORDS_PER_NEURON), dtype=np.uint64)
    for name, lo, width in NEURON_FIELDS:
        if name not in fields:
            continue
        v = np.broadcast_to(np.asarray(fields[name], dtype=np.int64), (n,))
        v = _u(v & ((1 << width) - 1))  # two's complement for the signed fields
        word, bit = divmod(lo, 64)
        out[:, word] |= v << _u(bit)
        if bit + width > 64:  # the field straddles two words
            out[:, word + 1] |= v >> _u(64 - bit)
    return out


def unpack_neurons(records: np.ndarray) -> dict[str, np.ndarray]:
    """Field values (int64) of (n, 4) records; signed fields sign-extended."""
    r = _u(records)
    out = {}
    for name, lo, width in NEURON_FIELDS:
        word, bit = divmod(lo, 64)
        v = r[:, word] >> _u(bit)
        if bit + width > 64:
            v = v | (r[:, word + 1] << _u(64 - bit))
        v = (v & _u((1 << width) - 1)).astype(np.int64)
        if name in SIGNED_FIELDS:
            v = np.where(v >= 1 << (width - 1), v - (1 << width), v)
        out[name] = v
    return out


def record_spare_bits(records: np.ndarray) -> np.ndarray:
    """Per record, whether any bit above bit 213 is set (the fourth word holds 22 bits)."""
    return (_u(records)[:, 3] >> _u(RECORD_BITS - 192)) != 0


# ---- config IV: weight memory ----------------------------------------------------------------------

def pack_weights(w: np.ndarray, level: int) -> np.ndarray:
    """Weight-memory words of a core: w is (rows, M) int8 in [-2, 1], rows <= 1152 x 2^level.

    Address (m * 2^level + t) * 2 + b holds bit b (two's complement, LSB first) of the weights of
    neuron m from the axons of timeslot t; the 1152 axons are bits 0..1151 of its 18 words, LSB first.
    """
    rows, m = w.shape
    slots = 1 << level
    full = np.zeros((slots * AXONS, m), dtype=np.int8)
    full[:rows] = w
    cube = full.reshape(slots, AXONS, m).transpose(2, 0, 1).view(np.uint8)  # (M, T, 1152)
    bits = np.stack([cube & 1, (cube >> 1) & 1], axis=2)  # (M, T, 2, 1152)
    packed = np.packbits(bits, axis=-1, bitorder="little")  # (M, T, 2, 144)
    return np.ascontiguousarray(packed).view("<u8").reshape(-1).astype(np.uint64)


def unpack_weights(words: np.ndarray, m: int, level: int) -> np.ndarray:
    """Inverse of pack_weights: (1152 x 2^level, M) int8 in [-2, 1]."""
    slots = 1 << level
    raw = np.ascontiguousarray(_u(words).astype("<u8")).view(np.uint8).reshape(m, slots, WEIGHT_BITS, AXONS // 8)
    bits = np.unpackbits(raw, axis=-1, bitorder="little").astype(np.int8)  # (M, T, 2, 1152)
    w = bits[:, :, 0] - 2 * bits[:, :, 1]  # (M, T, 1152)
    return np.ascontiguousarray(w.transpose(1, 2, 0).reshape(slots * AXONS, m))


# ---- work frame I: spikes --------------------------------------------------------------------------

def spike_payload(axon, timeslot, data=0) -> np.ndarray:
    """[26:16] axon, [15:8] timeslot, [7:0] data."""
    return (_u(axon) << _u(16)) | (_u(timeslot) << _u(8)) | _u(data)


def split_spike_payload(payload: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """-> (reserved [29:27], axon, timeslot, data)."""
    p = np.asarray(payload, np.int64)
    return p >> 27, (p >> 16) & 0x7FF, (p >> 8) & 0xFF, p & 0xFF


# ---- text form ------------------------------------------------------------------------------------

def to_text(words: np.ndarray) -> bytes:
    """One 64-character binary word per line, most significant bit first (paicorelib's np2txt form)."""
    w = np.ascontiguousarray(_u(words).astype(">u8")).view(np.uint8).reshape(-1, 8)
    bits = np.unpackbits(w, axis=1) + ord("0")
    lines = np.concatenate([bits, np.full((len(bits), 1), ord("\n"), np.uint8)], axis=1)
    return lines.tobytes()

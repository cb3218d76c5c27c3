"""Fan-out: which packets each neuron of a layer sends to the tiles of the next, and the copies
that needs.

A neuron has at most `max_destinations` destination words. Where a source neuron must reach
more (tile, axon) places than that, its tile holds copies of it (same crossbar column and
threshold, so the same spike) that share the destinations out: the copies cost neurons, which
is why tiling asks this module before it cuts the producer layer.

On a multicast chip (PAICORE: one word per neuron, reaching an aligned power-of-two block of
cores at one axon index) the consumer's tiles number their axons alike (tiling.period), so one
word serves a whole block of tiles whenever every tile in it either reads the input or leaves
that axon unused. The fewest such blocks covering the tiles that read an input come from a
small dynamic programme over the blocks of the tile order (a block is taken whole when it is
usable and needed, else split in two), vectorized over the inputs. A block is any sub-cube of
the position bits (PAICORE masks x and y bits independently; in Morton order they alternate):
for layers of up to 2^SUBCUBE_BITS tiles the programme tries every bit to split on, above that
only the highest (aligned runs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snnmap.chip.spec import ChipSpec
from snnmap.ir import Population

SUBCUBE_BITS = 7


@dataclass
class FanOut:
    mult: np.ndarray  # int64 (src.size,): copies of each source ANN neuron (>= 1)
    src: np.ndarray  # int64 (P,): source ANN neuron of each destination piece, sorted
    copy: np.ndarray  # int64 (P,): the copy that sends it
    tile: np.ndarray  # int64 (P,): first tile of the block (tile index in the consumer layer)
    free: np.ndarray  # int64 (P,): bits of the tile position the block leaves free (2^popcount tiles)
    axon: np.ndarray  # int64 (P,): axon index in every tile of the block (replica 0 on OR chips)
    align: int  # tiles: the consumer's first tile must sit at a multiple of this in the core order
    spread: bool  # the consumer spans chips: its tile s sits at core s % per_chip(spec) of its chip


SPREAD_ALIGN = 128  # a layer spanning chips puts a multiple of (at most) this many tiles on each


def per_chip(spec: ChipSpec) -> int:
    """Tiles a layer that spans chips puts on each chip: the usable cores rounded down to a
    multiple of the largest power of two up to SPREAD_ALIGN that leaves at most an eighth of
    them empty, so that no aligned block of up to that many tiles straddles two chips. With all
    1,008 of paicore2's cores (896 now), a layer's Morton blocks shifted by 16 tiles on every
    further chip, and its producer's neurons needed several words, hence copies, per block."""
    usable = spec.usable_cores
    g = SPREAD_ALIGN
    while g > 1 and usable % g > usable // 8:
        g //= 2
    return usable // g * g


def slots(n_tiles: int, spec: ChipSpec) -> np.ndarray:
    """Position of each tile in the core order the blocks are aligned in: consecutive within a
    chip's usable cores, and a layer larger than one chip starts each chip afresh with
    per_chip(spec) tiles on each."""
    s = np.arange(n_tiles, dtype=np.int64)
    if n_tiles <= spec.usable_cores:
        return s
    per = per_chip(spec)
    return s // per * spec.cores_per_chip + s % per


def fan_out(src: Population, tiles: list, spec: ChipSpec, chunk: int = 8192) -> FanOut:
    ns = src.replicas
    if not spec.multicast:
        return _unicast(src, tiles, spec)
    X, T = src.size, len(tiles)
    res_of = np.full(X, -1, dtype=np.int64)
    pos = slots(T, spec)
    bits = int(pos[-1]).bit_length() if T else 0
    # the reads: input x read by tile t (at axon row res_of[x] * ns); in the periodic layout
    # replica r of residue q is row q * ns + r, and every tile of a layer has the same rows
    rows0 = [tile.axon_src[::ns] for tile in tiles]
    chip_bits = spec.cores_per_chip.bit_length() - 1  # a block stays within one chip
    if bits <= min(SUBCUBE_BITS, chip_bits) or len({len(a) for a in rows0}) > 1:
        flat, t_of, q = _rows(rows0)
        read = flat >= 0
        rx, rq, rt = flat[read], q[read], t_of[read]
        res_of[rx] = rq
        if bits <= min(SUBCUBE_BITS, chip_bits):
            px, pv, pf = _small_layer(tiles, ns, X, rx, rt, res_of, pos, bits, chunk)
        else:
            px, pv, pf = aligned_runs(rx, pos[rt], res_of[rx], pos, min(bits, chip_bits))
        pa = res_of[px] * ns
    else:  # the (position, residue) table of aligned_runs straight from the tiles
        px, pv, pf, pa = _table_runs(rows0, pos, min(bits, chip_bits), X)
        pa = pa * ns
    tile_at = np.full(1 << bits, -1, dtype=np.int64)
    tile_at[pos] = np.arange(T)
    order = np.lexsort((pv, px))
    px, pv, pf, pa = px[order], pv[order], pf[order], pa[order]
    return _finish(X, px, tile_at[pv], pf, pa, spec,
                   align=1 << int(pf.max(initial=0)).bit_length(), spread=T > spec.usable_cores)


def _table_runs(rows0: list, pos: np.ndarray, max_level: int, X: int) -> tuple:
    """aligned_runs for tiles with the same residues (rows0: each tile's input per residue, -1
    unused), the table filled straight from them: (input, first position, free bits, residue)."""
    dtype = np.int32 if X < np.iinfo(np.int32).max else np.int64

    def fill(table, r0, r1):
        table[pos] = np.stack([a[r0:r1] for a in rows0])

    xs, start, level, res = _sliced_halving(pos, int(pos[-1]), len(rows0[0]), max_level, fill, dtype)
    return xs, start, (1 << level) - 1, res


def _sliced_halving(positions: np.ndarray, last: int, n_res: int, max_level: int, fill, dtype,
                    cells: int = 1 << 22) -> tuple:
    """_halving over a (position, residue) table of inputs built by fill(table, r0, r1) in slices
    of residues of at most `cells` entries (positions up to `last`): (input, first position,
    level, residue) of each block."""
    step = 1 << max_level
    n_pos = -(-(last + 1) // step) * step
    present = np.zeros(n_pos, dtype=bool)
    present[positions] = True
    width = max(1, cells // n_pos)
    out = []
    for r0 in range(0, n_res, width):
        r1 = min(r0 + width, n_res)
        table = np.full((n_pos, r1 - r0), -1, dtype=dtype)
        fill(table, r0, r1)
        xs, start, level, res = _halving(table, present, max_level)
        out.append((xs, start, level, res + r0))
    return tuple(np.concatenate([o[i] for o in out]) for i in range(4))


def _small_layer(tiles, ns, X, rx, rt, res_of, pos, bits, chunk) -> tuple:
    """Sub-cube covers for a layer of at most 2^SUBCUBE_BITS tiles, on dense (position, input)
    tables: a position is usable for an input it reads, or whose axon it leaves unused."""
    T = len(tiles)
    unused = np.stack([tile.axon_src[::ns] < 0 for tile in tiles])
    need = np.zeros((T, X), dtype=bool)
    need[rt, rx] = True
    pieces = []
    for x0 in range(0, X, chunk):
        xs = np.arange(x0, min(x0 + chunk, X))
        r = res_of[xs]
        nd = np.zeros((1 << bits, len(xs)), dtype=bool)
        ok = np.zeros((1 << bits, len(xs)), dtype=bool)
        nd[pos] = need[:, xs]
        ok[pos] = need[:, xs] | (unused[:, np.maximum(r, 0)] & (r >= 0)[None, :])
        pieces.append(_subcubes(nd, ok, bits, xs))
    return tuple(np.concatenate([p[i] for p in pieces]) if pieces else np.zeros(0, np.int64) for i in range(3))


def aligned_runs(x: np.ndarray, p: np.ndarray, r: np.ndarray, positions: np.ndarray, max_level: int,
                 cells: int = 1 << 22) -> tuple:
    """Blocks that are aligned runs of 2^level positions (the low bits free), from the reads
    alone: input x[i] is read at position p[i] on axon residue r[i]. A block serves input x when
    every position in it holds a tile that reads x or leaves residue r(x) unused, i.e. when all
    its positions hold tiles and the tiles in it that use r(x) are exactly those that read x.
    Each read takes its largest such block (usable blocks nest, so that is the block an aligned
    cover taken top-down would emit).

    A tile reads one input per residue, so a (position, residue) table of inputs holds every
    read; a block is usable for residue r when its two halves are and the inputs read on r in
    it are one (min == max). Halving the table level by level costs about twice its size, in
    slices of residues of at most `cells` entries."""
    if len(x) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)

    def fill(table, r0, r1):
        sel = (r >= r0) & (r < r1)
        table[p[sel], r[sel] - r0] = x[sel]

    xs, start, level, _ = _sliced_halving(positions, int(max(p.max(), positions.max())), int(r.max()) + 1,
                                          max_level, fill, np.int64, cells)
    order = np.lexsort((start, xs))  # by input, then position
    return xs[order], start[order], (1 << level[order]) - 1


def _halving(hi: np.ndarray, present: np.ndarray, max_level: int) -> tuple:
    """The blocks of aligned_runs from a (positions, residues) table of the input each position
    reads on each residue (-1: none; positions a multiple of 2^max_level, `present`: those that
    hold a tile): (input, first position, level, residue column) of each block."""
    lo = np.where(hi < 0, np.iinfo(hi.dtype).max, hi)
    alive = np.broadcast_to(present[:, None], hi.shape)
    out = [[], [], [], []]

    def emit(mask, lv):
        blk, res = np.nonzero(mask)
        for o, v in zip(out, (hi[blk, res], blk << lv, np.full(len(blk), lv), res)):
            o.append(v)

    for lv in range(1, max_level + 1):
        hi2, lo2 = np.maximum(hi[0::2], hi[1::2]), np.minimum(lo[0::2], lo[1::2])
        alive2 = alive[0::2] & alive[1::2] & ((hi2 == lo2) | (hi2 < 0))
        emit(alive & (hi >= 0) & ~np.repeat(alive2, 2, axis=0), lv - 1)  # usable blocks whose parent is not
        hi, lo, alive = hi2, lo2, alive2
    emit(alive & (hi >= 0), max_level)
    return tuple(np.concatenate(o).astype(np.int64) for o in out)


def _subcubes(nd: np.ndarray, ok: np.ndarray, bits: int, xs: np.ndarray) -> tuple:
    """Fewest sub-cubes of the position bits covering the needed positions, each inside the
    usable ones, among covers made by splitting on one bit at a time (exact for those)."""
    n = len(xs)
    cubes = {}  # (free, value) -> (cost, full, any)
    for free in sorted(range(1 << bits), key=lambda f: bin(f).count("1")):
        for value in range(1 << bits):
            if value & free:
                continue
            if not free:
                a = nd[value]
                cubes[free, value] = (a.astype(np.int32), ok[value], a)
                continue
            low = free & -free
            c0, f0, a0 = cubes[free ^ low, value]
            c1, f1, a1 = cubes[free ^ low, value | low]
            full, anyn = f0 & f1, a0 | a1
            best = c0 + c1
            f = free
            while f:
                b = f & -f
                f ^= b
                if b != low:
                    best = np.minimum(best, cubes[free ^ b, value][0] + cubes[free ^ b, value | b][0])
            cubes[free, value] = (np.where(full & anyn, 1, best).astype(np.int32), full, anyn)
    # recover the cover top-down, all inputs at once: a cube is active for the inputs whose
    # optimal cover reaches it; parents (more free bits) come before their children
    top = (1 << bits) - 1
    active = {(top, 0): np.ones(n, dtype=bool)}
    out_x, out_v, out_f = [], [], []
    for free in sorted(range(1 << bits), key=lambda f: -bin(f).count("1")):
        for value in range(1 << bits):
            act = active.pop((free, value), None)
            if act is None or value & free:
                continue
            cost, full, anyn = cubes[free, value]
            emit = act & full & anyn
            if emit.any():
                idx = np.flatnonzero(emit)
                out_x.append(xs[idx]), out_v.append(np.full(len(idx), value)), out_f.append(np.full(len(idx), free))
            split = act & anyn & ~full
            f = free
            while f and split.any():
                b = f & -f
                f ^= b
                here = split & (cubes[free ^ b, value][0] + cubes[free ^ b, value | b][0] == cost)
                if here.any():
                    for child in ((free ^ b, value), (free ^ b, value | b)):
                        active[child] = active[child] | here if child in active else here
                    split &= ~here
    cat = (lambda parts: np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64))
    return cat(out_x), cat(out_v), cat(out_f)


def _rows(arrays: list) -> tuple:
    """Per-tile arrays end to end: (values, tile of each, row of each within its tile)."""
    lens = np.array([len(a) for a in arrays], dtype=np.int64)
    flat = np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
    return (flat, np.repeat(np.arange(len(arrays), dtype=np.int64), lens),
            np.arange(len(flat), dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens))


def _unicast_reads(tiles: list) -> tuple:
    """(input, tile, axon) of every axon row reading an input; on an OR chip replica 0's rows
    only (replica r goes r axons further). In tile, then axon order."""
    px, pt, pa = _rows([t.axon_src for t in tiles])
    keep = px >= 0
    if tiles and tiles[0].axon_rep is not None:
        keep &= np.concatenate([t.axon_rep for t in tiles]) == 0
    return px[keep], pt[keep], pa[keep]


def _copies(counts: np.ndarray, spec: ChipSpec) -> np.ndarray:
    """Copies a neuron needs to send `counts` destination words."""
    return np.maximum(1, -(-counts // spec.max_destinations)).astype(np.int64)


def copies_needed(src: Population, tiles: list, spec: ChipSpec) -> np.ndarray:
    """fan_out(...).mult on a chip without multicast, counted from the reads without ordering
    them (the shape search weighs candidates by it where axons OR spikes; where they add events
    it counts without cutting, tiling._read_counts)."""
    return _copies(np.bincount(_unicast_reads(tiles)[0], minlength=src.size), spec)


def _unicast(src: Population, tiles: list, spec: ChipSpec) -> FanOut:
    """One destination word per (tile, axon) reading the input; on an OR chip, per replica 0
    (replica r goes r axons further)."""
    px, pt, pa = _unicast_reads(tiles)
    order = np.argsort(px, kind="stable")  # pieces come by (tile, axon) already: by input, keeping that
    return _finish(src.size, px[order], pt[order], np.zeros(len(px), np.int64), pa[order], spec, 1, False)


def _finish(X: int, px, pt, pf, pa, spec: ChipSpec, align: int, spread: bool) -> FanOut:
    counts = np.bincount(px, minlength=X)
    rank = np.arange(len(px)) - np.repeat(np.cumsum(counts) - counts, counts)
    mult = _copies(counts, spec)
    as64 = (lambda a: np.asarray(a, dtype=np.int64))  # no copy of what is int64 already
    return FanOut(as64(mult), as64(px), as64(rank // spec.max_destinations), as64(pt), as64(pf), as64(pa), align,
                  spread)

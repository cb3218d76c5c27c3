"""Cut every on-chip population into crossbar tiles (what one core holds).

A tile is a block of output rows x cols x a channel group, all N replicas kept together (they
share their inputs' axons). Its axons are the union of its neurons' receptive fields, one per
sign actually used: an input whose weights into the tile are all +1 needs one axon, mixed signs
two, all zero none. The shape is chosen per layer: fewest tiles, then fewest axons.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from snnmap.chip.spec import ChipSpec
from snnmap.deadline import Deadline
from snnmap.errors import DesignRuleError
from snnmap.ir import Population, Projection, chip_layers, source_of


@dataclass(frozen=True)
class TileShape:
    th: int
    tw: int
    cg: int
    level: int = 0  # fan-in level: neurons join 2^level crossbar columns
    packed: bool = False  # tw is a most: each row band is cut into runs of columns that fill a core


class Columns:
    """A tile's distinct crossbar columns (xbase), shared read-only by the tiles alike; made on
    first use: the shape search cuts candidate tilings only to count axons and copies."""
    __slots__ = ("_make", "_array")

    def __init__(self, make=None, array: np.ndarray | None = None):
        self._make, self._array = make, array

    def get(self) -> np.ndarray:
        if self._array is None:
            self._array = _frozen(self._make())[0]
            self._make = None
        return self._array


@dataclass
class Tile:
    """What one core holds. The crossbar is kept factored: `xbase` has one column per ANN neuron
    of the region and is shared (read-only) by the tiles of a layer alike in channels, size and
    border clipping; `xrows` picks each axon's row (tiles at another phase of the period have
    their rows permuted), `xcol` each neuron's column (replicas and fan-out copies repeat it).
    `crossbar` expands it on demand, so a tiling holds no dense crossbar per tile."""
    layer: str
    index: int
    region: tuple[int, int, int, int, int, int]  # y0, y1, x0, x1, c0, c1 (half-open)
    axon_src: np.ndarray  # int64 (A,): flat (h, w, c) index in the source population; -1: unused row
    axon_sign: np.ndarray  # int8 (A,): +1 / -1
    xsrc: Columns  # xbase, int8 (A', K): synapse weight, times the axon's sign, per ANN neuron of the region
    xrows: np.ndarray | None  # int64 (A,): row of xbase of each axon; None: row a
    xcol: np.ndarray  # int64 (Nn,): column of xbase of each neuron
    xnnz: np.ndarray  # int64 (K,): nonzero synapses of each column of xbase
    neuron_src: np.ndarray  # int64 (Nn,): flat index of the ANN neuron in this population
    thresholds: np.ndarray  # int64 (Nn,)
    level: int = 0
    neuron_rep: np.ndarray | None = None  # int64 (Nn,): replica of each neuron
    neuron_copy: np.ndarray | None = None  # int64 (Nn,): fan-out copy of each neuron
    axon_rep: np.ndarray | None = None  # int64 (A,): source replica of each axon; None: all replicas add up

    @property
    def xbase(self) -> np.ndarray:
        return self.xsrc.get()

    @property
    def xbar(self) -> np.ndarray:
        """int8 (A, K): the distinct columns of the crossbar, one per ANN neuron of the region."""
        return self.xbase if self.xrows is None else self.xbase[self.xrows]

    @property
    def crossbar(self) -> np.ndarray:
        """int8 (A, Nn), a fresh array each call."""
        return self.xbar[:, self.xcol]

    @property
    def axons(self) -> int:
        return int(self.axon_src.shape[0])

    @property
    def neurons(self) -> int:
        return int(self.neuron_src.shape[0])

    @property
    def synapses(self) -> int:
        return int(self.xnnz[self.xcol].sum())


@dataclass
class Tiling:
    layers: dict[str, list[Tile]]
    shapes: dict[str, TileShape]
    fanout: dict = field(default_factory=dict)  # producer layer -> fanout.FanOut towards its consumer

    def all_tiles(self, order: list[str]) -> list[Tile]:
        return [t for name in order for t in self.layers[name]]


def period(src: Population, proj: Projection, shape: TileShape) -> tuple[int, int]:
    """Rows and columns of the input patch of a tile of this shape, clipped to the map: on a chip
    whose axons OR spikes together every tile of a layer numbers its axons by input position
    modulo this period, so that an input sits at the same axon in every tile that reads it (one
    multicast packet can then serve a block of tiles)."""
    H, W, _ = src.shape
    return (min((shape.th - 1) * proj.stride + proj.kh, H), min((shape.tw - 1) * proj.stride + proj.kw, W))


def _frozen(*arrays: np.ndarray) -> tuple:
    """Arrays shared by several tiles: read-only, so that no tile can change another's."""
    for a in arrays:
        if a is not None:
            a.flags.writeable = False
    return arrays


def _patch(src: Population, proj: Projection, region: tuple) -> tuple:
    """A region's input patch clipped to the map: (py0, px0, py1, px1), and its geometry (size and
    clipping on each side), which with the channels decides the crossbar up to a shift."""
    y0, y1, x0, x1 = region[:4]
    H, W, _ = src.shape
    s, p = proj.stride, proj.padding
    ty, tx, ey, ex = y0 * s - p, x0 * s - p, (y1 - 1) * s - p + proj.kh, (x1 - 1) * s - p + proj.kw
    py0, px0, py1, px1 = max(ty, 0), max(tx, 0), min(ey, H), min(ex, W)
    return (py0, px0, py1, px1), (y1 - y0, x1 - x0, py0 - ty, px0 - tx, ey - py1, ex - px1)


def _tile_axons(src: Population, proj: Projection, region: tuple, universe: np.ndarray | None,
                periodic: tuple[int, int] | None, cache: dict | None) -> tuple:
    """(xsrc, xrows, xnnz, axon_src, axon_sign, axon_rep) of one region (see build_tile). Tiles alike in
    channels, size, border clipping (and, with `periodic`, phase of the period) have the same
    crossbar and axons up to a shift of the source index: `cache` keeps them, relative to the
    patch origin, and each tile only adds its own offset."""
    c0, c1 = region[4:]
    W, C = src.shape[1:]
    (py0, px0, _, _), gkey = _patch(src, proj, region)
    offset = (py0 * W + px0) * C
    cache = {} if cache is None else cache
    if periodic is not None:
        # a tile's residues are its patch's rows and columns shifted by the patch origin's
        # phase: a template (phase 0) per channel group and geometry, its rows permuted per phase
        phase = (py0 % periodic[0], px0 % periodic[1])
        hit = cache.get((c0, c1, gkey, phase))
        if hit is None:
            hit = cache.get((c0, c1, gkey, (0, 0)))
            if hit is None:
                hit = cache[c0, c1, gkey, (0, 0)] = _template(src, proj, region, periodic, cache, gkey)
            if phase != (0, 0):
                hit = cache[c0, c1, gkey, phase] = _shifted(hit, periodic, C, src.replicas, phase, cache)
        xbase, xrows, xnnz, rel, used, axon_sign, axon_rep = hit
        return xbase, xrows, xnnz, np.where(used, rel + offset, -1), axon_sign, axon_rep
    if universe is not None:
        return _universe_axons(src, proj, region, universe)
    if (c0, c1, gkey) not in cache:
        cache.update(_compact_layouts(src, proj, region, [(c0, c1)], gkey))
    xsrc, xnnz, rel, axon_sign = cache[c0, c1, gkey]
    return xsrc, None, xnnz, rel + offset, axon_sign, None


def _live_reads(src: Population, proj: Projection, region: tuple, chans: np.ndarray) -> tuple:
    """The synapses of a region's neurons of the channels `chans`: (positions, per (position,
    kernel read, channel) whether its weight is nonzero and the read inside the map, each read's
    input numbered inside the clipped patch, the weights (K, channels))."""
    (py0, px0, _, px1), _ = _patch(src, proj, region)
    C = src.shape[2]
    n_pos, ci, iy, ix, valid = _window_reads(src, proj, region)
    w = proj.weights.reshape(-1, proj.weights.shape[3])[:, chans]  # (K, S)
    live = valid[:, :, None] & (w != 0)[None, :, :]  # (P, K, S)
    local = ((iy - py0) * (px1 - px0) + (ix - px0)) * C + ci[None, :]
    return n_pos, live, local, w


def _sign_counts(proj: Projection) -> np.ndarray:
    """(2, kh, kw, c_in, OC + 1): per input of the kernel window, its +1 / -1 weights into the
    output channels before each index (kept per projection: channel groups are differences)."""
    memo = _axon_memo(proj)
    if "cum" not in memo:
        w = proj.weights
        dt = np.int16 if w.shape[3] < np.iinfo(np.int16).max else np.int32
        cum = np.zeros((2, *w.shape[:3], w.shape[3] + 1), dtype=dt)
        np.cumsum(w > 0, axis=3, dtype=dt, out=cum[0, :, :, :, 1:])
        np.cumsum(w < 0, axis=3, dtype=dt, out=cum[1, :, :, :, 1:])
        memo["cum"] = _frozen(cum)[0]
    return memo["cum"]


def _channel_masks(proj: Projection, groups: list) -> np.ndarray:
    """(G, kh, kw, c_in, 2): which inputs of a kernel window carry a +1 / -1 weight into each
    channel group (c0, c1) of `groups`."""
    cum = _sign_counts(proj)
    g = np.array(groups, dtype=np.int64).reshape(-1, 2)
    return np.ascontiguousarray(np.moveaxis(cum[..., g[:, 1]] > cum[..., g[:, 0]], (4, 0), (0, 4)))


def _compact_layouts(src: Population, proj: Projection, region: tuple, groups: list, gkey: tuple,
                     masks: np.ndarray | None = None, cells: int = 1 << 24) -> dict:
    """_tile_axons' cache entries (xsrc, xnnz, axon source less the patch origin, axon sign) of
    the channel groups `groups` (their _channel_masks, if known) at a region's geometry, the
    groups batched (in slices of about `cells` patch entries): an axon per signed input the
    group uses, in input order. The crossbar is built when first read (the shape search only
    counts axons and copies)."""
    (py0, px0, py1, px1), (th, tw, cy0, cx0, _, _) = _patch(src, proj, region)
    W, C = src.shape[1:]
    s, kh, kw = proj.stride, proj.kh, proj.kw
    ph, pw = (th - 1) * s + kh, (tw - 1) * s + kw  # unclipped
    if masks is None:
        masks = _channel_masks(proj, groups)
    # nonzero synapses of each (position, channel): its kernel's nonzero weights inside the map
    dy, ky = np.arange(th)[:, None] * s, np.arange(kh)[None, :]
    dx, kx = np.arange(tw)[:, None] * s, np.arange(kw)[None, :]
    in_y = (dy + ky >= cy0) & (dy + ky < cy0 + py1 - py0)  # (th, kh)
    in_x = (dx + kx >= cx0) & (dx + kx < cx0 + px1 - px0)  # (tw, kw)
    inside = (in_y[:, None, :, None] & in_x[None, :, None, :]).reshape(th * tw, kh * kw)
    nnz = inside.astype(np.int64) @ np.count_nonzero(proj.weights, axis=2).reshape(kh * kw, -1)  # (P, OC)
    per = max(1, cells // (ph * pw * C * 2))
    out = {}
    for i in range(0, len(groups), per):
        m = masks[i:i + per]
        patch = _window_union(m, s, th, tw)
        present = patch[:, cy0:cy0 + py1 - py0, cx0:cx0 + px1 - px0].reshape(len(m), -1)
        gi, lkeys = np.nonzero(present)
        ends = np.searchsorted(gi, np.arange(len(m) + 1))
        lpos, neg = np.divmod(lkeys, 2)
        lrc, lc = np.divmod(lpos, C)
        ly, lx = np.divmod(lrc, px1 - px0)
        rel = (ly * W + lx) * C + lc
        sign = np.where(neg == 1, -1, 1).astype(np.int8)
        for j, (c0, c1) in enumerate(groups[i:i + per]):
            a, b = ends[j], ends[j + 1]
            keys = lkeys[a:b]
            xsrc = Columns(lambda c0=c0, c1=c1, keys=keys: _compact_xbar(src, proj, region, c0, c1, keys))
            out[c0, c1, gkey] = (xsrc, *_frozen(nnz[:, c0:c1].ravel(), rel[a:b], sign[a:b]))
    return out


def _compact_xbar(src: Population, proj: Projection, region: tuple, c0: int, c1: int, keys: np.ndarray) -> np.ndarray:
    """The crossbar (axons, positions x channels) of a channel group at a region's geometry, its
    axons the sorted signed-input keys `keys` (patch numbering): a 1 where the axon's sign is the
    synapse's weight."""
    n_pos, live, local, w = _live_reads(src, proj, region, np.arange(c0, c1))
    p_idx, k_idx, c_idx = np.nonzero(live)
    xbar = np.zeros((len(keys), n_pos * (c1 - c0)), dtype=np.int8)
    xbar[np.searchsorted(keys, local[p_idx, k_idx] * 2 + (w[k_idx, c_idx] < 0)), p_idx * (c1 - c0) + c_idx] = 1
    return xbar


def _universe_axons(src: Population, proj: Projection, region: tuple, universe: np.ndarray) -> tuple:
    """_tile_axons for the whole-input-map baseline: every key of `universe` is an axon."""
    c0, c1 = region[4:]
    W, C = src.shape[1:]
    (py0, px0, _, px1), _ = _patch(src, proj, region)
    cg = c1 - c0
    n_pos, live, local, w = _live_reads(src, proj, region, np.arange(c0, c1))
    p_idx, k_idx, c_idx = np.nonzero(live)
    lpos, neg = local[p_idx, k_idx], (w[k_idx, c_idx] < 0)
    lrc, lc = np.divmod(lpos, C)
    ly, lx = np.divmod(lrc, px1 - px0)
    axon_of = np.searchsorted(universe, (((ly + py0) * W + lx + px0) * C + lc) * 2 + neg)
    xbar = np.zeros((len(universe), n_pos * cg), dtype=np.int8)
    xbar[axon_of, p_idx * cg + c_idx] = 1
    xnnz = np.count_nonzero(xbar, axis=0).astype(np.int64)
    return (Columns(array=xbar), None, *_frozen(xnnz), universe // 2,
            np.where(universe % 2 == 1, -1, 1).astype(np.int8), None)


def _window_reads(src: Population, proj: Projection, region: tuple) -> tuple:
    """The region's output positions (row-major) reading through the kernel: their count, and per
    (position, kernel read (ky, kx, input channel)) the input channel, row and column read and
    whether it lies in the map (else padding)."""
    y0, y1, x0, x1 = region[:4]
    H, W, C = src.shape
    s, p = proj.stride, proj.padding
    oy = np.repeat(np.arange(y0, y1), x1 - x0)
    ox = np.tile(np.arange(x0, x1), y1 - y0)
    ky, kx, ci = np.meshgrid(np.arange(proj.kh), np.arange(proj.kw), np.arange(C), indexing="ij")
    ky, kx, ci = ky.ravel(), kx.ravel(), ci.ravel()
    iy = oy[:, None] * s - p + ky[None, :]
    ix = ox[:, None] * s - p + kx[None, :]
    return len(oy), ci, iy, ix, (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)


def _template(src: Population, proj: Projection, region: tuple, periodic: tuple[int, int], cache: dict,
              gkey: tuple) -> tuple:
    """The cache entry of _tile_axons for a region's channel group at phase 0 of the period:
    the crossbar rows of the residues its synapses use, each source replica its own axon. The
    geometry (all channels at once) is shared by the groups of a layer."""
    c0, c1 = region[4:]
    ns = src.replicas
    geo = cache.get(("geometry", gkey))
    if geo is None:
        geo = cache["geometry", gkey] = _geometry(src, proj, region, periodic)
    _, nnz, anyc, rel = geo
    n_axons = len(rel)
    if ("sign", ns) not in cache:
        cache["sign", ns] = _frozen(np.ones(n_axons, dtype=np.int8), np.tile(np.arange(ns), n_axons // ns))
    axon_sign, axon_rep = cache["sign", ns]
    return (Columns(lambda: geo[0]()[:, :, c0:c1].reshape(n_axons, -1)), None, *_frozen(nnz[c0:c1].T.ravel()), rel,
            *_frozen(np.repeat(anyc[c0:c1].any(axis=0), ns)), axon_sign, axon_rep)


def _geometry(src: Population, proj: Projection, region: tuple, periodic: tuple[int, int]) -> tuple:
    """For a region's size and clipping, all output channels at once, residues counted from the
    patch origin (phase 0): a function giving the crossbar rows, each source replica its own
    axon (axons, positions, channels); nonzero synapses (channels, positions); which residues each channel
    uses (channels, residues); each axon's source index less the patch origin's."""
    y0, x0 = region[0], region[2]
    _, W, C = src.shape
    s, p = proj.stride, proj.padding
    pery, perx = periodic
    py0, px0 = max(y0 * s - p, 0), max(x0 * s - p, 0)
    n_pos, ci, iy, ix, valid = _window_reads(src, proj, region)
    ry, rx = iy - py0, ix - px0  # in the patch
    res = ((ry % pery) * perx + rx % perx) * C + ci[None, :]  # (P, K); a patch never exceeds the period
    n_res = pery * perx * C
    rel = np.zeros(n_res, dtype=np.int64)
    rel[res[valid]] = ((ry * W + rx) * C + ci[None, :])[valid]
    OC = proj.weights.shape[3]
    w = proj.weights.reshape(-1, OC)  # (K, OC)
    p_idx, k_idx = np.nonzero(valid)
    base = np.zeros((OC, n_pos, n_res), dtype=np.int8)
    base[:, p_idx, res[p_idx, k_idx]] = w[k_idx].T  # zero weights write the zeros already there
    ns = src.replicas
    xall = []  # built when a tile's crossbar is first read (the shape search only counts)

    def rows() -> np.ndarray:
        if not xall:
            xall.append(np.repeat(base.transpose(2, 1, 0), ns, axis=0))
        return xall[0]

    return (rows, np.count_nonzero(base, axis=2).astype(np.int64) * ns, base.any(axis=1),
            _frozen(np.repeat(rel, ns))[0])


def _shifted(entry: tuple, periodic: tuple[int, int], C: int, ns: int, phase: tuple[int, int], cache: dict) -> tuple:
    """A cache entry of _tile_axons moved by `phase` rows and columns of the period: the input on
    residue (u, v, c) moves to ((u + a) % pery, (v + b) % perx, c); crossbar columns, signs and
    replicas of the rows stay."""
    key = ("rows", periodic, C, ns, phase)
    rows = cache.get(key)
    if rows is None:
        pery, perx = periodic
        u, v, c = np.meshgrid(np.arange(pery), np.arange(perx), np.arange(C), indexing="ij")
        src_res = ((((u - phase[0]) % pery) * perx + (v - phase[1]) % perx) * C + c).ravel()
        rows = cache[key] = (src_res[:, None] * ns + np.arange(ns)[None, :]).ravel()
    xbase, xrows, xnnz, rel, used, axon_sign, axon_rep = entry
    return (xbase, *_frozen(rows if xrows is None else xrows[rows]), xnnz, *_frozen(rel[rows], used[rows]),
            axon_sign, axon_rep)


def _neurons(pop: Population, regs: np.ndarray, mult: np.ndarray | None) -> tuple:
    """Neurons of every region at once (regs: (T, 6) int64): per ANN neuron of a region (row-major
    positions, channels innermost) its copies, each with the N replicas side by side. Returns
    the concatenated (neuron_src, thresholds, rep, copy, xcol) and each tile's first neuron."""
    OW, OC = pop.shape[1], pop.shape[2]
    n = pop.replicas
    y0, y1, x0, x1, c0, c1 = regs.T
    cg, w = c1 - c0, x1 - x0
    na = (y1 - y0) * w * cg
    first_ann = np.cumsum(na) - na
    tid = np.repeat(np.arange(len(regs)), na)
    j = np.arange(len(tid)) - first_ann[tid]
    q, c = np.divmod(j, cg[tid])
    yy, xx = np.divmod(q, w[tid])
    c += c0[tid]
    ann = ((yy + y0[tid]) * OW + xx + x0[tid]) * OC + c
    per = (mult[ann] if mult is not None else np.ones(len(ann), dtype=np.int64)) * n
    col = np.repeat(np.arange(len(ann)), per)
    within = np.arange(len(col)) - np.repeat(np.cumsum(per) - per, per)
    copy, rep = np.divmod(within, n)
    first = np.zeros(len(regs) + 1, dtype=np.int64)
    np.cumsum(np.bincount(tid, weights=per, minlength=len(regs)).astype(np.int64), out=first[1:])
    return ann[col], pop.thresholds[c[col], rep], rep, copy, j[col], first


def build_tile(layer: str, index: int, pop: Population, src: Population, proj: Projection,
               region: tuple[int, int, int, int, int, int], level: int = 0,
               universe: np.ndarray | None = None, mult: np.ndarray | None = None,
               periodic: tuple[int, int] | None = None, cache: dict | None = None) -> Tile:
    """Build one tile; with `universe` (sorted axon keys src*2 + negative), the tile configures
    exactly those axons whether it uses them or not (the whole-input-map baseline). `mult` gives
    each ANN neuron of the population its number of fan-out copies. With `periodic` (a chip
    whose axons OR spikes together), each source replica takes its own axon, numbered by input
    position modulo the period, and the synapses carry the weights' signs. `cache` (one dict
    per layer) shares crossbars and axon layouts between tiles alike (_tile_axons)."""
    return _make_tiles(layer, pop, src, proj, [region], level, universe, mult, periodic, cache, index)[0]


def _make_tiles(layer: str, pop: Population, src: Population, proj: Projection, regs: list, level: int,
                universe, mult, periodic, cache, index0: int = 0, progress=None) -> list[Tile]:
    nsrc, thr, rep, copy, xcol, first = _neurons(pop, np.array(regs, dtype=np.int64).reshape(-1, 6), mult)
    if periodic is None and universe is None and cache is not None:  # each geometry's groups at once
        todo: dict[tuple, tuple] = {}
        for region in regs:
            gkey = _patch(src, proj, region)[1]
            if (*region[4:], gkey) not in cache:
                todo.setdefault(gkey, (region, {}))[1][region[4:]] = None
        every = sorted({g for _, groups in todo.values() for g in groups})
        if every:
            index, masks = {g: i for i, g in enumerate(every)}, _channel_masks(proj, every)
            for gkey, (region, groups) in todo.items():
                cache.update(_compact_layouts(src, proj, region, list(groups), gkey,
                                              masks[[index[g] for g in groups]]))
    tiles = []
    for t, region in enumerate(regs):
        xbase, xrows, xnnz, axon_src, axon_sign, axon_rep = _tile_axons(src, proj, region, universe, periodic,
                                                                         cache)
        a, b = first[t], first[t + 1]
        tiles.append(Tile(layer=layer, index=index0 + t, region=region, axon_src=axon_src, axon_sign=axon_sign,
                          xsrc=xbase, xrows=xrows, xcol=xcol[a:b], xnnz=xnnz, neuron_src=nsrc[a:b], thresholds=thr[a:b],
                          level=level, neuron_rep=rep[a:b], neuron_copy=copy[a:b], axon_rep=axon_rep))
        if progress is not None:
            progress(1)
    return tiles


_MEMO: dict[int, tuple] = {}  # id(projection) -> (weak reference, memo): shape searches of one layer


def _axon_memo(proj: Projection) -> dict:
    """Per projection: its cumulative sign counts ("cum"), its channel groups' masks as bits per
    group size ("bits"), the axons each (group size, rows, columns) tile needs ("need", grown in
    "grow"): the shape search asks again for every level and every candidate of the consumer."""
    hit = _MEMO.get(id(proj))
    if hit is not None and hit[0]() is proj:
        return hit[1]
    for key in [k for k, (ref, _) in _MEMO.items() if ref() is None]:
        del _MEMO[key]
    memo = {"need": {}, "bits": {}}
    _MEMO[id(proj)] = (weakref.ref(proj), memo)
    return memo


def _window_union(masks: np.ndarray, stride: int, th: int, tw: int) -> np.ndarray:
    """(G, (th - 1) * stride + kh, (tw - 1) * stride + kw, ...): per group, the masks (G, kh, kw, ...)
    of a kernel window ORed over th x tw windows `stride` apart (booleans or packed bits)."""
    G, kh, kw = masks.shape[:3]
    rows = np.zeros((G, (th - 1) * stride + kh, kw, *masks.shape[3:]), dtype=masks.dtype)
    for y in range(th):
        rows[:, y * stride:y * stride + kh] |= masks
    if tw == 1:
        return rows
    patch = np.zeros((G, rows.shape[1], (tw - 1) * stride + kw, *masks.shape[3:]), dtype=masks.dtype)
    for x in range(tw):
        patch[:, :, x * stride:x * stride + kw] |= rows
    return patch


def _group_bits(proj: Projection, cg: int) -> np.ndarray:
    """(G, kh, kw, bytes): _channel_masks of the channel groups of cg (the last may be shorter),
    inputs x signs packed as bits; kept per projection (the shape search and the read counts
    ask again for every level and candidate)."""
    memo = _axon_memo(proj)["bits"]
    if cg not in memo:
        OC = proj.weights.shape[3]
        masks = _channel_masks(proj, [(c, min(c + cg, OC)) for c in range(0, OC, cg)])
        memo[cg] = _frozen(np.packbits(masks.reshape(*masks.shape[:3], -1), axis=3))[0]
    return memo[cg]


def _memo_need(memo: dict, proj: Projection, cg: int, th: int, tw: int, most: int) -> int:
    """Exact axon need of the worst full-size tile away from the borders (the most any tile of
    the shape needs): the union of its th x tw shifted kernel windows, per sign, max over the
    channel groups of cg; 2^62 once a narrower tile needs more than `most` (the largest core's
    axons). Kept per (cg, th) for widths 1, 2, ...: a column of windows more only changes the
    patch's last kw columns, so the last (cg, th) searched grows by one column at a time. The
    groups' masks are kept as bits (inputs x signs), unions are ORs and sizes popcounts."""
    got = memo["need"].setdefault((cg, th), [])
    st = memo.get("grow")
    if tw > len(got) and not (got and got[-1] > most) and (st is None or st["key"] != (cg, th, len(got))):
        bits = _group_bits(proj, cg)
        rows = _window_union(bits, proj.stride, th, 1)
        memo["grow"] = st = {"key": (cg, th, 0), "rows": rows, "tail": rows,
                             "counts": np.zeros(len(bits), dtype=np.int64)}
        got.clear()
    while tw > len(got) and not (got and got[-1] > most):
        rows, tail, counts = st["rows"], st["tail"], st["counts"]  # tail: the patch's last kw columns
        G, kw, s = len(rows), rows.shape[2], proj.stride
        new = np.zeros_like(rows)
        if got and s < kw:
            new[:, :, :kw - s] = tail[:, :, s:]
        before = np.bitwise_count(new.reshape(G, -1)).sum(axis=1, dtype=np.int64)
        new |= rows
        counts += np.bitwise_count(new.reshape(G, -1)).sum(axis=1, dtype=np.int64) - before
        got.append(int(counts.max(initial=0)))
        st["tail"], st["key"] = new, (cg, th, len(got))
    return got[tw - 1] if tw <= len(got) else 1 << 62


def _fan_out_bound(proj: Projection, out_hw: tuple[int, int], th: int, tw: int, n_groups: int) -> int:
    """Most tiles of this shape one input can feed, times two signs: windows of length L starting
    every th*stride rows cover one row at most ceil(L / (th*stride)) times (and there are only
    ceil(OH / th) tile rows)."""
    s = proj.stride
    ly, lx = (th - 1) * s + proj.kh, (tw - 1) * s + proj.kw
    rows = min(-(-ly // (th * s)), -(-out_hw[0] // th))
    cols = min(-(-lx // (tw * s)), -(-out_hw[1] // tw))
    return rows * cols * n_groups * 2


def fan_in(proj: Projection) -> int:
    """Axons one neuron needs at most: one signed axon per nonzero weight."""
    return int(np.count_nonzero(proj.weights, axis=(0, 1, 2)).max(initial=0))


def neuron_axons(src: Population, proj: Projection, spec: ChipSpec) -> int:
    """Axons the smallest tile (one neuron) needs: one per nonzero weight and sign, or, where
    axons OR spikes together, one per source replica of every input of the kernel window."""
    if spec.axon_accumulates:
        return fan_in(proj)
    pery, perx = period(src, proj, TileShape(1, 1, 1))
    return pery * perx * src.shape[2] * src.replicas


def min_level(pop: Population, proj: Projection, spec: ChipSpec, src: Population | None = None) -> int | None:
    """Smallest fan-in level at which one neuron's inputs and replicas fit a core, or None."""
    need = fan_in(proj) if src is None else neuron_axons(src, proj, spec)
    for level in range(spec.fanin_max_level + 1):
        if need <= spec.axons_at(level) and pop.replicas <= spec.neurons_at(level):
            return level
    return None


def _packed_count(per_neuron: np.ndarray, shape_out: tuple[int, int, int], th: int, tw: int, cg: int,
                  cap: int) -> int | None:
    """len(_packed_regions(...)) (the shape search's inner loop)."""
    regs = _packed_regions(per_neuron, shape_out, th, tw, cg, cap)
    return None if regs is None else len(regs)


def _packed_regions(per_neuron: np.ndarray, shape_out: tuple[int, int, int], th: int, tw: int, cg: int,
                    cap: int) -> np.ndarray | None:
    """Regions of a packed shape as a (T, 6) array: per channel group and band of th rows, runs
    of at most tw columns whose neurons (copies and replicas counted) fill a core, cut greedily
    from the left (optimal for a line), all bands and groups advanced together; None if one
    column alone overfills a core. In run order, then band and group (regions() orders them)."""
    OH, OW, OC = shape_out
    ry, rc = -(-OH // th), -(-OC // cg)
    m = np.zeros((ry * th, OW, rc * cg), dtype=np.int64)
    m[:OH, :, :OC] = per_neuron.reshape(OH, OW, OC)
    w = m.reshape(ry, th, OW, rc, cg).sum(axis=(1, 4)).transpose(0, 2, 1).reshape(-1, OW)  # (bands*groups, OW)
    cum = np.concatenate([np.zeros((len(w), 1), np.int64), np.cumsum(w, axis=1)], axis=1)
    rows = np.arange(len(w))
    pos = np.zeros(len(w), dtype=np.int64)
    out = []
    while True:
        live = pos < OW
        if not live.any():
            break
        r, p0 = rows[live], pos[live]
        reach = (cum[r] <= (cum[r, p0] + cap)[:, None]).sum(axis=1) - 1
        x1 = np.minimum(np.minimum(p0 + tw, OW), reach)
        if (x1 <= p0).any():
            return None
        out.append(np.stack([r, p0, x1], axis=1))
        pos[live] = x1
    r, x0, x1 = np.concatenate(out).T
    band, group = np.divmod(r, rc)
    y0, c0 = band * th, group * cg
    return np.stack([y0, np.minimum(y0 + th, OH), x0, x1, c0, np.minimum(c0 + cg, OC)], axis=1)


def shape_candidates(pop: Population, src: Population, proj: Projection, spec: ChipSpec,
                     deadline: Deadline | None = None, mult: np.ndarray | None = None,
                     keep: int = 1, fan_out_limit: bool = True, pow2_groups: bool = True) -> list[tuple]:
    """Legal shapes, best first: fewest tiles, then the lowest fan-in level, then fewest axons.
    `mult` (copies per ANN neuron) counts fan-out copies against the neurons of a core. With
    fan_out_limit, a chip without multicast rejects shapes that make an input feed more axons
    than a neuron has destinations; without it they are legal and the producer pays in copies.
    The host encoder sends as many packets as its inputs need (it is not a neuron). When the
    deadline passes, the best found so far."""
    OH, OW, OC = pop.shape
    n = pop.replicas
    lo = min_level(pop, proj, spec, src)
    if lo is None:
        raise DesignRuleError(f"layer {pop.name!r}: one neuron needs {neuron_axons(src, proj, spec)} axons and "
                              f"{n} replicas, over the limits axons_per_core={spec.axons_per_core} x "
                              f"2^{spec.fanin_max_level} / neurons_per_core={spec.neurons_per_core}")
    found: list[tuple] = []
    least_fan_out = 1 << 62
    copies = mult is not None and int(mult.max(initial=1)) > 1
    C, ns = src.shape[2], src.replicas

    def cutoff() -> int:
        return found[keep - 1][0] * (2 if keep > 1 else 1) if len(found) >= keep else 1 << 62

    def out_of_time() -> bool:
        return bool(found) and deadline is not None and deadline.expired()

    groups = sorted({-(-OC // g) for g in range(1, OC + 1)}, reverse=True)
    if spec.multicast and pow2_groups:  # a power-of-two number of groups keeps a region's tiles one aligned block
        groups = [cg for cg in groups if (-(-OC // cg)) & (-(-OC // cg) - 1) == 0]
    memo = _axon_memo(proj) if spec.axon_accumulates else None  # the same at every level and call
    for level in range(lo, spec.fanin_max_level + 1):
        per_core, axon_cap = spec.neurons_at(level) // n, spec.axons_at(level)
        for cg in groups:
            if out_of_time():
                break
            if cg > per_core:
                continue
            n_groups = -(-OC // cg)
            for th in range(1, OH + 1):
                if th * cg > per_core or out_of_time():
                    break
                for tw in range(1, OW + 1):
                    if th * tw * cg > per_core or out_of_time():
                        break
                    tiles = -(-OH // th) * -(-OW // tw) * n_groups
                    if tiles > cutoff():
                        continue
                    if fan_out_limit and not spec.multicast and src.on_chip:
                        fan_out = _fan_out_bound(proj, (OH, OW), th, tw, n_groups)
                        if fan_out > spec.max_destinations:
                            least_fan_out = min(least_fan_out, fan_out)
                            continue
                    if spec.axon_accumulates:
                        need = _memo_need(memo, proj, cg, th, tw, spec.axons_at(spec.fanin_max_level))
                    else:
                        pery, perx = period(src, proj, TileShape(th, tw, cg))
                        need = pery * perx * C * ns
                    if need > axon_cap:
                        break  # wider tiles only need more
                    if copies:  # runs of columns that fill a core, as many as the copies allow
                        if -(-int(mult.sum()) * n // spec.neurons_at(level)) > cutoff():
                            continue
                        tiles = _packed_count(mult * n, pop.shape, th, tw, cg, spec.neurons_at(level))
                        if tiles is None:
                            continue
                        if tiles > cutoff():
                            continue
                    found.append((tiles, level, need, -th * tw, TileShape(th, tw, cg, level, copies)))
                    found.sort(key=lambda c: c[:4])
                    del found[max(keep, 8) * 4:]
    if not found and least_fan_out < 1 << 62:
        raise DesignRuleError(f"layer {pop.name!r}: every tile shape that fits a core makes one input "
                              f"neuron of layer {src.name!r} feed {least_fan_out} or more axons, over the "
                              f"limit max_destinations={spec.max_destinations}")
    if not found and spec.multicast and pow2_groups:
        return shape_candidates(pop, src, proj, spec, deadline, mult, keep, fan_out_limit, pow2_groups=False)
    if not found:
        raise DesignRuleError(f"layer {pop.name!r}: no tile shape fits a core (limits axons_per_core="
                              f"{spec.axons_per_core} x 2^L, neurons_per_core={spec.neurons_per_core} / 2^L, "
                              f"L <= {spec.fanin_max_level}, fan-out copies counted)")
    return found[:keep]


def best_shape(pop: Population, src: Population, proj: Projection, spec: ChipSpec,
               deadline: Deadline | None = None, mult: np.ndarray | None = None) -> tuple[int, TileShape]:
    """(tiles, shape) of the best legal shape; on a chip without multicast, shapes within the
    destination limit first, then (if none) any shape, the producer paying with fan-out copies."""
    try:
        return tuple(shape_candidates(pop, src, proj, spec, deadline, mult)[0][::4])
    except DesignRuleError as e:
        if "max_destinations" not in str(e) or not src.on_chip:
            raise
    return tuple(shape_candidates(pop, src, proj, spec, deadline, mult, fan_out_limit=False)[0][::4])


def choose_shape(pop: Population, src: Population, proj: Projection, spec: ChipSpec,
                 deadline: Deadline | None = None, mult: np.ndarray | None = None) -> TileShape:
    return best_shape(pop, src, proj, spec, deadline, mult)[1]


def _layer(g: nx.DiGraph, name: str) -> tuple[Population, Population, Projection]:
    src_name = source_of(g, name)
    return g.nodes[name]["pop"], g.nodes[src_name]["pop"], g.edges[src_name, name]["proj"]


LOOKAHEAD = 6  # candidate shapes per layer weighed against the copies they cost their producer
LOOKAHEAD_TILES = 256  # on multicast chips, larger layers weigh their own best shape and LOOKAHEAD_WIDE others
LOOKAHEAD_WIDE = 1
# Without multicast the copies are counted without cutting (_read_counts), so the search keeps
# BEAM partial solutions and grows each by its LOOKAHEAD best shapes, BEAM_WIDE of other tile
# sizes and BEAM_FRONT fewer-read ones (_fewer_reads). VGG-Net on sg64: 9,463 cores with the
# one-step greedy (weighing 2 shapes per large layer), 7,798 with it weighing 12, 7,339 with
# the beam; beams of 1 to 12 states and up to 16 + 8 + 16 shapes all gave 7,339.
BEAM = 2
BEAM_WIDE = 4
BEAM_FRONT = 8


def _other_sizes(cands: list[tuple], first: tuple, n: int) -> list[tuple]:
    """Up to n candidates besides `first`, each the best of a tile size (th, tw) other than
    first's; among equal tiles the tallest first. A taller or wider tile at a higher fan-in
    level can save its producer many copies (an input then feeds fewer tiles); on VGG-Net on
    paicore2 2x1 tiles left conv3's and conv6's producers 4,608 and 2,304 cores where 1x2 tiles
    left 8,960 and 4,352."""
    seen, out = {(first[4].th, first[4].tw)}, []
    for c in sorted(cands, key=lambda c: (c[0], -c[4].th, c[1], c[2])):
        if (c[4].th, c[4].tw) not in seen:
            seen.add((c[4].th, c[4].tw))
            out.append(c)
    return out[:n]


def _fewer_reads(cands: list[tuple], pop: Population, proj: Projection, n: int) -> list[tuple]:
    """Up to n candidates on the front of tiles against reads: each with more tiles than the
    one before but a lower bound on the tiles one input feeds (_fan_out_bound), so fewer copies
    for the producer. Ranked by tiles alone these come late: on VGG-Net on sg64 the 6 best
    shapes and 4 of other sizes kept conv9 at 2x2x3 (1,539 tiles, conv8 then 2,304 cores); the
    front adds runs of 6 channels (1,548 tiles, conv8 1,872)."""
    out, least = [], 1 << 62
    for c in sorted(cands, key=lambda c: c[:4]):
        shape = c[4]
        reads = _fan_out_bound(proj, pop.shape[:2], shape.th, shape.tw, -(-pop.shape[2] // shape.cg))
        if reads < least:
            least = reads
            out.append(c)
    return out[1:n + 1]


def _read_counts(pop: Population, src: Population, proj: Projection, shape: TileShape, spec: ChipSpec,
                 mult: np.ndarray | None = None) -> np.ndarray:
    """Destination words each source ANN neuron needs from a cut of this shape on a chip whose
    axons add events (what fanout.copies_needed counts from the cut tiles), without cutting:
    per tile size, each channel group's signed inputs under its windows (a stamp), the stamps
    of the groups at one position summed, then laid on the input map and clipped to it."""
    if shape.packed:
        regs = _packed_cut(pop, shape, spec, mult)
    else:
        regs = np.array(regions(pop, shape, spec, mult), dtype=np.int64).reshape(-1, 6)
    H, W, C = src.shape
    s, p, kh, kw = proj.stride, proj.padding, proj.kh, proj.kw
    groups, g_of = np.unique(regs[:, 4], return_inverse=True)  # first channels: groups are (c, c + cg)
    bits = _group_bits(proj, shape.cg)[groups // shape.cg]
    masks = np.unpackbits(bits, axis=3, count=2 * C).view(bool).reshape(*bits.shape[:3], C, 2)  # (G, kh, kw, C, 2)
    hh, ww = regs[:, 1] - regs[:, 0], regs[:, 3] - regs[:, 2]
    ph, pw = (int(hh.max()) - 1) * s + kh, (int(ww.max()) - 1) * s + kw
    canvas = np.zeros((max(int(regs[:, 0].max()) * s + ph, p + H), max(int(regs[:, 2].max()) * s + pw, p + W), C),
                      dtype=np.float32)  # padded map; sums of small integers, exact in float32
    OW = pop.shape[1] + 1
    sizes, size_of = np.unique(hh * OW + ww, return_inverse=True)
    for k, (th, tw) in enumerate(zip(*np.divmod(sizes, OW))):
        th, tw = int(th), int(tw)
        sel = np.flatnonzero(size_of == k)
        gs, gl = np.unique(g_of[sel], return_inverse=True)
        patch = _window_union(masks[gs], s, th, tw)
        signs = patch.view(np.uint8)
        stamp = (signs[..., 0] + signs[..., 1]).reshape(len(gs), -1).astype(np.float32)
        where, at = np.unique(regs[sel, 0] * OW + regs[sel, 2], return_inverse=True)
        count = np.zeros((len(where), len(gs)), dtype=np.float32)  # tiles of each group at each position
        np.add.at(count, (at, gl), 1)
        stamps = (count @ stamp).reshape(len(where), *patch.shape[1:4])
        for (y0, x0), st in zip(zip(*np.divmod(where, OW)), stamps):
            canvas[y0 * s:y0 * s + st.shape[0], x0 * s:x0 * s + st.shape[1]] += st
    return np.rint(canvas[p:p + H, p:p + W]).astype(np.int64).reshape(-1)


def _producer_copies(name: str, pop: Population, src: Population, proj: Projection, shape: TileShape,
                     spec: ChipSpec, mult: np.ndarray | None) -> np.ndarray:
    """Fan-out copies of the producer's neurons that a cut of this shape needs (no multicast)."""
    from snnmap.passes.fanout import _copies, copies_needed

    if spec.axon_accumulates:
        return _copies(_read_counts(pop, src, proj, shape, spec, mult), spec)
    return copies_needed(src, cut_layer(name, pop, src, proj, shape, spec, mult), spec)


def _copies_key(m: np.ndarray | None):
    return None if m is None or bool((m == 1).all()) else m.tobytes()


def _beam_shapes(g: nx.DiGraph, spec: ChipSpec, deadline: Deadline | None) -> tuple[dict[str, TileShape], int]:
    """choose_shapes on a chip without multicast: a beam search over the chain of layers, last
    to first. A state is the shapes chosen for the layers below, their tiles and the copies they
    leave the next layer's neurons; each is grown by that layer's candidate shapes (its best
    few of any fan-out, others of other tile sizes, and its best within the destination limit,
    which leaves its producer no copies), and the BEAM best are kept by their tiles plus the
    fewest tiles the producer can then have. Copies cascade: a shape with more tiles may leave
    its producer far fewer copies, and that one fewer for its own. States leaving the same
    copies keep the one with fewer tiles. When the deadline passes, one state and its best
    shapes on. Returns the shapes and their tiles (copies counted)."""
    order = chip_layers(g)
    loose_memo: dict = {}
    strict_memo: dict = {}
    copies_memo: dict = {}

    def loose(name, m, mkey, keep=LOOKAHEAD * 4):
        """[(tiles, ..., shape)] of any fan-out, best first; [] if the copies `m` fit no core."""
        if (name, mkey, keep) not in loose_memo:
            if keep == 1 and (name, mkey, LOOKAHEAD * 4) in loose_memo:
                return loose_memo[name, mkey, LOOKAHEAD * 4]
            pop, src, proj = _layer(g, name)
            try:
                loose_memo[name, mkey, keep] = shape_candidates(pop, src, proj, spec, deadline, m, keep=keep,
                                                                fan_out_limit=False)
            except DesignRuleError:
                if m is None:  # the last layer: no copies to blame
                    raise
                loose_memo[name, mkey, keep] = []
        return loose_memo[name, mkey, keep]

    def strict(name, m, mkey):  # the best shape within the destination limit, or None
        if (name, mkey) not in strict_memo:
            pop, src, proj = _layer(g, name)
            try:
                strict_memo[name, mkey] = shape_candidates(pop, src, proj, spec, deadline, m)[0]
            except DesignRuleError as e:
                if "max_destinations" not in str(e):
                    raise
                strict_memo[name, mkey] = None
        return strict_memo[name, mkey]

    beam = [(0, {}, None, None)]  # (tiles so far, shapes, copies of the next layer's neurons, their key)
    for i in range(len(order) - 1, -1, -1):
        name = order[i]
        pop, src, proj = _layer(g, name)
        late = deadline is not None and deadline.expired()
        children: dict = {}
        for done, shapes, m, mkey in beam[:1] if late else beam:
            found = loose(name, m, mkey)
            if not found:
                continue
            if not src.on_chip:
                tiles, shape = found[0][0], found[0][4]
                children.setdefault(("end", len(children)), (done + tiles, done + tiles, {**shapes, name: shape}, None, None))
                continue
            cands = found[:1] if late else [strict(name, m, mkey)] + found[:LOOKAHEAD] + \
                _other_sizes(found, found[0], BEAM_WIDE) + _fewer_reads(found, pop, proj, BEAM_FRONT)
            seen = set()
            for c in cands:
                if c is None or c[4] in seen:
                    continue
                seen.add(c[4])
                if children and deadline is not None and deadline.expired():
                    break
                tiles, shape = c[0], c[4]
                ck = (name, shape, mkey)
                if ck not in copies_memo:
                    copies_memo[ck] = _producer_copies(name, pop, src, proj, shape, spec, m)
                pm = copies_memo[ck]
                pkey = _copies_key(pm)
                ahead = loose(order[i - 1], pm, pkey, keep=1)  # the fewest tiles it can have
                if not ahead:
                    continue  # the producer cannot hold these copies
                score = done + tiles + ahead[0][0]
                old = children.get(pkey)
                if old is None or (score, done + tiles) < old[:2]:
                    children[pkey] = (score, done + tiles, {**shapes, name: shape}, pm, pkey)
        if not children:
            raise DesignRuleError(f"layer {name!r}: every tile shape gives the neurons of layer {src.name!r} more "
                                  f"fan-out copies than a core of that layer holds (limits max_destinations="
                                  f"{spec.max_destinations}, neurons_per_core={spec.neurons_per_core})")
        kept = sorted(children.values(), key=lambda c: c[:2])[:1 if late else BEAM]
        beam = [(done, shapes, pm, pkey) for _, done, shapes, pm, pkey in kept]
    return beam[0][1], beam[0][0]


def choose_shapes(g: nx.DiGraph, spec: ChipSpec, deadline: Deadline | None = None,
                  cuts_made: dict | None = None) -> dict[str, TileShape]:
    """The searching half of tiling: a shape per on-chip layer, within the deadline. Layers are
    chosen last to first, since a layer's tiling decides how many fan-out copies its producer's
    neurons need. Without multicast, a beam search that counts copies without cutting
    (_beam_shapes). With multicast, where copies arise a few candidate shapes are each cut and
    weighed with the cores their producer then needs; the cut of the chosen one goes into
    `cuts_made` (layer -> shape, copies, tiles, fan-out), for cut_tiles."""
    from snnmap.passes.fanout import fan_out  # fanout imports this module

    if not spec.multicast:
        return _beam_shapes(g, spec, deadline)[0]
    order = chip_layers(g)
    shapes: dict[str, TileShape] = {}
    mult: dict[str, np.ndarray] = {}
    for i in range(len(order) - 1, -1, -1):
        name = order[i]
        pop, src, proj = _layer(g, name)
        m = mult.get(name)
        if not src.on_chip:
            shapes[name] = choose_shape(pop, src, proj, spec, deadline, m)
            continue
        cands = shape_candidates(pop, src, proj, spec, deadline, m, keep=LOOKAHEAD, fan_out_limit=False)
        if cands[0][0] > LOOKAHEAD_TILES:  # cutting several candidates of a layer this large costs too much
            cands = cands[:1] + _other_sizes(shape_candidates(pop, src, proj, spec, deadline, m, keep=LOOKAHEAD * 8,
                                                              fan_out_limit=False), cands[0], LOOKAHEAD_WIDE)
        ppop, psrc, pproj = _layer(g, order[i - 1])
        best = None
        cuts = {}
        for tiles, *_, shape in cands:
            if best is not None and deadline is not None and deadline.expired():
                break
            if shape not in cuts:
                tl = cut_layer(name, pop, src, proj, shape, spec, m)
                cuts[shape] = (tl, fan_out(src, tl, spec))
            pm = cuts[shape][1].mult
            try:
                ptiles = best_shape(ppop, psrc, pproj, spec, deadline, pm)[0]
            except DesignRuleError:
                continue
            if best is None or tiles + ptiles < best[0]:
                best = (tiles + ptiles, shape, pm)
        if best is None:
            raise DesignRuleError(f"layer {name!r}: every tile shape gives the neurons of layer {src.name!r} more "
                                  f"fan-out copies than a core of that layer holds (limits max_destinations="
                                  f"{spec.max_destinations}, neurons_per_core={spec.neurons_per_core})")
        shapes[name] = best[1]
        mult[src.name] = best[2]
        if cuts_made is not None:
            cuts_made[name] = (best[1], m, *cuts[best[1]])
    return shapes


def _packed_cut(pop: Population, shape: TileShape, spec: ChipSpec, mult: np.ndarray | None) -> np.ndarray:
    """_packed_regions of a packed shape, its neurons' copies and replicas counted, or the
    design-rule error when one column of it overfills a core."""
    per = (mult if mult is not None else np.ones(pop.size, np.int64)) * pop.replicas
    cut = _packed_regions(per, pop.shape, shape.th, shape.tw, shape.cg, spec.neurons_at(shape.level))
    if cut is None:
        raise DesignRuleError(f"layer {pop.name!r}: a column of {shape.th} rows x {shape.cg} channels "
                              f"with its fan-out copies does not fit neurons_per_core={spec.neurons_per_core}"
                              f" / 2^{shape.level}")
    return cut


def regions(pop: Population, shape: TileShape, spec: ChipSpec, mult: np.ndarray | None = None) -> list[tuple]:
    """The tiles' regions in tile order. On a multicast chip, spatial regions in Morton (Z)
    order with their channel groups side by side, so that tiles reading the same inputs sit in
    aligned blocks of the order; elsewhere channel group, then rows, then columns. A packed
    shape cuts each band into runs of columns by the neurons' copies (`mult`)."""
    OH, OW, OC = pop.shape
    if shape.packed:
        cut = _packed_cut(pop, shape, spec, mult)
        cut = cut[np.lexsort((cut[:, 2], cut[:, 0], cut[:, 4]))]  # group, band, then its runs
        if spec.multicast:  # Morton order of (run within its band, band), the groups side by side
            i = np.arange(len(cut))
            first = np.r_[True, (np.diff(cut[:, 0]) != 0) | (np.diff(cut[:, 4]) != 0)]
            run = i - np.maximum.accumulate(np.where(first, i, 0))
            code = np.array([morton(int(k), int(y0) // shape.th) for k, y0 in zip(run, cut[:, 0])], dtype=np.int64)
            cut = cut[np.lexsort((cut[:, 4], code))]
        return [tuple(r) for r in cut.tolist()]
    ys, xs, cs = range(0, OH, shape.th), range(0, OW, shape.tw), range(0, OC, shape.cg)

    def reg(y0, x0, c0):
        return (y0, min(y0 + shape.th, OH), x0, min(x0 + shape.tw, OW), c0, min(c0 + shape.cg, OC))

    if not spec.multicast:
        return [reg(y0, x0, c0) for c0 in cs for y0 in ys for x0 in xs]
    spatial = sorted(((y0, x0) for y0 in ys for x0 in xs),
                     key=lambda yx: morton(yx[1] // shape.tw, yx[0] // shape.th))
    return [reg(y0, x0, c0) for y0, x0 in spatial for c0 in cs]


def morton(x: int, y: int) -> int:
    """Z-order code: x's bits at the even positions, y's at the odd."""
    code = 0
    for b in range(16):
        code |= ((x >> b) & 1) << (2 * b) | ((y >> b) & 1) << (2 * b + 1)
    return code


def demorton(code: np.ndarray, bits: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of morton, on arrays: (x, y) from the even and the odd bits of each code."""
    code = np.asarray(code, np.int64)
    x = np.zeros_like(code)
    y = np.zeros_like(code)
    for b in range(bits):
        x |= ((code >> (2 * b)) & 1) << b
        y |= ((code >> (2 * b + 1)) & 1) << b
    return x, y


def axon_universe(src: Population, proj: Projection) -> np.ndarray:
    """Sorted keys (src * 2 + negative) of every signed axon some neuron of the layer needs."""
    H, W, C = src.shape
    out_h = (H + 2 * proj.padding - proj.kh) // proj.stride + 1
    out_w = (W + 2 * proj.padding - proj.kw) // proj.stride + 1
    masks = np.moveaxis(_channel_masks(proj, [(0, proj.weights.shape[3])])[0], 3, 0)  # (2, kh, kw, C)
    ph, pw = (out_h - 1) * proj.stride + proj.kh, (out_w - 1) * proj.stride + proj.kw
    used = np.zeros((2, max(ph, H + proj.padding), max(pw, W + proj.padding), C), dtype=bool)
    s = proj.stride
    for ky in range(proj.kh):
        for kx in range(proj.kw):
            used[:, ky:ky + s * (out_h - 1) + 1:s, kx:kx + s * (out_w - 1) + 1:s] |= masks[:, ky, kx][:, None, None, :]
    used = used[:, proj.padding:proj.padding + H, proj.padding:proj.padding + W]
    sign, iy, ix, ci = np.nonzero(used)
    return np.sort(((iy * W + ix) * C + ci) * 2 + sign)


def baseline_shape(pop: Population, n_axons: int, spec: ChipSpec) -> TileShape | None:
    """Whole-input-map tiling (the public PAICORE toolchain's way): every tile of a layer
    configures all the layer's axons, so only the neuron count decides the tile; None when the
    whole input does not fit a core at any fan-in level."""
    OH, OW, OC = pop.shape
    for level in range(spec.fanin_max_level + 1):
        per_core = spec.neurons_at(level) // pop.replicas
        if n_axons <= spec.axons_at(level) and per_core >= 1:
            cg = min(OC, per_core)
            tw = min(OW, per_core // cg)
            th = min(OH, per_core // (cg * tw))
            return TileShape(th, tw, cg, level)
    return None


def cut_layer(name: str, pop: Population, src: Population, proj: Projection, shape: TileShape,
              spec: ChipSpec, mult: np.ndarray | None = None, whole_input: bool = False,
              progress=None) -> list[Tile]:
    """One layer's tiles, with the axon layout the chip needs: compact per tile where axons add
    events, numbered by input position modulo the patch where they OR spikes (tiling.period)."""
    if spec.axon_accumulates:
        universe, periodic = (axon_universe(src, proj) if whole_input else None), None
    else:
        universe, periodic = None, (src.shape[:2] if whole_input else period(src, proj, shape))
    return _make_tiles(name, pop, src, proj, regions(pop, shape, spec, mult), shape.level, universe, mult,
                       periodic, {}, progress=progress)


def cut_tiles(g: nx.DiGraph, shapes: dict[str, TileShape], spec: ChipSpec, whole_input: bool = False,
              progress=None, cuts_made: dict | None = None) -> Tiling:
    """The fixed half: cut every layer by its shape and build each tile's axons and crossbar
    (with whole_input, every tile configures the layer's whole input map: the baseline). Last
    layer first, since a layer's tiles decide its producer's fan-out copies. A layer that
    choose_shapes already cut (cuts_made) with this shape and the same copies is taken as cut."""
    from snnmap.passes.fanout import fan_out

    layers, fan = {}, {}
    order = chip_layers(g)
    mult: dict[str, np.ndarray] = {}
    for name in reversed(order):
        pop, src, proj = _layer(g, name)
        made = (cuts_made or {}).get(name)
        if made is not None and not whole_input and made[0] == shapes[name] and \
                _same_copies(made[1], mult.get(name)):
            tiles, fan[src.name] = made[2], made[3]
            if progress is not None:
                progress(len(tiles))
        else:
            tiles = cut_layer(name, pop, src, proj, shapes[name], spec, mult.get(name), whole_input, progress)
            fan[src.name] = fan_out(src, tiles, spec)
        layers[name] = tiles
        if src.on_chip:
            mult[src.name] = fan[src.name].mult
    return Tiling({n: layers[n] for n in order}, dict(shapes), fan)


def _same_copies(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """Whether two fan-out copy counts are the same (None: one copy of each neuron)."""
    if a is None or b is None:
        other = b if a is None else a
        return other is None or bool((other == 1).all())
    return np.array_equal(a, b)


def tile_network(g: nx.DiGraph, spec: ChipSpec, deadline: Deadline | None = None) -> Tiling:
    made: dict = {}
    return cut_tiles(g, choose_shapes(g, spec, deadline, made), spec, cuts_made=made)

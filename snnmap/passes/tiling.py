"""Cut every on-chip population into crossbar tiles (what one core holds).

A tile is a block of output rows x cols x a channel group, all N replicas kept together (they
share their inputs' axons). Its axons are the union of its neurons' receptive fields, one per
sign actually used: an input whose weights into the tile are all +1 needs one axon, mixed signs
two, all zero none. The shape is chosen per layer: fewest tiles, then fewest axons.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass
class Tile:
    layer: str
    index: int
    region: tuple[int, int, int, int, int, int]  # y0, y1, x0, x1, c0, c1 (half-open)
    axon_src: np.ndarray  # int64 (A,): flat (h, w, c) index in the source population
    axon_sign: np.ndarray  # int8 (A,): +1 / -1
    crossbar: np.ndarray  # bool (A, Nn)
    neuron_src: np.ndarray  # int64 (Nn,): flat index of the ANN neuron in this population
    thresholds: np.ndarray  # int64 (Nn,)
    level: int = 0

    @property
    def axons(self) -> int:
        return int(self.axon_src.shape[0])

    @property
    def neurons(self) -> int:
        return int(self.neuron_src.shape[0])

    @property
    def synapses(self) -> int:
        return int(self.crossbar.sum())


@dataclass
class Tiling:
    layers: dict[str, list[Tile]]
    shapes: dict[str, TileShape]

    def all_tiles(self, order: list[str]) -> list[Tile]:
        return [t for name in order for t in self.layers[name]]


def build_tile(layer: str, index: int, pop: Population, src: Population, proj: Projection,
               region: tuple[int, int, int, int, int, int], level: int = 0,
               universe: np.ndarray | None = None) -> Tile:
    """Build one tile; with `universe` (sorted axon keys src*2 + negative), the tile configures
    exactly those axons whether it uses them or not (the whole-input-map baseline)."""
    y0, y1, x0, x1, c0, c1 = region
    H, W, C = src.shape
    s, p = proj.stride, proj.padding
    # the tile's input patch, clipped to the map; keys are numbered inside it, then made global
    py0, px0 = max(y0 * s - p, 0), max(x0 * s - p, 0)
    py1, px1 = min((y1 - 1) * s - p + proj.kh, H), min((x1 - 1) * s - p + proj.kw, W)
    ph, pw = py1 - py0, px1 - px0
    oy, ox = np.meshgrid(np.arange(y0, y1), np.arange(x0, x1), indexing="ij")
    oy, ox = oy.ravel(), ox.ravel()
    ky, kx, ci = np.meshgrid(np.arange(proj.kh), np.arange(proj.kw), np.arange(C), indexing="ij")
    ky, kx, ci = ky.ravel(), kx.ravel(), ci.ravel()
    iy = oy[:, None] * s - p + ky[None, :]
    ix = ox[:, None] * s - p + kx[None, :]
    valid = (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)  # (P, K)
    local = ((iy - py0) * pw + (ix - px0)) * C + ci[None, :]
    w = proj.weights[:, :, :, c0:c1].reshape(-1, c1 - c0)  # (K, Cg)
    live = valid[:, :, None] & (w != 0)[None, :, :]  # (P, K, Cg)
    p_idx, k_idx, c_idx = np.nonzero(live)
    key = local[p_idx, k_idx] * 2 + (w[k_idx, c_idx] < 0)
    if universe is None:
        present = np.zeros(max(ph, 0) * max(pw, 0) * C * 2, dtype=bool)
        present[key] = True
        lkeys = np.flatnonzero(present)
        lpos, neg = np.divmod(lkeys, 2)
        lrc, lc = np.divmod(lpos, C)
        ly, lx = np.divmod(lrc, pw)
        keys = (((ly + py0) * W + lx + px0) * C + lc) * 2 + neg
        axon_of = np.cumsum(present)[key] - 1
    else:
        lpos, neg = np.divmod(key, 2)
        lrc, lc = np.divmod(lpos, C)
        ly, lx = np.divmod(lrc, pw)
        keys, axon_of = universe, np.searchsorted(universe, (((ly + py0) * W + lx + px0) * C + lc) * 2 + neg)
    n = pop.replicas
    cg = c1 - c0
    n_neurons = len(oy) * cg * n
    base = np.zeros((len(keys), n_neurons // n), dtype=bool)
    base[axon_of, p_idx * cg + c_idx] = True
    crossbar = np.repeat(base, n, axis=1)  # replicas share every synapse
    OW, OC = pop.shape[1], pop.shape[2]
    ann = ((oy[:, None] * OW + ox[:, None]) * OC + np.arange(c0, c1)[None, :]).ravel()
    chans = np.tile(np.arange(c0, c1), len(oy))
    return Tile(layer=layer, index=index, region=region, axon_src=keys // 2,
                axon_sign=np.where(keys % 2 == 1, -1, 1).astype(np.int8), crossbar=crossbar,
                neuron_src=np.repeat(ann, n), thresholds=pop.thresholds[chans].ravel(), level=level)


def _group_masks(proj: Projection, cg: int) -> np.ndarray:
    """(2, n_groups, kh, kw, c_in): which inputs of a kernel window carry a +1 / -1 weight into
    each channel group (the signed axons one output position of the group needs)."""
    w = proj.weights
    oc = w.shape[3]
    n_groups = -(-oc // cg)
    pad = n_groups * cg - oc
    wg = np.concatenate([w, np.zeros((*w.shape[:3], pad), w.dtype)], axis=3) if pad else w
    wg = wg.reshape(*w.shape[:3], n_groups, cg)
    return np.stack([np.moveaxis((wg > 0).any(axis=4), 3, 0), np.moveaxis((wg < 0).any(axis=4), 3, 0)])


def _interior_axons(masks: np.ndarray, stride: int, th: int, tw: int) -> int:
    """Exact axon need of the worst full-size tile away from the borders (the most any tile of
    this shape needs): the union of th x tw shifted kernel windows, per sign, max over groups."""
    _, n_groups, kh, kw, cin = masks.shape
    ph, pw = (th - 1) * stride + kh, (tw - 1) * stride + kw
    rows = np.zeros((2, n_groups, ph, kw, cin), dtype=bool)
    for dy in range(th):
        rows[:, :, dy * stride:dy * stride + kh] |= masks
    patch = np.zeros((2, n_groups, ph, pw, cin), dtype=bool)
    for dx in range(tw):
        patch[:, :, :, dx * stride:dx * stride + kw] |= rows
    return int(patch.sum(axis=(0, 2, 3, 4)).max())


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


def min_level(pop: Population, proj: Projection, spec: ChipSpec) -> int | None:
    """Smallest fan-in level at which one neuron's inputs and replicas fit a core, or None."""
    need = fan_in(proj)
    for level in range(spec.fanin_max_level + 1):
        if need <= spec.axons_at(level) and pop.replicas <= spec.neurons_at(level):
            return level
    return None


def choose_shape(pop: Population, src: Population, proj: Projection, spec: ChipSpec,
                 deadline: Deadline | None = None) -> TileShape:
    """Fewest tiles, then the lowest fan-in level, then fewest axons; when the deadline passes,
    the best shape found so far."""
    OH, OW, OC = pop.shape
    n = pop.replicas
    lo = min_level(pop, proj, spec)
    if lo is None:
        raise DesignRuleError(f"layer {pop.name!r}: one neuron needs {fan_in(proj)} axons and {n} replicas, "
                              f"over the limits axons_per_core={spec.axons_per_core} x 2^{spec.fanin_max_level} "
                              f"/ neurons_per_core={spec.neurons_per_core}")
    best = None
    least_fan_out = 1 << 62

    def out_of_time() -> bool:
        return best is not None and deadline is not None and deadline.expired()

    groups = sorted({-(-OC // g) for g in range(1, OC + 1)}, reverse=True)
    for level in range(lo, spec.fanin_max_level + 1):
        per_core, axon_cap = spec.neurons_at(level) // n, spec.axons_at(level)
        for cg in groups:
            if out_of_time():
                break
            if cg > per_core:
                continue
            n_groups = -(-OC // cg)
            masks = _group_masks(proj, cg)
            for th in range(1, OH + 1):
                if th * cg > per_core or out_of_time():
                    break
                for tw in range(1, OW + 1):
                    if th * tw * cg > per_core or out_of_time():
                        break
                    tiles = -(-OH // th) * -(-OW // tw) * n_groups
                    if best is not None and tiles > best[0]:
                        continue
                    fan_out = _fan_out_bound(proj, (OH, OW), th, tw, n_groups)
                    if fan_out > spec.max_destinations:
                        least_fan_out = min(least_fan_out, fan_out)
                        continue
                    need = _interior_axons(masks, proj.stride, th, tw)
                    if need > axon_cap:
                        break  # wider tiles only need more
                    cand = (tiles, level, need, -th * tw, TileShape(th, tw, cg, level))
                    if best is None or cand[:4] < best[:4]:
                        best = cand
    if best is None and least_fan_out < 1 << 62:
        raise DesignRuleError(f"layer {pop.name!r}: every tile shape that fits a core makes one input "
                              f"neuron of layer {src.name!r} feed {least_fan_out} or more axons, over the "
                              f"limit max_destinations={spec.max_destinations}")
    if best is None:
        raise DesignRuleError(f"layer {pop.name!r}: no tile shape fits a core")
    return best[4]


def choose_shapes(g: nx.DiGraph, spec: ChipSpec, deadline: Deadline | None = None) -> dict[str, TileShape]:
    """The searching half of tiling: a shape per on-chip layer, within the deadline."""
    shapes = {}
    for name in chip_layers(g):
        src_name = source_of(g, name)
        shapes[name] = choose_shape(g.nodes[name]["pop"], g.nodes[src_name]["pop"],
                                    g.edges[src_name, name]["proj"], spec, deadline)
    return shapes


def axon_universe(src: Population, proj: Projection) -> np.ndarray:
    """Sorted keys (src * 2 + negative) of every signed axon some neuron of the layer needs."""
    H, W, C = src.shape
    out_h = (H + 2 * proj.padding - proj.kh) // proj.stride + 1
    out_w = (W + 2 * proj.padding - proj.kw) // proj.stride + 1
    masks = _group_masks(proj, proj.weights.shape[3])[:, 0]  # (2, kh, kw, C)
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


def cut_tiles(g: nx.DiGraph, shapes: dict[str, TileShape], whole_input: bool = False, progress=None) -> Tiling:
    """The fixed half: cut every layer by its shape and build each tile's axons and crossbar
    (with whole_input, every tile configures the layer's whole input map: the baseline)."""
    layers = {}
    for name in chip_layers(g):
        pop: Population = g.nodes[name]["pop"]
        src_name = source_of(g, name)
        src: Population = g.nodes[src_name]["pop"]
        proj: Projection = g.edges[src_name, name]["proj"]
        shape = shapes[name]
        universe = axon_universe(src, proj) if whole_input else None
        OH, OW, OC = pop.shape
        tiles = []
        for c0 in range(0, OC, shape.cg):
            for y0 in range(0, OH, shape.th):
                for x0 in range(0, OW, shape.tw):
                    region = (y0, min(y0 + shape.th, OH), x0, min(x0 + shape.tw, OW),
                              c0, min(c0 + shape.cg, OC))
                    tiles.append(build_tile(name, len(tiles), pop, src, proj, region, shape.level, universe))
                    if progress is not None:
                        progress(1)
        layers[name] = tiles
    return Tiling(layers, dict(shapes))


def tile_network(g: nx.DiGraph, spec: ChipSpec, deadline: Deadline | None = None) -> Tiling:
    return cut_tiles(g, choose_shapes(g, spec, deadline))

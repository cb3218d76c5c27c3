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
               region: tuple[int, int, int, int, int, int]) -> Tile:
    y0, y1, x0, x1, c0, c1 = region
    H, W, C = src.shape
    oy, ox = np.meshgrid(np.arange(y0, y1), np.arange(x0, x1), indexing="ij")
    oy, ox = oy.ravel(), ox.ravel()
    ky, kx, ci = np.meshgrid(np.arange(proj.kh), np.arange(proj.kw), np.arange(C), indexing="ij")
    ky, kx, ci = ky.ravel(), kx.ravel(), ci.ravel()
    iy = oy[:, None] * proj.stride - proj.padding + ky[None, :]
    ix = ox[:, None] * proj.stride - proj.padding + kx[None, :]
    valid = (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)  # (P, K)
    src_flat = (iy * W + ix) * C + ci[None, :]
    w = proj.weights[:, :, :, c0:c1].reshape(-1, c1 - c0)  # (K, Cg)
    live = valid[:, :, None] & (w != 0)[None, :, :]  # (P, K, Cg)
    p_idx, k_idx, c_idx = np.nonzero(live)
    wv = w[k_idx, c_idx]
    key = src_flat[p_idx, k_idx] * 2 + (wv < 0)
    keys, axon_of = np.unique(key, return_inverse=True)
    n = pop.replicas
    cg = c1 - c0
    n_neurons = len(oy) * cg * n
    crossbar = np.zeros((len(keys), n_neurons), dtype=bool)
    col = (p_idx * cg + c_idx) * n
    for r in range(n):
        crossbar[axon_of, col + r] = True
    OW, OC = pop.shape[1], pop.shape[2]
    ann = ((oy[:, None] * OW + ox[:, None]) * OC + np.arange(c0, c1)[None, :]).ravel()
    chans = np.tile(np.arange(c0, c1), len(oy))
    return Tile(layer=layer, index=index, region=region, axon_src=keys // 2,
                axon_sign=np.where(keys % 2 == 1, -1, 1).astype(np.int8), crossbar=crossbar,
                neuron_src=np.repeat(ann, n), thresholds=pop.thresholds[chans].ravel())


def _interior_axons(proj: Projection, src_c: int, shape: TileShape, c0: int) -> int:
    """Exact axon need of a full-size tile away from the borders: the most any tile of it needs."""
    w = proj.weights[:, :, :, c0:c0 + shape.cg]
    s = proj.stride
    ph, pw = (shape.th - 1) * s + proj.kh, (shape.tw - 1) * s + proj.kw
    total = 0
    for mask in (np.any(w > 0, axis=3), np.any(w < 0, axis=3)):
        rows = np.zeros((ph, proj.kw, src_c), dtype=bool)
        for dy in range(shape.th):
            rows[dy * s:dy * s + proj.kh] |= mask
        patch = np.zeros((ph, pw, src_c), dtype=bool)
        for dx in range(shape.tw):
            patch[:, dx * s:dx * s + proj.kw] |= rows
        total += int(patch.sum())
    return total


def _fan_out_bound(proj: Projection, out_hw: tuple[int, int], th: int, tw: int, n_groups: int) -> int:
    """Most tiles of this shape one input can feed, times two signs: windows of length L starting
    every th*stride rows cover one row at most ceil(L / (th*stride)) times (and there are only
    ceil(OH / th) tile rows)."""
    s = proj.stride
    ly, lx = (th - 1) * s + proj.kh, (tw - 1) * s + proj.kw
    rows = min(-(-ly // (th * s)), -(-out_hw[0] // th))
    cols = min(-(-lx // (tw * s)), -(-out_hw[1] // tw))
    return rows * cols * n_groups * 2


def choose_shape(pop: Population, src: Population, proj: Projection, spec: ChipSpec,
                 deadline: Deadline | None = None) -> TileShape:
    """Fewest tiles, then fewest axons; when the deadline passes, the best shape found so far."""
    OH, OW, OC = pop.shape
    n = pop.replicas
    per_core = spec.neurons_per_core // n
    if per_core < 1:
        raise DesignRuleError(f"layer {pop.name!r}: one neuron's {n} replicas exceed the core's "
                              f"{spec.neurons_per_core} neurons (limit neurons_per_core)")
    best = None
    least_fan_out = 1 << 62
    groups = sorted({-(-OC // g) for g in range(1, OC + 1)}, reverse=True)
    def out_of_time() -> bool:
        return best is not None and deadline is not None and deadline.expired()

    for cg in groups:
        if out_of_time():
            break
        if cg > per_core:
            continue
        n_groups = -(-OC // cg)
        for th in range(1, OH + 1):
            if th * cg > per_core:
                break
            if out_of_time():
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
                shape = TileShape(th, tw, cg)
                need = max(_interior_axons(proj, src.shape[2], shape, g * cg) for g in range(n_groups))
                if need > spec.axons_per_core:
                    break  # wider tiles only need more
                cand = (tiles, need, -th * tw, shape)
                if best is None or cand[:3] < best[:3]:
                    best = cand
    if best is None and least_fan_out < 1 << 62:
        raise DesignRuleError(f"layer {pop.name!r}: every tile shape that fits a core makes one input "
                              f"neuron of layer {src.name!r} feed {least_fan_out} or more axons, over the "
                              f"limit max_destinations={spec.max_destinations}")
    if best is None:
        raise DesignRuleError(f"layer {pop.name!r}: no tile shape fits (even one neuron with its "
                              f"replicas exceeds axons_per_core={spec.axons_per_core})")
    return best[3]


def choose_shapes(g: nx.DiGraph, spec: ChipSpec, deadline: Deadline | None = None) -> dict[str, TileShape]:
    """The searching half of tiling: a shape per on-chip layer, within the deadline."""
    shapes = {}
    for name in chip_layers(g):
        src_name = source_of(g, name)
        shapes[name] = choose_shape(g.nodes[name]["pop"], g.nodes[src_name]["pop"],
                                    g.edges[src_name, name]["proj"], spec, deadline)
    return shapes


def cut_tiles(g: nx.DiGraph, shapes: dict[str, TileShape]) -> Tiling:
    """The fixed half: cut every layer by its shape and build each tile's axons and crossbar."""
    layers = {}
    for name in chip_layers(g):
        pop: Population = g.nodes[name]["pop"]
        src_name = source_of(g, name)
        src: Population = g.nodes[src_name]["pop"]
        proj: Projection = g.edges[src_name, name]["proj"]
        shape = shapes[name]
        OH, OW, OC = pop.shape
        tiles = []
        for c0 in range(0, OC, shape.cg):
            for y0 in range(0, OH, shape.th):
                for x0 in range(0, OW, shape.tw):
                    region = (y0, min(y0 + shape.th, OH), x0, min(x0 + shape.tw, OW),
                              c0, min(c0 + shape.cg, OC))
                    tiles.append(build_tile(name, len(tiles), pop, src, proj, region))
        layers[name] = tiles
    return Tiling(layers, dict(shapes))


def tile_network(g: nx.DiGraph, spec: ChipSpec, deadline: Deadline | None = None) -> Tiling:
    return cut_tiles(g, choose_shapes(g, spec, deadline))

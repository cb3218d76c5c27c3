"""Lower bounds on cores per layer and for the network, and the whole-input-map baseline.

Bounds (valid for any tiling into cores of this chip at fan-in level L):
  neuron bound  ceil(neurons / neurons_at(L)): every spiking neuron sits in some core;
  axon bound    ceil(signed inputs used / axons_at(L)): every (input, sign) the layer uses is an
                axon of at least one core.
A layer's bound is the smallest, over the levels at which its largest neuron fits (a layer's
tiles share one level; with padding, a map too small for a whole window has no neuron with the
whole kernel: the largest window that occurs counts), of the larger of the two. Where no two distinct ANN neurons of the layer fit one core together at level L (the
union of their inputs, counted in axons, exceeds axons_at(L); checked exactly over every pair
of channels and every offset of their windows), a core at level L holds the replicas of one
ANN neuron at most, and its neuron bound counts so. More generally a core holds at most
density.LayerDensity.cap distinct ANN neurons within axons_at(L) (layer-cake isoperimetric
arguments over channels and kernel offsets; it binds on LeNet's 5x5 layers at level 0 on sg64). The baseline is the tiling of the public PAICORE toolchain: every core of a layer
takes the layer's whole input map, so only neurons are divided among cores.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from snnmap.chip.spec import ChipSpec
from snnmap.ir import chip_layers, source_of
from snnmap.passes.density import LayerDensity
from snnmap.passes.tiling import axon_universe, baseline_shape


@dataclass(frozen=True)
class LayerBound:
    layer: str
    neurons: int
    signed_inputs: int
    neuron_bound: int
    axon_bound: int
    bound: int
    level: int
    baseline: int | None  # cores of the whole-input-map tiling; None: it cannot map the layer


def min_pair_axons(proj, src_replicas: int, spec: ChipSpec, enough: int | None = None) -> int | None:
    """Fewest axons any two distinct ANN neurons of the layer need together, or None where a
    window is clipped by padding (then a border neuron needs fewer: no claim is made). With
    `enough`, it may stop at the first pair that fits in that many axons and return its count
    (the pair rule cannot apply at that level then). Offsets -d and d give transposed overlaps,
    so only half of them are computed."""
    if proj.padding:
        return None
    w = proj.weights
    if spec.axon_accumulates:  # one axon per (input, sign)
        masks = np.stack([w > 0, w < 0], axis=2)  # (kh, kw, 2, C, O)
        per = 1
    else:  # one axon per (input, source replica)
        masks = (w != 0)[:, :, None]
        per = src_replicas
    kh, kw = w.shape[:2]
    m = masks.reshape(kh, kw, -1, w.shape[3]).astype(np.int64)  # (kh, kw, Q, O)
    size = m.sum(axis=(0, 1, 2))  # (O,)
    best = int(2 * size.min())  # windows that do not overlap (if any): twice the sparsest
    s = proj.stride
    # overlap counts by BLAS: sums of 0/1 products are integers, exact in float32 below 2^24
    # (float64 above), whatever the order (numpy's integer einsum took 55 s on VGG's conv12)
    ft = np.float32 if m.shape[0] * m.shape[1] * m.shape[2] < 1 << 24 else np.float64
    mf = m.astype(ft)
    for dy in range(0, kh, s):
        for dx in range(0 if dy == 0 else -(kw - 1) // s * s, kw, s):
            if enough is not None and best * per <= enough:
                return best * per
            # overlap of neuron (o) at p and neuron (o') at p + (dy, dx) / s
            a = mf[max(dy, 0):kh + min(dy, 0), max(dx, 0):kw + min(dx, 0)]
            b = mf[max(-dy, 0):kh + min(-dy, 0), max(-dx, 0):kw + min(-dx, 0)]
            if a.size == 0:
                continue
            ov = np.rint(np.tensordot(a, b, axes=([0, 1, 2], [0, 1, 2]))).astype(np.int64)
            union = size[:, None] + size[None, :] - ov
            if dy == 0 and dx == 0:
                np.fill_diagonal(union, 1 << 62)  # the same neuron
            best = min(best, int(union.min()))
    return best * per


def largest_window_inputs(src, pop, proj) -> int:
    """Most inputs with a nonzero weight that one neuron of the layer has, over the windows that
    occur (padding clips the border windows; on a small map it clips every one)."""
    (H, W), (OH, OW) = src.shape[:2], pop.shape[:2]
    s, p = proj.stride, proj.padding
    kh, kw = proj.weights.shape[:2]
    rows = {(max(0, p - oy * s), min(kh, H + p - oy * s)) for oy in range(OH)}
    cols = {(max(0, p - ox * s), min(kw, W + p - ox * s)) for ox in range(OW)}
    nz = proj.weights != 0
    return max((int(np.count_nonzero(nz[r0:r1, c0:c1], axis=(0, 1, 2)).max(initial=0))
                for r0, r1 in rows for c0, c1 in cols), default=0)


def _density_caps(pop, src, proj, spec: ChipSpec) -> list[tuple[LayerDensity, int]]:
    """(cap, ANN neurons it applies to): every neuron of the layer, and, where padding clips the
    border windows (border neurons need fewer axons, so the cap over all of them is loose), the
    interior neurons alone as an unpadded layer on the part of the map their windows cover."""
    per = 1 if spec.axon_accumulates else src.replicas
    (H, W), (OH, OW), s, p = src.shape[:2], pop.shape[:2], proj.stride, proj.padding
    whole = LayerDensity(proj.weights, spec.axon_accumulates, per, (OH, OW), (H, W), s, p)
    out = [(whole, pop.size)]
    if p:
        rows = [oy for oy in range(OH) if oy * s - p >= 0 and oy * s - p + proj.kh <= H]
        cols = [ox for ox in range(OW) if ox * s - p >= 0 and ox * s - p + proj.kw <= W]
        if rows and cols:
            ih, iw = (len(rows) - 1) * s + proj.kh, (len(cols) - 1) * s + proj.kw
            out.append((LayerDensity(proj.weights, spec.axon_accumulates, per, (len(rows), len(cols)), (ih, iw),
                                     s, 0, like=whole), len(rows) * len(cols) * pop.shape[2]))
    return out


def layer_bounds(g: nx.DiGraph, spec: ChipSpec) -> list[LayerBound]:
    return [layer_bound(g, name, spec) for name in chip_layers(g)]


def layer_bound(g: nx.DiGraph, name: str, spec: ChipSpec) -> LayerBound:
    """One layer's bounds (an incremental recompile computes them for changed layers alone)."""
    pop = g.nodes[name]["pop"]
    src_name = source_of(g, name)
    proj = g.edges[src_name, name]["proj"]
    src = g.nodes[src_name]["pop"]
    universe = axon_universe(src, proj)
    n_axons = len(universe)
    need = largest_window_inputs(src, pop, proj)
    if not spec.axon_accumulates:  # one axon per (input, source replica), signs in the synapses
        n_axons = len(np.unique(universe // 2)) * src.replicas
        need *= src.replicas
    lo = next((L for L in range(spec.fanin_max_level + 1)
               if need <= spec.axons_at(L) and pop.replicas <= spec.neurons_at(L)), None)
    pair = None
    if pop.size > 1 and lo is not None:  # only whether it exceeds axons_at(level >= lo) matters
        pair = min_pair_axons(proj, src.replicas, spec, enough=spec.axons_at(lo))
    cands = []
    for level in range(lo if lo is not None else spec.fanin_max_level + 1, spec.fanin_max_level + 1):
        if spec.neurons_at(level) < 1:
            break
        per_core = spec.neurons_at(level)
        if pair is not None and pair > spec.axons_at(level):  # one ANN neuron per core at most
            per_core = min(per_core, pop.replicas)
        nb = -(-pop.neurons // per_core)
        ab = -(-n_axons // spec.axons_at(level))
        cands.append([max(nb, ab), level, nb, ab, per_core])
    # the density cap (density.py) can only raise a level's neuron bound: refine the levels in
    # order of their bound until the best refined one is no worse than the next unrefined
    cands.sort()
    best = None
    caps = None
    for k, (value, level, nb, ab, per_core) in enumerate(cands):
        if best is not None and best[2] <= value:
            break
        if per_core > pop.replicas and pop.size > 1:
            if caps is None:
                caps = _density_caps(pop, src, proj, spec)
            # a cap this low already puts the level above the next one: no need to go lower
            nxt = cands[k + 1][0] if k + 1 < len(cands) else None
            for density, ann in caps:
                enough = -(-ann // (nxt - 1)) - 1 if nxt is not None and nxt > 1 else 0
                d = density.cap(spec.axons_at(level), enough, per_core // pop.replicas)
                if d is not None and d * pop.replicas < per_core:
                    nb = max(nb, -(-ann // d))
        if best is None or (max(nb, ab), level) < (best[2], best[3]):
            best = (nb, ab, max(nb, ab), level)
    if best is None:
        best = (0, 0, 0, -1)
    shape = baseline_shape(pop, n_axons if spec.axon_accumulates else src.size * src.replicas, spec)
    base = None
    if shape is not None:
        OH, OW, OC = pop.shape
        base = -(-OH // shape.th) * -(-OW // shape.tw) * -(-OC // shape.cg)
    return LayerBound(name, pop.neurons, n_axons, *best, base)

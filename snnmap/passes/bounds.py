"""Lower bounds on cores per layer and for the network, and the whole-input-map baseline.

Bounds (valid for any tiling into cores of this chip at fan-in level L):
  neuron bound  ceil(neurons / neurons_at(L)): every spiking neuron sits in some core;
  axon bound    ceil(signed inputs used / axons_at(L)): every (input, sign) the layer uses is an
                axon of at least one core.
A layer's bound is the smallest, over the levels at which one neuron fits, of the larger of
the two. The baseline is the tiling of the public PAICORE toolchain: every core of a layer
takes the layer's whole input map, so only neurons are divided among cores.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from snnmap.chip.spec import ChipSpec
from snnmap.ir import chip_layers, source_of
from snnmap.passes.tiling import axon_universe, baseline_shape, min_level


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


def layer_bounds(g: nx.DiGraph, spec: ChipSpec) -> list[LayerBound]:
    out = []
    for name in chip_layers(g):
        pop = g.nodes[name]["pop"]
        src_name = source_of(g, name)
        proj = g.edges[src_name, name]["proj"]
        src = g.nodes[src_name]["pop"]
        n_axons = len(axon_universe(src, proj))
        lo = min_level(pop, proj, spec)
        if not spec.axon_accumulates:  # one axon per (input, source replica), signs in the synapses
            n_axons = len(np.unique(axon_universe(src, proj) // 2)) * src.replicas
            need = int(np.count_nonzero(proj.weights, axis=(0, 1, 2)).max(initial=0)) * src.replicas
            lo = next((L for L in range(spec.fanin_max_level + 1)
                       if need <= spec.axons_at(L) and pop.replicas <= spec.neurons_at(L)), None)
        best = None
        for level in range(lo if lo is not None else spec.fanin_max_level + 1, spec.fanin_max_level + 1):
            if spec.neurons_at(level) < 1:
                break
            nb = -(-pop.neurons // spec.neurons_at(level))
            ab = -(-n_axons // spec.axons_at(level))
            if best is None or max(nb, ab) < best[2]:
                best = (nb, ab, max(nb, ab), level)
        if best is None:
            best = (0, 0, 0, -1)
        shape = baseline_shape(pop, n_axons if spec.axon_accumulates else src.size * src.replicas, spec)
        base = None
        if shape is not None:
            OH, OW, OC = pop.shape
            base = -(-OH // shape.th) * -(-OW // shape.tw) * -(-OC // shape.cg)
        out.append(LayerBound(name, pop.neurons, n_axons, *best, base))
    return out

"""Tiling: within the core's limits, and every synapse and neuron of a layer in exactly one tile."""

import numpy as np
from hypothesis import HealthCheck, given, settings

from snnmap.convert import convert
from snnmap.errors import DesignRuleError
from snnmap.ir import chip_layers, source_of
from snnmap.passes import drc
from snnmap.passes.tiling import tile_network

from randnet import networks
from test_end_to_end import TINY


def dense_weights(g, name):
    """Effective weights as a (source ANN neuron, output ANN neuron) matrix, by direct enumeration."""
    src = g.nodes[source_of(g, name)]["pop"]
    pop = g.nodes[name]["pop"]
    p = g.edges[source_of(g, name), name]["proj"]
    H, W, C = src.shape
    OH, OW, OC = pop.shape
    M = np.zeros((src.size, pop.size), dtype=np.int64)
    for oy in range(OH):
        for ox in range(OW):
            for ky in range(p.kh):
                for kx in range(p.kw):
                    iy, ix = oy * p.stride - p.padding + ky, ox * p.stride - p.padding + kx
                    if 0 <= iy < H and 0 <= ix < W:
                        rows = (iy * W + ix) * C + np.arange(C)
                        cols = (oy * OW + ox) * OC + np.arange(OC)
                        M[np.ix_(rows, cols)] += p.weights[ky, kx]
    return M


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks())
def test_every_synapse_in_exactly_one_tile(model):
    g = convert(model)
    try:
        drc.check_before_tiling(g, TINY)
        tiling = tile_network(g, TINY)
    except DesignRuleError as e:
        assert "limit" in str(e)
        return
    for name in chip_layers(g):
        pop = g.nodes[name]["pop"]
        n = pop.replicas
        rec = np.zeros_like(dense_weights(g, name))
        seen = np.zeros(pop.size * n, dtype=np.int64)
        for t in tiling.layers[name]:
            assert t.axons <= TINY.axons_per_core and t.neurons <= TINY.neurons_per_core
            # one axon per (source, sign) at most, and every axon used
            keys = t.axon_src * 2 + (t.axon_sign < 0)
            assert len(np.unique(keys)) == len(keys) and t.crossbar.any(axis=1).all()
            rep = np.arange(t.neurons) % n
            seen[t.neuron_src * n + rep] += 1
            a_idx, n_idx = np.nonzero(t.crossbar)
            np.add.at(rec, (t.axon_src[a_idx], t.neuron_src[n_idx]), t.axon_sign[a_idx].astype(np.int64))
            c = t.neuron_src % pop.shape[2]
            assert np.array_equal(t.thresholds, pop.thresholds[c, rep])
        assert (seen == 1).all()
        assert np.array_equal(rec, n * dense_weights(g, name))

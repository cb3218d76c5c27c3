"""Tiling: within the core's limits, and every synapse and neuron of a layer in exactly one tile."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snnmap.chip.spec import SG64
from snnmap.convert import convert
from snnmap.errors import DesignRuleError
from snnmap.ir import chip_layers, source_of
from snnmap.passes import drc
from snnmap.passes.tiling import tile_network

from randnet import networks
from test_end_to_end import COMBINING, COPIES, MCAST, TINY


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


@pytest.mark.parametrize("spec", [TINY, MCAST], ids=["tiny", "mcast"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=networks())
def test_every_synapse_in_exactly_one_tile(spec, model):
    g = convert(model)
    try:
        drc.check_before_tiling(g, spec)
        tiling = tile_network(g, spec)
        drc.check_before_placement(g, tiling, spec)
    except DesignRuleError as e:
        assert "limit" in str(e)
        return
    for name in chip_layers(g):
        pop = g.nodes[name]["pop"]
        n = pop.replicas
        ns = g.nodes[source_of(g, name)]["pop"].replicas
        rec = np.zeros_like(dense_weights(g, name))
        seen = np.zeros(pop.size * n, dtype=np.int64)
        for t in tiling.layers[name]:
            assert t.axons <= spec.axons_at(t.level) and t.neurons <= spec.neurons_at(t.level)
            used = t.axon_src >= 0
            assert not t.crossbar[~used].any()  # rows without a source carry no synapse
            if spec.axon_accumulates:  # one axon per (source, sign), every axon used
                keys = t.axon_src * 2 + (t.axon_sign < 0)
                assert used.all() and len(np.unique(keys)) == len(keys) and t.crossbar.any(axis=1).all()
            else:  # one axon per (source, source replica)
                keys = t.axon_src[used] * ns + t.axon_rep[used]
                assert len(np.unique(keys)) == len(keys)
            first = t.neuron_copy == 0  # copies repeat their original's column
            seen[t.neuron_src[first] * n + t.neuron_rep[first]] += 1
            for j in np.flatnonzero(~first):
                orig = np.flatnonzero(first & (t.neuron_src == t.neuron_src[j]) & (t.neuron_rep == t.neuron_rep[j]))
                assert len(orig) == 1 and np.array_equal(t.crossbar[:, j], t.crossbar[:, orig[0]])
            a_idx, n_idx = np.nonzero(t.crossbar[:, first])
            np.add.at(rec, (t.axon_src[a_idx], t.neuron_src[first][n_idx]),
                      (t.axon_sign[a_idx] * t.crossbar[:, first][a_idx, n_idx]).astype(np.int64))
            c = t.neuron_src % pop.shape[2]
            assert np.array_equal(t.thresholds, pop.thresholds[c, t.neuron_rep])
        assert (seen == 1).all()
        assert np.array_equal(rec, n * (1 if spec.axon_accumulates else ns) * dense_weights(g, name))


@pytest.mark.parametrize("spec", [TINY, MCAST], ids=["tiny", "mcast"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=networks())
def test_lower_bound_never_exceeds_a_tiling(spec, model):
    """The bound holds for the tiling the compiler finds, layer by layer, and a pair of neurons
    the pair rule says cannot share a core indeed never does."""
    from snnmap.passes.bounds import layer_bounds, min_pair_axons

    g = convert(model)
    try:
        drc.check_before_tiling(g, spec)
        tiling = tile_network(g, spec)
        drc.check_before_placement(g, tiling, spec)
    except DesignRuleError:
        return
    for b in layer_bounds(g, spec):
        assert b.bound <= len(tiling.layers[b.layer]), b
        proj = g.edges[source_of(g, b.layer), b.layer]["proj"]
        pair = min_pair_axons(proj, g.nodes[source_of(g, b.layer)]["pop"].replicas, spec)
        for t in tiling.layers[b.layer]:
            if pair is not None and pair > spec.axons_at(t.level):
                assert len(np.unique(t.neuron_src)) <= 1
            if pair is not None:  # two distinct neurons in a tile need at least `pair` axons
                if len(np.unique(t.neuron_src)) > 1:
                    assert int(np.count_nonzero(t.crossbar.any(axis=1) & (t.axon_src >= 0))) >= pair


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_pair_axons_by_enumeration(data):
    """min_pair_axons equals the fewest axons of any two distinct neurons, by enumeration, on a
    map large enough to hold every window offset and two windows apart."""
    from snnmap.ir import Projection
    from snnmap.passes.bounds import min_pair_axons

    k = data.draw(st.integers(1, 3))
    s = data.draw(st.integers(1, 2))
    c, o = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    w = np.array(data.draw(st.lists(st.sampled_from([-1, 0, 0, 1]), min_size=k * k * c * o, max_size=k * k * c * o)),
                 dtype=np.int8).reshape(k, k, c, o)
    proj = Projection(k, k, s, 0, w)
    out = 2 * k + 1
    H = (out - 1) * s + k
    for spec, ns in ((SG64, 1), (MCAST, 3)):
        def need(y, x, ch):
            keys = set()
            for ky, kx, ci in zip(*np.nonzero(w[:, :, :, ch])):
                inp = ((y * s + ky) * H + x * s + kx) * c + ci
                if spec.axon_accumulates:
                    keys.add((inp, int(w[ky, kx, ci, ch] < 0)))
                else:
                    keys.update((inp, r) for r in range(ns))
            return keys
        neurons = [(y, x, ch) for y in range(out) for x in range(out) for ch in range(o)]
        sets = {n: need(*n) for n in neurons}
        best = min(len(sets[a] | sets[b]) for i, a in enumerate(neurons) for b in neurons[i + 1:])
        assert min_pair_axons(proj, ns, spec) == best


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_interior_need_by_enumeration(data):
    """The shape search's axon need of a th x tw tile is the union of its windows' signed inputs
    in the worst channel group, asked in any order (so the kept column growth restarts, resumes
    and reuses), and "over" (2^62) only past a narrower tile over the limit."""
    from snnmap.ir import Projection
    from snnmap.passes.tiling import _memo_need

    kh, kw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    s = data.draw(st.integers(1, 3))
    c, o = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 6))
    n = kh * kw * c * o
    w = np.array(data.draw(st.lists(st.sampled_from([-1, 0, 0, 1]), min_size=n, max_size=n)),
                 dtype=np.int8).reshape(kh, kw, c, o)
    proj = Projection(kh, kw, s, 0, w)

    def union(cg, th, tw):
        most = 0
        for g0 in range(0, o, cg):
            keys = set()
            for dy in range(th):
                for dx in range(tw):
                    for ky, kx, ci, oc in zip(*np.nonzero(w[:, :, :, g0:g0 + cg])):
                        keys.add((dy * s + ky, dx * s + kx, ci, int(w[ky, kx, ci, g0 + oc] < 0)))
            most = max(most, len(keys))
        return most

    memo = {"need": {}, "bits": {}}
    for _ in range(data.draw(st.integers(1, 10))):
        cg, th, tw = data.draw(st.integers(1, o)), data.draw(st.integers(1, 3)), data.draw(st.integers(1, 4))
        most = data.draw(st.integers(0, 60))
        got = _memo_need(memo, proj, cg, th, tw, most)
        if got == 1 << 62:
            assert any(union(cg, th, t) > most for t in range(1, tw))
        else:
            assert got == union(cg, th, tw)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_batched_layouts_equal_one_group_at_a_time(data):
    """Tiles' axons and crossbars are the same whether a geometry's channel groups are laid out
    together (as a cut does) or one by one, including slices of the batch and partial groups."""
    from snnmap.ir import Population, Projection
    from snnmap.passes.tiling import _compact_layouts, _patch

    k, s, p = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2)), data.draw(st.integers(0, 1))
    c, o = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 5))
    H, W = data.draw(st.integers(k, 6)), data.draw(st.integers(k, 6))
    n = k * k * c * o
    w = np.array(data.draw(st.lists(st.sampled_from([-1, 0, 1]), min_size=n, max_size=n)), dtype=np.int8)
    proj = Projection(k, k, s, p, w.reshape(k, k, c, o))
    src = Population(name="src", shape=(H, W, c), replicas=1, on_chip=True)
    OH, OW = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    y0, x0 = data.draw(st.integers(0, OH - 1)), data.draw(st.integers(0, OW - 1))
    y1, x1 = data.draw(st.integers(y0 + 1, OH)), data.draw(st.integers(x0 + 1, OW))
    cuts = sorted(set(data.draw(st.lists(st.integers(1, o - 1), max_size=3)) if o > 1 else []))
    groups = list(zip([0] + cuts, cuts + [o]))
    region = (y0, y1, x0, x1, 0, o)
    gkey = _patch(src, proj, region)[1]
    together = _compact_layouts(src, proj, region, groups, gkey, cells=data.draw(st.sampled_from([1, 1 << 24])))
    for g in groups:
        alone = _compact_layouts(src, proj, region, [g], gkey)[(*g, gkey)]
        both = together[(*g, gkey)]
        for a, b in zip(alone[1:], both[1:]):
            assert np.array_equal(a, b)
        assert np.array_equal(alone[0].get(), both[0].get())
        xbar = both[0].get()  # each column: one +1 per nonzero weight, on the axon of its input and sign
        assert np.array_equal(np.count_nonzero(xbar, axis=0), both[1])


def greedy_packed(per, shape_out, th, tw, cg, cap):
    """Packed regions one band and group at a time, in plain Python: from the left, each run as
    many columns (at most tw) as fit cap neurons."""
    OH, OW, OC = shape_out
    m = per.reshape(OH, OW, OC)
    out = []
    for c0 in range(0, OC, cg):
        for y0 in range(0, OH, th):
            col = [int(m[y0:y0 + th, x, c0:c0 + cg].sum()) for x in range(OW)]
            x0 = 0
            while x0 < OW:
                x1, load = x0, 0
                while x1 < OW and x1 - x0 < tw and load + col[x1] <= cap:
                    load += col[x1]
                    x1 += 1
                assert x1 > x0  # the cut succeeded, so every column fits
                out.append((y0, min(y0 + th, OH), x0, x1, c0, min(c0 + cg, OC)))
                x0 = x1
    return sorted(out)


@pytest.mark.parametrize("spec", [COPIES, COMBINING, SG64], ids=["copies", "combining", "sg64"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=networks(), seed=st.integers(0, 1000))
def test_read_counts_without_cutting_equal_the_cut(spec, model, seed):
    """The beam search counts each input's destination words without cutting (_read_counts,
    packed runs by _packed_regions); they must equal the words of the actual cut, for plain and
    packed shapes, with and without fan-out copies of the layer's own neurons."""
    from snnmap.passes import tiling

    g = convert(model)
    rng = np.random.default_rng(seed)
    for name in chip_layers(g):
        pop, src, proj = tiling._layer(g, name)
        for mult in (None, rng.integers(1, 4, pop.size)):
            try:
                cands = tiling.shape_candidates(pop, src, proj, spec, None, mult, keep=6, fan_out_limit=False)
            except DesignRuleError:
                continue
            for c in cands[:4]:
                shape = c[4]
                for packed in {shape.packed, True}:
                    sh = tiling.TileShape(shape.th, shape.tw, shape.cg, shape.level, packed)
                    try:
                        tiles = tiling.cut_layer(name, pop, src, proj, sh, spec, mult)
                    except DesignRuleError:
                        continue
                    reads = np.concatenate([t.axon_src for t in tiles])
                    want = np.bincount(reads[reads >= 0], minlength=src.size)
                    assert np.array_equal(tiling._read_counts(pop, src, proj, sh, spec, mult), want)
                    if packed:
                        per = (np.ones(pop.size, np.int64) if mult is None else mult) * pop.replicas
                        got = tiling._packed_regions(per, pop.shape, sh.th, sh.tw, sh.cg, spec.neurons_at(sh.level))
                        assert sorted(map(tuple, got.tolist())) == sorted(t.region for t in tiles)
                        want = greedy_packed(per, pop.shape, sh.th, sh.tw, sh.cg, spec.neurons_at(sh.level))
                        assert sorted(map(tuple, got.tolist())) == want


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=networks(), destinations=st.integers(1, 4))
def test_beam_counts_the_tiles_it_cuts(model, destinations):
    """On a chip with few destinations (copies on small networks), the tiles the beam search
    accounts for its shapes, copies included, are the tiles the cut then makes, and the cut's
    tiles and fan-out pass the design rules."""
    from snnmap.chip.spec import ChipSpec
    from snnmap.passes import tiling

    spec = ChipSpec(**{**COPIES.to_dict(), "name": "few", "max_destinations": destinations})
    g = convert(model)
    try:
        shapes, tiles = tiling._beam_shapes(g, spec, None)
    except DesignRuleError as e:
        assert "limit" in str(e)
        return
    til = tiling.cut_tiles(g, shapes, spec)
    assert sum(len(t) for t in til.layers.values()) == tiles
    assert til.shapes == shapes
    drc.check_tiles(til, spec)
    drc.check_fan_out(g, til, spec)


def test_beam_past_its_deadline_still_tiles_every_layer():
    """A deadline already past leaves the beam one state and each layer's first shape found;
    the tiling is still whole and legal (copies counted) on a chip where copies arise."""
    import time

    from snnmap.deadline import Deadline
    from snnmap.zoo import lenet

    g = convert(lenet(0))
    spec = COPIES.__class__(**{**SG64.to_dict(), "name": "sg64-4", "max_destinations": 4})  # copies in LeNet
    from snnmap.passes import tiling

    late = Deadline(1e-6)
    time.sleep(1e-3)
    shapes, tiles = tiling._beam_shapes(g, spec, late)
    til = tiling.cut_tiles(g, shapes, spec)
    assert set(til.layers) == set(chip_layers(g))
    assert sum(len(t) for t in til.layers.values()) == tiles
    drc.check_tiles(til, spec)
    drc.check_fan_out(g, til, spec)

"""The density cap against enumeration: no set of neurons of a small layer that fits A axons is
larger than max_neurons says, and its parts (channel unions, footprints) are lower bounds."""

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from snnmap.passes.density import (channel_union_lb, exact_channel_unions, footprint_lb, line_union_min,
                                   max_neurons, offset_unions, supports)


def _layer(data, max_out=3, max_c=2, max_o=2):
    k = data.draw(st.integers(1, 3), "k")
    s = data.draw(st.integers(1, 2), "stride")
    p = data.draw(st.integers(0, k - 1), "padding")
    c, o = data.draw(st.integers(1, max_c), "c_in"), data.draw(st.integers(1, max_o), "c_out")
    if data.draw(st.booleans(), "strip"):  # a strip of up to 8 positions: inputs read by several
        oh, ow = data.draw(st.integers(1, 2), "oh"), data.draw(st.integers(1, 8 // o), "ow")
    else:
        oh, ow = data.draw(st.integers(1, max_out), "oh"), data.draw(st.integers(1, max_out), "ow")
    h, w = (oh - 1) * s + k - 2 * p, (ow - 1) * s + k - 2 * p
    if h < 1 or w < 1:
        p = 0
        h, w = (oh - 1) * s + k, (ow - 1) * s + k
    weights = np.array(data.draw(st.lists(st.sampled_from([-1, 0, 1, 1]), min_size=k * k * c * o,
                                          max_size=k * k * c * o), "w"), dtype=np.int8).reshape(k, k, c, o)
    return weights, s, p, (oh, ow), (h, w)


def _needs(weights, s, p, out_hw, in_hw, signed):
    """Per neuron (y, x, o), the set of axon elements it needs, as a bit mask (python int)."""
    k, _, c, o = weights.shape
    (oh, ow), (h, w) = out_hw, in_hw
    masks = []
    for y, x, ch in itertools.product(range(oh), range(ow), range(o)):
        m = 0
        for ky, kx, ci in zip(*np.nonzero(weights[:, :, :, ch])):
            iy, ix = y * s - p + ky, x * s - p + kx
            if 0 <= iy < h and 0 <= ix < w:
                e = ((iy * w + ix) * c + ci) * (2 if signed else 1) + (int(weights[ky, kx, ci, ch] < 0) if signed else 0)
                m |= 1 << int(e)
        masks.append(m)
    return masks


@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_no_set_of_neurons_beats_the_cap(data):
    weights, s, p, out_hw, in_hw = _layer(data)
    signed = data.draw(st.booleans(), "signed")
    masks = _needs(weights, s, p, out_hw, in_hw, signed)
    n = len(masks)
    union = [0] * (1 << n)  # every subset's union, each from the subset without its highest bit
    size = [0] * (1 << n)
    for b in range(n):
        for i in range(1 << b):
            union[(1 << b) | i] = union[i] | masks[b]
            size[(1 << b) | i] = size[i] + 1
    counts = [bin(u).count("1") for u in union]
    for axons in sorted({0, 1, *counts[1:]})[:12]:
        most = max(sz for sz, cnt in zip(size, counts) if cnt <= axons)
        cap = max_neurons(weights, signed, 1, axons, out_hw, in_hw, s, p)
        if cap is not None:
            assert most <= max(cap, 1) or most == 0, (axons, most, cap)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_channel_unions(data):
    """The exact channel unions are the true minima (enumerated) and the cheap ones lie below."""
    d, o, e = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 6)), data.draw(st.integers(1, 8))
    sup = np.array(data.draw(st.lists(st.booleans(), min_size=d * o * e, max_size=d * o * e)), bool).reshape(d, o, e)
    want = [0] + [min(int(np.any(sup[dd][list(sub)], axis=0).sum())
                      for dd in range(d) for sub in itertools.combinations(range(o), j)) for j in range(1, o + 1)]
    assert exact_channel_unions(sup).tolist() == want
    assert (channel_union_lb(sup) <= np.array(want)).all()


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_offset_unions(data):
    """psi(m) is the fewest elements m distinct offsets cover with one channel each (enumerated)."""
    d, o, e = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 3)), data.draw(st.integers(1, 8))
    sup = np.array(data.draw(st.lists(st.booleans(), min_size=d * o * e, max_size=d * o * e)), bool).reshape(d, o, e)
    psi = offset_unions(sup, m_max=4)
    for m in range(1, len(psi)):
        want = min(int(np.any(np.stack([sup[dd, ch] for dd, ch in zip(offs, chans)]), axis=0).sum())
                   for offs in itertools.combinations(range(d), m) for chans in itertools.product(range(o), repeat=m))
        assert psi[m] == want, (m, psi, want)
    assert len(psi) == min(d, 4) + 1


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_footprints(data):
    """The line minimum is exact and the footprint bound lies below every point set's footprint."""
    weights, s, p, (oh, ow), (h, w) = _layer(data, max_out=4, max_c=1, max_o=1)
    k = weights.shape[0]
    f = line_union_min(ow, w, k, s, p)
    for t in range(ow + 1):
        want = min((len({i for x in xs for i in range(x * s - p, x * s - p + k) if 0 <= i < w})
                    for xs in itertools.combinations(range(ow), t)), default=0)
        assert f[t] == want
    phi = footprint_lb(oh * ow, (oh, ow), (h, w), (k, k), s, p)
    cells = [(y, x) for y in range(oh) for x in range(ow)]
    for a in range(1, min(len(cells), 6) + 1):
        least = min(len({(iy, ix) for y, x in ps for iy in range(y * s - p, y * s - p + k)
                         for ix in range(x * s - p, x * s - p + k) if 0 <= iy < h and 0 <= ix < w})
                    for ps in itertools.combinations(cells, a))
        assert phi[a] <= least, (a, phi[a], least)


def test_lenet_conv2_level0_cap():
    """On a random LeNet's 5x5 layer the cap is below the 128 ANN neurons a level-1 sg64 core has
    room for, so a level-0 tiling cannot beat level 1: the layer's bound is level 1's 72 cores."""
    from snnmap.convert import convert
    from snnmap.ir import source_of
    from snnmap.zoo import lenet

    g = convert(lenet(0))
    src = source_of(g, "conv2")
    proj, pop, sp = g.edges[src, "conv2"]["proj"], g.nodes["conv2"]["pop"], g.nodes[src]["pop"]
    cap = max_neurons(proj.weights, True, 1, 1024, pop.shape[:2], sp.shape[:2], proj.stride, proj.padding)
    assert cap is not None and cap < 128
    from snnmap.chip.spec import SG64
    from snnmap.passes.bounds import layer_bound

    b = layer_bound(g, "conv2", SG64)
    assert (b.bound, b.level) == (72, 1), b


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_offset_cost_is_below_every_position_set(data):
    """The psi part's least total, per count of positions, lies below sum_q psi(m_q) of every
    set of that many positions (m_q: positions whose window holds input q)."""
    from snnmap.passes.density import LayerDensity

    weights, s, p, (oh, ow), (h, w) = _layer(data, max_out=4, max_c=2, max_o=2)
    k = weights.shape[0]
    dens = LayerDensity(weights, True, 1, (oh, ow), (h, w), s, p)
    cost = dens._offset_cost()
    if cost is None:
        return
    psi = offset_unions(supports(weights, True), m_max=k * k)
    psi = psi + [psi[-1]] * (k * k + 1 - len(psi))
    cells = [(y, x) for y in range(oh) for x in range(ow)]
    for a in range(1, min(len(cells), 5) + 1):
        for ps in itertools.islice(itertools.combinations(cells, a), 200):
            m = {}
            for y, x in ps:
                for iy in range(y * s - p, y * s - p + k):
                    for ix in range(x * s - p, x * s - p + k):
                        if 0 <= iy < h and 0 <= ix < w:
                            m[iy, ix] = m.get((iy, ix), 0) + 1
            assert sum(psi[v] for v in m.values()) >= cost[a] - 1e-9, (a, ps)

"""Fan-out copies and multicast blocks: covers are exact, and images that use them simulate exactly."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from snnmap.chip import address
from snnmap.chip.spec import PAICORE2, SG64, ChipSpec
from snnmap.passes.fanout import _aligned_runs, _subcubes
from snnmap.passes.route import block_masks
from snnmap.pipeline import compile_model
from snnmap.reference import evaluate
from snnmap.sim import Simulator
from snnmap.zoo import lenet

from test_end_to_end import layer_counts_from_cores


@settings(max_examples=200, deadline=None)
@given(bits=st.integers(0, 5), data=st.data())
def test_block_covers_are_exact(bits, data):
    """Every needed position is covered exactly once, only by usable positions, and the
    sub-cube cover never needs more blocks than aligned runs."""
    n, cols = 1 << bits, 3
    nd = np.array(data.draw(st.lists(st.lists(st.booleans(), min_size=cols, max_size=cols), min_size=n,
                                     max_size=n)), dtype=bool).reshape(n, cols)
    extra = np.array(data.draw(st.lists(st.lists(st.booleans(), min_size=cols, max_size=cols), min_size=n,
                                        max_size=n)), dtype=bool).reshape(n, cols)
    ok = nd | extra
    xs = np.arange(cols)
    for cover in (_subcubes(nd, ok, bits, xs), _aligned_runs(nd, ok, bits, xs)):
        hit = np.zeros((n, cols), dtype=np.int64)
        for x, v, f in zip(*cover):
            assert v & f == 0
            members = [p for p in range(n) if p & ~f == v]
            assert ok[members, x].all()
            hit[members, x] += 1
        assert (hit[nd] == 1).all() and (hit[~nd] <= 1).all()
    assert len(_subcubes(nd, ok, bits, xs)[0]) <= len(_aligned_runs(nd, ok, bits, xs)[0])


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 1023), st.integers(0, 1023))
def test_multicast_word_reaches_its_subcube(code, free):
    """A word with replication masks reaches exactly the cores of the sub-cube of Morton codes."""
    from snnmap.passes.place_blocks import demorton

    base = code & ~free
    mx, my = block_masks(np.array([free]))
    x, y = demorton(np.array([base]), 5)
    w = address.encode(PAICORE2, 0, 0, x, y, 7, mx, my)
    _, words = address.expand(PAICORE2, w)
    _, _, _, cx, cy, axon = address.decode(PAICORE2, words)
    members = sorted(c for c in range(1024) if c & ~free == base)
    mxs, mys = demorton(np.array(members), 5)
    assert sorted(zip(cx.tolist(), cy.tolist())) == sorted(zip(mxs.tolist(), mys.tolist()))
    assert (axon == 7).all()


def _check(model, spec, n_images=24):
    result = compile_model(model, spec)
    x = np.random.default_rng(3).integers(0, 256, (n_images, *model.input_shape[:2])).astype(np.uint8)
    out = Simulator(result.image).run(x, batch=10, record=True)
    ref = evaluate(model, x)
    got = layer_counts_from_cores(result, out["core_spikes"], len(x))
    for layer, want in zip(model.layers, ref["counts"][1:]):
        assert np.array_equal(got[layer.name], want.reshape(len(x), -1)), layer.name
    assert np.array_equal(out["logits"], ref["logits"])
    return result


def test_copies_on_a_chip_with_few_destinations():
    spec = ChipSpec(**{**SG64.to_dict(), "name": "sg64-4", "max_destinations": 4})
    result = _check(lenet(1), spec)
    assert any((t.neuron_copy > 0).any() for ts in result.tiling.layers.values() for t in ts)


def test_paicore2_lenet_multicast_and_copies():
    result = _check(lenet(2), PAICORE2)
    assert any((f.free > 0).any() for f in result.tiling.fanout.values())
    assert any((t.neuron_copy > 0).any() for ts in result.tiling.layers.values() for t in ts)
    # replicas take their own axons: no axon of a core is fed by two sources in one tick
    for c in result.image.cores:
        assert (c.axon_sign == 1).all()
    assert len(result.image.cores) <= 450

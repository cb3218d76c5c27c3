"""Simulator internals that the end-to-end tests exercise only indirectly."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from snnmap.rows import row_ids as _row_ids


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.uint8, st.tuples(st.integers(0, 40), st.integers(1, 20)),
                  elements=st.integers(0, 3)))
def test_row_ids_match_exact_grouping(rows):
    ids = _row_ids(rows)
    assert ids.shape == (rows.shape[0],)
    for i in range(len(rows)):
        for j in range(len(rows)):
            assert (ids[i] == ids[j]) == bool((rows[i] == rows[j]).all())
    if len(rows):  # numbered by first appearance
        firsts = [ids[i] for i in range(len(rows)) if ids[i] not in ids[:i]]
        assert firsts == list(range(len(firsts)))


def test_cost_model_adds_up_and_follows_its_constants():
    from dataclasses import replace

    from snnmap.chip.spec import SG64
    from snnmap.pipeline import compile_model
    from snnmap.sim import Simulator

    from test_image import small_model

    image = compile_model(small_model(), SG64).image
    x = np.random.default_rng(2).integers(0, 256, (6, 8, 8)).astype(np.uint8)
    base = Simulator(image).run(x)
    assert (base["latency_s"] > 0).all() and (base["period_s"] <= base["latency_s"]).all()
    assert np.allclose(base["latency_s"], base["tick_s"].sum(axis=0))
    static = base["energy_j"] - base["energy_sop_j"] - base["energy_hop_j"]
    assert np.allclose(static, SG64.static_power_w * base["period_s"])  # one chip
    assert np.allclose(base["energy_sop_j"], SG64.energy_per_sop_j * base["sops"])
    image.spec = replace(SG64, cycles_per_event=2 * SG64.cycles_per_event, static_power_w=0.0)
    slower = Simulator(image).run(x)
    assert (slower["latency_s"] > base["latency_s"]).all()
    assert np.allclose(slower["energy_j"], base["energy_sop_j"] + base["energy_hop_j"])
    assert np.array_equal(slower["pred"], base["pred"])  # the model never changes results


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), max_size=4), min_size=0, max_size=30), st.booleans())
def test_csr_ids_group_equal_lists(lists, with_prefix):
    from snnmap.rows import csr_ids

    ptr = np.cumsum([0] + [len(x) for x in lists])
    words = np.array([w for x in lists for w in x], dtype=np.uint64)
    prefix = np.arange(len(lists)) % 2 if with_prefix else None
    ids = csr_ids(ptr, words, prefix)
    for i in range(len(lists)):
        for j in range(len(lists)):
            same = lists[i] == lists[j] and (prefix is None or prefix[i] == prefix[j])
            assert (ids[i] == ids[j]) == same


def test_link_loads_add_up_to_spike_hops():
    """On one chip every hop of an X-then-Y route crosses exactly one link."""
    from snnmap.chip.spec import SG64, ChipSpec
    from snnmap.links import link_loads, spike_hops
    from snnmap.pipeline import compile_model

    from test_image import small_model

    spec = ChipSpec(**{**SG64.to_dict(), "neurons_per_core": 16, "axons_per_core": 64, "max_destinations": 64})
    img = compile_model(small_model(), spec).image
    assert len({c.coord[:2] for c in img.cores}) == 1 and len(img.cores) > 4
    H, V = link_loads(img)
    assert H.sum() + V.sum() == spike_hops(img) > 0
    w = np.arange(len(img.cores), dtype=np.float64)
    H, V = link_loads(img, w)
    assert np.isclose(H.sum() + V.sum(), spike_hops(img, w))


def test_encoder_follows_the_defined_summation_order():
    """Taps 1e16, 1, -1e16 sum to 0 in the defined order (1 in exact arithmetic): a threshold at
    0.5 separates the orders, and the simulator must follow the definition like the reference."""
    from snnmap.chip.spec import SG64
    from snnmap.model import BatchNorm, Classifier, Layer, QuantModel
    from snnmap.pipeline import compile_model
    from snnmap.reference import evaluate
    from snnmap.sim import Simulator

    from randnet import EXACT_VARS

    one = EXACT_VARS[1]  # sqrt(var + eps) == 1 exactly
    w = np.array([1e16, 1.0, -1e16, 0.0]).reshape(2, 2, 1, 1)
    enc = Layer("encoder", "conv", w, BatchNorm(np.zeros(1), np.ones(1), np.zeros(1), np.full(1, one)))
    l1 = Layer("fc", "dense", np.ones((1, 2), np.int8), BatchNorm(np.zeros(2), np.ones(2), np.zeros(2), np.full(2, one)))
    model = QuantModel((2, 2, 1), 0, 1, 1.0, enc, (l1,), Classifier(np.array([[1.0, -1.0], [0.0, 0.0]]), np.zeros(2)),
                       name="order").validate()
    x = np.ones((3, 2, 2), np.uint8)
    ref = evaluate(model, x)
    assert ref["counts"][0].sum() == 0  # the defined order gives 0 < 0.5
    out = Simulator(compile_model(model, SG64).image).run(x)
    assert np.array_equal(out["pred"], ref["pred"]) and np.array_equal(out["logits"], ref["logits"])
    assert out["layer_spikes"].sum() == sum(c.sum() for c in ref["counts"][1:])


def _all_outputs_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if key == "core_spikes":
            assert all(np.array_equal(x, y) for x, y in zip(a[key], b[key]))
        else:
            assert np.array_equal(a[key], b[key]), key


def test_results_do_not_depend_on_threads_blocks_or_batches():
    from snnmap.chip.spec import SG64
    from snnmap.pipeline import compile_model
    from snnmap.sim import Simulator

    from test_reliability import lenet_like

    img = compile_model(lenet_like(1), SG64).image
    x = np.random.default_rng(3).integers(0, 256, (37, 28, 28)).astype(np.uint8)
    kw = {"record": True, "trace": True, "drop": {0: 0.1, 3: 0.2}, "seed": 4}
    base = Simulator(img, threads=1, block=128).run(x, **kw)
    _all_outputs_equal(base, Simulator(img, threads=2, block=5).run(x, batch=16, **kw))
    _all_outputs_equal(base, Simulator(img, threads=3, block=1).run(x, batch=37, **kw))


def test_float64_activity_paths_agree_with_float32():
    """Blocks whose event, synaptic-operation or packet sums could pass 2^24 sum them in float64;
    LeNet-sized ones never do, so force it and compare."""
    from snnmap.chip.spec import SG64
    from snnmap.pipeline import compile_model
    from snnmap.sim import Simulator

    from test_reliability import lenet_like

    img = compile_model(lenet_like(2), SG64).image
    x = np.random.default_rng(4).integers(0, 256, (20, 28, 28)).astype(np.uint8)
    sim = Simulator(img)
    base = sim.run(x, record=True)
    stacks = [st for tick in sim.ticks[1:] for st in tick.stacks]
    assert stacks and not any(st.stats64 or st.out64 for st in stacks)
    for st in stacks:
        st.stats64 = st.out64 = True
    _all_outputs_equal(base, sim.run(x, record=True))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_encoder_fast_path_equals_the_defined_order(data):
    """The float32 path with its error bound, the float64 path and summing every entry in the
    defined order give the same counts, ties (dyadic weights and thresholds) included."""

    from snnmap.chip.spec import SG64
    from snnmap.errors import DesignRuleError
    from snnmap.pipeline import compile_model
    from snnmap.sim.simulator import _Encoder

    from randnet import images, networks

    model = data.draw(networks(max_layers=1))
    try:
        img = compile_model(model, SG64).image
    except DesignRuleError:
        return
    x = images(model, 9, data.draw(st.integers(0, 100))).astype(np.float64)
    if x.ndim == 3:
        x = x[..., None]
    enc = _Encoder(img)
    got = enc.counts(x)
    lin = enc.lin
    enc.lin = None
    generic = enc.counts(x)
    enc.lin = lin
    (Hp, Wp, cin), p = enc.padded, enc.pad
    xp = np.zeros((Hp, Wp, cin, len(x)))
    xp[p:Hp - p, p:Wp - p] = (x * enc.scale_in).transpose(1, 2, 3, 0)
    exact = np.zeros((enc.rows, len(x)), np.float32)
    enc._exact(exact, np.arange(exact.size), xp.reshape(-1, len(x)), len(x))
    assert np.array_equal(got[:-1], exact) and np.array_equal(generic[:-1], exact)
    assert not got[-1].any()


def test_blas_threads_are_restored():
    from snnmap.sim.blas import _openblas, single_threaded_blas

    libs = _openblas()
    before = [get() for _, get in libs]
    with single_threaded_blas():
        with single_threaded_blas():
            assert all(get() == 1 for _, get in libs)
        assert all(get() == 1 for _, get in libs)
    assert [get() for _, get in libs] == before


def test_core_without_inputs():
    """A layer of zero weights configures cores whose neurons have no synapses at all."""
    from snnmap.chip.spec import SG64
    from snnmap.model import BatchNorm, Classifier, Layer, QuantModel
    from snnmap.pipeline import compile_model
    from snnmap.reference import evaluate
    from snnmap.sim import Simulator

    rng = np.random.default_rng(7)
    bn = BatchNorm(np.array([0.3]), np.array([1.0]), np.zeros(1), np.ones(1))
    enc = Layer("encoder", "conv", rng.normal(size=(1, 1, 1, 1)), bn)
    l1 = Layer("fc", "dense", np.zeros((9, 1), np.int8), bn)  # one neuron: one distinct (empty) column
    model = QuantModel((3, 3, 1), 1, 2, 1 / 256, enc, (l1,), Classifier(rng.normal(size=(1, 2)), np.zeros(2)),
                       name="silent").validate()
    x = rng.integers(0, 256, (5, 3, 3)).astype(np.uint8)
    out, ref = Simulator(compile_model(model, SG64).image).run(x, record=True), evaluate(model, x)
    assert np.array_equal(out["pred"], ref["pred"]) and np.array_equal(out["logits"], ref["logits"])
    assert np.array_equal(out["layer_spikes"][0], ref["counts"][1].reshape(5, -1).sum(axis=1))


def test_a_drop_probability_outside_0_1_is_refused():
    """`simulate --drop nan` passed click's FloatRange(0, 1) (NaN compares false) and silently
    lost no spike; a NaN or out-of-range probability is now an error naming --drop."""
    import pytest

    from snnmap.chip.spec import SG64
    from snnmap.errors import SnnmapError
    from snnmap.pipeline import compile_model
    from snnmap.sim import Simulator

    from test_image import small_model

    sim = Simulator(compile_model(small_model(), SG64).image)
    x = np.zeros((2, 8, 8), np.uint8)
    for p in (float("nan"), -0.5, 1.5):
        with pytest.raises(SnnmapError, match="--drop"):
            sim.run(x, drop={0: p})
    assert len(sim.run(x, drop={0: 1.0})["pred"]) == 2

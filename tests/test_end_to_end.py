"""Compile + simulate random networks: every layer's spike counts equal 2^k x the ANN's activations."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snnmap.chip.spec import PAICORE2, SG64, ChipSpec
from snnmap.errors import DesignRuleError
from snnmap.image import image_to_bytes, parse_image
from snnmap.pipeline import compile_model
from snnmap.reference import evaluate
from snnmap.sim import Simulator

from randnet import images, networks

TINY = ChipSpec(**{**SG64.to_dict(), "name": "tiny", "mesh_w": 4, "mesh_h": 4, "axons_per_core": 96,
                   "neurons_per_core": 32, "max_destinations": 32, "fanin_max_level": 0})
# dendrite combining: a neuron joins up to 4 columns of 24 axons each
COMBINING = ChipSpec(**{**SG64.to_dict(), "name": "combining", "mesh_w": 4, "mesh_h": 4, "axons_per_core": 24,
                        "neurons_per_core": 64, "max_destinations": 32, "fanin_max_level": 2})

# a PAICORE-like chip in miniature: axons OR spikes (replicas take their own axons), signed
# synapses, one multicast word per neuron (copies where one block is not enough), a reserved corner
MCAST = ChipSpec(**{**PAICORE2.to_dict(), "name": "mcast", "mesh_w": 4, "mesh_h": 4, "core_x_bits": 2,
                    "core_y_bits": 2, "axons_per_core": 96, "neurons_per_core": 32, "fanin_max_level": 2,
                    "bank_bits": 2, "axon_bits": 7, "reserved_corner": 1})
# destinations so few that neurons need fan-out copies, on a chip whose axons add events
COPIES = ChipSpec(**{**TINY.to_dict(), "name": "copies", "max_destinations": 2})
# axons OR spikes but no multicast: one copy per destination group
OR_UNICAST = ChipSpec(**{**MCAST.to_dict(), "name": "or-unicast", "multicast": False, "max_destinations": 3,
                         "reserved_corner": 0})


def simulate_exactly(result, model, x, batch=5, img=None):
    """Simulate the image through its bytes (as a user would), recording every core, and assert
    that every ANN neuron's spikes (CompileResult.ann_counts), the predictions and the logits equal
    the reference; returns the simulator's output and the image."""
    img = parse_image(image_to_bytes(result.image)) if img is None else img
    out = Simulator(img).run(x, batch=batch, record=True)
    ref = evaluate(model, x)
    got = result.ann_counts(out["core_spikes"], len(x))
    for layer, want in zip(model.layers, ref["counts"][1:]):
        assert np.array_equal(got[layer.name], want.reshape(len(x), -1)), layer.name
    assert np.array_equal(out["pred"], ref["pred"])
    np.testing.assert_allclose(out["logits"], ref["logits"], rtol=1e-12, atol=1e-12)
    return out, img


@pytest.mark.parametrize("spec", [SG64, TINY, COMBINING, MCAST, COPIES, OR_UNICAST],
                         ids=["sg64", "tiny", "combining", "mcast", "copies", "or-unicast"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=networks(), seed=st.integers(0, 1000))
def test_image_simulation_equals_reference(spec, model, seed):
    x = images(model, 12, seed)
    try:
        result = compile_model(model, spec)
    except DesignRuleError as e:
        assert "limit" in str(e)
        return
    out, img = simulate_exactly(result, model, x)
    assert np.array_equal(out["spikes"], sum(c.sum(axis=0) for c in out["core_spikes"]))
    fast = Simulator(img).run(x, batch=7)  # without recording, the grouped fast paths run
    for key in ("pred", "logits", "spikes", "sops", "layer_spikes"):
        assert np.array_equal(fast[key], out[key]), key


def test_spike_drop_is_seeded_and_batch_independent():
    from test_image import small_model

    model = small_model()
    img = compile_model(model, SG64).image
    x = np.random.default_rng(5).integers(0, 256, (40, 8, 8)).astype(np.uint8)
    sim = Simulator(img)
    clean = sim.run(x)
    a = sim.run(x, batch=7, drop={0: 0.3}, seed=11)
    b = sim.run(x, batch=40, drop={0: 0.3}, seed=11)
    c = sim.run(x, batch=40, drop={0: 0.3}, seed=12)
    assert np.array_equal(a["logits"], b["logits"]) and np.array_equal(a["spikes"], b["spikes"])
    assert not np.array_equal(a["spikes"], c["spikes"])
    assert not np.array_equal(a["layer_spikes"], clean["layer_spikes"])
    all_lost = sim.run(x, drop={1: 1.0})  # nothing of layer 1 arrives: layer 2 sees no input
    assert np.array_equal(sim.run(x, drop={0: 0.0})["logits"], clean["logits"])
    assert all_lost["layer_spikes"][0].sum() == clean["layer_spikes"][0].sum()


def test_trace_counts_spikes_per_core():
    from test_image import small_model

    img = compile_model(small_model(), SG64).image
    x = np.random.default_rng(6).integers(0, 256, (9, 8, 8)).astype(np.uint8)
    out = Simulator(img).run(x, trace=True, batch=4)
    assert out["trace"].shape == (9, len(img.cores))
    assert np.array_equal(out["trace"].sum(axis=1), out["spikes"])

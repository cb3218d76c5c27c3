"""The native model file: exact round trip, and damage ends in one clear error."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snnmap.errors import SnnmapError
from snnmap.modelfile import load_model, model_to_bytes, save_model

from randnet import networks
from test_image import small_model


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(networks())
def test_round_trip(tmp_path, model):
    save_model(model, tmp_path / "m.snnm")
    back = load_model(tmp_path / "m.snnm")
    assert model_to_bytes(back) == model_to_bytes(model)
    assert back.k == model.k and back.B == model.B and back.input_scale == model.input_scale
    for a, b in zip((model.encoder, *model.layers), (back.encoder, *back.layers)):
        assert np.array_equal(a.weights, b.weights) and np.array_equal(a.bn.var, b.bn.var)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_damage_is_detected(tmp_path, data):
    raw = model_to_bytes(small_model())
    if data.draw(st.booleans()):
        pos = data.draw(st.integers(0, len(raw) * 8 - 1))
        b = bytearray(raw)
        b[pos // 8] ^= 1 << (pos % 8)
        raw = bytes(b)
    else:
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    (tmp_path / "m.snnm").write_bytes(raw)
    with pytest.raises(SnnmapError):
        load_model(tmp_path / "m.snnm")


def test_missing_file(tmp_path):
    with pytest.raises(SnnmapError, match="cannot read"):
        load_model(tmp_path / "nope.snnm")


@pytest.mark.parametrize("case", ["input", "encoder output"])
def test_a_small_file_declaring_a_huge_network_is_refused(tmp_path, monkeypatch, case):
    """A 5 KB .snnm with a 1M x 1M input and 1 x 1 kernels (or an 8 x 8 input whose 1 x 1 encoder
    has 32,768 channels) loaded, and compile / export-nir then asked for 2^40 neurons (out of
    memory); the model now bounds every feature map."""
    from snnmap.model import BatchNorm, Classifier, Layer, QuantModel

    def bn(c):
        return BatchNorm(np.zeros(c), np.ones(c), np.zeros(c), np.ones(c))

    H, C, s = (1048575, 1, 65536) if case == "input" else (64, 1 << 15, 64)
    enc = Layer("encoder", "conv", np.ones((1, 1, 1, C)), bn(C), 1, 0)
    l1 = Layer("conv1", "conv", np.ones((1, 1, C, 1), np.int8), bn(1), s, 0)
    out = (H - 1) // s + 1
    m = QuantModel((H, H, 1), 1, 2, 1 / 256, enc, (l1,), Classifier(np.ones((out * out, 2)), np.zeros(2)), name="huge")
    with monkeypatch.context() as mp:  # the writer validates too: write it as a hostile tool would
        mp.setattr(QuantModel, "validate", lambda self: self)
        (tmp_path / "m.snnm").write_bytes(model_to_bytes(m))
    with pytest.raises(SnnmapError, match=f"{case.split()[0]}.* holds over"):
        load_model(tmp_path / "m.snnm")

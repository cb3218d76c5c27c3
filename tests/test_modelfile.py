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

"""Conversion: integer thresholds reproduce the quantized ANN exactly, at every layer."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snnmap.convert import chip_thresholds, convert
from snnmap.ir import chip_layers
from snnmap.reference import quantize_counts, replica_counts

from randnet import batchnorm, networks


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2), st.integers(1, 4), st.booleans(), st.integers(1, 60), st.data())
def test_chip_threshold_equals_reference_for_every_potential(k, B, exact, vmax, data):
    from snnmap.model import Layer

    bn = data.draw(batchnorm(4, k, exact))
    thr, sign = chip_thresholds(bn, k, B, np.full(4, vmax))
    V = np.arange(-vmax, vmax + 1)
    layer = Layer("l", "conv", np.zeros((1, 1, 1, 4), np.int8), bn)
    want = replica_counts(np.repeat(V[:, None], 4, axis=1).astype(np.float64), layer, k, B).T  # (C, V)
    got = ((sign[:, None, None] * V[None, :, None]) >= thr[:, None, :]).sum(axis=2)
    assert np.array_equal(got, want)
    if exact:  # where float64 is exact, the threshold form is the ANN's round-half-up quantizer
        y = bn.gamma[:, None] * (V[None, :] / 2**k - bn.mean[:, None]) / bn.std()[:, None] + bn.beta[:, None]
        assert np.array_equal(got, quantize_counts(y, k, B))


def test_exact_ties_round_up():
    """theta lands exactly on an integer: V == theta fires (gamma > 0) and so does V == theta (gamma < 0)."""
    from snnmap.model import BatchNorm

    var = np.array([1.0 - 1e-5, 1.0 - 1e-5])
    assert np.sqrt(var + 1e-5).tolist() == [1.0, 1.0]
    # k=0, B=2: replica i fires iff gamma*(V - mean) + beta >= i + 1/2; beta = 1/2, mean = 0
    bn = BatchNorm(beta=np.array([0.5, 0.5]), gamma=np.array([1.0, -1.0]), mean=np.zeros(2), var=var)
    thr, sign = chip_thresholds(bn, 0, 2, np.array([10, 10]))
    assert thr[0].tolist() == [0, 1]  # V >= 0 -> y = 0.5 -> rounds up to 1
    assert sign.tolist() == [1, -1] and thr[1].tolist() == [0, 1]  # -V >= 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks())
def test_graph_has_one_population_per_layer(model):
    g = convert(model)
    assert chip_layers(g) == [lay.name for lay in model.layers]
    for name, shape in zip(chip_layers(g), model.shapes()[1:]):
        pop = g.nodes[name]["pop"]
        assert pop.shape == shape and pop.thresholds.shape == (shape[2], model.replicas)


@pytest.mark.parametrize("layer", [0, 1])
def test_a_batch_norm_whose_thresholds_overflow_is_refused(layer):
    """Finite batch norm mean and beta of 1e308 overflow the threshold formula to inf - inf: the
    model loaded, compile printed overflow warnings and then named threshold -2^63 (a NaN cast to
    int64), export-nir wrote NaN thresholds. The model now names the channel, without warnings."""
    import dataclasses
    import warnings

    from snnmap.errors import SnnmapError

    from test_image import small_model

    m = small_model()
    lay = (m.encoder, *m.layers)[layer]
    c = lay.bn.mean.shape[0]
    bad = dataclasses.replace(lay, bn=dataclasses.replace(lay.bn, mean=np.full(c, 1e308), beta=np.full(c, 1e308)))
    m = dataclasses.replace(m, encoder=bad) if layer == 0 else dataclasses.replace(m, layers=(bad, *m.layers[1:]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(SnnmapError, match=f"layer {lay.name!r}: batch norm at channel 0 gives replica 0 no threshold"):
            m.validate()

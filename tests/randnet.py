"""Hypothesis strategies for random small quantized networks, with exact ties made likely.

Batch-norm parameters are drawn either as arbitrary floats or as small dyadic rationals with
sqrt(var + eps) an exact power of two in float64, so that thresholds land exactly on integers
and the float64 reference computes those ties exactly.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from snnmap.model import BN_EPS, BatchNorm, Classifier, Layer, QuantModel


def _exact_var(target: float) -> float:
    """A float64 var with fl(var + eps) == target exactly."""
    v = target - BN_EPS
    for _ in range(64):
        s = v + BN_EPS
        if s == target:
            return v
        v = np.nextafter(v, np.inf if s < target else -np.inf)
    raise AssertionError(target)


EXACT_VARS = [_exact_var(t) for t in (0.25, 1.0, 4.0, 16.0)]


@st.composite
def batchnorm(draw, c: int, k: int, exact: bool) -> BatchNorm:
    if exact:
        q = 2 ** (k + 2)
        gamma = draw(st.lists(st.sampled_from([-2.0, -1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 2.0]),
                              min_size=c, max_size=c))
        beta = draw(st.lists(st.integers(-3 * q, 3 * q), min_size=c, max_size=c))
        mean = draw(st.lists(st.integers(-6 * q, 6 * q), min_size=c, max_size=c))
        var = draw(st.lists(st.sampled_from(EXACT_VARS), min_size=c, max_size=c))
        return BatchNorm(np.array(beta, float) / q, np.array(gamma), np.array(mean, float) / q,
                         np.array(var))
    fl = st.floats(-3, 3, allow_nan=False, width=32)
    # |gamma| below 1e-3 puts the float64 reference's own rounding (not the compiler's) in question:
    # y = gamma * x / a + beta rounds away terms of 1e-36; the exact-tie strategy covers ties instead
    gam = st.floats(-3, 3, width=32).filter(lambda v: abs(v) >= 1e-3)
    gamma = draw(st.lists(st.one_of(gam, st.just(0.0)), min_size=c, max_size=c))
    return BatchNorm(np.array(draw(st.lists(fl, min_size=c, max_size=c)), float), np.array(gamma, float),
                     np.array(draw(st.lists(st.floats(-8, 8, width=32), min_size=c, max_size=c)), float),
                     np.array(draw(st.lists(st.floats(0, 30, width=32), min_size=c, max_size=c)), float))


@st.composite
def conv_geometry(draw, h: int, w: int):
    for _ in range(20):
        kern = draw(st.integers(1, 3))
        stride = draw(st.integers(1, 2))
        pad = draw(st.integers(0, kern - 1))
        oh, ow = (h + 2 * pad - kern) // stride + 1, (w + 2 * pad - kern) // stride + 1
        if oh >= 1 and ow >= 1:
            return kern, stride, pad, (oh, ow)
    return 1, 1, 0, (h, w)


@st.composite
def networks(draw, max_layers: int = 3) -> QuantModel:
    k = draw(st.integers(0, 2))
    B = draw(st.integers(1, 4))
    exact = draw(st.booleans())
    h, w = draw(st.integers(3, 9)), draw(st.integers(3, 9))
    cin = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kern, stride, pad, (oh, ow) = draw(conv_geometry(h, w))
    c = draw(st.integers(1, 5))
    if exact:
        enc_w = rng.integers(-8, 9, size=(kern, kern, cin, c)) / 8.0
    else:
        enc_w = rng.normal(0, 0.5, size=(kern, kern, cin, c))
    encoder = Layer("encoder", "conv", enc_w, draw(batchnorm(c, k, exact)), stride, pad)
    layers = []
    shape = (oh, ow, c)
    for i in range(draw(st.integers(1, max_layers))):
        dense = draw(st.booleans()) and i > 0
        cout = draw(st.integers(1, 6))
        density = draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]))
        if dense:
            n_in = int(np.prod(shape))
            wt = rng.choice([-1, 0, 1], size=(n_in, cout), p=[density / 2, 1 - density, density / 2])
            layers.append(Layer(f"fc{i}", "dense", wt.astype(np.int8), draw(batchnorm(cout, k, exact))))
            shape = (1, 1, cout)
        else:
            kern, stride, pad, (oh, ow) = draw(conv_geometry(shape[0], shape[1]))
            wt = rng.choice([-1, 0, 1], size=(kern, kern, shape[2], cout),
                            p=[density / 2, 1 - density, density / 2])
            layers.append(Layer(f"conv{i}", "conv", wt.astype(np.int8), draw(batchnorm(cout, k, exact)),
                                stride, pad))
            shape = (oh, ow, cout)
    classes = draw(st.integers(2, 5))
    clf = Classifier(rng.normal(size=(int(np.prod(shape)), classes)), rng.normal(size=classes))
    scale = draw(st.sampled_from([1 / 256, 1 / 16, 1.0]))
    return QuantModel((h, w, cin), k, B, scale, encoder, tuple(layers), clf, name="random").validate()


def images(model: QuantModel, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, *model.input_shape)).astype(np.uint8)

"""Quantized ANN -> scatter-and-gather SNN graph IR, with exact integer thresholds.

Replica i of a neuron fires iff 2^k * BN(x) >= i + 1/2, where V = 2^k * x is the integer sum of
ternary weights times gathered spike counts. With a = sqrt(var + eps) in float64 that is the
exact predicate  gamma * (V - 2^k*mean) - (i + 1/2 - 2^k*beta) * a >= 0,  monotone in V. The
float64 threshold theta_i gives the integer directly unless it lies within rounding distance of
an integer; there the predicate is decided exactly in rational arithmetic on the float64 values.
gamma < 0 flips the inequality: the chip negates the channel's weights and its threshold.
gamma == 0 makes the neuron constant: no synapses, threshold 0 (always) or 1 (never).
"""

from __future__ import annotations

import math
from fractions import Fraction

import networkx as nx
import numpy as np

from snnmap.ir import HostParts, Population, Projection
from snnmap.model import BatchNorm, QuantModel

_NEAR = 1e-6


def _fires(V: int, i: int, k: int, gamma: float, beta: float, mean: float, a: float) -> bool:
    lhs = Fraction(gamma) * (V - (1 << k) * Fraction(mean))
    rhs = (Fraction(2 * i + 1, 2) - (1 << k) * Fraction(beta)) * Fraction(a)
    return lhs >= rhs


def chip_thresholds(bn: BatchNorm, k: int, B: int, vmax: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer chip thresholds (C, N) and per-channel weight sign (+1, -1, or 0 for constant).

    A chip neuron fires iff sign * V >= threshold; thresholds are clamped to [-vmax, vmax + 1],
    which keeps behaviour identical since |V| <= vmax.
    """
    n = (1 << k) * B
    a = bn.std()
    C = bn.channels
    thr = np.zeros((C, n), dtype=np.int64)
    sign = np.sign(bn.gamma).astype(np.int8)
    i = np.arange(n)
    for c in range(C):
        g, b, m, s, vm = float(bn.gamma[c]), float(bn.beta[c]), float(bn.mean[c]), float(a[c]), int(vmax[c])
        if g == 0.0:
            thr[c] = np.where((1 << k) * b >= i + 0.5, 0, 1)
            continue
        with np.errstate(over="ignore"):
            theta = (i + 0.5 - (1 << k) * b) * s / g + (1 << k) * m
        for r in range(n):
            t = float(theta[r])
            if not math.isfinite(t):
                lim = t > 0  # threshold beyond any V
                thr[c, r] = (vm + 1 if lim else -vm) if g > 0 else (-vm if lim else vm + 1)
                continue
            if abs(t) > 4 * (vm + 2):
                cut = t > 0
                thr[c, r] = (vm + 1 if cut else -vm) if g > 0 else (-vm if cut else vm + 1)
                continue
            near = round(t)
            if abs(t - near) <= _NEAR * max(1.0, abs(t)):
                cands = [near - 1, near, near + 1]
                if g > 0:  # smallest V that fires
                    v = next((V for V in cands if _fires(V, r, k, g, b, m, s)), near + 2)
                else:  # largest V that fires, chip sees -V >= -v
                    v = next((V for V in reversed(cands) if _fires(V, r, k, g, b, m, s)), near - 2)
            else:
                v = math.ceil(t) if g > 0 else math.floor(t)
            thr[c, r] = v if g > 0 else -v
        thr[c] = np.clip(thr[c], -vm, vm + 1)
    return thr, sign


def convert(model: QuantModel) -> nx.DiGraph:
    """Build the SNN graph: host encoder population, one on-chip population per ternary layer."""
    model.validate()
    n = model.replicas
    g = nx.DiGraph(host=HostParts(model.input_shape, model.input_scale, model.k, model.B,
                                  model.encoder, model.classifier), name=model.name)
    shapes = model.shapes()
    prev = model.encoder.name
    g.add_node(prev, pop=Population(prev, shapes[0], n, on_chip=False, depth=0))
    for d, (layer, in_shape, out_shape) in enumerate(zip(model.layers, shapes[:-1], shapes[1:]), 1):
        w = layer.conv_weights(in_shape).astype(np.int8)
        kh, kw, s, p = layer.geometry(in_shape)
        vmax = n * np.count_nonzero(w, axis=(0, 1, 2))
        thr, sign = chip_thresholds(layer.bn, model.k, model.B, vmax)
        w_eff = (w * sign[None, None, None, :]).astype(np.int8)
        g.add_node(layer.name, pop=Population(layer.name, out_shape, n, on_chip=True,
                                              thresholds=thr, depth=d))
        g.add_edge(prev, layer.name, proj=Projection(kh, kw, s, p, w_eff))
        prev = layer.name
    return g

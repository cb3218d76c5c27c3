"""Quantized ANN -> scatter-and-gather SNN graph IR, with integer thresholds.

Replica i of a neuron fires iff V >= theta_i (gamma > 0), V <= theta_i (gamma < 0), where V is
2^k times the pre-activation (for on-chip layers the integer sum of ternary weights times
gathered spike counts) and, in float64 evaluated left to right,

    theta_i = ((i + 0.5) / 2^k - beta) * 2^k * sqrt(var + eps) / gamma + 2^k * mean

(the paper's formula; an activation exactly halfway between two levels rounds up). gamma == 0
makes the neuron constant: it fires iff 2^k * beta >= i + 0.5. On the chip V is an integer, so
gamma > 0 becomes the integer threshold ceil(theta_i); gamma < 0 negates the channel's weights
and fires iff -V >= -floor(theta_i); a constant neuron has no synapses and threshold 0 (always)
or 1 (never). Thresholds are clamped to [-Vmax, Vmax + 1], Vmax = N x the channel's nonzero
weights, which changes nothing since |V| <= Vmax.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from snnmap.ir import Population, Projection
from snnmap.model import BatchNorm, QuantModel


def float_thresholds(bn: BatchNorm, k: int, B: int) -> tuple[np.ndarray, np.ndarray]:
    """(theta (C, N) float64, sign (C,) int8): replica i fires iff sign * V >= sign * theta.

    A constant neuron (gamma == 0) gets sign +1 and theta -inf (always fires) or +inf (never).
    """
    n = (1 << k) * B
    scale = float(1 << k)
    i = np.arange(n, dtype=np.float64)[None, :]
    gamma = bn.gamma[:, None]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        theta = ((i + 0.5) / scale - bn.beta[:, None]) * scale * bn.std()[:, None] / gamma + scale * bn.mean[:, None]
        const = np.where(scale * bn.beta[:, None] >= i + 0.5, -np.inf, np.inf)  # beta 1e308: inf, as it should
    theta = np.where(gamma == 0, const, theta)
    sign = np.where(bn.gamma < 0, -1, 1).astype(np.int8)
    return theta, sign


def chip_thresholds(bn: BatchNorm, k: int, B: int, vmax: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer chip thresholds (C, N) and per-channel weight sign (+1, -1, or 0 for constant):
    a chip neuron fires iff sign * V >= threshold."""
    theta, sign = float_thresholds(bn, k, B)
    vm = np.asarray(vmax, dtype=np.float64)[:, None]
    t = np.clip(theta, -vm - 1, vm + 1)
    thr = np.where(sign[:, None] > 0, np.ceil(t), -np.floor(t))
    thr = np.clip(thr, -vm, vm + 1).astype(np.int64)
    const = bn.gamma == 0
    thr[const] = np.where(np.isneginf(theta[const]), 0, 1)
    return thr, np.where(const, 0, sign).astype(np.int8)


def convert(model: QuantModel) -> nx.DiGraph:
    """Build the SNN graph: host encoder population, one on-chip population per ternary layer."""
    model.validate()
    n = model.replicas
    g = nx.DiGraph(name=model.name)
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

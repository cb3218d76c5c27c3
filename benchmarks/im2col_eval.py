"""A plain-NumPy evaluation of a QuantModel, the baseline the simulator's speed is measured against.

One im2col and one matmul per layer (Caffe's layout: activations channel-first, (C, N, H, W),
patches (C * kh * kw, N * oh * ow), so each kernel offset is one strided copy), the paper's
thresholds from the batch norm, nothing from snnmap but the model's arrays. Written to be fast
the ordinary way: BLAS in float64 for the encoder, float32 for the ternary layers (their
potentials are integer sums of ternary weights times spike counts, far below 2^24, so float32 is
exact there), BLAS for the classifier. It does not follow the image's fixed summation orders
(encoder taps one by one, classifier feature by feature), so it can disagree with the simulator
only where a sum lands within rounding of a threshold or two logits tie; the benchmark checks
that it agrees on every image.
"""

from __future__ import annotations

import numpy as np


def im2col(a: np.ndarray, kh: int, kw: int, stride: int, pad: int) -> tuple[np.ndarray, int, int]:
    """(C, N, H, W) -> (C * kh * kw, N * oh * ow) patches, rows in (c, ky, kx) order; and oh, ow."""
    a = np.pad(a, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    c, n, h, w = a.shape
    oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    cols = np.empty((c, kh, kw, n, oh, ow), dtype=a.dtype)
    for ky in range(kh):  # one strided copy per kernel offset
        for kx in range(kw):
            cols[:, ky, kx] = a[:, :, ky:ky + stride * (oh - 1) + 1:stride, kx:kx + stride * (ow - 1) + 1:stride]
    return cols.reshape(c * kh * kw, n * oh * ow), oh, ow


def replica_counts(v: np.ndarray, bn, k: int, B: int) -> np.ndarray:
    """How many of the 2^k * B replicas fire for potentials v (C, ...): the paper's thresholds,
    theta_i = ((i + 0.5) / 2^k - beta) * 2^k * sqrt(var + eps) / gamma + 2^k * mean; a replica
    fires iff v >= theta_i (gamma > 0), v <= theta_i (gamma < 0), 2^k beta >= i + 0.5 (gamma = 0)."""
    scale = float(2 ** k)
    std = np.sqrt(bn.var.astype(np.float64) + bn.eps)
    i = np.arange(2 ** k * B)[:, None]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        theta = ((i + 0.5) / scale - bn.beta) * scale * std / bn.gamma + scale * bn.mean  # (N, C)
    sign = np.where(bn.gamma < 0, -1.0, 1.0)
    st = np.where(bn.gamma == 0, np.where(scale * bn.beta >= i + 0.5, -np.inf, np.inf), sign * theta)
    shape = (-1,) + (1,) * (v.ndim - 1)
    sv = v.astype(np.float64) * sign.reshape(shape)  # negation is exact: v <= theta iff -v >= -theta
    counts = np.zeros(v.shape, dtype=np.float32)
    for row in st:
        counts += sv >= row.reshape(shape)
    return counts


def _conv(a: np.ndarray, w: np.ndarray, stride: int, pad: int, dtype) -> np.ndarray:
    """(C, N, H, W) activations, (kh, kw, cin, cout) weights -> (cout, N, oh, ow) sums."""
    kh, kw, cin, cout = w.shape
    cols, oh, ow = im2col(a.astype(dtype), kh, kw, stride, pad)
    wt = w.transpose(3, 2, 0, 1).reshape(cout, -1).astype(dtype)  # rows (c, ky, kx) like the patches
    return (wt @ cols).reshape(cout, a.shape[1], oh, ow)


def evaluate(model, x: np.ndarray, batch: int = 32) -> dict:
    """Predictions and, per layer after the encoder, spikes per image (the sum of its counts).
    Batches of 32 images were the fastest measured (16 to 64 alike, 250 took 2.7x as long)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 3:
        x = x[..., None]
    scale = float(2 ** model.k)
    preds, spikes = [], []
    w_clf = model.classifier.weights.astype(np.float64)
    for s in range(0, len(x), batch):
        a = (x[s:s + batch] * model.input_scale).transpose(3, 0, 1, 2)
        enc = model.encoder
        counts = replica_counts(_conv(a, enc.weights, enc.stride, enc.padding, np.float64) * scale,
                                enc.bn, model.k, model.B)
        per_layer = []
        for layer in model.layers:
            in_shape = counts.shape[2:] + counts.shape[:1]  # (h, w, c)
            kh, kw, stride, pad = layer.geometry(in_shape)
            v = _conv(counts, layer.conv_weights(in_shape), stride, pad, np.float32)  # = 2^k x pre-activation
            counts = replica_counts(v, layer.bn, model.k, model.B)
            per_layer.append(counts.sum(axis=(0, 2, 3), dtype=np.float64))
        feats = counts.transpose(1, 2, 3, 0).reshape(counts.shape[1], -1) / scale  # (h, w, c) order
        logits = feats @ w_clf + model.classifier.bias
        preds.append(np.argmax(logits, axis=1))
        spikes.append(np.stack(per_layer))
    return {"pred": np.concatenate(preds), "layer_spikes": np.concatenate(spikes, axis=1)}

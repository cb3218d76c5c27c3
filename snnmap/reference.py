"""An independent float64 evaluation of the quantized ANN, written without the compiler's code.

It is what every compiled image is checked against: direct convolution by kernel offsets,
batch norm as y = gamma * (x - mean) / sqrt(var + eps) + beta, and round-half-up quantization.
"""

from __future__ import annotations

import numpy as np

from snnmap.model import Layer, QuantModel


def prepare_images(x: np.ndarray, input_shape: tuple[int, int, int]) -> np.ndarray:
    """(N,H,W) or (N,H,W,C) images of any numeric dtype -> float64 (N,H,W,C)."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    return x.astype(np.float64)


def conv_direct(a: np.ndarray, w: np.ndarray, stride: int, pad: int) -> np.ndarray:
    n, h, wd, _ = a.shape
    kh, kw, _, cout = w.shape
    ap = np.pad(a, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, oh, ow, cout))
    wf = w.astype(np.float64)
    for ky in range(kh):
        for kx in range(kw):
            patch = ap[:, ky:ky + stride * (oh - 1) + 1:stride, kx:kx + stride * (ow - 1) + 1:stride, :]
            out += patch @ wf[ky, kx]
    return out


def quantize_counts(y: np.ndarray, k: int, B: int) -> np.ndarray:
    """2^k * round_half_up(clip(y, 0, B) * 2^k) / 2^k, as integer counts 0..2^k*B."""
    v = np.clip(y, 0.0, float(B)) * float(2 ** k)
    f = np.floor(v)
    return (f + (v - f >= 0.5)).astype(np.int64)


def _layer(a: np.ndarray, layer: Layer, k: int, B: int) -> np.ndarray:
    if layer.kind == "conv":
        x = conv_direct(a, layer.weights, layer.stride, layer.padding)
    else:
        x = (a.reshape(a.shape[0], -1) @ layer.weights.astype(np.float64))[:, None, None, :]
    bn = layer.bn
    y = bn.gamma * (x - bn.mean) / np.sqrt(bn.var + bn.eps) + bn.beta
    return quantize_counts(y, k, B)


def evaluate(model: QuantModel, images: np.ndarray, batch: int = 500) -> dict:
    """Counts (2^k * activation) of every layer, logits and predictions."""
    x = prepare_images(images, model.input_shape)
    scale = float(2 ** model.k)
    counts_all: list[list[np.ndarray]] = []
    logits = []
    for s in range(0, len(x), batch):
        a = x[s:s + batch] * model.input_scale
        counts = [_layer(a, model.encoder, model.k, model.B)]
        for layer in model.layers:
            counts.append(_layer(counts[-1] / scale, layer, model.k, model.B))
        feats = counts[-1].reshape(len(a), -1) / scale
        logits.append(feats @ model.classifier.weights + model.classifier.bias)
        counts_all.append(counts)
    logits = np.concatenate(logits) if logits else np.zeros((0, model.classifier.classes))
    layers = [np.concatenate([c[i] for c in counts_all]) for i in range(len(model.layers) + 1)] \
        if counts_all else []
    return {"counts": layers, "logits": logits, "pred": np.argmax(logits, axis=1) if len(logits) else
            np.zeros(0, np.int64)}

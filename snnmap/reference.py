"""An independent float64 evaluation of the quantized ANN, written without the compiler's code.

Every compiled image is checked against it. Its arithmetic is the definition (docs/model-format.md):
convolutions sum their taps one by one in (ky, kx, ci) order starting from 0; a layer's potential
is V = 2^k times its pre-activation; replica i of a neuron fires iff V >= theta_i (gamma > 0) or
V <= theta_i (gamma < 0), with theta_i = ((i + 0.5) / 2^k - beta) * 2^k * sqrt(var + eps) / gamma
+ 2^k * mean evaluated left to right in float64; for gamma == 0 iff 2^k * beta >= i + 0.5; the
activation is the count of replicas that fire over 2^k (halves round up, clipping at B is
automatic); logits are the bias plus the features times the weights, added feature by feature.
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


def conv_taps(a: np.ndarray, w: np.ndarray, stride: int, pad: int, exact: bool = False) -> np.ndarray:
    """Convolution summing taps one at a time in (ky, kx, ci) order; exact=True (integer-valued
    sums, the ternary layers) lets each kernel offset sum its channels at once, in any order."""
    n, h, wd, cin = a.shape
    kh, kw, _, cout = w.shape
    ap = np.pad(a, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, oh, ow, cout))
    wf = w.astype(np.float64)
    for ky in range(kh):
        for kx in range(kw):
            patch = ap[:, ky:ky + stride * (oh - 1) + 1:stride, kx:kx + stride * (ow - 1) + 1:stride, :]
            if exact:
                out += patch @ wf[ky, kx]
                continue
            for ci in range(cin):
                out += patch[..., ci:ci + 1] * wf[ky, kx, ci]
    return out


def replica_counts(v: np.ndarray, layer: Layer, k: int, B: int) -> np.ndarray:
    """Number of replicas (0..2^k*B) that fire for potentials v (..., C)."""
    bn = layer.bn
    scale = float(2 ** k)
    counts = np.zeros(v.shape, dtype=np.int64)
    std = np.sqrt(bn.var.astype(np.float64) + bn.eps)
    for i in range(2 ** k * B):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            theta = ((i + 0.5) / scale - bn.beta) * scale * std / bn.gamma + scale * bn.mean
        fires = np.where(bn.gamma > 0, v >= theta, v <= theta)
        fires = np.where(bn.gamma == 0, scale * bn.beta >= i + 0.5, fires)
        counts += fires
    return counts


def quantize_counts(y: np.ndarray, k: int, B: int) -> np.ndarray:
    """The ANN's own quantizer, 2^k * round_half_up(clip(y, 0, B) * 2^k) / 2^k, as integer counts;
    equal to replica_counts except where float64 rounding separates the two formulas."""
    v = np.clip(y, 0.0, float(B)) * float(2 ** k)
    f = np.floor(v)
    return (f + (v - f >= 0.5)).astype(np.int64)


def _layer(a: np.ndarray, layer: Layer, k: int, B: int, exact: bool = False) -> np.ndarray:
    if layer.kind == "conv":
        x = conv_taps(a, layer.weights, layer.stride, layer.padding, exact)
    else:
        x = (a.reshape(a.shape[0], -1) @ layer.weights.astype(np.float64))[:, None, None, :]
    return replica_counts(x * float(2 ** k), layer, k, B)


def evaluate(model: QuantModel, images: np.ndarray, batch: int = 500) -> dict:
    """Counts (2^k * activation) of every layer, logits and predictions."""
    x = prepare_images(images, model.input_shape)
    scale = float(2 ** model.k)
    counts_all: list[list[np.ndarray]] = []
    logits = []
    w, b = model.classifier.weights.astype(np.float64), model.classifier.bias.astype(np.float64)
    for s in range(0, len(x), batch):
        a = x[s:s + batch] * model.input_scale
        counts = [_layer(a, model.encoder, model.k, model.B)]
        for layer in model.layers:
            # ternary weights times levels n/2^k: every partial sum is exact in float64
            counts.append(_layer(counts[-1] / scale, layer, model.k, model.B, exact=True))
        feats = counts[-1].reshape(len(a), -1) / scale
        out = np.broadcast_to(b, (len(a), len(b))).copy()
        for f in range(feats.shape[1]):
            out += feats[:, f:f + 1] * w[f]
        logits.append(out)
        counts_all.append(counts)
    logits = np.concatenate(logits) if logits else np.zeros((0, model.classifier.classes))
    layers = [np.concatenate([c[i] for c in counts_all]) for i in range(len(model.layers) + 1)] \
        if counts_all else []
    return {"counts": layers, "logits": logits, "pred": np.argmax(logits, axis=1) if len(logits) else
            np.zeros(0, np.int64)}

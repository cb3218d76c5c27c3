"""The quantized network snnmap compiles: host encoder, ternary on-chip layers, host classifier.

Activations after every batch norm are quantized to 2^k*B+1 levels, q = round(clip(y,0,B)*2^k)/2^k,
halfway rounding up. Tensors are channels-last: images (H, W, C), kernels (kh, kw, c_in, c_out),
a dense layer's input is the previous output flattened in (h, w, c) order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from snnmap.errors import SnnmapError

BN_EPS = 1e-5


@dataclass(frozen=True)
class BatchNorm:
    beta: np.ndarray
    gamma: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    eps: float = BN_EPS

    def __post_init__(self):
        # float64 throughout: a float32 array from an API user would otherwise make sqrt(var + eps)
        # round differently here than in the image, which stores float64
        for part in ("beta", "gamma", "mean", "var"):
            object.__setattr__(self, part, np.asarray(getattr(self, part), dtype=np.float64))
        object.__setattr__(self, "eps", float(self.eps))

    @property
    def channels(self) -> int:
        return int(self.beta.shape[0])

    def std(self) -> np.ndarray:
        """sqrt(var + eps) in float64, the one place this is computed."""
        return np.sqrt(self.var.astype(np.float64) + self.eps)


@dataclass(frozen=True)
class Layer:
    """A convolution (kind 'conv') or a dense layer (kind 'dense', weights (in, out)) with batch norm."""

    name: str
    kind: str
    weights: np.ndarray
    bn: BatchNorm
    stride: int = 1
    padding: int = 0

    @property
    def out_channels(self) -> int:
        return int(self.weights.shape[-1])

    def conv_weights(self, in_shape: tuple[int, int, int]) -> np.ndarray:
        """Weights as a (kh, kw, c_in, c_out) kernel; a dense layer is a conv over its whole input."""
        if self.kind == "conv":
            return self.weights
        return self.weights.reshape(*in_shape, self.out_channels)

    def geometry(self, in_shape: tuple[int, int, int]) -> tuple[int, int, int, int]:
        """(kh, kw, stride, padding) of the equivalent convolution."""
        if self.kind == "conv":
            return (int(self.weights.shape[0]), int(self.weights.shape[1]), self.stride, self.padding)
        return (in_shape[0], in_shape[1], 1, 0)

    def out_shape(self, in_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        kh, kw, s, p = self.geometry(in_shape)
        oh = (in_shape[0] + 2 * p - kh) // s + 1
        ow = (in_shape[1] + 2 * p - kw) // s + 1
        return (oh, ow, self.out_channels)


@dataclass(frozen=True)
class Classifier:
    weights: np.ndarray  # (features, classes), full precision
    bias: np.ndarray  # (classes,)

    @property
    def classes(self) -> int:
        return int(self.weights.shape[1])


@dataclass(frozen=True)
class QuantModel:
    input_shape: tuple[int, int, int]
    k: int
    B: int
    input_scale: float
    encoder: Layer
    layers: tuple[Layer, ...]
    classifier: Classifier
    name: str = "model"
    meta: dict = field(default_factory=dict)

    @property
    def levels(self) -> int:
        return 2 ** self.k * self.B + 1

    @property
    def replicas(self) -> int:
        """N = 2^k * B spiking neurons per ANN neuron."""
        return 2 ** self.k * self.B

    def shapes(self) -> list[tuple[int, int, int]]:
        """Output shape of the encoder, then of every on-chip layer."""
        shapes = [self.encoder.out_shape(self.input_shape)]
        for layer in self.layers:
            shapes.append(layer.out_shape(shapes[-1]))
        return shapes

    def validate(self) -> "QuantModel":
        """Check every shape and value a later stage relies on; raise a located SnnmapError."""
        where = f"model {self.name!r}"
        if not (isinstance(self.k, int) and 0 <= self.k <= 8):
            raise SnnmapError(f"k must be an integer in 0..8, got {self.k!r}", where=where)
        if not (isinstance(self.B, int) and 1 <= self.B <= 256):
            raise SnnmapError(f"B must be an integer in 1..256, got {self.B!r}", where=where)
        if not (np.isfinite(self.input_scale) and self.input_scale > 0):
            raise SnnmapError(f"input scale must be a positive finite number, got {self.input_scale!r}",
                              where=where)
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise SnnmapError(f"input shape must be (H, W, C) of positive sizes, got {self.input_shape}",
                              where=where)
        if not self.layers:
            raise SnnmapError("the network has no on-chip (ternary) layer", where=where)
        names = [self.encoder.name] + [lay.name for lay in self.layers]
        if len(set(names)) != len(names):
            raise SnnmapError(f"layer names are not unique: {names}", where=where)
        shape = self.input_shape
        _check_size(shape, "input", where)
        for i, layer in enumerate((self.encoder, *self.layers)):
            shape = _check_layer(layer, shape, ternary=i > 0, where=f"{where}, layer {layer.name!r}")
            _check_size(shape, "output", f"{where}, layer {layer.name!r}")
            _check_thresholds(layer, self.k, self.B, f"{where}, layer {layer.name!r}")
        feats = int(np.prod(shape))
        cw, cb = self.classifier.weights, self.classifier.bias
        cwhere = f"{where}, classifier"
        if cw.ndim != 2 or cw.shape[0] != feats or cw.shape[1] < 1:
            raise SnnmapError(f"weights have shape {cw.shape}, expected ({feats}, classes) for the "
                              f"flattened {shape} output of {self.layers[-1].name!r}", where=cwhere)
        if cb.shape != (cw.shape[1],):
            raise SnnmapError(f"bias has shape {cb.shape}, expected ({cw.shape[1]},)", where=cwhere)
        _check_finite(cw, "weights", cwhere)
        _check_finite(cb, "bias", cwhere)
        return self


# values in one feature map: VGG on 224 x 224 images has 3.2e6. A 5 KB model file declaring a
# 1M x 1M input with 1 x 1 kernels asked the compiler for 2^40 neurons.
MAX_MAP_VALUES = 1 << 26


def _check_size(shape, what: str, where: str) -> None:
    if math.prod(int(v) for v in shape) > MAX_MAP_VALUES:
        raise SnnmapError(f"{what} {'x'.join(map(str, shape))} holds over {MAX_MAP_VALUES} values", where=where)


def _check_thresholds(layer: "Layer", k: int, B: int, where: str) -> None:
    """Finite batch norms can still overflow the paper's threshold formula (mean and beta of 1e308:
    inf - inf); a NaN threshold fires never and became int64's minimum on the chip."""
    from snnmap.convert import float_thresholds

    theta, _ = float_thresholds(layer.bn, k, B)
    if np.isnan(theta).any():
        c, r = (int(v) for v in np.argwhere(np.isnan(theta))[0])
        raise SnnmapError(f"batch norm at channel {c} gives replica {r} no threshold (the formula overflows: "
                          f"mean {layer.bn.mean[c]:.3g}, beta {layer.bn.beta[c]:.3g}, var {layer.bn.var[c]:.3g}, "
                          f"gamma {layer.bn.gamma[c]:.3g})", where=where)


def _check_finite(a: np.ndarray, what: str, where: str) -> None:
    bad = ~np.isfinite(a)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise SnnmapError(f"{what} hold a non-finite value {a[idx]} at {idx}", where=where)


def _check_layer(layer: Layer, in_shape, *, ternary: bool, where: str) -> tuple[int, int, int]:
    w = layer.weights
    if layer.kind not in ("conv", "dense"):
        raise SnnmapError(f"unknown layer kind {layer.kind!r} (conv or dense)", where=where)
    if layer.kind == "conv":
        if w.ndim != 4 or w.shape[2] != in_shape[2] or min(w.shape) < 1:
            raise SnnmapError(f"kernel has shape {w.shape}, expected (kh, kw, {in_shape[2]}, c_out)",
                              where=where)
        if not (1 <= layer.stride <= 1 << 16 and 0 <= layer.padding <= 1 << 16):
            raise SnnmapError(f"stride {layer.stride} / padding {layer.padding} out of range", where=where)
        if layer.padding >= min(w.shape[0], w.shape[1]):
            raise SnnmapError(f"padding {layer.padding} is not smaller than the kernel "
                              f"{w.shape[0]}x{w.shape[1]}", where=where)
    else:
        n_in = int(np.prod(in_shape))
        if w.ndim != 2 or w.shape[0] != n_in or w.shape[1] < 1:
            raise SnnmapError(f"weights have shape {w.shape}, expected ({n_in}, out) for input "
                              f"{in_shape}", where=where)
    out = layer.out_shape(in_shape)
    if out[0] < 1 or out[1] < 1:
        raise SnnmapError(f"input {in_shape[0]}x{in_shape[1]} is too small for this layer "
                          f"(output would be {out[0]}x{out[1]})", where=where)
    _check_finite(w, "weights", where)
    if ternary:
        bad = ~np.isin(w, (-1, 0, 1))
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise SnnmapError(f"weight {w[idx]} at {idx} is not ternary (-1, 0 or +1)", where=where)
    bn = layer.bn
    for part in ("beta", "gamma", "mean", "var"):
        arr = getattr(bn, part)
        if arr.shape != (layer.out_channels,):
            raise SnnmapError(f"batch norm {part} has shape {arr.shape}, expected "
                              f"({layer.out_channels},)", where=where)
        _check_finite(arr, f"batch norm {part}", where)
    if not (bn.var + bn.eps > 0).all():
        c = int(np.argmax(~(bn.var + bn.eps > 0)))
        raise SnnmapError(f"batch norm variance {bn.var[c]} at channel {c} makes var + eps <= 0",
                          where=where)
    return out

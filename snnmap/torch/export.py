"""A trained SGNet as snnmap's QuantModel: the same parameters in float64, channels-last."""

from __future__ import annotations

import numpy as np
from torch import nn

from snnmap.model import BatchNorm, Classifier, Layer, QuantModel
from snnmap.torch.nets import Conv, SGNet


def _bn(bn: nn.Module) -> BatchNorm:
    return BatchNorm(beta=bn.bias.detach().double().numpy().copy(),
                     gamma=bn.weight.detach().double().numpy().copy(),
                     mean=bn.running_mean.detach().double().numpy().copy(),
                     var=bn.running_var.detach().double().numpy().copy(), eps=float(bn.eps))


def dense_rows(w: np.ndarray, in_shape: tuple[int, ...]) -> np.ndarray:
    """torch (out, in) with `in` flattened as (c, h, w) -> snnmap (in, out) flattened as (h, w, c)."""
    if len(in_shape) == 3:
        c, h, wd = in_shape
        return np.ascontiguousarray(w.reshape(-1, c, h, wd).transpose(2, 3, 1, 0).reshape(h * wd * c, -1))
    return np.ascontiguousarray(w.T)


def to_quant_model(net: SGNet, meta: dict | None = None) -> QuantModel:
    """The network as trained: ternary values from the float32 latent weights (what eval mode uses)."""
    layers = []
    for i, (st, lin, bn) in enumerate(zip(net.stages, net.linears, net.bns)):
        w = (lin.ternary_weight() if i > 0 else lin.weight.detach()).double().numpy()
        if isinstance(st, Conv):
            w = np.ascontiguousarray(w.transpose(2, 3, 1, 0))  # (cout, cin, kh, kw) -> (kh, kw, cin, cout)
            kind, name = "conv", f"conv{i + 1}"
        else:
            w = dense_rows(w, net.shapes_in[i])
            kind, name = "dense", f"fc{i + 1}"
        if i > 0:
            w = w.astype(np.int8)
        layers.append(Layer(name="encoder" if i == 0 else name, kind=kind, weights=w, bn=_bn(bn),
                            stride=getattr(st, "stride", 1), padding=getattr(st, "padding", 0)))
    fc = net.fc.weight.detach().double().numpy()
    clf = Classifier(weights=dense_rows(fc, net.shapes_in[-1]), bias=np.zeros(fc.shape[0]))
    return QuantModel(input_shape=net.input_shape, k=net.k, B=net.B, input_scale=net.input_scale,
                      encoder=layers[0], layers=tuple(layers[1:]), classifier=clf, name=net.name,
                      meta=dict(meta or {})).validate()

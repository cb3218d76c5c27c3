"""Export a trained SGNet to ONNX with explicit ternary weights and activation quantizers.

A plain torch.onnx.export of the training module would trace the ternarization arithmetic and, in
eval mode, fold batch norm into the convolutions; neither is readable as scatter-and-gather. This
export writes a view with the ternary values as the weights, batch norm kept separate, and each
quantizer as a QONNX `Quant` node (rounding_mode HALF_UP, the paper's) or, with `qdq=True`, as
standard Clip + QuantizeLinear + DequantizeLinear (which round ties to even).
"""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path

import torch
from torch import nn

from snnmap.torch.nets import SGNet
from snnmap.torch.quant import round_half_up

QONNX_DOMAIN = "qonnx.custom_op.general"


class _QuantFn(torch.autograd.Function):
    """Forward: the training quantizer's values; symbolic: the ONNX nodes that describe it."""

    @staticmethod
    def forward(ctx, y, k: int, B: int, qdq: bool):
        s = float(2 ** k)
        return round_half_up(torch.clamp(y, 0.0, float(B)) * s) / s

    @staticmethod
    def symbolic(g, y, k: int, B: int, qdq: bool):
        step = 1.0 / 2 ** k
        top = 2 ** k * B
        if qdq:
            lo = g.op("Constant", value_t=torch.tensor(0.0))
            hi = g.op("Constant", value_t=torch.tensor(float(B)))
            c = g.op("Clip", y, lo, hi)
            sc = g.op("Constant", value_t=torch.tensor(step))
            zp = g.op("Constant", value_t=torch.tensor(0, dtype=torch.uint8))
            return g.op("DequantizeLinear", g.op("QuantizeLinear", c, sc, zp), sc, zp)
        bits = max(1, math.ceil(math.log2(top + 1)))
        if 2 ** bits - 1 != top:  # the quantizer's own range does not end at B: clip first
            y = g.op("Clip", y, g.op("Constant", value_t=torch.tensor(0.0)),
                     g.op("Constant", value_t=torch.tensor(float(B))))
        out = g.op(f"{QONNX_DOMAIN}::Quant", y, g.op("Constant", value_t=torch.tensor(step)),
                    g.op("Constant", value_t=torch.tensor(0.0)), g.op("Constant", value_t=torch.tensor(float(bits))),
                    rounding_mode_s="HALF_UP", signed_i=0, narrow_i=0)
        out.setType(y.type())  # same shape and type as its input (torch cannot infer a custom op's)
        return out


class _View(nn.Module):
    def __init__(self, net: SGNet, qdq: bool):
        super().__init__()
        self.k, self.B, self.qdq, self.input_scale = net.k, net.B, qdq, net.input_scale
        self.linears = nn.ModuleList()
        for i, lin in enumerate(net.linears):
            plain = copy.deepcopy(lin)
            if i > 0:
                plain.weight = nn.Parameter(lin.ternary_weight().clone())
                plain.__class__ = nn.Conv2d if isinstance(lin, nn.Conv2d) else nn.Linear
            self.linears.append(plain)
        self.bns = copy.deepcopy(net.bns)
        self.fc = copy.deepcopy(net.fc)

    def forward(self, x):
        a = x * self.input_scale
        for lin, bn in zip(self.linears, self.bns):
            if isinstance(lin, nn.Linear) and a.dim() > 2:
                a = torch.flatten(a, 1)
            a = _QuantFn.apply(bn(lin(a)), self.k, self.B, self.qdq)
        return self.fc(torch.flatten(a, 1))


def export_onnx(net: SGNet, path: str | Path, qdq: bool = False, opset: int = 17) -> None:
    """Write the eval-mode network as ONNX (raw pixels in, logits out; batch size free)."""
    view = _View(net, qdq).eval()
    h, w, c = net.input_shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(view, (torch.zeros(1, c, h, w),), str(path), dynamo=False,
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=True,
                          opset_version=opset, input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                          custom_opsets=None if qdq else {QONNX_DOMAIN: 1})

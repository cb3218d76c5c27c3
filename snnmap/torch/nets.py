"""Scatter-and-gather networks in PyTorch: encoder, ternary on-chip stages, classifier.

One module class covers the paper's LeNet and VGG-Net and any other stack of convolutions and dense
layers; its structure maps one to one onto snnmap's QuantModel, so export is a copy, not a search.
Inputs are raw pixels in NCHW; the network multiplies them by input_scale itself, as the chip's
host does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from snnmap.errors import SnnmapError
from snnmap.model import BN_EPS
from snnmap.torch.quant import ActQuant, TernaryConv2d, TernaryLinear, round_half_up

LENET_ARCH = "16C5p2-16C5-16C2s2-32C5-32C2s2-256C4-10"
VGG_ARCH = "64C3p1-64C3p1-64C3p1-64C2s2-128C3p1-128C3p1-128C2s2-256C3p1-256C3p1-256C2s2-512C3p1-512C3-{classes}"


@dataclass(frozen=True)
class Conv:
    channels: int
    kernel: int
    stride: int = 1
    padding: int = 0


@dataclass(frozen=True)
class Dense:
    features: int


_TOKEN = re.compile(r"(\d+)C(\d+)(?:s(\d+))?(?:p(\d+))?|(\d+)F")


def parse_stages(arch: str) -> tuple[list[Conv | Dense], int]:
    """'16C5p2-16C5-...-256F-10': convolutions <C>C<K>[s<stride>][p<pad>] and dense layers <N>F;
    the last token is the classifier width. The first stage is the encoder."""
    tokens = arch.strip().split("-")
    stages: list[Conv | Dense] = []
    for i, tok in enumerate(tokens[:-1]):
        m = _TOKEN.fullmatch(tok)
        if not m:
            raise SnnmapError(f"token {i + 1} {tok!r} is neither <C>C<K>[s<S>][p<P>] nor <N>F",
                              where=f"arch {arch!r}")
        if m.group(5):
            stages.append(Dense(int(m.group(5))))
        else:
            c, kern, s, p = int(m.group(1)), int(m.group(2)), int(m.group(3) or 1), int(m.group(4) or 0)
            if min(c, kern, s) < 1 or p >= kern:
                raise SnnmapError(f"token {i + 1} {tok!r}: sizes must be >= 1 and padding < kernel",
                                  where=f"arch {arch!r}")
            stages.append(Conv(c, kern, s, p))
    if len(stages) < 2 or not tokens[-1].isdigit() or int(tokens[-1]) < 1:
        raise SnnmapError("needs an encoder, at least one on-chip layer and a classifier width",
                          where=f"arch {arch!r}")
    return stages, int(tokens[-1])


class SGNet(nn.Module):
    """Encoder (float conv/dense + BN + quantizer), ternary stages (+ BN + quantizer), float classifier."""

    def __init__(self, arch: str, input_shape: tuple[int, int, int], k: int, B: int,
                 input_scale: float = 1 / 256, name: str = "net"):
        super().__init__()
        stages, classes = parse_stages(arch)
        self.arch, self.k, self.B, self.input_scale, self.name = arch, int(k), int(B), float(input_scale), name
        self.input_shape = tuple(int(v) for v in input_shape)  # (H, W, C), as QuantModel has it
        self.stages = stages
        self.linears = nn.ModuleList()
        self.bns = nn.ModuleList()
        shape = (self.input_shape[2], self.input_shape[0], self.input_shape[1])  # (C, H, W)
        self.shapes_in = []
        for i, st in enumerate(stages):
            self.shapes_in.append(shape)
            if isinstance(st, Conv):
                if len(shape) != 3:
                    raise ValueError(f"stage {i}: a convolution after a dense layer")
                cls = nn.Conv2d if i == 0 else TernaryConv2d
                kw = {"bias": False} if i == 0 else {}
                self.linears.append(cls(shape[0], st.channels, st.kernel, stride=st.stride,
                                        padding=st.padding, **kw))
                h = (shape[1] + 2 * st.padding - st.kernel) // st.stride + 1
                w = (shape[2] + 2 * st.padding - st.kernel) // st.stride + 1
                shape = (st.channels, h, w)
                self.bns.append(nn.BatchNorm2d(st.channels, eps=BN_EPS))
            else:
                fin = int(np.prod(shape))
                self.linears.append(nn.Linear(fin, st.features, bias=False) if i == 0
                                    else TernaryLinear(fin, st.features))
                shape = (st.features,)
                self.bns.append(nn.BatchNorm1d(st.features, eps=BN_EPS))
        self.shapes_in.append(shape)
        self.q = ActQuant(k, B)
        self.fc = nn.Linear(int(np.prod(shape)), classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x * self.input_scale
        for lin, bn in zip(self.linears, self.bns):
            if isinstance(lin, nn.Linear) and a.dim() > 2:
                a = a.flatten(1)
            a = self.q(bn(lin(a)))
        return self.fc(a.flatten(1))


def lenet(k: int = 1, B: int = 2) -> SGNet:
    """LeNet for MNIST 28x28x1: 16C5 (SAME, encoder) - 16C5 - 16C2s2 - 32C5 - 32C2s2 - 256C4 - FC10."""
    return SGNet(LENET_ARCH, (28, 28, 1), k, B, 1 / 256, name=f"lenet-mnist-k{k}B{B}")


def vgg(k: int = 1, B: int = 2, classes: int = 10) -> SGNet:
    """VGG-Net for 24x24x3 CIFAR crops (the paper's, 150,272 ANN neurons on chip)."""
    return SGNet(VGG_ARCH.format(classes=classes), (24, 24, 3), k, B, 1 / 256,
                 name=f"vgg-cifar{classes}-k{k}B{B}")


def _bn64(bn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    shape = (1, -1) + (1,) * (x.dim() - 2)
    g, b, m, v = (t.detach().double().view(shape) for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var))
    return g * (x - m) / torch.sqrt(v + bn.eps) + b


def predict_float64(net: SGNet, x: np.ndarray, batch: int = 500) -> np.ndarray:
    """Eval-mode predictions in float64 with the weights the network uses (ternary where trained so)
    and the batch norm written as snnmap.reference writes it; x raw pixels, NCHW or NHW."""
    F = nn.functional
    scale = float(2 ** net.k)
    ws = [lin.ternary_weight().double() if hasattr(lin, "ternary_weight") else lin.weight.detach().double()
          for lin in net.linears]
    preds = []
    with torch.no_grad():
        for s in range(0, len(x), batch):
            a = torch.from_numpy(np.asarray(x[s:s + batch], dtype=np.float64))
            if a.dim() == 3:
                a = a[:, None]
            a = a * net.input_scale
            for lin, bn, w in zip(net.linears, net.bns, ws):
                if isinstance(lin, nn.Conv2d):
                    z = F.conv2d(a, w, stride=lin.stride, padding=lin.padding)
                else:
                    z = a.flatten(1) @ w.T
                y = torch.clamp(_bn64(bn, z), 0.0, float(net.B))
                a = round_half_up(y * scale) / scale
            preds.append((a.flatten(1) @ net.fc.weight.detach().double().T).argmax(1).numpy())
    return np.concatenate(preds) if preds else np.zeros(0, np.int64)


def predict(net: nn.Module, x: np.ndarray, batch: int = 1000) -> np.ndarray:
    """Plain eval-mode PyTorch predictions (float32), x raw pixels NCHW or NHW."""
    net.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(x), batch):
            a = torch.from_numpy(np.asarray(x[s:s + batch], dtype=np.float32))
            out.append(net(a[:, None] if a.dim() == 3 else a).argmax(1).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.int64)

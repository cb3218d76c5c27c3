"""The paper's quantizers as PyTorch pieces, with straight-through estimators.

The forward values are exactly the ones snnmap's reference computes (halves round up, ternary
threshold 0.7 * mean|W| per layer, no scale factor), so that an exported model predicts what the
trained one predicts.
"""

from __future__ import annotations

import torch
from torch import nn

TERNARY_DELTA = 0.7


def round_half_up(v: torch.Tensor) -> torch.Tensor:
    """floor(v + 1/2) without the addition's rounding: the reference's median quantizer."""
    f = torch.floor(v)
    return f + (v - f >= 0.5).to(v.dtype)


class ActQuant(nn.Module):
    """q = round_half_up(clip(y, 0, B) * 2^k) / 2^k; the gradient passes on [0, B] (torch.clamp's)."""

    def __init__(self, k: int, B: int):
        super().__init__()
        self.k, self.B = int(k), int(B)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        yc = torch.clamp(y, 0.0, float(self.B))  # zero gradient outside [0, B]
        scale = float(2 ** self.k)
        q = round_half_up(yc * scale) / scale
        return yc + (q - yc).detach()

    def extra_repr(self) -> str:
        return f"k={self.k}, B={self.B}"


def ternary_values(w: torch.Tensor, delta: float = TERNARY_DELTA) -> torch.Tensor:
    """sign(W) * (|W| > delta * mean|W|), in W's own dtype: the same values in training and export."""
    with torch.no_grad():
        a = w.abs()
        return torch.sign(w) * (a > delta * a.mean()).to(w.dtype)


def ternarize(w: torch.Tensor, delta: float = TERNARY_DELTA) -> torch.Tensor:
    """Ternary values forward, straight-through gradient to the latent float weights."""
    return w + (ternary_values(w, delta) - w).detach()


class TernaryConv2d(nn.Conv2d):
    """A bias-free convolution whose forward uses ternary weights (batch norm absorbs the scale)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0):
        super().__init__(cin, cout, kernel, stride=stride, padding=padding, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, ternarize(self.weight), None)

    def ternary_weight(self) -> torch.Tensor:
        return ternary_values(self.weight.detach())


class TernaryLinear(nn.Linear):
    """A bias-free dense layer with ternary weights, for on-chip fully connected layers."""

    def __init__(self, fin: int, fout: int):
        super().__init__(fin, fout, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, ternarize(self.weight))

    def ternary_weight(self) -> torch.Tensor:
        return ternary_values(self.weight.detach())

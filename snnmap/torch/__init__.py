"""PyTorch side of snnmap (optional extra `snnmap[torch]`): the paper's quantizers with
straight-through estimators, the LeNet and VGG-Net builders, training helpers, and export to
the native format and to ONNX. Only this package imports torch."""

from snnmap.torch.export import to_quant_model
from snnmap.torch.nets import SGNet, lenet, predict, predict_float64, vgg
from snnmap.torch.quant import ActQuant, TernaryConv2d, TernaryLinear, round_half_up, ternarize, ternary_values

__all__ = ["ActQuant", "SGNet", "TernaryConv2d", "TernaryLinear", "lenet", "predict", "predict_float64",
           "round_half_up", "ternarize", "ternary_values", "to_quant_model", "vgg"]

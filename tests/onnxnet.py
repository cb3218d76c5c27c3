"""Hand-built ONNX / QONNX graphs for the importer tests, and an independent oracle: onnx's own
reference evaluator with a numpy QONNX `Quant` written from the QONNX spec (not snnmap's code)."""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

QONNX = "qonnx.custom_op.general"


class Quant(OpRun):
    """QONNX Quant: (round(clip(x / scale + zeropt, min, max)) - zeropt) * scale."""

    op_domain = QONNX

    def _run(self, x, scale, zeropt, bitwidth, narrow=0, rounding_mode="ROUND", signed=1):
        b = int(bitwidth)
        lo, hi = (-(2 ** (b - 1)) + narrow, 2 ** (b - 1) - 1) if signed else (0, 2 ** b - 1 - narrow)
        v = np.clip(x / scale + zeropt, lo, hi)
        mode = rounding_mode.decode() if isinstance(rounding_mode, bytes) else rounding_mode
        r = {"HALF_UP": lambda t: np.sign(t) * np.floor(np.abs(t) + 0.5), "ROUND": np.round,
             "FLOOR": np.floor}[mode](v)
        return (((r - zeropt) * scale).astype(x.dtype),)


def run_graph(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """Logits of the graph for NCHW input x, by onnx.reference."""
    sess = ReferenceEvaluator(model, new_ops=[Quant])
    return sess.run(None, {model.graph.input[0].name: x})[0]


class Builder:
    """A chain graph assembled node by node; every name is unique and readable."""

    def __init__(self, chw: tuple[int, int, int], dtype=np.float64):
        self.chw, self.dtype = chw, dtype
        self.nodes, self.inits = [], []
        self.cur = "image"
        self.n = 0

    def const(self, value, name: str, dtype=None) -> str:
        arr = np.asarray(value, dtype=dtype or self.dtype)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def op(self, op_type: str, *inputs: str, name: str | None = None, domain: str = "", **attrs) -> str:
        self.n += 1
        name = name or f"{op_type.lower()}_{self.n}"
        out = f"{name}_out"
        self.nodes.append(helper.make_node(op_type, [self.cur, *inputs], [out], name=name, domain=domain,
                                           **attrs))
        self.cur = out
        return name

    def scale(self, s: float) -> None:
        self.op("Mul", self.const(s, "input_scale"))

    def conv(self, w, stride=1, pad=0, bias=None, name=None) -> str:
        name = name or f"conv_{self.n + 1}"
        ins = [self.const(w, f"{name}.w")]
        if bias is not None:
            ins.append(self.const(bias, f"{name}.b"))
        return self.op("Conv", *ins, name=name, strides=[stride, stride], pads=[pad] * 4,
                       kernel_shape=list(np.shape(w)[2:]))

    def gemm(self, w, bias=None, name=None) -> str:
        """w as torch has it: (out, in), so transB=1."""
        name = name or f"gemm_{self.n + 1}"
        ins = [self.const(w, f"{name}.w")]
        if bias is not None:
            ins.append(self.const(bias, f"{name}.b"))
        return self.op("Gemm", *ins, name=name, transB=1)

    def bn(self, gamma, beta, mean, var, eps=1e-5, name=None) -> str:
        name = name or f"bn_{self.n + 1}"
        return self.op("BatchNormalization", self.const(gamma, f"{name}.g"), self.const(beta, f"{name}.b"),
                       self.const(mean, f"{name}.m"), self.const(var, f"{name}.v"), name=name, epsilon=eps)

    def quant(self, k: int, B: int, style: str = "clip", rounding: str = "HALF_UP", name=None) -> str:
        """Activation quantizer with levels 0, 1/2^k, ..., B: Clip(0, B) then an unsigned QONNX
        Quant wide enough ('clip'), or Relu then a Quant whose own range ends at B ('relu', only
        when 2^k*B + 1 is a power of two)."""
        top = 2 ** k * B
        bits = max(1, math.ceil(math.log2(top + 1)))
        if style == "relu":
            assert 2 ** bits - 1 == top
            self.op("Relu")
        else:
            self.op("Clip", self.const(0.0, f"clip{self.n}.lo"), self.const(float(B), f"clip{self.n}.hi"))
        name = name or f"quant_{self.n + 1}"
        return self.op("Quant", self.const(2.0 ** -k, f"{name}.s"), self.const(0.0, f"{name}.z"),
                       self.const(float(bits), f"{name}.bw"), name=name, domain=QONNX,
                       rounding_mode=rounding, signed=0, narrow=0)

    def qdq(self, k: int, B: int, name=None) -> str:
        self.op("Clip", self.const(0.0, f"clip{self.n}.lo"), self.const(float(B), f"clip{self.n}.hi"))
        name = name or f"ql_{self.n + 1}"
        s = self.const(2.0 ** -k, f"{name}.s", np.float32)
        z = self.const(0, f"{name}.z", np.uint8)
        self.op("QuantizeLinear", s, z, name=name)
        return self.op("DequantizeLinear", s, z, name=f"dq_{self.n + 1}")

    def flatten(self) -> str:
        return self.op("Flatten", axis=1)

    def model(self, n_out: int | None = None) -> onnx.ModelProto:
        t = TensorProto.DOUBLE if self.dtype == np.float64 else TensorProto.FLOAT
        c, h, w = self.chw
        g = helper.make_graph(self.nodes, "test-net",
                              [helper.make_tensor_value_info("image", t, ["batch", c, h, w])],
                              [helper.make_tensor_value_info(self.cur, t, ["batch", n_out])],
                              initializer=self.inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 19), helper.make_opsetid(QONNX, 1)])


def small_net(k=1, B=2, rng=None, dtype=np.float64, quant="clip", hooks=None) -> onnx.ModelProto:
    """Encoder 4C3p1 - ternary 4C2s2 - ternary 6F (dense) - classifier 3, on 1x6x6 images."""
    rng = rng or np.random.default_rng(0)
    hooks = hooks or {}
    b = Builder((1, 6, 6), dtype)
    b.scale(1 / 256)

    def act():
        return b.qdq(k, B) if quant == "qdq" else b.quant(k, B, quant)

    def bn(c):
        b.bn(rng.uniform(0.5, 1.5, c), rng.uniform(0, B, c), rng.normal(0, 1, c), rng.uniform(0.5, 4, c))

    b.conv(rng.normal(0, 0.5, (4, 1, 3, 3)), pad=1, name="encoder")
    bn(4)
    act()
    hooks.get("after_encoder", lambda b: None)(b)
    b.conv(hooks.get("conv_w", rng.integers(-1, 2, (4, 4, 2, 2))), stride=2, bias=hooks.get("conv_bias"),
           name="tconv")
    bn(4)
    act()
    b.flatten()
    b.gemm(rng.integers(-1, 2, (6, 36)), name="tdense")
    bn(6)
    act()
    b.gemm(rng.normal(0, 1, (3, 6)), bias=rng.normal(0, 1, 3), name="classifier")
    return b.model(3)

"""ONNX / QONNX reader: a chain of Conv / Gemm / MatMul, BatchNormalization and activation
quantizers becomes a QuantModel, or one error naming the node that does not fit.

The graph must be the scatter-and-gather form: an encoder (float conv + batch norm + quantizer),
on-chip layers (ternary weights, no bias, batch norm, quantizer) and a classifier (float dense,
bias allowed). A quantizer is any mix of Relu, Clip and exactly one rounding step: a QONNX
`Quant` node or a QuantizeLinear/DequantizeLinear pair, whose levels must be 0, 1/2^k, ..., B.
The `onnx` package is an optional dependency (`snnmap[onnx]`), imported only here. Semantics and
limits: docs/onnx.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snnmap.errors import SnnmapError
from snnmap.io.files import require_regular
from snnmap.model import BN_EPS, BatchNorm, Classifier, Layer, QuantModel

MAX_BYTES = 1 << 31
MAX_ELEMENTS = 1 << 28
_POOLS = {"MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool", "LpPool", "GlobalLpPool",
          "MaxRoundingPool"}
_SKIP = {"Identity", "Dropout"}
_ROUND_EXACT = {"HALF_UP"}
_ROUND_TIES = {"ROUND", "HALF_EVEN", "HALF_DOWN"}
_QL_RANGES = {2: (0, 255), 3: (-128, 127), 4: (0, 65535), 5: (-32768, 32767), 6: (-2**31, 2**31 - 1),
              12: (0, 2**32 - 1)}  # TensorProto data types of QuantizeLinear zero points


def _onnx():
    try:
        import onnx  # noqa: F401 - the optional extra
        from onnx import helper, numpy_helper
    except ImportError:
        raise SnnmapError("reading ONNX needs the optional `onnx` package: pip install 'snnmap[onnx]'") from None
    return onnx, helper, numpy_helper


def _node_where(node) -> str:
    return f"node {node.op_type} {node.name or '(unnamed)'!r}"


@dataclass
class _Stage:
    """One layer being assembled: linear op, optional bias and batch norm, quantizer parts."""

    node: object
    kind: str  # conv / dense
    weights: np.ndarray  # snnmap layout, float64
    stride: int = 1
    padding: int = 0
    bias: np.ndarray | None = None
    bias_node: object = None
    bn: BatchNorm | None = None
    lows: list = field(default_factory=list)
    highs: list = field(default_factory=list)
    step: float | None = None
    quant_node: object = None
    rounding: str | None = None
    act_started: bool = False


class _Reader:
    def __init__(self, model, where: str):
        self.onnx, self.helper, self.nph = _onnx()
        self.m = model
        self.g = model.graph
        self.where = where
        self.consts: dict[str, np.ndarray] = {}
        self.dtypes: dict[str, int] = {}  # TensorProto element types of the constants that have one
        self.notes: list[str] = []

    def _nw(self, node) -> str:
        return f"{self.where}, {_node_where(node)}"

    # -- constants -----------------------------------------------------------------------------
    def tensor(self, t, what: str) -> np.ndarray:
        if t.data_location == self.onnx.TensorProto.EXTERNAL or len(t.external_data):
            raise SnnmapError(f"{what} keeps its data in an external file; only self-contained models "
                              f"are read (save with onnx.save(..., save_as_external_data=False))", where=self.where)
        dims = list(t.dims)
        if any(d < 0 for d in dims) or math.prod(dims) > MAX_ELEMENTS:
            raise SnnmapError(f"{what} has impossible dimensions {dims[:8]}", where=self.where)
        try:
            a = self.nph.to_array(t)
        except Exception as e:  # noqa: BLE001 - protobuf content of any shape: one located line
            raise SnnmapError(f"{what} cannot be decoded ({type(e).__name__}: {str(e)[:120]})",
                              where=self.where) from None
        if a.dtype.kind not in "biuf" and not a.dtype.name.startswith(("bfloat", "float")):
            raise SnnmapError(f"{what} holds {a.dtype} values, not numbers", where=self.where)
        try:
            with np.errstate(invalid="ignore"):  # a signaling NaN warns when widened; named as non-finite later
                return np.asarray(a, dtype=np.float64) if a.dtype.kind != "b" else a.astype(np.float64)
        except (TypeError, ValueError) as e:
            raise SnnmapError(f"{what} cannot be read as numbers ({e})", where=self.where) from None

    def attrs(self, node) -> dict:
        out = {}
        for a in node.attribute:
            try:
                v = self.helper.get_attribute_value(a)
            except Exception as e:  # noqa: BLE001
                raise SnnmapError(f"attribute {a.name!r} cannot be read ({type(e).__name__})",
                                  where=self._nw(node)) from None
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            out[a.name] = v
        return out

    def const(self, node, i: int, what: str, default=None) -> np.ndarray | None:
        if i >= len(node.input) or node.input[i] == "":
            if default is None:
                raise SnnmapError(f"{what} (input {i}) is missing", where=self._nw(node))
            return np.asarray(default, dtype=np.float64)
        name = node.input[i]
        if name not in self.consts:
            raise SnnmapError(f"{what} {name!r} must be a constant (an initializer), not computed from the "
                              f"input", where=self._nw(node))
        return self.consts[name]

    def fold(self, node) -> bool:
        """Evaluate a node whose inputs are all constants (weight quantizers, Identity copies)."""
        op = node.op_type
        ins = [n for n in node.input if n]
        if op == "Constant":
            a = self.attrs(node)
            if "value" in a:
                val = self.tensor(a["value"], f"{_node_where(node)} value")
                if node.output:
                    self.dtypes[node.output[0]] = a["value"].data_type
            elif "value_float" in a or "value_int" in a:
                val = np.asarray(a.get("value_float", a.get("value_int")), dtype=np.float64)
            elif "value_floats" in a or "value_ints" in a:
                val = np.asarray(a.get("value_floats", a.get("value_ints")), dtype=np.float64)
            else:
                raise SnnmapError(f"holds no numeric value (attributes {sorted(a)})", where=self._nw(node))
        elif not ins or not all(n in self.consts for n in ins):
            return False
        elif op in ("Identity", "Cast"):
            val = self.consts[ins[0]]
        elif op == "Quant":
            val = self.qonnx_quant(node, self.consts[ins[0]])[0]
        elif op == "QuantizeLinear":
            val = self.quantize_linear(node, self.consts[ins[0]])
        elif op == "DequantizeLinear":
            s = self.const(node, 1, "scale")
            zp = self.const(node, 2, "zero point", 0)
            try:
                val = (self.consts[ins[0]] - zp) * s
            except ValueError as e:
                raise SnnmapError(f"scale / zero point do not broadcast ({e})", where=self._nw(node)) from None
        elif op == "Transpose":
            x = self.consts[ins[0]]
            perm = self.attrs(node).get("perm", list(range(x.ndim))[::-1])
            if sorted(perm) != list(range(x.ndim)):
                raise SnnmapError(f"perm {perm} does not fit a {x.ndim}-d constant", where=self._nw(node))
            val = np.transpose(x, perm)
        else:
            return False
        if len(node.output) != 1:
            raise SnnmapError(f"expected one output, found {len(node.output)}", where=self._nw(node))
        self.consts[node.output[0]] = np.asarray(val, dtype=np.float64)
        return True

    def qonnx_quant(self, node, x):
        """QONNX Quant: out = (round(clip(x/scale + zp, min, max)) - zp) * scale."""
        w = self._nw(node)
        a = self.attrs(node)
        s = self.const(node, 1, "scale")
        zp = self.const(node, 2, "zero point")
        bw = self.const(node, 3, "bit width")
        signed, narrow = int(a.get("signed", 1)), int(a.get("narrow", 0))
        mode = str(a.get("rounding_mode", "ROUND")).upper()
        if bw.size != 1 or not (1 <= float(bw.reshape(-1)[0]) <= 32) or float(bw.reshape(-1)[0]) % 1:
            raise SnnmapError(f"bit width {bw.reshape(-1)[:4]} is not one integer in 1..32", where=w)
        b = int(bw.reshape(-1)[0])
        if signed:
            lo, hi = -(2 ** (b - 1)) + narrow, 2 ** (b - 1) - 1
        else:
            lo, hi = 0, 2 ** b - 1 - narrow
        if not (np.all(np.isfinite(s)) and np.all(s > 0)):
            raise SnnmapError("scale must be positive and finite", where=w)
        rnd = {"ROUND": np.round, "HALF_EVEN": np.round, "CEIL": np.ceil, "FLOOR": np.floor, "DOWN": np.fix,
               "UP": lambda v: np.sign(v) * np.ceil(np.abs(v)),
               "HALF_UP": lambda v: np.sign(v) * np.floor(np.abs(v) + 0.5),
               "HALF_DOWN": lambda v: np.sign(v) * np.ceil(np.abs(v) - 0.5)}.get(mode)
        if rnd is None:
            raise SnnmapError(f"unknown rounding_mode {mode!r}", where=w)
        try:
            with np.errstate(all="ignore"):
                out = (rnd(np.clip(x / s + zp, lo, hi)) - zp) * s
        except ValueError as e:
            raise SnnmapError(f"scale / zero point do not broadcast with the input ({e})", where=w) from None
        return out, s, zp, lo, hi, mode

    def quantize_linear(self, node, x):
        w = self._nw(node)
        s = self.const(node, 1, "scale")
        if len(node.input) > 2 and node.input[2]:
            zp = self.const(node, 2, "zero point")
            dtype = self.dtypes.get(node.input[2], 2)
        else:
            zp, dtype = np.zeros(()), 2
        if dtype not in _QL_RANGES:
            raise SnnmapError(f"zero point type {dtype} is not an integer type", where=w)
        lo, hi = _QL_RANGES[dtype]
        if not (np.all(np.isfinite(s)) and np.all(s > 0)):
            raise SnnmapError("scale must be positive and finite", where=w)
        try:
            with np.errstate(all="ignore"):
                return np.clip(np.round(x / s) + zp, lo, hi)
        except ValueError as e:
            raise SnnmapError(f"scale / zero point do not broadcast ({e})", where=w) from None

    # -- the chain -----------------------------------------------------------------------------
    def read(self, name: str | None, input_scale: float) -> QuantModel:
        g = self.g
        for t in g.initializer:
            self.consts[t.name] = self.tensor(t, f"initializer {t.name!r}")
            self.dtypes[t.name] = t.data_type
        inputs = [i for i in g.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise SnnmapError(f"the graph must have one data input, found {len(inputs)} "
                              f"({[i.name for i in inputs][:4]})", where=self.where)
        x_in = inputs[0]
        shape = self._input_shape(x_in)
        if len(g.output) != 1:
            raise SnnmapError(f"the graph must have one output (the logits), found {len(g.output)}",
                              where=self.where)
        data_nodes = []
        known = set(self.consts) | {x_in.name}
        for node in g.node:
            for n in node.input:
                if n and n not in known:
                    raise SnnmapError(f"input {n!r} is not produced before this node (graph not in "
                                      f"topological order, or dangling)", where=self._nw(node))
            self.current = node
            if not self._guard(self.fold, node):
                data_nodes.append(node)
            known.update(o for o in node.output if o)
        self.current = None
        return self._guard(self._walk, data_nodes, x_in.name, shape, g.output[0].name, name, input_scale)

    def _guard(self, fn, *args):
        """Numbers of the wrong shape or type deep in a damaged graph: one line naming the node being read."""
        try:
            return fn(*args)
        except (ValueError, TypeError, IndexError, KeyError, OverflowError, ZeroDivisionError, AttributeError) as e:
            where = self._nw(self.current) if self.current is not None else self.where
            raise SnnmapError(f"cannot interpret this node ({type(e).__name__}: {str(e)[:120]})",
                              where=where) from None

    def _input_shape(self, vi) -> tuple[int, int, int]:
        where = f"{self.where}, graph input {vi.name!r}"
        t = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if len(dims) != 4 or any(d is None or d < 1 or d > 1 << 16 for d in dims[1:]):
            raise SnnmapError(f"expected a 4-d NCHW image input with fixed C, H, W; found dims "
                              f"{[d if d is not None else '?' for d in dims][:6]}", where=where)
        return (int(dims[2]), int(dims[3]), int(dims[1]))

    def _walk(self, nodes, x_name, hwc, out_name, name, input_scale) -> QuantModel:
        consumers: dict[str, list] = {}
        for node in nodes:
            for n in node.input:
                if n and n not in self.consts:
                    consumers.setdefault(n, []).append(node)
        for node in nodes:
            data_in = [n for n in node.input if n and n not in self.consts]
            if len(data_in) != 1:
                raise SnnmapError(f"takes {len(data_in)} computed inputs {data_in[:3]}; scatter-and-gather "
                                  f"layers form a chain, each op with one data input and constant parameters",
                                  where=self._nw(node))
        chw: tuple[int, ...] = (hwc[2], hwc[0], hwc[1])
        stages: list[_Stage] = []
        cur = x_name
        tail = None  # softmax after the classifier
        pending_ql = None
        flat_from = None
        visited: set[int] = set()
        while True:
            nxt = consumers.get(cur, [])
            if len(nxt) > 1:
                raise SnnmapError(f"tensor {cur!r} feeds {len(nxt)} nodes "
                                  f"({', '.join(_node_where(n) for n in nxt[:3])}); branches and skip "
                                  f"connections are not scatter-and-gather", where=self.where)
            if not nxt:
                break
            node = nxt[0]
            if id(node) in visited:
                raise SnnmapError("the graph has a cycle", where=self._nw(node))
            visited.add(id(node))
            op, w = node.op_type, self._nw(node)
            self.current = node
            st = stages[-1] if stages else None
            if len(node.output) < 1 or not node.output[0]:
                raise SnnmapError("has no output", where=w)
            if tail is not None and op not in ("Softmax", "LogSoftmax", "Identity"):
                raise SnnmapError(f"follows {tail}; only Softmax may follow the classifier", where=w)
            if pending_ql is not None and op != "DequantizeLinear":
                raise SnnmapError(f"follows {_node_where(pending_ql)}; a QuantizeLinear must be followed by "
                                  f"its DequantizeLinear", where=w)
            if op in _POOLS:
                raise SnnmapError("pooling is not scatter-and-gather: the paper pools with a trainable 2x2 "
                                  "stride-2 ternary convolution plus batch norm and quantizer", where=w)
            if op in _SKIP:
                a = self.attrs(node)
                if op == "Dropout" and len(node.input) > 2 and node.input[2] and \
                        np.any(self.const(node, 2, "training_mode")):
                    raise SnnmapError("dropout in training mode", where=w)
            elif op in ("Softmax", "LogSoftmax"):
                if not stages or stages[-1].act_started or stages[-1].bn is not None or len(chw) != 1:
                    raise SnnmapError("Softmax is accepted only right after the classifier", where=w)
                tail = _node_where(node)
            elif op in ("Mul", "Div"):
                c = self.const(node, 1 if node.input[0] == cur else 0, "factor")
                if stages or c.size != 1 or not np.isfinite(c).all() or float(c.reshape(-1)[0]) <= 0 or \
                        (op == "Div" and node.input[0] != cur):
                    raise SnnmapError("only a positive scalar scaling of the input image, before the encoder, "
                                      "is supported", where=w)
                f = float(c.reshape(-1)[0])
                input_scale = input_scale * f if op == "Mul" else input_scale / f
            elif op == "Conv":
                self._close(stages, node)
                stages.append(self._conv(node, chw))
                chw = self._conv_out(stages[-1], chw, node)
            elif op in ("Gemm", "MatMul"):
                self._close(stages, node)
                if len(chw) != 1:
                    raise SnnmapError(f"needs a flat input, found shape {chw}; add a Flatten", where=w)
                stages.append(self._dense(node, chw[0], flat_from))
                chw = (stages[-1].weights.shape[1],)
                flat_from = None
            elif op in ("Flatten", "Reshape"):
                flat_from, chw = self._flatten(node, chw, flat_from)
            elif op == "Add":
                if st is None or st.act_started or st.bn is not None or st.bias is not None:
                    raise SnnmapError("an Add is accepted only as the bias right after a Conv/Gemm/MatMul", where=w)
                b = self.const(node, 1 if node.input[0] == cur else 0, "bias")
                st.bias, st.bias_node = self._bias(b, st, node), node
            elif op == "BatchNormalization":
                if st is None or st.act_started or st.bn is not None:
                    raise SnnmapError("batch norm must come right after a Conv/Gemm/MatMul and before the "
                                      "activation quantizer", where=w)
                st.bn = self._bn(node, st)
            elif op == "Relu":
                self._act(st, node).lows.append(0.0)
            elif op == "Clip":
                s = self._act(st, node)
                a = self.attrs(node)
                lo = self.const(node, 1, "min", a.get("min", -np.inf))
                hi = self.const(node, 2, "max", a.get("max", np.inf))
                if lo.size != 1 or hi.size != 1:
                    raise SnnmapError("min and max must be scalars", where=w)
                s.lows.append(float(lo.reshape(-1)[0]))
                s.highs.append(float(hi.reshape(-1)[0]))
            elif op == "Quant":
                s = self._act(st, node)
                _, scale, zp, lo, hi, mode = self.qonnx_quant(node, np.zeros(1))
                self._set_step(s, node, scale, zp, mode)
                s.lows.append(lo * s.step)
                s.highs.append(hi * s.step)
            elif op == "QuantizeLinear":
                s = self._act(st, node)
                a = self.attrs(node)
                if a.get("block_size", 0):
                    raise SnnmapError("blocked quantization is not supported", where=w)
                scale = self.const(node, 1, "scale")
                zp = self.const(node, 2, "zero point", 0)
                self._set_step(s, node, scale, zp, "HALF_EVEN")
                lo, hi = self.quantize_linear(node, np.array([-np.inf, np.inf]))
                s.lows.append((lo - float(zp.reshape(-1)[0])) * s.step)
                s.highs.append((hi - float(zp.reshape(-1)[0])) * s.step)
                pending_ql = node
            elif op == "DequantizeLinear":
                if pending_ql is None:
                    raise SnnmapError("a DequantizeLinear on the data path must follow a QuantizeLinear", where=w)
                scale = self.const(node, 1, "scale")
                zp = self.const(node, 2, "zero point", 0)
                qs = self.const(pending_ql, 1, "scale")
                qz = self.const(pending_ql, 2, "zero point", 0)
                if not (np.array_equal(scale, qs) and np.array_equal(zp, qz)):
                    raise SnnmapError(f"scale / zero point differ from those of {_node_where(pending_ql)}",
                                      where=w)
                pending_ql = None
            else:
                raise SnnmapError(f"unsupported op {op!r} (supported: Conv, Gemm, MatMul, Add (bias), "
                                  f"BatchNormalization, Relu, Clip, Quant, QuantizeLinear/DequantizeLinear, "
                                  f"Flatten, Reshape, Identity, Dropout, Softmax, input Mul/Div)", where=w)
            if len([o for o in node.output if o]) != 1 and op != "Dropout":
                raise SnnmapError(f"has {len(node.output)} outputs; the chain needs one", where=w)
            cur = node.output[0]
        self.current = None
        if cur != out_name:
            raise SnnmapError(f"the chain from the input ends at {cur!r}, not at the graph output {out_name!r}",
                              where=self.where)
        if pending_ql is not None:
            raise SnnmapError("a QuantizeLinear without its DequantizeLinear ends the graph",
                              where=self._nw(pending_ql))
        stray = [n for n in nodes if id(n) not in visited]
        if stray:
            raise SnnmapError(f"{len(stray)} node(s) are not on the chain from the input to the output",
                              where=self._nw(stray[0]))
        return self._model(stages, hwc, input_scale, name)

    # -- pieces --------------------------------------------------------------------------------
    def _close(self, stages, node):
        if stages and stages[-1].step is None:
            prev = stages[-1].node
            raise SnnmapError(f"follows {_node_where(prev)} with no activation quantizer (Quant or "
                              f"QuantizeLinear/DequantizeLinear) between them", where=self._nw(node))

    def _act(self, st: _Stage | None, node) -> _Stage:
        if st is None:
            raise SnnmapError("an activation before the first Conv/Gemm/MatMul", where=self._nw(node))
        st.act_started = True
        return st

    def _set_step(self, st: _Stage, node, scale, zp, mode):
        w = self._nw(node)
        if st.step is not None:
            raise SnnmapError(f"a second rounding after {_node_where(st.quant_node)}; one quantizer per layer",
                              where=w)
        if scale.size != 1 and not np.all(scale == scale.reshape(-1)[0]):
            raise SnnmapError("per-channel activation scales are not scatter-and-gather (one level set "
                              "per network)", where=w)
        if not np.all(zp == 0):
            raise SnnmapError(f"zero point {zp.reshape(-1)[:4]} is not 0: levels must start at 0", where=w)
        s = float(scale.reshape(-1)[0])
        k = -math.log2(s) if s > 0 else float("nan")
        if not (k == round(k) and 0 <= k <= 8 and 2.0 ** -round(k) == s):
            raise SnnmapError(f"step {s!r} is not 1/2^k for an integer k in 0..8", where=w)
        if mode not in _ROUND_EXACT | _ROUND_TIES:
            raise SnnmapError(f"rounding_mode {mode}: scatter-and-gather rounds to the nearest level",
                              where=w)
        st.step, st.quant_node, st.rounding = s, node, mode

    def _conv(self, node, chw) -> _Stage:
        w = self._nw(node)
        a = self.attrs(node)
        wt = self.const(node, 1, "weight")
        if len(chw) != 3:
            raise SnnmapError("a convolution after a flattened (dense) layer", where=w)
        if wt.ndim != 4 or wt.shape[1] != chw[0] or min(wt.shape) < 1:
            raise SnnmapError(f"weight shape {wt.shape} does not take input {chw} (C, H, W)", where=w)
        if int(a.get("group", 1)) != 1:
            raise SnnmapError(f"grouped convolution (group {a['group']}) is not supported", where=w)
        if any(int(d) != 1 for d in a.get("dilations", [1, 1])):
            raise SnnmapError(f"dilations {a['dilations']} are not supported", where=w)
        strides = [int(v) for v in a.get("strides", [1, 1])]
        if len(set(strides)) != 1:
            raise SnnmapError(f"strides {strides} differ between height and width", where=w)
        kh, kw = wt.shape[2], wt.shape[3]
        auto = str(a.get("auto_pad", "NOTSET"))
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            if strides[0] != 1 or kh != kw or kh % 2 == 0:
                raise SnnmapError(f"auto_pad {auto} with stride {strides[0]} and a {kh}x{kw} kernel gives "
                                  f"asymmetric padding", where=w)
            pads = [kh // 2] * 4
        elif auto in ("NOTSET", "VALID"):
            pads = [int(v) for v in a.get("pads", [0, 0, 0, 0])] if auto == "NOTSET" else [0, 0, 0, 0]
        else:
            raise SnnmapError(f"auto_pad {auto!r} is not supported", where=w)
        if len(pads) != 4 or len(set(pads)) != 1:
            raise SnnmapError(f"pads {pads} are not the same on all four sides", where=w)
        if "kernel_shape" in a and list(a["kernel_shape"]) != [kh, kw]:
            raise SnnmapError(f"kernel_shape {a['kernel_shape']} disagrees with the weight {wt.shape}", where=w)
        st = _Stage(node=node, kind="conv", weights=np.ascontiguousarray(wt.transpose(2, 3, 1, 0)),
                    stride=strides[0], padding=pads[0])
        if len(node.input) > 2 and node.input[2]:
            st.bias, st.bias_node = self._bias(self.const(node, 2, "bias"), st, node), node
        return st

    def _conv_out(self, st: _Stage, chw, node):
        kh, kw = st.weights.shape[:2]
        if st.padding >= min(kh, kw):
            raise SnnmapError(f"padding {st.padding} is not smaller than the {kh}x{kw} kernel",
                              where=self._nw(node))
        oh = (chw[1] + 2 * st.padding - kh) // st.stride + 1
        ow = (chw[2] + 2 * st.padding - kw) // st.stride + 1
        if oh < 1 or ow < 1:
            raise SnnmapError(f"input {chw[1]}x{chw[2]} is too small for this convolution", where=self._nw(node))
        return (st.weights.shape[3], oh, ow)

    def _dense(self, node, fin: int, flat_from) -> _Stage:
        w = self._nw(node)
        b = self.const(node, 1, "weight")
        bias = None
        if node.op_type == "Gemm":
            a = self.attrs(node)
            if int(a.get("transA", 0)):
                raise SnnmapError("transA=1 is not supported", where=w)
            if b.ndim == 2 and int(a.get("transB", 0)):
                b = b.T
            b = b * float(a.get("alpha", 1.0))
            if len(node.input) > 2 and node.input[2]:
                bias = self.const(node, 2, "bias") * float(a.get("beta", 1.0))
        if b.ndim != 2 or b.shape[0] != fin:
            raise SnnmapError(f"weight shape {b.shape} does not take {fin} input features", where=w)
        if flat_from is not None:  # rows in torch's (c, h, w) order -> snnmap's (h, w, c)
            c, h, wd = flat_from
            b = b.reshape(c, h, wd, -1).transpose(1, 2, 0, 3).reshape(fin, -1)
        st = _Stage(node=node, kind="dense", weights=np.ascontiguousarray(b))
        if bias is not None:
            st.bias, st.bias_node = self._bias(bias, st, node), node
        return st

    def _bias(self, b, st: _Stage, node) -> np.ndarray:
        c = st.weights.shape[-1]
        shp = b.shape
        b = b.reshape(-1)
        if b.size == 1:
            b = np.full(c, b[0])
        if b.size != c or (len(shp) > 1 and sorted(shp)[-1] != c):
            raise SnnmapError(f"bias of shape {shp} does not match {c} output channels", where=self._nw(node))
        return b

    def _flatten(self, node, chw, flat_from):
        w = self._nw(node)
        n = int(np.prod(chw))
        if node.op_type == "Flatten":
            if int(self.attrs(node).get("axis", 1)) != 1:
                raise SnnmapError("only Flatten with axis 1 (keep the batch) is supported", where=w)
        else:
            tgt = self.const(node, 1, "shape")
            ok = tgt.ndim == 1 and tgt.size == 2 and (tgt[1] in (n, -1)) and tgt[0] in (-1, 0, 1) or \
                (tgt.ndim == 1 and tgt.size == 2 and tgt[0] in (0, 1, -1) and tgt[1] == n)
            if not ok:
                raise SnnmapError(f"reshape to {np.ravel(tgt).tolist()[:6]} is not a flattening to (batch, {n})", where=w)
        if len(chw) == 3 and (chw[1] > 1 or chw[2] > 1):
            return chw, (n,)
        return flat_from, (n,)

    def _bn(self, node, st: _Stage) -> BatchNorm:
        w = self._nw(node)
        a = self.attrs(node)
        if int(a.get("training_mode", 0)) or len([o for o in node.output if o]) > 1:
            raise SnnmapError("batch norm in training mode; export the model in eval mode", where=w)
        parts = [self.const(node, i, p).reshape(-1) for i, p in enumerate(("scale", "bias", "mean", "var"), 1)]
        c = st.weights.shape[-1]
        if any(p.size != c for p in parts):
            raise SnnmapError(f"parameter sizes {[p.size for p in parts]} do not match {c} channels", where=w)
        # ONNX stores epsilon as float32: read it as the shortest decimal that float32 rounds to it
        # (1e-5 stays 1e-5, as the exporter's framework had it, instead of 9.99999974738e-06)
        eps = float(str(np.float32(a.get("epsilon", BN_EPS))))
        return BatchNorm(beta=parts[1], gamma=parts[0], mean=parts[2], var=parts[3], eps=eps)

    def _model(self, stages: list[_Stage], hwc, input_scale, name) -> QuantModel:
        where = self.where
        if len(stages) < 3:
            raise SnnmapError(f"found {len(stages)} Conv/Gemm/MatMul layer(s); scatter-and-gather needs an "
                              f"encoder, at least one on-chip layer and a classifier", where=where)
        clf = stages[-1]
        if clf.step is not None or clf.bn is not None or clf.act_started:
            raise SnnmapError("the last Conv/Gemm/MatMul must be the classifier: no batch norm or activation "
                              "after it", where=self._nw(clf.node))
        if clf.kind != "dense":
            raise SnnmapError("the classifier must be a Gemm or MatMul", where=self._nw(clf.node))
        first = stages[0]
        k = round(-math.log2(first.step))
        B = None
        layers = []
        for i, st in enumerate(stages[:-1]):
            w = self._nw(st.node)
            lo, hi = max(st.lows, default=-np.inf), min(st.highs, default=np.inf)
            if lo != 0:
                raise SnnmapError(f"activation levels of this layer start at {lo}, not at 0 (needs Relu, "
                                  f"Clip(0, B) or an unsigned quantizer)", where=self._nw(st.quant_node))
            if not (np.isfinite(hi) and hi == int(hi) and 1 <= hi <= 256):
                raise SnnmapError(f"activation levels end at {hi}, not at an integer bound B in 1..256 "
                                  f"(add Clip(0, B))", where=self._nw(st.quant_node))
            kk = round(-math.log2(st.step))
            if (kk, int(hi)) != (k, B if B is not None else int(hi)):
                raise SnnmapError(f"levels step 1/{2 ** kk} up to {int(hi)} differ from the first layer's "
                                  f"(step 1/{2 ** k} up to {B}); one (k, B) per network",
                                  where=self._nw(st.quant_node))
            B = int(hi)
            if st.rounding in _ROUND_TIES and not self.notes:
                self.notes.append(f"quantizers round exact ties {st.rounding} (first: {_node_where(st.quant_node)}); "
                                  f"snnmap rounds exact halves up")
            bn = st.bn or BatchNorm(beta=np.zeros(st.weights.shape[-1]), gamma=np.ones(st.weights.shape[-1]),
                                    mean=np.zeros(st.weights.shape[-1]), var=np.ones(st.weights.shape[-1]),
                                    eps=0.0)
            weights = st.weights
            if i > 0:
                if st.bias is not None and np.any(st.bias != 0):
                    c = int(np.flatnonzero(st.bias)[0])
                    raise SnnmapError(f"bias {float(st.bias[c])!r} at channel {c} on an on-chip layer: scatter-and-gather "
                                      f"layers carry no bias (fold it into the batch norm mean)",
                                      where=self._nw(st.bias_node))
                weights, scale = _ternary(weights, w)
                bn = BatchNorm(beta=bn.beta, gamma=bn.gamma * scale, mean=bn.mean / scale, var=bn.var, eps=bn.eps)
            elif st.bias is not None:  # host encoder: a bias is a shift of the batch norm's mean
                bn = BatchNorm(beta=bn.beta, gamma=bn.gamma, mean=bn.mean - st.bias, var=bn.var, eps=bn.eps)
            lname = "encoder" if i == 0 else f"{'conv' if st.kind == 'conv' else 'fc'}{i + 1}"
            layers.append(Layer(name=lname, kind=st.kind, weights=weights.astype(np.int8) if i else weights,
                                bn=bn, stride=st.stride, padding=st.padding))
        bias = clf.bias if clf.bias is not None else np.zeros(clf.weights.shape[1])
        meta = {"imported_from": "onnx", "onnx_nodes": {lay.name: st.node.name for lay, st in zip(layers, stages)}}
        if self.notes:
            meta["notes"] = self.notes
        model = QuantModel(input_shape=hwc, k=k, B=B, input_scale=float(input_scale), encoder=layers[0],
                           layers=tuple(layers[1:]), classifier=Classifier(clf.weights, bias),
                           name=name or (self.g.name or "onnx-model"), meta=meta)
        return model.validate()


def _ternary(w: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Weights whose output channels each hold only {-s_c, 0, +s_c} -> ternary values and s_c (the
    scale moves into the batch norm); anything else names the first offending weight."""
    flat = w.reshape(-1, w.shape[-1])
    scale = np.abs(flat).max(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    with np.errstate(invalid="ignore"):  # an infinite weight gives NaN here, named as not ternary below
        t = flat / scale
    bad = ~np.isin(t, (-1.0, 0.0, 1.0))
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        idx = np.unravel_index(r * w.shape[-1] + c, w.shape)
        at = (f"[{idx[3]}, {idx[2]}, {idx[0]}, {idx[1]}] (out, in, kh, kw)" if w.ndim == 4
              else f"for input feature {idx[0]} of output {idx[1]}")
        vals = np.unique(np.abs(flat[:, c]))
        raise SnnmapError(f"weight {float(flat[r, c])!r} {at} is not ternary: output channel {c} holds "
                          f"{len(vals)} magnitudes ({', '.join(f'{v:.4g}' for v in vals[:4])}"
                          f"{', ...' if len(vals) > 4 else ''}); on-chip weights must be -s, 0 or +s", where=where)
    return t.reshape(w.shape), scale


def read_onnx_bytes(data: bytes, where: str = "ONNX model", name: str | None = None,
                    input_scale: float = 1.0) -> QuantModel:
    onnx, _, _ = _onnx()
    m = onnx.ModelProto()
    try:
        m.ParseFromString(data)
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise SnnmapError(f"not a valid ONNX file ({type(e).__name__}: {str(e)[:120]})", where=where) from None
    if not m.HasField("graph") or not len(m.graph.node):
        raise SnnmapError("not an ONNX model: no graph", where=where)
    try:
        return _Reader(m, where).read(name, input_scale)
    except RecursionError:
        raise SnnmapError("model nesting is too deep", where=where) from None


def import_onnx(path: str | Path, name: str | None = None, input_scale: float = 1.0) -> QuantModel:
    """Read an ONNX / QONNX file into a validated QuantModel (nothing else is executed or loaded)."""
    p = Path(path)
    require_regular(p, "ONNX file")
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise SnnmapError(f"file of {size} bytes exceeds the {MAX_BYTES}-byte limit", where=str(p))
        data = p.read_bytes()
    except OSError as e:
        raise SnnmapError(f"cannot read: {e.strerror or e}", where=str(p)) from None
    model = read_onnx_bytes(data, where=str(p), name=name, input_scale=input_scale)
    if name is None and model.name in ("main_graph", "torch_jit", "onnx-model"):  # exporters' defaults
        model = QuantModel(model.input_shape, model.k, model.B, model.input_scale, model.encoder, model.layers,
                           model.classifier, name=p.stem, meta=model.meta)
    return model

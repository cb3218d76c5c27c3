"""Fuzzing the ONNX reader: whatever the bytes or the graph, the result is a model or one
SnnmapError line (the style of test_fuzz_readers.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx")

from onnx import helper  # noqa: E402

from snnmap.errors import SnnmapError  # noqa: E402
from snnmap.importers.onnx_graph import read_onnx_bytes  # noqa: E402
from snnmap.model import QuantModel  # noqa: E402

from onnxnet import small_net  # noqa: E402
from test_fuzz_readers import mutated  # noqa: E402

CASES = settings(max_examples=300, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
RAW = small_net().SerializeToString()
RAW_QDQ = small_net(dtype=np.float32, quant="qdq").SerializeToString()


def _read(data: bytes) -> None:
    try:
        assert isinstance(read_onnx_bytes(data, where="fuzz.onnx"), QuantModel)
    except SnnmapError as e:
        assert "\n" not in str(e) and str(e)


@CASES
@given(st.one_of(mutated(RAW), mutated(RAW_QDQ)))
def test_onnx_bytes(data):
    _read(data)


OPS = ["Conv", "Gemm", "MatMul", "BatchNormalization", "Relu", "Clip", "Quant", "QuantizeLinear",
       "DequantizeLinear", "Flatten", "Reshape", "Add", "Mul", "Div", "Identity", "Dropout", "Softmax",
       "MaxPool", "Transpose", "Cast", "Constant", "Sigmoid", ""]


@st.composite
def mutated_graph(draw) -> bytes:
    m = onnx.ModelProto()
    m.ParseFromString(draw(st.sampled_from([RAW, RAW_QDQ])))
    g = m.graph
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(["op", "input", "attr", "dims", "dtype", "raw", "drop", "swap", "shape"]))
        if what in ("op", "input", "attr", "drop", "swap"):
            i = draw(st.integers(0, len(g.node) - 1))
            node = g.node[i]
            if what == "op":
                node.op_type = draw(st.sampled_from(OPS))
            elif what == "input" and len(node.input):
                j = draw(st.integers(0, len(node.input) - 1))
                node.input[j] = draw(st.sampled_from(["", "image", "nope", *[t.name for t in g.initializer[:6]],
                                                      *[n.output[0] for n in g.node[:8]]]))
            elif what == "attr":
                node.attribute.append(helper.make_attribute(
                    draw(st.sampled_from(["pads", "strides", "group", "dilations", "axis", "transA", "transB",
                                          "signed", "narrow", "rounding_mode", "epsilon", "training_mode",
                                          "kernel_shape", "auto_pad", "perm"])),
                    draw(st.one_of(st.integers(-3, 70000), st.lists(st.integers(-2, 5), max_size=5).filter(bool),
                                   st.floats(-1e9, 1e9), st.sampled_from(["SAME_UPPER", "VALID", "FLOOR", "x"])))))
            elif what == "drop":
                del g.node[i]
            elif len(g.node) > 1:
                j = draw(st.integers(0, len(g.node) - 1))
                a, b = onnx.NodeProto(), onnx.NodeProto()
                a.CopyFrom(g.node[i])
                b.CopyFrom(g.node[j])
                g.node[i].CopyFrom(b)
                g.node[j].CopyFrom(a)
        elif what == "shape":
            dims = g.input[0].type.tensor_type.shape.dim
            j = draw(st.integers(0, len(dims) - 1))
            dims[j].dim_value = draw(st.integers(-1, 1 << 20))
        else:
            t = g.initializer[draw(st.integers(0, len(g.initializer) - 1))]
            if what == "dims":
                t.dims[:] = draw(st.lists(st.integers(-2, 1 << 20), max_size=4))
            elif what == "dtype":
                t.data_type = draw(st.integers(0, 25))
            else:
                t.raw_data = t.raw_data[: draw(st.integers(0, max(0, len(t.raw_data))))]
    return m.SerializeToString()


@CASES
@given(mutated_graph())
def test_onnx_graph_structure(data):
    _read(data)

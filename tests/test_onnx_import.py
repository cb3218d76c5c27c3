"""ONNX / QONNX import: graphs built by hand agree with onnx's own reference evaluator; graphs that
are not scatter-and-gather fail with one line naming the node; damaged files fail cleanly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx")

from onnx import helper  # noqa: E402

from snnmap.chip.spec import SG64  # noqa: E402
from snnmap.errors import SnnmapError  # noqa: E402
from snnmap.importers.onnx_graph import read_onnx_bytes  # noqa: E402
from snnmap.pipeline import compile_model  # noqa: E402
from snnmap.reference import evaluate  # noqa: E402
from snnmap.sim import Simulator  # noqa: E402

from onnxnet import QONNX, Builder, run_graph, small_net  # noqa: E402
from test_cli import assert_clean_failure, run  # noqa: E402


def images(n, chw, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, *chw)).astype(np.uint8)
    x[0] = 0
    x[1] = 255
    return x


def load(model: onnx.ModelProto):
    return read_onnx_bytes(model.SerializeToString(), where="test.onnx")


def check_against_onnx(m: onnx.ModelProto, x: np.ndarray, dtype=np.float64):
    model = load(m)
    ref = evaluate(model, x.transpose(0, 2, 3, 1))
    logits = run_graph(m, x.astype(dtype))
    assert np.array_equal(ref["pred"], logits.argmax(1))
    np.testing.assert_allclose(ref["logits"], logits, rtol=1e-9 if dtype == np.float64 else 1e-5, atol=1e-9)
    return model


def test_small_qonnx_graph_matches_onnx_and_the_chip():
    m = small_net()
    x = images(40, (1, 6, 6))
    model = check_against_onnx(m, x)
    assert (model.k, model.B, model.input_scale) == (1, 2, 1 / 256)
    assert [lay.kind for lay in model.layers] == ["conv", "dense"]
    assert model.meta["onnx_nodes"]["encoder"] == "encoder"
    sim = Simulator(compile_model(model, SG64).image).run(x.transpose(0, 2, 3, 1))
    assert np.array_equal(sim["pred"], run_graph(m, x.astype(np.float64)).argmax(1))


def test_qdq_float32_graph():
    m = small_net(k=1, B=1, dtype=np.float32, quant="qdq")
    model = check_against_onnx(m, images(40, (1, 6, 6), 3), np.float32)
    assert (model.k, model.B) == (1, 1)
    assert "HALF_EVEN" in model.meta["notes"][0]


def test_relu_and_scaled_ternary_weights():
    """Relu + a Quant whose range ends at B; ternary weights with a per-channel scale (moved into
    the batch norm) and an encoder bias (moved into its mean)."""
    rng = np.random.default_rng(5)
    t = rng.integers(-1, 2, (4, 4, 2, 2)).astype(np.float64)
    scale = np.array([0.25, 3.0, 0.1, 1.0])[:, None, None, None]
    m = small_net(k=0, B=1, quant="relu", rng=rng, hooks={"conv_w": t * scale})
    check_against_onnx(m, images(40, (1, 6, 6), 1))


@st.composite
def random_graph(draw):
    k, B = draw(st.integers(0, 2)), draw(st.integers(1, 3))
    relu_ok = (2 ** k * B + 1) & (2 ** k * B) == 0
    style = draw(st.sampled_from(["clip", "relu"] if relu_ok else ["clip"]))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    c, h = draw(st.integers(1, 2)), draw(st.integers(4, 8))
    b = Builder((c, h, h))
    b.scale(draw(st.sampled_from([1 / 256, 1 / 255, 1 / 128])))
    chw = (c, h, h)

    def bn(n):
        gamma = rng.uniform(0.3, 2, n) * rng.choice([-1, 1, 1, 1], n)
        gamma[rng.random(n) < 0.1] = 0.0
        b.bn(gamma, rng.uniform(-0.5, B + 0.5, n), rng.normal(0, 1, n), rng.uniform(0.1, 4, n))

    def conv(cout, kern, stride, pad, ternary, bias=None):
        nonlocal chw
        if ternary:
            w = rng.integers(-1, 2, (cout, chw[0], kern, kern)).astype(float)
            w *= rng.choice([1.0, 0.5, 2.0, 0.3], cout)[:, None, None, None]
        else:
            w = rng.normal(0, 1, (cout, chw[0], kern, kern))
        b.conv(w, stride, pad, bias)
        o = (chw[1] + 2 * pad - kern) // stride + 1
        chw = (cout, o, o)

    kern, cout = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    conv(cout, kern, 1, draw(st.integers(0, kern - 1)), False,
         bias=rng.normal(0, 0.5, cout) if draw(st.booleans()) else None)
    bn(chw[0])
    b.quant(k, B, style)
    for _ in range(draw(st.integers(1, 2))):
        kern = draw(st.integers(1, min(3, chw[1])))
        stride = draw(st.integers(1, 2))
        conv(draw(st.integers(1, 4)), kern, stride, draw(st.integers(0, kern - 1)), True)
        bn(chw[0])
        b.quant(k, B, style)
    b.flatten()
    feats = int(np.prod(chw))
    if draw(st.booleans()):
        n = draw(st.integers(1, 5))
        b.gemm(rng.integers(-1, 2, (n, feats)))
        bn(n)
        b.quant(k, B, style)
        feats = n
    classes = draw(st.integers(2, 4))
    b.gemm(rng.normal(0, 1, (classes, feats)), bias=rng.normal(0, 1, classes) if draw(st.booleans()) else None)
    return b.model(), (c, h, h), seed


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graph())
def test_random_graphs_match_onnx_reference(g):
    m, chw, seed = g
    check_against_onnx(m, images(12, chw, seed % 1000))


def test_encoder_bias_is_folded():
    rng = np.random.default_rng(2)
    b = Builder((1, 5, 5))
    b.conv(rng.normal(0, 1, (3, 1, 3, 3)), bias=rng.normal(0, 1, 3), name="encoder")
    b.bn(np.ones(3), np.ones(3), np.zeros(3), np.ones(3))
    b.quant(1, 2)
    b.conv(rng.integers(-1, 2, (2, 3, 3, 3)))
    b.bn(np.ones(2), np.ones(2), np.zeros(2), np.full(2, 4.0))
    b.quant(1, 2)
    b.flatten()
    b.gemm(rng.normal(0, 1, (3, 2)))
    check_against_onnx(b.model(), images(20, (1, 5, 5), 4))


# -- graphs that are not scatter-and-gather -----------------------------------------------------

def _err(m: onnx.ModelProto) -> str:
    with pytest.raises(SnnmapError) as e:
        load(m)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_maxpool_named():
    m = small_net(hooks={"after_encoder": lambda b: b.op("MaxPool", name="pool1", kernel_shape=[2, 2],
                                                          strides=[2, 2])})
    msg = _err(m)
    assert "node MaxPool 'pool1'" in msg and "pooling" in msg


def test_non_ternary_weight_named():
    w = np.random.default_rng(0).integers(-1, 2, (4, 4, 2, 2)).astype(float)
    w[2, 1, 0, 1] = 0.5
    w[2, 0, 0, 0] = 1.0
    msg = _err(small_net(hooks={"conv_w": w}))
    assert "node Conv 'tconv'" in msg and "not ternary" in msg and "channel 2" in msg


def test_on_chip_bias_named():
    msg = _err(small_net(hooks={"conv_bias": np.array([0.0, 0.5, 0.0, 0.0])}))
    assert "node Conv 'tconv'" in msg and "bias" in msg and "channel 1" in msg


def test_zero_bias_is_fine():
    load(small_net(hooks={"conv_bias": np.zeros(4)}))


def test_unsupported_op_named():
    msg = _err(small_net(hooks={"after_encoder": lambda b: b.op("Sigmoid", name="sig")}))
    assert "node Sigmoid 'sig'" in msg and "unsupported op" in msg


@pytest.mark.parametrize("mutate, expect", [
    (lambda b: b.op("Relu", name="extra_relu"), None),  # harmless: levels stay 0..B
    (lambda b: b.op("Quant", b.const(0.5, "q2.s"), b.const(0.0, "q2.z"), b.const(3.0, "q2.bw"), name="q2",
                    domain=QONNX, rounding_mode="HALF_UP", signed=0), "second rounding"),
    (lambda b: b.op("Clip", b.const(0.0, "c.lo"), b.const(1.5, "c.hi"), name="clip15"), "not at an integer"),
])
def test_activation_chain(mutate, expect):
    m = small_net(hooks={"after_encoder": mutate})
    if expect is None:
        load(m)
    else:
        assert expect in _err(m)


def test_bad_rounding_and_step():
    b = Builder((1, 5, 5))
    b.conv(np.ones((2, 1, 3, 3)))
    b.bn(np.ones(2), np.zeros(2), np.zeros(2), np.ones(2))
    b.quant(1, 2, rounding="FLOOR", name="floorq")
    assert "node Quant 'floorq'" in _err(b.model()) and "FLOOR" in _err(b.model())
    m = small_net()
    for t in m.graph.initializer:
        if t.name.startswith("quant_") and t.name.endswith(".s"):
            t.CopyFrom(onnx.numpy_helper.from_array(np.array(1 / 3), t.name))
            break
    assert "not 1/2^k" in _err(m)


def test_missing_quantizer_and_branch():
    rng = np.random.default_rng(0)
    b = Builder((1, 5, 5))
    b.conv(rng.normal(size=(2, 1, 3, 3)), name="enc")
    b.bn(np.ones(2), np.zeros(2), np.zeros(2), np.ones(2))
    b.conv(rng.integers(-1, 2, (2, 2, 1, 1)), name="next")
    assert "no activation quantizer" in _err(b.model())
    m = small_net()
    n0 = m.graph.node[3]  # a node in the middle feeds a second, stray consumer
    m.graph.node.append(helper.make_node("Relu", [n0.output[0]], ["stray"], name="stray"))
    assert "feeds 2 nodes" in _err(m)


def test_mixed_levels_named():
    b = Builder((1, 5, 5))
    rng = np.random.default_rng(0)
    b.conv(rng.normal(size=(2, 1, 3, 3)))
    b.bn(np.ones(2), np.zeros(2), np.zeros(2), np.ones(2))
    b.quant(1, 2)
    b.conv(rng.integers(-1, 2, (2, 2, 1, 1)))
    b.bn(np.ones(2), np.zeros(2), np.zeros(2), np.ones(2))
    b.quant(0, 2, name="other")
    b.flatten()
    b.gemm(rng.normal(size=(3, 18)))
    assert "node Quant 'other'" in _err(b.model()) and "one (k, B) per network" in _err(b.model())


def test_external_data_refused():
    m = small_net()
    t = m.graph.initializer[1]
    t.data_location = onnx.TensorProto.EXTERNAL
    t.external_data.add(key="location", value="/etc/passwd")
    assert "external file" in _err(m)


# -- the command ----------------------------------------------------------------------------------

def test_cli_import_compile_simulate(tmp_path):
    m = small_net()
    onnx.save(m, tmp_path / "net.onnx")
    p = run("import-onnx", tmp_path / "net.onnx", "-o", tmp_path / "net.snnm")
    assert p.returncode == 0, p.stderr
    assert "k=1 B=2 N=4, 2 on-chip layers" in p.stdout
    p = run("compile", tmp_path / "net.snnm", "-o", tmp_path / "net.snnimg", "--quiet")
    assert p.returncode == 0, p.stderr
    x = images(30, (1, 6, 6), 9)
    np.savez(tmp_path / "in.npz", x=x.transpose(0, 2, 3, 1), y=np.zeros(30, np.int64))
    p = run("simulate", tmp_path / "net.snnimg", "--input", tmp_path / "in.npz", "--output", tmp_path / "o.npz")
    assert p.returncode == 0, p.stderr
    with np.load(tmp_path / "o.npz") as f:
        assert np.array_equal(f["pred"], run_graph(m, x.astype(np.float64)).argmax(1))


def test_cli_errors(tmp_path):
    onnx.save(small_net(hooks={"after_encoder": lambda b: b.op("MaxPool", name="pool1", kernel_shape=[2, 2])}),
              tmp_path / "pool.onnx")
    out = tmp_path / "x.snnm"
    line = assert_clean_failure(run("import-onnx", tmp_path / "pool.onnx", "-o", out), out)
    assert "MaxPool 'pool1'" in line
    raw = small_net().SerializeToString()
    (tmp_path / "cut.onnx").write_bytes(raw[: len(raw) // 2])
    assert_clean_failure(run("import-onnx", tmp_path / "cut.onnx", "-o", out), out)
    (tmp_path / "junk.onnx").write_bytes(b"\x00\xff" * 40)
    assert_clean_failure(run("import-onnx", tmp_path / "junk.onnx", "-o", out), out)
    assert_clean_failure(run("import-onnx", tmp_path / "missing.onnx", "-o", out), out)


def test_signed_quantize_linear_needs_a_lower_clip():
    """int8 QuantizeLinear levels go below 0: without Relu/Clip the layer is not scatter-and-gather."""
    rng = np.random.default_rng(0)
    b = Builder((1, 5, 5), np.float32)
    b.conv(rng.normal(size=(2, 1, 3, 3)))
    b.bn(np.ones(2), np.zeros(2), np.zeros(2), np.ones(2))
    s = b.const(0.5, "q.s", np.float32)
    z = b.const(0, "q.z", np.int8)
    b.op("QuantizeLinear", s, z, name="ql_signed")
    b.op("DequantizeLinear", s, z, name="dq_signed")
    b.conv(rng.integers(-1, 2, (2, 2, 1, 1)))
    b.bn(np.ones(2), np.zeros(2), np.zeros(2), np.ones(2))
    b.qdq(1, 2)
    b.flatten()
    b.gemm(rng.normal(size=(3, 18)))
    assert "start at -64.0, not at 0" in _err(b.model())


def test_signaling_nan_weight_named_without_warning():
    """A float32 signaling NaN in an initializer (widening it to float64 raised a RuntimeWarning)
    is named like any other bad weight."""
    import warnings

    w = np.random.default_rng(0).integers(-1, 2, (4, 4, 2, 2)).astype(np.float32)
    w.view(np.uint32)[1, 0, 0, 0] = 0x7FA00000  # quiet bit clear: signaling
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        msg = _err(small_net(dtype=np.float32, hooks={"conv_w": w}))
    assert "node Conv 'tconv'" in msg

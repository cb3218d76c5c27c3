"""snnmap.torch: the quantizers compute the reference's values; a network trained briefly in
PyTorch, exported to ONNX by torch.onnx, imported, compiled and simulated predicts what PyTorch
predicts in eval mode."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from snnmap.chip.spec import SG64  # noqa: E402
from snnmap.importers.onnx_graph import import_onnx  # noqa: E402
from snnmap.modelfile import load_model  # noqa: E402
from snnmap.pipeline import compile_model  # noqa: E402
from snnmap.reference import evaluate, quantize_counts  # noqa: E402
from snnmap.sim import Simulator  # noqa: E402
from snnmap.torch import (ActQuant, SGNet, lenet, predict, predict_float64, ternarize,  # noqa: E402
                          to_quant_model, vgg)
from snnmap.torch.onnx_export import export_onnx  # noqa: E402
from snnmap.torch.train import fit  # noqa: E402
from snnmap.zoo import vgg as zoo_vgg  # noqa: E402

from conftest import ROOT  # noqa: E402
from test_cli import run  # noqa: E402

EXAMPLE_IMAGES = ROOT / "examples" / "lenet_mnist" / "test_images.npz"


@pytest.mark.parametrize("k, B", [(0, 1), (1, 2), (2, 3)])
def test_act_quant_is_the_reference_quantizer(k, B):
    rng = np.random.default_rng(k * 10 + B)
    y = np.concatenate([rng.uniform(-1, B + 1, 5000), (np.arange(-2, 2 ** k * B + 3) + 0.5) / 2 ** k,
                        np.arange(-2, 2 ** k * B + 3) / 2 ** k])
    t = torch.from_numpy(y).requires_grad_(True)
    q = ActQuant(k, B)(t)
    assert np.array_equal(q.detach().numpy() * 2 ** k, quantize_counts(y, k, B))
    q.sum().backward()
    inside = (y >= 0) & (y <= B)
    assert np.array_equal(t.grad.numpy(), inside.astype(float))  # straight through on [0, B]


def test_ternarize_values_and_gradient():
    w = torch.randn(64, 3, 3, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    t = ternarize(w)
    delta = 0.7 * w.detach().abs().mean()
    expect = torch.sign(w.detach()) * (w.detach().abs() > delta)
    assert torch.equal(t.detach(), expect) and set(t.detach().unique().tolist()) == {-1.0, 0.0, 1.0}
    (t * torch.arange(t.numel()).view_as(t)).sum().backward()
    assert torch.equal(w.grad, torch.arange(t.numel(), dtype=w.dtype).view_as(t))


def _calibrate(net, x, seed):
    """Batch norms as after training: random gamma (some < 0) and beta, running statistics measured
    on x, so that activations spread over the levels."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in net.bns:
            c = bn.num_features
            bn.weight.copy_((torch.rand(c, generator=g) + 0.3) * torch.where(torch.rand(c, generator=g) < 0.1, -1, 1))
            bn.bias.copy_(torch.rand(c, generator=g) * net.B)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the calibration pass
        net.train()
        net(torch.from_numpy(x.astype(np.float32)))
    net.eval()


def test_vgg_builder_matches_the_paper_and_exports():
    net = vgg(1, 2)
    model = to_quant_model(net)
    assert model.shapes() == zoo_vgg().shapes()
    assert sum(int(np.prod(s)) for s in model.shapes()[1:]) == 150_272
    x = np.random.default_rng(0).integers(0, 256, (6, 3, 24, 24)).astype(np.uint8)
    _calibrate(net, x, 1)
    model = to_quant_model(net)
    ref = evaluate(model, x.transpose(0, 2, 3, 1))
    assert np.array_equal(ref["pred"], predict_float64(net, x))
    assert len(np.unique(ref["counts"][3])) > 2  # not a saturated or dead network


def test_dense_on_chip_layers_flatten_in_channels_last_order():
    net = SGNet("6C3p1-8C2s2-12F-5", (6, 6, 2), 1, 2, 1 / 256)
    x = np.random.default_rng(1).integers(0, 256, (50, 2, 6, 6)).astype(np.uint8)
    _calibrate(net, x, 2)
    model = to_quant_model(net)
    assert [lay.kind for lay in model.layers] == ["conv", "dense"]
    ref = evaluate(model, x.transpose(0, 2, 3, 1))
    assert np.array_equal(ref["pred"], predict_float64(net, x))
    assert np.array_equal(ref["pred"], predict(net, x))
    assert len(np.unique(ref["pred"])) > 1


@pytest.fixture(scope="module")
def trained():
    """LeNet (k=1, B=2) trained for a few seconds on 200 of the bundled MNIST test images."""
    torch.set_num_threads(2)
    with np.load(EXAMPLE_IMAGES) as d:
        x, y = d["x"], d["y"]
    net = lenet(1, 2)
    fit(net, x[:200, None], y[:200], epochs=3, batch_size=50, lr=3e-3, seed=0)
    return net, x, y


@pytest.mark.parametrize("qdq", [False, True], ids=["qonnx", "qdq"])
def test_round_trip_torch_onnx_chip(tmp_path, trained, qdq):
    net, x, y = trained
    pred32, pred64 = predict(net, x), predict_float64(net, x)
    assert (pred32 == y).mean() > 0.3  # it learnt something, so predictions are not constant
    onnx_path = tmp_path / "lenet.onnx"
    export_onnx(net, onnx_path, qdq=qdq)
    model = import_onnx(onnx_path)
    direct = to_quant_model(net)
    for a, b in zip((model.encoder, *model.layers), (direct.encoder, *direct.layers)):
        assert np.array_equal(a.weights, b.weights), a.name
        assert all(np.array_equal(getattr(a.bn, p), getattr(b.bn, p)) for p in ("beta", "gamma", "mean", "var"))
        assert a.bn.eps == b.bn.eps == 1e-5
    sim = Simulator(compile_model(model, SG64).image).run(x)
    assert np.array_equal(sim["pred"], pred32)
    assert np.array_equal(sim["pred"], pred64)
    assert np.array_equal(sim["pred"], evaluate(model, x)["pred"])


def test_round_trip_through_the_commands(tmp_path, trained):
    net, x, _ = trained
    export_onnx(net, tmp_path / "lenet.onnx")
    p = run("import-onnx", tmp_path / "lenet.onnx", "-o", tmp_path / "lenet.snnm")
    assert p.returncode == 0, p.stderr
    assert load_model(tmp_path / "lenet.snnm").input_scale == 1 / 256
    p = run("compile", tmp_path / "lenet.snnm", "-o", tmp_path / "lenet.snnimg", "--quiet")
    assert p.returncode == 0, p.stderr
    p = run("simulate", tmp_path / "lenet.snnimg", "--input", EXAMPLE_IMAGES, "--output", tmp_path / "o.npz")
    assert p.returncode == 0, p.stderr
    with np.load(tmp_path / "o.npz") as f:
        assert np.array_equal(f["pred"], predict(net, x))


def test_training_scripts_smoke(tmp_path):
    """Both example scripts run end to end for a few steps (CIFAR from its binary format)."""
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    with np.load(EXAMPLE_IMAGES) as d:
        np.savez(tmp_path / "mnist.npz", x_train=d["x"][:100], y_train=d["y"][:100], x_test=d["x"][100:160],
                 y_test=d["y"][100:160])
    p = subprocess.run([sys.executable, str(ROOT / "examples/lenet_mnist/train.py"), "--mnist", tmp_path / "mnist.npz",
                        "--k", "0", "--B", "1", "--epochs", "1", "--threads", "1", "--out", tmp_path / "l.snnm"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "float32 60/60, float64 60/60" in p.stdout
    assert load_model(tmp_path / "l.snnm").replicas == 1
    cifar = tmp_path / "cifar"
    cifar.mkdir()
    for name, n in (("data_batch_1.bin", 16), ("test_batch.bin", 6)):
        rec = np.concatenate([rng.integers(0, 10, (n, 1)), rng.integers(0, 256, (n, 3072))], 1).astype(np.uint8)
        rec.tofile(cifar / name)
    p = subprocess.run([sys.executable, str(ROOT / "examples/vgg_cifar/train.py"), "--cifar", cifar, "--epochs", "1",
                        "--batch-size", "8", "--max-steps", "2", "--threads", "1", "--out", tmp_path / "v.snnm"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "float32 6/6, float64 6/6" in p.stdout
    assert load_model(tmp_path / "v.snnm").shapes()[-1] == (1, 1, 512)

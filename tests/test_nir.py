"""NIR export: the exported graph, run by a small numpy interpreter of the NIR nodes, spikes
exactly as snnmap's reference counts and gives its logits; also after a write and read."""

from __future__ import annotations


import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

nir = pytest.importorskip("nir")

from snnmap.nir_export import save_nir, to_nir  # noqa: E402
from snnmap.reference import conv_taps, evaluate  # noqa: E402
from snnmap.zoo import lenet  # noqa: E402

from randnet import images, networks  # noqa: E402


def run_nir(graph, x: np.ndarray) -> tuple[np.ndarray, dict]:
    """Interpret a chain NIR graph on NCHW input; Threshold fires at v >= theta."""
    nxt = dict(graph.edges)
    name, a, spikes = "input", x.astype(np.float64), {}
    while name in nxt:
        name = nxt[name]
        node = graph.nodes[name]
        if isinstance(node, nir.Scale):
            a = a * node.scale[None]
        elif isinstance(node, nir.Conv2d):
            w = np.asarray(node.weight, np.float64).transpose(2, 3, 1, 0)
            s, p = node.stride, node.padding
            out = conv_taps(a.transpose(0, 2, 3, 1), w, int(np.ravel(s)[0]), int(np.ravel(p)[0]))
            a = out.transpose(0, 3, 1, 2) + np.asarray(node.bias)[None, :, None, None]
        elif isinstance(node, nir.Threshold):
            a = (a >= node.threshold[None]).astype(np.float64)
            spikes[name] = a
        elif isinstance(node, nir.Flatten):
            a = a.reshape(len(a), -1)
        elif isinstance(node, nir.Affine):
            a = a @ np.asarray(node.weight, np.float64).T + node.bias
        elif isinstance(node, nir.Linear):
            a = a @ np.asarray(node.weight, np.float64).T
        elif isinstance(node, nir.Output):
            break
        else:
            raise AssertionError(type(node))
    return a, spikes


def check(model, x_nhwc):
    ref = evaluate(model, x_nhwc)
    logits, spikes = run_nir(to_nir(model), x_nhwc.transpose(0, 3, 1, 2))
    np.testing.assert_allclose(logits, ref["logits"], rtol=1e-9, atol=1e-9)
    n = model.replicas
    for layer, counts in zip((model.encoder, *model.layers), ref["counts"]):
        s = spikes[f"{layer.name}.spike"]  # (batch, C*N, H, W) or (batch, C*N)
        s = s.reshape(len(s), -1, n, *s.shape[2:]).sum(axis=2)
        got = s.transpose(0, 2, 3, 1) if s.ndim == 4 else s[:, None, None, :]
        assert np.array_equal(got, counts), layer.name


def test_lenet_random_exact():
    model = lenet(seed=3, k=1, B=2)
    x = np.random.default_rng(0).integers(0, 256, (6, 28, 28, 1)).astype(np.float64)
    check(model, x)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks())
def test_random_models_exact(model):
    x = images(model, 5, 1).astype(np.float64)
    check(model, x)


def test_write_and_read_back(tmp_path):
    model = lenet(seed=4, k=0, B=2)
    save_nir(model, tmp_path / "m.nir")
    g = nir.read(tmp_path / "m.nir")
    x = np.random.default_rng(2).integers(0, 256, (4, 1, 28, 28)).astype(np.float64)
    logits, _ = run_nir(g, x)
    np.testing.assert_allclose(logits, evaluate(model, x.transpose(0, 2, 3, 1))["logits"], rtol=1e-9)


def test_cli(tmp_path):
    from snnmap.modelfile import save_model

    from test_cli import assert_clean_failure, run

    model = lenet(seed=5, k=1, B=1)
    save_model(model, tmp_path / "m.snnm")
    p = run("export-nir", tmp_path / "m.snnm", "-o", tmp_path / "m.nir")
    assert p.returncode == 0, p.stderr
    x = np.random.default_rng(3).integers(0, 256, (3, 1, 28, 28)).astype(np.float64)
    logits, _ = run_nir(nir.read(tmp_path / "m.nir"), x)
    assert np.array_equal(logits.argmax(1), evaluate(model, x.transpose(0, 2, 3, 1))["pred"])
    (tmp_path / "bad.snnm").write_bytes(b"SNNMODEL" + b"\0" * 10)
    assert_clean_failure(run("export-nir", tmp_path / "bad.snnm", "-o", tmp_path / "b.nir"), tmp_path / "b.nir")

"""The bundled example: the README's main command works from the repository alone."""

import numpy as np
import pytest

from snnmap.chip.spec import SG64
from snnmap.modelfile import load_model
from snnmap.pipeline import compile_model
from snnmap.reference import evaluate
from snnmap.sim import Simulator

from conftest import MNIST, ROOT, need_shared

EXAMPLE = ROOT / "examples" / "lenet_mnist"


@pytest.fixture(scope="module")
def compiled():
    model = load_model(EXAMPLE / "lenet_k1_B2.snnm")
    return model, compile_model(model, SG64)


def test_bundled_images_bit_exact(compiled):
    model, result = compiled
    with np.load(EXAMPLE / "test_images.npz") as d:
        x, y = d["x"], d["y"]
    assert x.shape == (300, 28, 28) and y.shape == (300,)
    out = Simulator(result.image).run(x)
    assert np.array_equal(out["pred"], evaluate(model, x)["pred"])
    assert (out["pred"] == y).mean() >= 0.99


@pytest.mark.slow
def test_bundled_model_accuracy_on_mnist(compiled):
    need_shared(MNIST)
    model, result = compiled
    with np.load(MNIST) as d:
        x, y = d["x_test"], d["y_test"]
    out = Simulator(result.image).run(x)
    assert (out["pred"] == y).mean() >= 0.99

"""The three LeNets trained for the paper's table (examples/lenet_mnist): they load, carry the
(k, B) their names say, classify the bundled images, and their compiled images agree."""

import numpy as np
import pytest

from snnmap.chip.spec import SG64
from snnmap.modelfile import load_model
from snnmap.pipeline import compile_model
from snnmap.reference import evaluate
from snnmap.sim import Simulator

from conftest import ROOT

EXAMPLE = ROOT / "examples" / "lenet_mnist"


@pytest.mark.parametrize("name, k, B", [("lenet_k0_B1_e5", 0, 1), ("lenet_k1_B2_e4", 1, 2), ("lenet_k1_B4_e4", 1, 4)])
def test_trained_model(name, k, B):
    model = load_model(EXAMPLE / f"{name}.snnm")
    assert (model.k, model.B) == (k, B)
    assert model.meta["trained_with"].startswith("torch 2.13.0")
    with np.load(EXAMPLE / "test_images.npz") as d:
        x, y = d["x"], d["y"]
    pred = evaluate(model, x)["pred"]
    assert (pred == y).mean() >= 0.98
    if k == 0:  # the smallest image (52 cores): the simulation equals the reference
        assert np.array_equal(Simulator(compile_model(model, SG64).image).run(x)["pred"], pred)

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SNNMAP_SHARED", ROOT.parent / "shared"))
LENET_PARAMS = SHARED / "reference" / "sg_lenet_mnist_k1_B2.npz"
MNIST = SHARED / "data" / "mnist.npz"
LENET_ARCH = "16C5p2-16C5-16C2s2-32C5-32C2s2-256C4-10"


def need_shared(*paths: Path) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        pytest.skip(f"shared data absent ({', '.join(missing)}); set SNNMAP_SHARED to run this test")


@pytest.fixture(scope="session")
def lenet_model():
    need_shared(LENET_PARAMS)
    from snnmap.importers.tl import import_tl

    return import_tl(LENET_PARAMS, LENET_ARCH, 1, 2, 1 / 256, name="lenet")


@pytest.fixture(scope="session")
def mnist():
    need_shared(MNIST)
    import numpy as np

    with np.load(MNIST) as d:
        return {k: d[k] for k in d.files}

"""Trained LeNets against the paper's table: native-format accuracy, image simulation, and the
agreement of both with PyTorch's eval-mode predictions saved by the training script.

    python benchmarks/check_trained.py --mnist ../shared/data/mnist.npz \
        examples/lenet_mnist/lenet_k0_B1.snnm:/tmp/pred_k0_B1.npz ...

Each argument is MODEL.snnm[:PREDICTIONS.npz[:STATE.pt]] (pred32, pred64 and the state_dict from
train.py --predictions / --state). Prints one table row per model; the simulation runs the compiled
sg64 image on all test images. With a state, the network is rebuilt in PyTorch, exported to ONNX
(QONNX and Q/DQ), imported with snnmap's ONNX reader, and the imported parameters are compared
with the .snnm file's.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from snnmap.chip.spec import get_chip
from snnmap.modelfile import load_model
from snnmap.pipeline import compile_model
from snnmap.reference import evaluate
from snnmap.sim import Simulator

PAPER = {(0, 1): 99.27, (1, 1): 99.30, (0, 2): 99.32, (1, 2): 99.37, (0, 4): 99.43, (1, 4): 99.50}


def _onnx_round_trip(model, state: str, qdq: bool) -> bool:
    import tempfile
    from pathlib import Path

    import torch

    from snnmap.importers.onnx_graph import import_onnx
    from snnmap.torch import lenet
    from snnmap.torch.onnx_export import export_onnx

    net = lenet(model.k, model.B)
    net.load_state_dict(torch.load(state, weights_only=True))
    net.eval()
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(net, Path(tmp) / "m.onnx", qdq=qdq)
        got = import_onnx(Path(tmp) / "m.onnx")
    same = np.array_equal(got.classifier.weights, model.classifier.weights)
    for a, b in zip((got.encoder, *got.layers), (model.encoder, *model.layers)):
        same &= np.array_equal(a.weights, b.weights) and a.stride == b.stride and a.padding == b.padding
        same &= all(np.array_equal(getattr(a.bn, p), getattr(b.bn, p)) for p in ("beta", "gamma", "mean", "var"))
        same &= a.bn.eps == b.bn.eps
    return bool(same)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mnist", required=True)
    ap.add_argument("--chip", default="sg64")
    ap.add_argument("--only-onnx", action="store_true", help="only the ONNX round-trip column")
    ap.add_argument("models", nargs="+")
    a = ap.parse_args()
    with np.load(a.mnist) as d:
        x, y = d["x_test"], d["y_test"].astype(np.int64)
    print("| k, B | paper | reference (native) | image simulation | sim = reference | sim = torch fp32 | "
          "sim = torch fp64 | ONNX import = .snnm | cores | epochs | train time |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for arg in a.models:
        path, preds, state = (arg.split(":") + ["", ""])[:3]
        model = load_model(path)
        onnx_same = "-"
        if state:
            onnx_same = "yes" if all(_onnx_round_trip(model, state, qdq) for qdq in (False, True)) else "NO"
        if a.only_onnx:
            print(f"{path}: ONNX import (QONNX and Q/DQ) = .snnm: {onnx_same}", flush=True)
            continue
        t0 = time.perf_counter()
        ref = evaluate(model, x)["pred"]
        t_ref = time.perf_counter() - t0
        result = compile_model(model, get_chip(a.chip))
        t0 = time.perf_counter()
        sim = Simulator(result.image).run(x)["pred"]
        t_sim = time.perf_counter() - t0
        n = len(y)
        agree = {}
        if preds:
            with np.load(preds) as p:
                agree = {key: int((sim == p[key]).sum()) for key in ("pred32", "pred64")}
        info = model.meta
        print(f"| {model.k}, {model.B} | {PAPER.get((model.k, model.B), '-')} | {(ref == y).mean() * 100:.2f} | "
              f"{(sim == y).mean() * 100:.2f} | {int((sim == ref).sum())}/{n} | "
              f"{agree.get('pred32', '-')}/{n} | {agree.get('pred64', '-')}/{n} | {onnx_same} | {result.image.info['cores']} | "
              f"{info.get('epochs', '-')} | {info.get('train_seconds', '-')} s |", flush=True)
        print(f"  ({path}: reference {t_ref:.0f} s, simulation {t_sim:.0f} s)", flush=True)


if __name__ == "__main__":
    main()

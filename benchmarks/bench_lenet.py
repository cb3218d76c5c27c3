"""Compile and simulate the published LeNet; compare the simulator with the float64 reference.

    python benchmarks/bench_lenet.py --shared ../shared [--images 10000]

Prints compile time per pass, cores, and images/s of the image simulator and of the independent
reference evaluation, measured side by side in one run.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from snnmap.chip.spec import get_chip
from snnmap.image import image_to_bytes, parse_image
from snnmap.importers.tl import import_tl
from snnmap.pipeline import compile_model
from snnmap.reference import evaluate
from snnmap.sim import Simulator

ARCH = "16C5p2-16C5-16C2s2-32C5-32C2s2-256C4-10"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--chip", default="sg64")
    ap.add_argument("--drop", type=float, nargs="*", default=[0.1, 0.2])
    a = ap.parse_args()
    shared = Path(a.shared)
    model = import_tl(shared / "reference" / "sg_lenet_mnist_k1_B2.npz", ARCH, 1, 2, 1 / 256)
    with np.load(shared / "data" / "mnist.npz") as d:
        x, y = d["x_test"][:a.images], d["y_test"][:a.images]
    t0 = time.perf_counter()
    result = compile_model(model, get_chip(a.chip))
    raw = image_to_bytes(result.image)
    t_compile = time.perf_counter() - t0
    img = parse_image(raw)
    t0 = time.perf_counter()
    out = Simulator(img).run(x)
    t_sim = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = evaluate(model, x)
    t_ref = time.perf_counter() - t0
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}")
    print(f"compile: {t_compile:.2f} s ({', '.join(f'{k} {v:.2f}' for k, v in result.timings.items())}); "
          f"{len(img.cores)} cores on {result.placement.chips} {a.chip} chip(s); image {len(raw)} bytes")
    print(f"simulator: {len(x) / t_sim:.0f} images/s; reference: {len(x) / t_ref:.0f} images/s; "
          f"ratio {t_ref / t_sim:.2f}x")
    print(f"accuracy {float((out['pred'] == y).mean()):.4f}; predictions equal to reference: "
          f"{bool(np.array_equal(out['pred'], ref['pred']))}; spikes/image {out['spikes'].mean():.1f}; "
          f"SOPs/image {out['sops'].mean():.0f}")
    sim = Simulator(img)
    for p in a.drop:
        noisy = sim.run(x, drop={0: p}, seed=0)
        print(f"encoder spikes lost with p={p}: accuracy {float((noisy['pred'] == y).mean()):.4f} (seed 0)")


if __name__ == "__main__":
    main()

"""Compile and simulate the published LeNet; time the simulator against plain-NumPy evaluations.

    python benchmarks/bench_lenet.py --shared ../shared [--images 10000] [--skip-reference]

Prints compile time per pass and cores; images/s of the image simulator (2 worker threads and 1),
of an independent im2col evaluation of the model (benchmarks/im2col_eval.py) and of
snnmap.reference (float64, the defined summation orders), all in one run, BLAS on one thread
everywhere (a multithreaded BLAS on a shared machine is many times slower); checks
that every prediction and every per-layer spike count agrees; then the paper's noise experiment.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from im2col_eval import evaluate as im2col_evaluate
from snnmap.chip.spec import get_chip
from snnmap.image import image_to_bytes, parse_image
from snnmap.importers.tl import import_tl
from snnmap.pipeline import compile_model
from snnmap.reference import evaluate
from snnmap.sim import Simulator
from snnmap.sim.blas import single_threaded_blas

ARCH = "16C5p2-16C5-16C2s2-32C5-32C2s2-256C4-10"


def timed(f):
    """Result, wall seconds and this process's CPU seconds (all its threads): other programs on a
    shared machine stretch the first, much less the second."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = f()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--chip", default="sg64")
    ap.add_argument("--drop", type=float, nargs="*", default=[0.1, 0.2])
    ap.add_argument("--skip-reference", action="store_true", help="skip snnmap.reference (the slowest part)")
    a = ap.parse_args()
    shared = Path(a.shared)
    model = import_tl(shared / "reference" / "sg_lenet_mnist_k1_B2.npz", ARCH, 1, 2, 1 / 256)
    with np.load(shared / "data" / "mnist.npz") as d:
        x, y = d["x_test"][:a.images], d["y_test"][:a.images]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"numpy {np.__version__}; load average {os.getloadavg()[0]:.2f} at start")
    t0 = time.perf_counter()
    result = compile_model(model, get_chip(a.chip))
    raw = image_to_bytes(result.image)
    t_compile = time.perf_counter() - t0
    img = parse_image(raw)
    print(f"compile: {t_compile:.2f} s ({', '.join(f'{k} {v:.2f}' for k, v in result.timings.items())}); "
          f"{len(img.cores)} cores on {result.placement.chips} {a.chip} chip(s); image {len(raw)} bytes")
    sim2, t_load, _ = timed(lambda: Simulator(img, threads=2))
    sim1 = Simulator(img, threads=1)
    sim2.run(x[:256])  # warm up: first-touch allocations, thread pool
    out, t_sim2, c_sim2 = timed(lambda: sim2.run(x))
    out1, t_sim1, c_sim1 = timed(lambda: sim1.run(x))

    def plain():
        with single_threaded_blas():
            return im2col_evaluate(model, x)

    base, t_base, c_base = timed(plain)
    n = len(x)
    blocks = sum(st.weights.size * len(st.cores) for tick in sim1.ticks[1:] for st in tick.stacks)
    loose = sum(sim1.cores[lc.core].weights.size for tick in sim1.ticks[1:] for lc in tick.loose)
    shapes = model.shapes()
    ann = sum(int(np.prod(out_shape)) * int(np.prod(layer.conv_weights(in_shape).shape[:3]))
              for layer, in_shape, out_shape in zip((model.encoder, *model.layers), [model.input_shape, *shapes[:-1]],
                                                     shapes))
    print(f"multiply-adds per image: simulator {(blocks + loose) / 1e6:.2f} million (crossbar blocks and activity "
          f"rows), ANN {ann / 1e6:.2f} million")
    print(f"simulator: {n / t_sim2:.0f} images/s on 2 threads, {n / t_sim1:.0f} on 1 (plan built in {t_load:.2f} s); "
          f"im2col NumPy: {n / t_base:.0f} images/s on 1; ratio {t_base / t_sim1:.2f}x on one thread each, "
          f"{t_base / t_sim2:.2f}x with the simulator on 2")
    print(f"per CPU second: simulator {n / c_sim1:.0f} images (1 thread), {n / c_sim2:.0f} (2 threads); "
          f"im2col NumPy {n / c_base:.0f}; ratio {c_base / c_sim1:.2f}x")
    same = {"simulator 1 vs 2 threads": all(np.array_equal(out[k], out1[k]) for k in
                                            ("pred", "logits", "layer_spikes", "sops", "tick_s")),
            "im2col predictions": np.array_equal(out["pred"], base["pred"]),
            "im2col spikes per layer": np.array_equal(out["layer_spikes"], base["layer_spikes"])}
    if not a.skip_reference:
        with single_threaded_blas():
            ref, t_ref, _ = timed(lambda: evaluate(model, x))
        ref_spikes = np.stack([c.reshape(len(x), -1).sum(axis=1) for c in ref["counts"][1:]])
        same["reference predictions"] = np.array_equal(out["pred"], ref["pred"])
        same["reference logits"] = np.array_equal(out["logits"], ref["logits"])
        same["reference spikes per layer"] = np.array_equal(out["layer_spikes"], ref_spikes)
        print(f"reference (float64, defined orders): {len(x) / t_ref:.0f} images/s; "
              f"simulator on 1 thread {t_ref / t_sim1:.2f}x faster")
    print("equal: " + "; ".join(f"{k} {v}" for k, v in same.items()))
    print(f"accuracy {float((out['pred'] == y).mean()):.4f}; spikes/image {out['spikes'].mean():.1f}; "
          f"SOPs/image {out['sops'].mean():.0f}; load average {os.getloadavg()[0]:.2f} at the end")
    for p in a.drop:
        noisy = sim2.run(x, drop={0: p}, seed=0)
        print(f"encoder spikes lost with p={p}: accuracy {float((noisy['pred'] == y).mean()):.4f} (seed 0)")
    if not all(same.values()):
        raise SystemExit("disagreement: see 'equal' above")


if __name__ == "__main__":
    main()

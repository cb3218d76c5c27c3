"""Compile the paper's VGG-Net (four-spike, random parameters) end to end and check its image
per ANN neuron against the independent reference on a few random inputs.

    python benchmarks/check_vgg_exact.py [--chip paicore2] [--chips WxH] [--images 2] [--seed 0] [--time-limit 60]

(--chips: a board of W x H chips, for a network over the chips one row holds: VGG on sg64.)

Prints the cores, chips and compile time with its passes, then, after simulating the image read
back from its bytes (every core recorded), whether every ANN neuron's spike count, the
predictions and the logits equal snnmap.reference's. Memory: the simulator's routing plans and
the recorded spikes (the image keeps its crossbars factored): 7.9 GB for paicore2 at 1 input
(`/usr/bin/time -f %M`, 2026-11-27; 16.6 GB at 2 inputs when the image held dense crossbars).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from snnmap.chip.spec import get_chip
from snnmap.image.format import image_to_bytes, parse_image
from snnmap.pipeline import compile_model
from snnmap.reference import evaluate
from snnmap.sim import Simulator
from snnmap.zoo import vgg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chip", default="paicore2")
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--chips", default=None, help="a board of W x H chips, e.g. 12x10")
    a = ap.parse_args()
    board = tuple(int(v) for v in a.chips.lower().split("x")) if a.chips else None
    model, spec = vgg(a.seed), get_chip(a.chip)
    t0 = time.perf_counter()
    res = compile_model(model, spec, time_limit=a.time_limit, chips=board)
    t1 = time.perf_counter()
    chips = len({c.coord[:2] for c in res.image.cores})
    print(f"VGG-Net (seed {a.seed}) on {spec.name}: {len(res.image.cores)} cores on {chips} chips, compiled in "
          f"{t1 - t0:.1f} s:", ", ".join(f"{k} {v:.1f} s" for k, v in res.timings.items()))
    rng = np.random.default_rng(a.seed)
    x = rng.integers(0, 256, size=(a.images, *model.input_shape)).astype(np.uint8)  # raw pixels, as images are fed
    img = parse_image(image_to_bytes(res.image))
    out = Simulator(img).run(x, batch=1, record=True)
    ref = evaluate(model, x)
    got = res.ann_counts(out["core_spikes"], len(x))
    same = all(np.array_equal(got[lay.name], want.reshape(len(x), -1))
               for lay, want in zip(model.layers, ref["counts"][1:]))
    print(f"{a.images} random inputs, simulated in {time.perf_counter() - t1:.1f} s: every ANN neuron's spikes "
          f"equal the reference: {same}; predictions: {bool(np.array_equal(out['pred'], ref['pred']))}; "
          f"logits: {bool(np.allclose(out['logits'], ref['logits'], rtol=1e-12, atol=1e-12))}")


if __name__ == "__main__":
    main()

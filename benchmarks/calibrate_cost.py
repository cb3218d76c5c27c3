"""Fit the two calibrated constants of the sg64 cost model to the paper's LeNet figures.

    python benchmarks/calibrate_cost.py --shared ../shared [--images 1000]

The paper reports the four-spike LeNet at 0.38 ms and 0.28 mJ per image (0.9 V, 252 MHz).
cycles_per_event is found by bisection so that the mean modeled latency over the first
--images MNIST test images equals 0.38 ms; static_power_w (per chip) then makes the mean energy 0.28 mJ.
The other constants stay as docs/chips.md states them.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from snnmap.chip.spec import SG64
from snnmap.importers.tl import import_tl
from snnmap.pipeline import compile_model
from snnmap.sim import Simulator
from snnmap.zoo import LENET_ARCH

PAPER_LATENCY_S = 0.38e-3
PAPER_ENERGY_J = 0.28e-3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--images", type=int, default=1000)
    a = ap.parse_args()
    shared = Path(a.shared)
    model = import_tl(shared / "reference" / "sg_lenet_mnist_k1_B2.npz", LENET_ARCH, 1, 2, 1 / 256)
    with np.load(shared / "data" / "mnist.npz") as d:
        x = d["x_test"][:a.images]
    image = compile_model(model, SG64).image

    def run(cycles_per_event: float, static_power_w: float = 0.0) -> dict:
        image.spec = replace(SG64, cycles_per_event=cycles_per_event, static_power_w=static_power_w)
        return Simulator(image).run(x)

    lo, hi = 0.0, 64.0
    for _ in range(30):
        mid = (lo + hi) / 2
        if run(mid)["latency_s"].mean() < PAPER_LATENCY_S:
            lo = mid
        else:
            hi = mid
    c_e = round((lo + hi) / 2, 4)
    out = run(c_e)
    dynamic = (out["energy_sop_j"] + out["energy_hop_j"]).mean()
    chips = len({c.coord[:2] for c in image.cores})
    power = round(float((PAPER_ENERGY_J - dynamic) / (chips * out["period_s"].mean())), 4)
    check = run(c_e, power)
    print(f"cycles_per_event = {c_e}")
    print(f"static_power_w = {power}")
    print(f"check over {len(x)} images: latency {check['latency_s'].mean() * 1e3:.4f} ms, energy "
          f"{check['energy_j'].mean() * 1e3:.4f} mJ (synaptic operations {check['energy_sop_j'].mean() * 1e3:.4f}, "
          f"packet hops {check['energy_hop_j'].mean() * 1e3:.4f}), "
          f"{1 / check['period_s'].mean():.0f} images/s pipelined")


if __name__ == "__main__":
    main()

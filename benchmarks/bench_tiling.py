"""Cores used by the tiler against the lower bound and the whole-input-map baseline.

    python benchmarks/bench_tiling.py [--shared ../shared] [--only "VGG-Net (random, seed 0) | paicore2"]

Networks: the published four-spike LeNet (when --shared has it) and the paper's VGG-Net in
four-spike form with random ternary weights and batch norm (seed 0). Prints one row per
(network, chip): cores, bound, ratio, baseline, tiling time; or the design-rule error.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from snnmap.chip.spec import PAICORE2, SG64, ChipSpec
from snnmap.convert import convert
from snnmap.errors import DesignRuleError
from snnmap.importers.tl import import_tl
from snnmap.passes import drc
from snnmap.passes.bounds import layer_bounds
from snnmap.passes.tiling import tile_network
from snnmap.zoo import LENET_ARCH, lenet, vgg


def row(name, model, spec):
    g = convert(model)
    bounds = layer_bounds(g, spec)
    bound = sum(b.bound for b in bounds)
    base = None if any(b.baseline is None for b in bounds) else sum(b.baseline for b in bounds)
    t0 = time.perf_counter()
    try:
        drc.check_before_tiling(g, spec)
        tiling = tile_network(g, spec)  # the shape search and the cut, as compile runs them
        drc.check_before_placement(g, tiling, spec)
    except DesignRuleError as e:
        return f"| {name} | {spec.name} | - | {bound} | - | {base if base is not None else '-'} | " \
               f"{time.perf_counter() - t0:.1f} s | {e} |"
    dt = time.perf_counter() - t0
    cores = sum(len(t) for t in tiling.layers.values())
    return f"| {name} | {spec.name} | {cores} | {bound} | {cores / bound:.2f} | " \
           f"{base if base is not None else '-'} | {dt:.1f} s | |"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--only", default=None, help="rows whose 'network | chip' contains this text, e.g. 'VGG-Net (random, seed 0) | paicore2'")
    a = ap.parse_args()
    params = Path(a.shared) / "reference" / "sg_lenet_mnist_k1_B2.npz"
    wide = ChipSpec(**{**SG64.to_dict(), "name": "sg64, 1024 destinations", "max_destinations": 1024})
    nets = []
    if params.exists():
        nets.append(("LeNet (published)", import_tl(params, LENET_ARCH, 1, 2, 1 / 256)))
    nets += [("LeNet (random, seed 0)", lenet()), ("VGG-Net (random, seed 0)", vgg())]
    print("| network | chip | cores | bound | cores / bound | baseline | tiling time | design-rule error |")
    print("|---|---|---|---|---|---|---|---|")
    for name, model in nets:
        for spec in (SG64, wide, PAICORE2):
            if a.only is None or a.only in f"{name} | {spec.name}":
                print(row(name, model, spec), flush=True)


if __name__ == "__main__":
    main()

"""The density caps behind the tiling bounds quoted in docs/benchmarks.md: per layer and fan-in
level of sg64, the most distinct ANN neurons one core can hold (all neurons; then, where padding
clips border windows, the interior ones alone).

    python benchmarks/density_caps.py [--shared ../shared]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from snnmap.chip.spec import SG64
from snnmap.convert import convert
from snnmap.importers.tl import import_tl
from snnmap.passes.bounds import _density_caps
from snnmap.passes.tiling import _layer
from snnmap.zoo import LENET_ARCH, vgg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared")
    a = ap.parse_args()
    params = Path(a.shared) / "reference" / "sg_lenet_mnist_k1_B2.npz"
    rows = [("VGG-Net (random, seed 0)", vgg(), ("conv6", 1), ("conv8", 1), ("conv9", 2), ("conv11", 2))]
    if params.exists():
        rows.insert(0, ("LeNet (published)", import_tl(params, LENET_ARCH, 1, 2, 1 / 256), ("conv2", 0), ("conv2", 1)))
    print("| network | layer | level | neurons' cap (ANN per core) | cap, all neurons | cap, interior neurons |")
    print("|---|---|---|---|---|---|")
    for name, model, *layers in rows:
        g = convert(model)
        for layer, level in layers:
            pop, src, proj = _layer(g, layer)
            caps = [c.cap(SG64.axons_at(level)) for c, _ in _density_caps(pop, src, proj, SG64)]
            print(f"| {name} | {layer} | {level} | {SG64.neurons_at(level) // pop.replicas} | {caps[0]} | "
                  f"{caps[1] if len(caps) > 1 else '-'} |")


if __name__ == "__main__":
    main()

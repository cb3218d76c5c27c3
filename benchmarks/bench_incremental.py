"""Incremental recompile against a full compile, in one run: VGG-Net in four-spike form (random,
seed 0) on sg64 with 1,024 destinations per neuron (as bench_place.py; VGG does not tile within
32), then one layer's weights change (a share of its ternary weights redrawn) and the model is
recompiled from the old image.

    python benchmarks/bench_incremental.py [--layer conv6] [--share 0.01] [--check 4]

Times: the full compile (compile_model + writing the image bytes, as `snnmap compile` does) and
the incremental one (reading the old image, compile_from, its bytes), each wall clock on this
machine. --check N simulates N random images on the new image and compares predictions and
logits with the independent reference.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np

from snnmap.chip.spec import SG64, ChipSpec
from snnmap.image.format import image_to_bytes
from snnmap.incremental import compile_from, read_old
from snnmap.pipeline import compile_model
from snnmap.zoo import vgg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layer", default="conv6", help="the layer whose weights change")
    ap.add_argument("--share", type=float, default=0.01, help="share of its weights redrawn")
    ap.add_argument("--check", type=int, default=0, help="images to simulate against the reference")
    a = ap.parse_args()
    wide = ChipSpec(**{**SG64.to_dict(), "name": "sg64, 1024 destinations", "max_destinations": 1024})
    model = vgg(0)
    t0 = time.perf_counter()
    res = compile_model(model, wide)
    data = image_to_bytes(res.image)
    full = time.perf_counter() - t0
    print(f"full compile: {full:.2f} s, {len(res.image.cores)} cores, {len(data):,} bytes")
    print("  " + ", ".join(f"{k} {v:.2f} s" for k, v in res.timings.items()))

    i = next(j for j, lay in enumerate(model.layers) if lay.name == a.layer)
    w = model.layers[i].weights.copy()
    rng = np.random.default_rng(1)
    idx = rng.choice(w.size, int(w.size * a.share), replace=False)
    w.reshape(-1)[idx] = rng.choice(np.array([-1, 0, 1], np.int8), len(idx))
    layers = list(model.layers)
    layers[i] = dataclasses.replace(layers[i], weights=w)
    new = dataclasses.replace(model, layers=tuple(layers))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "old.snnimg"
        path.write_bytes(data)
        del res, data
        t0 = time.perf_counter()
        inc = compile_from(new, wide, read_old(str(path)))
        out = inc.data
        part = time.perf_counter() - t0
    s = inc.summary
    print(f"incremental recompile ({a.layer}: {len(idx):,} of {w.size:,} weights redrawn): {part:.2f} s = "
          f"{part / full:.1%} of the full compile; {s['cores_reused']} cores reused byte for byte, "
          f"{s['cores_rewritten']} rewritten, {s['cores_new']} new; {len(out):,} bytes")
    print("  " + ", ".join(f"{k} {v:.2f} s" for k, v in inc.timings.items()))
    for r in s["layers"]:
        if r["reused"] != r["tiles"] or r["notes"]:
            print(f"  {r['layer']}: {r['status']}, {r['rewritten']} rewritten, {r['new']} new {r['notes']}")
    if a.check:
        from snnmap.image.format import parse_image
        from snnmap.reference import evaluate
        from snnmap.sim import Simulator

        x = np.random.default_rng(0).integers(0, 256, (a.check, 24, 24, 3)).astype(np.uint8)
        sim = Simulator(parse_image(out)).run(x)
        ref = evaluate(new, x)
        print(f"check on {a.check} random images: predictions equal {np.array_equal(sim['pred'], ref['pred'])}, "
              f"logits within 1e-12 {np.allclose(sim['logits'], ref['logits'], rtol=1e-12, atol=1e-12)}")


if __name__ == "__main__":
    main()

"""Compile VGG-Net (random parameters) for a chip and time the image's life after it: writing its
bytes, reading them back, simulating one input. Run each step in its own process so that
`/usr/bin/time -f "%M KB %e s"` gives each one's peak memory:

    python benchmarks/bench_vgg_image.py compile /tmp/vgg.snnimg [--chip paicore2] [--time-limit 60]
    python benchmarks/bench_vgg_image.py simulate /tmp/vgg.snnimg [--images 1]

compile prints the compile time and its passes (as compile_model times them), then the time to
turn the image into bytes; simulate prints the time to parse the bytes and to simulate.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=["compile", "simulate"])
    ap.add_argument("image")
    ap.add_argument("--chip", default="paicore2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--images", type=int, default=1)
    a = ap.parse_args()
    if a.step == "compile":
        from snnmap.chip.spec import get_chip
        from snnmap.image.format import image_to_bytes
        from snnmap.io.atomic import write_bytes_atomic
        from snnmap.pipeline import compile_model
        from snnmap.zoo import vgg

        t = time.perf_counter()
        r = compile_model(vgg(a.seed), get_chip(a.chip), time_limit=a.time_limit)
        t1 = time.perf_counter()
        print(f"compile {t1 - t:.1f} s:", ", ".join(f"{k} {v:.2f} s" for k, v in r.timings.items()))
        data = image_to_bytes(r.image)
        t2 = time.perf_counter()
        write_bytes_atomic(a.image, data)
        print(f"{len(r.image.cores)} cores; image_to_bytes {t2 - t1:.1f} s, {len(data) / 1e6:.1f} MB")
    else:
        from snnmap.image.format import parse_image
        from snnmap.sim import Simulator
        from snnmap.zoo import vgg

        with open(a.image, "rb") as f:
            data = f.read()
        t = time.perf_counter()
        img = parse_image(data)
        t1 = time.perf_counter()
        model = vgg(a.seed)
        x = np.random.default_rng(a.seed).integers(0, 256, size=(a.images, *model.input_shape)).astype(np.uint8)
        out = Simulator(img).run(x, batch=1)
        t2 = time.perf_counter()
        print(f"parse_image {t1 - t:.1f} s; simulate {a.images} input(s) {t2 - t1:.1f} s; pred {out['pred'].tolist()}")


if __name__ == "__main__":
    main()

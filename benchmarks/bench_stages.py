"""A network larger than the chip: in stages on one chip against a multi-chip board.

    python benchmarks/bench_stages.py [--images 8] [--seed 0] [--batch 1000] [--shared ../shared]
                                      [--only vgg-sg64,vgg-wide,lenet]

For each case: compile in stages on one chip (`--stages auto`) and on a board of chips configured
once, simulate the same random inputs on both images, check both against snnmap.reference
(predictions, logits, every layer's spike count), and print cores, chips or stages, compile time
and the modeled latency, energy and throughput per image (the model of docs/chips.md; the staged
time includes reconfiguration once per batch of --batch images, and also shown at batch 1 and
100). Cases: VGG-Net (snnmap.zoo.vgg, random ternary weights) on sg64 as specified (32
destinations) and on sg64 with 1,024 destinations (the variant of bench_place.py), and the
published LeNet on sg64 (needs --shared).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from snnmap.chip.spec import SG64
from snnmap.image import image_to_bytes, parse_image
from snnmap.pipeline import compile_model
from snnmap.reference import evaluate
from snnmap.sim import Simulator
from snnmap.sim import staged
from snnmap.sim.simulator import _config_bits, _stage_chips
from snnmap.zoo import vgg

LENET_ARCH = "16C5p2-16C5-16C2s2-32C5-32C2s2-256C4-10"
WIDE = replace(SG64, name="sg64-1024dest", max_destinations=1024)


def board_for(n_tiles: int, spec) -> tuple[int, int]:
    """As few chips as hold the tiles: a row if the chip address allows, else near-square."""
    chips = -(-n_tiles // spec.usable_cores)
    if chips <= 1 << spec.chip_x_bits:
        return chips, 1
    w = int(np.ceil(np.sqrt(chips)))
    return w, -(-chips // w)


def exact(res, out: dict, ref: dict, n: int) -> bool:
    """Predictions, logits and every ANN neuron's spike count equal to the reference (the counts
    from the recorded core spikes: the simulator's per-layer totals also count fan-out copies)."""
    ok = np.array_equal(out["pred"], ref["pred"]) and np.allclose(out["logits"], ref["logits"], rtol=1e-12, atol=1e-12)
    got = res.ann_counts(out["core_spikes"], n)
    for want, name in zip(ref["counts"][1:], got):
        ok &= np.array_equal(got[name], want.reshape(n, -1))
    return bool(ok)


def run_case(name: str, model, spec, x: np.ndarray, batch: int, inputs: str) -> None:
    ref = evaluate(model, x)
    n = len(x)
    rows = []
    for how in ("stages", "board"):
        t0 = time.perf_counter()
        if how == "stages":
            res = compile_model(model, spec, stages=0)
        else:
            # tiles are known only after tiling: compile once in stages to count them (cheap next to
            # placement), then on the smallest board that holds them
            chips = board_for(len(rows[0]["img"].cores), spec)
            res = compile_model(model, spec, chips=chips)
        img = parse_image(image_to_bytes(res.image))
        t_compile = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = Simulator(img).run(x, batch=min(n, 64), stage_batch=batch, record=True)
        t_sim = time.perf_counter() - t0
        row = {"how": how, "img": img, "compile_s": t_compile, "sim_s": t_sim, "exact": exact(res, out, ref, n),
               "cores": len(img.cores), "chips": _stage_chips(img) if how == "stages" else res.placement.chips,
               "stages": img.stages, "latency_ms": out["latency_s"].mean() * 1e3,
               "one_ms": (out["stages"]["batch_s"] * 1e3 if how == "stages" else out["latency_s"].mean() * 1e3),
               "energy_mj": out["energy_j"].mean() * 1e3, "throughput": 1 / out["period_s"].mean(),
               "spikes": out["spikes"].mean(), "sops": out["sops"].mean(), "hops": None}
        if how == "stages":
            s = out["stages"]
            row["reconf_share"] = s["reconfiguration_share"]
            row["reconf_ms_batch"] = s["reconfiguration_s_per_batch"].sum() * 1e3
            row["host_packets"] = (s["host_in_packets"].sum(axis=0).mean(), s["host_out_packets"].sum(axis=0).mean())
            row["by_batch"] = {}
            for b in (1, 100, batch):
                c = staged.cost(img.spec, _stage_chips(img), s["stage_cycles"], s["host_io"], _config_bits(img), b,
                                out["sops"], np.zeros(n))
                hop_e = out["energy_hop_j"]
                row["by_batch"][b] = (c["latency_s"].mean() * 1e3, (c["energy_j"] + hop_e).mean() * 1e3,
                                      c["stages"]["reconfiguration_share"])
        rows.append(row)
        print(f"  {name} {how}: compiled in {t_compile:.1f} s, simulated {n} images in {t_sim:.1f} s, "
              f"bit-exact vs reference: {row['exact']}", flush=True)
    s, b = rows
    print(f"\n### {name} ({spec.name}, max_destinations {spec.max_destinations}), {n} {inputs}\n")
    print("| mapping | cores | chips | stages | time per image ms (1/throughput) | latency of one image ms | "
          "energy mJ/image | images/s | bit-exact | compile s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        what = (f"stages on one chip, batch {batch}" if r["how"] == "stages" else
                f"board {r['img'].info.get('chips', r['chips'])} chips, configured once")
        print(f"| {what} | {r['cores']:,} | {r['chips']} | {r['stages']} | {1e3 / r['throughput']:.3f} | "
              f"{r['one_ms']:.3f} | {r['energy_mj']:.3f} | {r['throughput']:,.0f} | {r['exact']} | {r['compile_s']:.1f} |")
    print(f"\nstaged: reconfiguration {s['reconf_ms_batch']:.2f} ms per batch ({s['reconf_share']:.1%} of the time "
          f"at batch {batch}); host link per image: {s['host_packets'][0]:,.0f} packets in (encoder and "
          f"buffer), {s['host_packets'][1]:,.0f} out to the buffer; spikes per image {s['spikes']:,.0f} (board {b['spikes']:,.0f})")
    for bb, (lat, en, share) in s["by_batch"].items():
        print(f"  batch {bb}: {lat:.3f} ms and {en:.3f} mJ per image, reconfiguration {share:.1%} of the time")
    print()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--only", default="lenet,vgg-wide,vgg-sg64")
    a = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"numpy {np.__version__}; load average {os.getloadavg()[0]:.2f} at start\n")
    rng = np.random.default_rng(a.seed)
    for case in a.only.split(","):
        if case == "lenet":
            params = Path(a.shared) / "reference" / "sg_lenet_mnist_k1_B2.npz"
            if not params.exists():
                print(f"skipping lenet: {params} absent\n")
                continue
            from snnmap.importers.tl import import_tl

            model = import_tl(params, LENET_ARCH, 1, 2, 1 / 256, name="lenet")
            with np.load(Path(a.shared) / "data" / "mnist.npz") as d:
                x = d["x_test"][:a.images * 16]
            run_case("published LeNet", model, SG64, x, a.batch, "MNIST test images")
        else:
            model = vgg(a.seed)
            x = rng.integers(0, 256, size=(a.images, *model.input_shape)).astype(np.uint8)
            run_case(f"VGG-Net (zoo.vgg({a.seed}))", model, SG64 if case == "vgg-sg64" else WIDE, x, a.batch,
                     "random inputs")


if __name__ == "__main__":
    main()

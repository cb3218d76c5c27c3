"""Placement: spike-hops per image of the CP-SAT passes against the sequential and random
baselines, the gap to the lower bound, and on small instances the proven optimum.

    python benchmarks/bench_place.py [--shared ../shared] [--vgg] [--vgg-paicore2] [--no-lenet] [--small]

Networks: the published four-spike LeNet on sg64 and on paicore2 (its traffic from 200 MNIST test
images through the reference, and from the uniform-activity model), VGG-Net (random, seed 0) on
sg64 with max_destinations = 1024 (it does not tile within 32) in a row of chips and on a 6x5
board, and on paicore2 (its tiling alone takes minutes). On paicore2 the sequential baseline is
the Morton block layout (the PAICORE toolchain's power-of-two packing in quadtree order), the
random one puts the aligned units at random aligned places, and a multicast word costs its
delivery tree (links.py).
--small: a random network (8C3p1-12C3p1-12C2s2-16C3-10) on 8x8, 10x10 and 12x12 inputs, 9 to 18
tiles on chips of 4x4 cores: after the passes (2 s), one whole-board CP-SAT solve (20 budget
units) tries to prove the optimum they are compared with. Each row compiles with the
default placement budget (pipeline.default_place_seconds) unless --seconds is given.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from snnmap.chip.spec import PAICORE2, SG64, ChipSpec
from snnmap.importers.tl import import_tl
from snnmap.pipeline import compile_model
from snnmap.zoo import LENET_ARCH, random_model, vgg


def row(name: str, model, spec: ChipSpec, chips=None, calibration=None, seconds=None) -> None:
    t0 = time.perf_counter()
    res = compile_model(model, spec, chips=chips, calibration=calibration, place_seconds=seconds)
    total = time.perf_counter() - t0
    rep = res.placement_report
    seq = rep["baselines"]["sequential"]["spike_hops"]
    rnd = rep["baselines"]["random"]["spike_hops"]
    passes = "; ".join(
        f"{p['pass']} {p['spike_hops'] / seq:.3f}x, load {p['max_link_load']:,.0f}" + ("" if p["gap"] is None else
                                                       f" (gap {p['gap']:.1%}, {p['proven_optimal']}/{p['solves']} proven)")
        for p in rep["passes"])
    place_s = sum(v for k, v in res.timings.items() if k.startswith("place"))
    layer_order = None if spec.multicast else _layer_order_curve(model, spec, res, chips, calibration)
    print(f"| {name} | {spec.name} | {rep['board'][0]}x{rep['board'][1]} | {len(res.image.cores)} | "
          f"{rep['traffic_model'].split(' (')[0]} | {seq:,.0f} | {rnd:,.0f} | {rep['spike_hops']:,.0f} | "
          f"{rep['spike_hops'] / seq:.3f} | {'-' if layer_order is None else f'{layer_order / seq:.3f}'} | "
          f"{rep['max_link_load']:,.0f} vs "
          f"{rep['baselines']['sequential']['max_link_load']:,.0f} | {rep['gap_to_lower_bound']:.1%} | "
          f"{place_s:.1f} s | {total:.1f} s | {passes} |", flush=True)


def _layer_order_curve(model, spec: ChipSpec, res, chips, calibration) -> float:
    """Spike-hops of the tiles laid along the curve in plain layer order (no smoothing)."""
    from snnmap.convert import convert
    from snnmap.ir import chip_layers
    from snnmap.passes.place import make_board
    from snnmap.passes.place_cpsat import Cost
    from snnmap.passes.place_curve import curve_slots
    from snnmap.passes.traffic import calibrated_counts, tile_traffic

    g = convert(model)
    order = chip_layers(g)
    tr = tile_traffic(g, res.tiling, order, None if calibration is None else calibrated_counts(model, calibration))
    n = len(res.image.cores)
    board = make_board(spec, n, chips)
    return Cost(board, tr, n).spike_hops(curve_slots(board)[:n])


def small(hw: int, spec: ChipSpec, seconds: float, prove: float, seed: int = 0) -> None:
    """The incremental passes, then one whole-board solve given `prove` budget units to prove."""
    from snnmap.convert import convert
    from snnmap.ir import chip_layers
    from snnmap.passes.place import make_board
    from snnmap.passes.place_cpsat import Cost, PassReport, Placer
    from snnmap.passes.traffic import tile_traffic

    model = random_model("8C3p1-12C3p1-12C2s2-16C3-10", (hw, hw), 1, seed=seed, name=f"small-{hw}")
    res = compile_model(model, spec, place_seconds=seconds)
    g = convert(model)
    order = chip_layers(g)
    tr = tile_traffic(g, res.tiling, order)
    n = len(res.image.cores)
    board = make_board(spec, n)
    cost = Cost(board, tr, n)
    pos = board.slots_of(res.placement.coords)
    incremental = cost.spike_hops(pos)
    placer = Placer(board, cost, seed)
    rep = PassReport("prove")
    t0 = time.perf_counter()
    best = pos.copy()
    placer.solve(best, np.arange(n), [np.arange(board.slots)] * n, prove, rep, quick=False)
    dt = time.perf_counter() - t0
    status = "proven optimal" if rep.proven else f"best bound {rep.bound:,.1f}"
    print(f"| {hw}x{hw} input | {n} tiles on {board.chips_x}x{board.chips_y} chips of {spec.mesh_w}x{spec.mesh_h} | "
          f"{res.placement_report['baselines']['sequential']['spike_hops']:,.1f} | {incremental:,.1f} | "
          f"{cost.spike_hops(best):,.1f} ({status}) | {(incremental - rep.bound) / incremental:.1%} | {dt:.1f} s |",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--vgg", action="store_true", help="also VGG-Net on sg64 (about a minute per row)")
    ap.add_argument("--vgg-paicore2", action="store_true",
                    help="also VGG-Net on paicore2 (its tiling takes minutes and about 10 GB)")
    ap.add_argument("--no-lenet", action="store_true", help="leave out the LeNet rows")
    ap.add_argument("--small", action="store_true", help="also the small instances proven by CP-SAT")
    ap.add_argument("--seconds", type=float, default=None, help="placement budget (default: the compiler's)")
    a = ap.parse_args()
    print("| network | chip | board | cores | traffic | sequential | random | CP-SAT passes | vs sequential | "
          "layer order on the curve, vs sequential | max link load (vs sequential) | gap to lower bound | "
          "placement time | compile time | per pass |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    params = Path(a.shared) / "reference" / "sg_lenet_mnist_k1_B2.npz"
    if params.exists() and not a.no_lenet:
        lenet = import_tl(params, LENET_ARCH, 1, 2, 1 / 256, name="lenet")
        row("LeNet (published)", lenet, SG64, seconds=a.seconds)
        mnist = Path(a.shared) / "data" / "mnist.npz"
        if mnist.exists():
            with np.load(mnist) as d:
                x = d["x_test"][:200]
            row("LeNet (published)", lenet, SG64, calibration=x, seconds=a.seconds)
        row("LeNet (published)", lenet, PAICORE2, seconds=a.seconds)
        if mnist.exists():
            row("LeNet (published)", lenet, PAICORE2, calibration=x, seconds=a.seconds)
    if a.vgg:
        wide = ChipSpec(**{**SG64.to_dict(), "name": "sg64, 1024 destinations", "max_destinations": 1024})
        model = vgg(0)
        row("VGG-Net (random, seed 0)", model, wide, seconds=a.seconds)
        row("VGG-Net (random, seed 0)", model, wide, chips=(6, 5), seconds=a.seconds)
    if a.vgg_paicore2:
        row("VGG-Net (random, seed 0)", vgg(0), PAICORE2, seconds=a.seconds)
    if a.small:
        spec = ChipSpec(**{**SG64.to_dict(), "name": "sg16", "mesh_w": 4, "mesh_h": 4, "neurons_per_core": 1024,
                           "axons_per_core": 512, "fanin_max_level": 1})
        print("\n| instance | board | sequential | incremental passes | whole-board CP-SAT | "
              "incremental vs bound | proof time |")
        print("|---|---|---|---|---|---|---|")
        for hw in (8, 10, 12):
            small(hw, spec, seconds=a.seconds or 2.0, prove=20.0)


if __name__ == "__main__":
    main()

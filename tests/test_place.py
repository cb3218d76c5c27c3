"""Placement: the traffic model against the routed image, the curve, the baselines, CP-SAT against
brute force, determinism, bit-exact simulation on other placers and boards, and the CLI's errors."""

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snnmap.chip import address
from snnmap.chip.spec import SG64, ChipSpec
from snnmap.convert import convert
from snnmap.errors import DesignRuleError, SnnmapError
from snnmap.ir import chip_layers
from snnmap.passes.place import Board, make_board, random_slots, sequential_slots
from snnmap.passes.place_balance import BALANCE_TOLERANCE
from snnmap.passes.place_cpsat import Cost, place_cpsat
from snnmap.passes.place_curve import chip_curve, curve_slots
from snnmap.passes.traffic import Traffic, calibrated_counts, tile_traffic, uniform_rates
from snnmap.pipeline import compile_model
from snnmap.reference import evaluate

from randnet import images, networks
from test_cli import assert_clean_failure, run
from test_end_to_end import TINY, simulate_exactly
from test_image import small_model


def chip(w, h, **kw):
    return ChipSpec(**{**SG64.to_dict(), "name": f"c{w}x{h}", "mesh_w": w, "mesh_h": h, **kw})


def test_calibrated_traffic_equals_the_routed_image():
    """Packets between cores computed from the image's destination words and the reference's
    counts, without the traffic module, equal the traffic the placer optimizes."""
    model = small_model()
    spec = TINY
    res = compile_model(model, spec, placer="random", seed=3)
    img = res.image
    x = np.random.default_rng(0).integers(0, 256, (20, *model.input_shape[:2])).astype(np.uint8)
    ref = evaluate(model, x)
    n = model.replicas
    key = {tuple(c.coord): i for i, c in enumerate(img.cores)}
    want = {}
    names = [layer["name"] for layer in img.layers]
    i = 0
    for li, name in enumerate(names):
        mean = ref["counts"][li + 1].reshape(len(x), -1).mean(axis=0)
        for t in res.tiling.layers[name]:
            c = img.cores[i]
            is_host, cx, cy, xx, yy, _ = address.decode(spec, c.dest)
            owner = np.repeat(np.arange(c.neurons), np.diff(c.dest_ptr.astype(np.int64)))
            for o, h, a, b, p, q in zip(owner, is_host, cx, cy, xx, yy):
                if not h:
                    d = key[(int(a), int(b), int(p), int(q))]
                    want[(i, d)] = want.get((i, d), 0.0) + mean[t.neuron_src[o]] / n
            i += 1
    g = convert(model)
    order = chip_layers(g)
    tr = tile_traffic(g, res.tiling, order, calibrated_counts(model, x))
    got = {(int(s), int(d)): w for s, d, w in zip(tr.src, tr.dst, tr.packets)}
    want = {k: v for k, v in want.items() if v > 0}
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-12)


def test_uniform_rates_respect_reachable_potentials():
    model = small_model()
    g = convert(model)
    res = compile_model(model, SG64, placer="sequential")
    t = res.tiling.layers[chip_layers(g)[0]][0]
    pos = np.count_nonzero(t.crossbar[t.axon_sign > 0], axis=0)
    for theta, p in ((10**6, 0.0), (-(10**6), 1.0)):
        t.thresholds = np.full_like(t.thresholds, theta)
        assert np.all(uniform_rates(t, model.replicas) == p)
    t.thresholds = np.repeat(np.arange(-3, 3), -(-len(t.thresholds) // 6))[:len(t.thresholds)]
    r = uniform_rates(t, model.replicas)
    assert np.all((r >= 0) & (r <= 1)) and pos.max() > 0


@settings(max_examples=60, deadline=None)
@given(w=st.integers(1, 12), h=st.integers(1, 12), cx=st.integers(1, 3), cy=st.integers(1, 3))
def test_curve_visits_every_slot_once(w, h, cx, cy):
    cells = chip_curve(w, h)
    assert sorted(map(tuple, cells)) == [(x, y) for x in range(w) for y in range(h)]
    assert tuple(cells[0]) == (0, 0)
    board = Board(chip(w, h), cx, cy)
    slots = curve_slots(board)
    assert sorted(slots) == list(range(board.slots))
    steps = np.diff(board.coords(slots)[:, 2:], axis=0)
    within = np.all(np.diff(board.coords(slots)[:, :2], axis=0) == 0, axis=1)
    # inside a chip the curve moves to a neighbouring core, except the rare diagonal step of
    # the generalized curve on odd sides
    assert np.abs(steps[within]).sum(axis=1).max(initial=1) <= 2


def test_baselines_and_board_checks():
    spec = chip(2, 2)
    board = make_board(spec, 7)
    assert (board.chips_x, board.chips_y) == (2, 1)
    seq = sequential_slots(7, board)
    assert board.coords(seq)[:, 0].tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert len(set(random_slots(7, board, 1))) == 7
    assert not np.array_equal(random_slots(7, board, 1), random_slots(7, board, 2))
    square = make_board(spec, 7, (2, 2))
    assert square.coords(sequential_slots(7, square))[:, :2].tolist()[4:] == [[1, 0]] * 3
    with pytest.raises(SnnmapError, match="need 2 chips"):
        make_board(spec, 7, (1, 1))
    with pytest.raises(SnnmapError, match="at most"):
        make_board(spec, 7, (1 << spec.chip_x_bits + 1, 1))
    assert np.array_equal(board.slots_of(board.coords(np.arange(board.slots))), np.arange(board.slots))


def random_traffic(n, rng, density=0.3, top=100):
    pairs = [(a, b) for a, b in itertools.combinations(range(n), 2) if rng.random() < density]
    src, dst = (np.array(v, np.int64) for v in zip(*pairs))
    return Traffic(src, dst, rng.integers(1, top + 1, len(src)).astype(np.float64), "test")


@pytest.mark.parametrize("seed", range(3))
def test_exact_pass_proves_the_brute_force_optimum(seed):
    """7 tiles on a 3x3 chip: every placement enumerated; the passes end at the optimum and the
    whole-board solve proves it (integer packets, so CP-SAT's scaling is exact)."""
    rng = np.random.default_rng(seed)
    n = 7
    tr = random_traffic(n, rng, density=0.5)
    board = Board(chip(3, 3), 1, 1)
    cost = Cost(board, tr, n)
    perms = np.array(list(itertools.permutations(range(board.slots), n)))
    hops = board.hops(perms[:, tr.src].ravel(), perms[:, tr.dst].ravel()).reshape(len(perms), -1)
    best = float((hops * tr.packets).sum(axis=1).min())
    assert cost.lower_bound() <= best
    start = np.arange(n)
    placer = place_cpsat(board, tr, [np.arange(n)], start, budget=5.0, seed=0)
    names = [r.name for r in placer.reports]
    assert names == ["windows", "refine", "exact", "balance"]
    exact = placer.reports[-2]
    assert exact.proven == 1 and exact.bound == pytest.approx(best)
    assert exact.spike_hops == pytest.approx(best)
    assert best - 1e-9 <= cost.spike_hops(placer.pos) <= best * (1 + BALANCE_TOLERANCE) + 1e-9
    assert len(set(placer.pos.tolist())) == n


def test_passes_improve_and_repeat_exactly():
    rng = np.random.default_rng(7)
    n = 60
    layers = [np.arange(0, 20), np.arange(20, 40), np.arange(40, 60)]
    src = np.concatenate([rng.integers(0, 20, 80), rng.integers(20, 40, 80)])
    dst = np.concatenate([rng.integers(20, 40, 80), rng.integers(40, 60, 80)])
    key = np.unique(src * n + dst)
    tr = Traffic(key // n, key % n, rng.uniform(1, 50, len(key)), "test")
    board = Board(chip(4, 4), 2, 2)
    start = sequential_slots(n, board)
    cost = Cost(board, tr, n)
    a = place_cpsat(board, tr, layers, start, budget=0.3, seed=5)
    b = place_cpsat(board, tr, layers, start, budget=0.3, seed=5)
    assert np.array_equal(a.pos, b.pos)
    assert a.reports[-1].name == "balance"
    hops = [cost.spike_hops(start)] + [r.spike_hops for r in a.reports[:-1]]
    assert all(x >= y - 1e-9 for x, y in itertools.pairwise(hops))
    assert hops[-1] < hops[0]
    # the second objective: the most loaded link no higher, spike-hops within the tolerance
    bal, before = a.reports[-1], a.reports[-2]
    assert bal.max_link_load <= before.max_link_load + 1e-9
    assert bal.spike_hops <= before.spike_hops * (1 + BALANCE_TOLERANCE) + 1e-9
    assert cost.max_link_load(a.pos) == pytest.approx(bal.max_link_load)
    assert all(r.objective >= r.bound - 1e-6 for r in a.reports if r.cpsat)
    assert len(set(a.pos.tolist())) == n and a.pos.max() < board.slots


@pytest.mark.parametrize("placer,chips", [("cpsat", (2, 2)), ("random", None), ("sequential", (3, 1))])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=networks(), seed=st.integers(0, 1000))
def test_simulation_stays_exact_on_every_placer_and_board(placer, chips, model, seed):
    x = images(model, 6, seed)
    try:
        result = compile_model(model, TINY, placer=placer, seed=seed, chips=chips)
    except DesignRuleError as e:
        assert "limit" in str(e)
        return
    except SnnmapError as e:  # a board too small for this network
        assert "need" in str(e)
        return
    simulate_exactly(result, model, x, batch=3)
    rep = result.placement_report
    assert rep["spike_hops"] >= rep["lower_bound"] - 1e-6


def test_compile_prints_placement_and_rejects_bad_requests(tmp_path):
    from snnmap.modelfile import save_model

    model_file = tmp_path / "m.snnm"
    save_model(small_model(), model_file)
    out = tmp_path / "o.snnimg"
    p = run("compile", model_file, "-o", out, "--seed", "2")
    assert p.returncode == 0, p.stderr
    assert "spike-hops per image" in p.stdout and "baseline sequential" in p.stdout
    assert "pass windows" in p.stdout and "gap" in p.stdout
    for args, text in ((("--time-limit", "0"), "positive"), (("--time-limit", "-1"), "positive"),
                       (("--chips", "0x1"), "WxH"), (("--chips", "2"), "WxH"),
                       (("--chips", "64x1"), "at most")):
        line = assert_clean_failure(run("compile", model_file, "-o", out.with_suffix(".x"), *args),
                                    out.with_suffix(".x"))
        assert text in line, line
    tiny = tmp_path / "tiny.toml"
    tiny.write_text('base = "sg64"\nmesh_w = 1\nmesh_h = 1\nneurons_per_core = 32\naxons_per_core = 96\n'
                    'fanin_max_level = 0\n')
    p = run("compile", model_file, "-o", out.with_suffix(".y"), "--chip", tiny, "--chips", "1x1")
    assert "need" in assert_clean_failure(p, out.with_suffix(".y"))
    cal = tmp_path / "cal.npz"
    np.savez(cal, x=np.random.default_rng(0).integers(0, 256, (5, 8, 8)).astype(np.uint8))
    p = run("compile", model_file, "-o", out, "--calibrate", cal, "--json")
    assert p.returncode == 0, p.stderr
    import json

    rep = json.loads(p.stdout)["placement"]
    assert rep["traffic_model"].startswith("calibrated: mean activity of 5 images")
    assert set(rep["baselines"]) == {"sequential", "random"}


def test_placement_stops_at_the_time_limit(monkeypatch):
    """--time-limit: every CP-SAT solve gets at most the time left, and once it is spent the passes
    stop (cut_by_clock) with a complete image. On a clock that stands still except while a solve
    runs, where each solve is taken to last 0.3 s: counted, not timed."""
    from snnmap import deadline
    from snnmap.passes import place_cpsat as pc

    from test_reliability import lenet_like

    class Clock:
        t = 0.0

        def monotonic(self):
            return self.t

    clock = Clock()
    monkeypatch.setattr(deadline, "time", clock)
    solves = []
    real = pc.solve_and_keep

    def solve(owner, m, rep, work, wall, *args, **kwargs):
        solves.append((wall, owner.deadline.end - clock.t))
        done = real(owner, m, rep, work, wall, *args, **kwargs)
        clock.t += 0.3
        return done

    monkeypatch.setattr(pc, "solve_and_keep", solve)
    res = compile_model(lenet_like(), SG64, time_limit=0.8, place_seconds=60.0)
    assert [round(w, 6) for w, _ in solves] == [0.8, 0.5, 0.2]  # then 0.1 s past the limit: no more solves
    assert all(wall <= left for wall, left in solves)
    assert res.placement_report["cut_by_clock"]
    assert len(res.image.cores) == len(res.placement.coords)


def test_a_board_too_large_to_place_is_refused():
    """A chip file of 2^24 cores per chip (or a 1024 x 1024 mesh: 35 s to place two tiles) ran out
    of memory or time in placement; a custom 256 x 256 chip on --chips 8x8 likewise. Both are now
    refused before any work: at most 2^16 cores per chip and 2^20 on a board."""
    d = SG64.to_dict()
    for w, h, bits in ((1024, 1024, 10), (1 << 24, 1, 24)):
        with pytest.raises(SnnmapError, match="cores, over the"):
            ChipSpec.from_dict({**d, "mesh_w": w, "mesh_h": h, "core_x_bits": bits, "core_y_bits": min(bits, 10)},
                               "chip.toml")
    big = ChipSpec.from_dict({**d, "mesh_w": 256, "mesh_h": 256, "core_x_bits": 8, "core_y_bits": 8}, "chip.toml")
    with pytest.raises(SnnmapError, match="board of 4194304 cores"):
        make_board(big, 2, (8, 8))
    assert make_board(SG64, 2, (32, 32)).slots == 1 << 16  # the largest sg64 board still is one

"""Placement on multicast chips: the delivery-tree hop model against brute force and against the
routed image, units that keep the fan-out blocks, baselines, determinism, bit-exact simulation."""

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snnmap.chip.spec import PAICORE2
from snnmap.convert import convert
from snnmap.errors import DesignRuleError
from snnmap.image import image_to_bytes
from snnmap.ir import chip_layers, source_of
from snnmap.model import BatchNorm, Classifier, Layer, QuantModel
from snnmap.passes.fanout import per_chip
from snnmap.links import grid_link_loads, link_loads, segment_hops, spike_hops, tree_segments
from snnmap.passes.place_balance import BALANCE_TOLERANCE
from snnmap.passes.place_blocks import block_codes
from snnmap.passes.place_mcast import CodeBoard, MCost, check_bases, make_units, random_bases, start_bases
from snnmap.passes.traffic import block_words
from snnmap.pipeline import compile_model
from snnmap.zoo import lenet

from randnet import images, networks
from test_end_to_end import MCAST, simulate_exactly


def _union_links(sx, sy, dests):
    """Links of the union of X-then-Y routes from (sx, sy) to each destination, enumerated."""
    links = set()
    for dx, dy in dests:
        x, y = sx, sy
        while x != dx:
            nx_ = x + (1 if dx > x else -1)
            links.add(("h", min(x, nx_), y))
            x = nx_
        while y != dy:
            ny_ = y + (1 if dy > y else -1)
            links.add(("v", x, min(y, ny_)))
            y = ny_
    return links


@settings(max_examples=60, deadline=None)
@given(sx=st.integers(0, 11), sy=st.integers(0, 11),
       dests=st.lists(st.tuples(st.integers(0, 11), st.integers(0, 11)), min_size=1, max_size=8, unique=True))
def test_tree_segments_are_the_union_of_routes(sx, sy, dests):
    spec = PAICORE2.__class__(**{**PAICORE2.to_dict(), "mesh_w": 4, "mesh_h": 4, "core_x_bits": 2,
                                 "core_y_bits": 2, "reserved_corner": 1})
    d = np.array(dests)
    n = len(d)
    h, v = tree_segments(np.full(n, sx), np.full(n, sy), np.zeros(n, np.int64), d[:, 0], d[:, 1])
    links = _union_links(sx, sy, dests)
    # hops: every link once, a link between chips (4 x 4 cores each) counting chip_link_hops
    want = sum(spec.chip_link_hops if (k == "h" and (a + 1) % 4 == 0) or (k == "v" and (b + 1) % 4 == 0) else 1
               for k, a, b in links)
    assert segment_hops(spec, h, v).sum() == want
    H, V = grid_link_loads(12, 12, np.r_[h[2], v[1]], np.r_[h[1], v[2]], np.r_[h[3], v[1]], np.r_[h[1], v[3]], 1.0)
    got = {("h", x, y) for y, x in zip(*np.nonzero(H))} | {("v", x, y) for y, x in zip(*np.nonzero(V))}
    assert got == links and H.max(initial=0) <= 1 and V.max(initial=0) <= 1


def _mcost(model, spec, result, per_replica=None):
    g = convert(model)
    order = chip_layers(g)
    layers = [(len(result.tiling.layers[n]), result.tiling.fanout[source_of(g, n)].align) for n in order]
    units = make_units(layers, spec)
    codes = block_codes(layers, spec)
    board = CodeBoard(spec, int(codes.max()) // spec.cores_per_chip + 1)
    words = block_words(g, result.tiling, order, per_replica=per_replica)
    return MCost(board, units, words), units, board, codes


@pytest.mark.parametrize("placer", ["cpsat", "sequential", "random"])
def test_placement_cost_equals_the_routed_image(placer):
    """Spike-hops and the most loaded link the placer computes from units and fan-out pieces equal
    what links.py computes from the image's destination words alone (each word counted once)."""
    model = lenet(3)
    res = compile_model(model, PAICORE2, placer=placer, seed=4, place_seconds=0.5)
    cost, units, board, _ = _mcost(model, PAICORE2, res, per_replica=1.0)
    codes = np.array([c[0] * PAICORE2.cores_per_chip for c in res.placement.coords])  # one chip row here
    from snnmap.passes.tiling import morton
    codes = codes + morton(res.placement.coords[:, 2], res.placement.coords[:, 3])
    base = start_bases(units, codes)
    check_bases(board, units, base)
    assert np.array_equal(base[units.unit_of] + units.offset, codes)
    assert cost.spike_hops(base) == pytest.approx(spike_hops(res.image), rel=1e-12)
    H, V = link_loads(res.image)
    assert cost.max_link_load(base) == pytest.approx(max(H.max(), V.max()), rel=1e-12)
    rep = res.placement_report
    assert rep["spike_hops"] >= rep["lower_bound"] - 1e-6
    if placer == "cpsat":
        hops = [p["spike_hops"] for p in rep["passes"]]
        assert hops[-1] <= rep["baselines"]["sequential"]["spike_hops"] + 1e-9
        assert [p["pass"] for p in rep["passes"]] == ["blocks", "grow", "windows", "refine", "balance"]
        assert all(a >= b - 1e-9 for a, b in itertools.pairwise(hops[1:-1]))
        bal, before = rep["passes"][-1], rep["passes"][-2]
        assert bal["max_link_load"] <= before["max_link_load"] + 1e-9
        assert bal["spike_hops"] <= before["spike_hops"] * (1 + BALANCE_TOLERANCE) + 1e-9
        assert rep["max_link_load"] == pytest.approx(bal["max_link_load"])
        assert all(p["objective"] >= p["bound"] - 1e-6 for p in rep["passes"] if p["objective"])


def test_units_keep_blocks_and_random_bases_are_valid():
    model = lenet(1)
    res = compile_model(model, PAICORE2, placer="sequential")
    cost, units, board, codes = _mcost(model, PAICORE2, res)
    start = start_bases(units, codes)
    check_bases(board, units, start)
    assert np.all(start % units.size == 0)
    for seed in range(3):
        check_bases(board, units, random_bases(board, units, seed, start))
    assert not np.array_equal(random_bases(board, units, 0, start), random_bases(board, units, 1, start))
    # a board too full for free random places: units shuffled among equal footprints, still valid
    tight = make_units([(6, 4), (3, 1), (5, 1)], MCAST)
    board = CodeBoard(MCAST, 1)
    first = start_bases(tight, block_codes([(6, 4), (3, 1), (5, 1)], MCAST))
    for seed in range(5):
        check_bases(board, tight, random_bases(board, tight, seed, first))
    assert cost.lower_bound() <= cost.spike_hops(start)


def test_same_seed_gives_the_same_image_on_paicore2():
    model = lenet(2)
    a = image_to_bytes(compile_model(model, PAICORE2, seed=5, place_seconds=0.4).image)
    b = image_to_bytes(compile_model(model, PAICORE2, seed=5, place_seconds=0.4).image)
    assert a == b


@pytest.mark.parametrize("placer", ["random", "cpsat"])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=networks(), seed=st.integers(0, 1000))
def test_simulation_stays_exact_when_units_move(placer, model, seed):
    x = images(model, 6, seed)
    try:
        result = compile_model(model, MCAST, placer=placer, seed=seed)
    except DesignRuleError as e:
        assert "limit" in str(e)
        return
    simulate_exactly(result, model, x, batch=3)


def _spread_model(seed: int) -> QuantModel:
    """Two 3x3 layers of 12x12x8 neurons: on MCAST (15 usable cores of 32 neurons) each spans
    several chips."""
    rng = np.random.default_rng(seed)
    bn = lambda c: BatchNorm(rng.normal(0, 1, c), rng.uniform(0.5, 2, c) * rng.choice([-1, 1], c),
                             rng.normal(0, 2, c), rng.uniform(0.5, 4, c))
    enc = Layer("encoder", "conv", rng.normal(0, 0.5, (3, 3, 1, 4)), bn(4), 1, 1)
    layers = tuple(Layer(f"conv{i}", "conv", rng.choice([-1, 0, 1], size=(3, 3, cin, 8), p=[0.3, 0.4, 0.3]).astype(np.int8),
                         bn(8), 1, 1) for i, cin in enumerate((4, 8)))
    clf = Classifier(rng.normal(size=(12 * 12 * 8, 3)), rng.normal(size=3))
    return QuantModel((12, 12, 1), 1, 1, 1 / 16, enc, layers, clf, name="spread").validate()


@pytest.mark.parametrize("placer,seed", [("sequential", 0), ("cpsat", 1), ("random", 2)])
def test_layers_spanning_chips_keep_their_blocks_aligned_and_simulate_exactly(placer, seed):
    """A layer larger than a chip puts per_chip tiles on each (a multiple of a power of two, so
    aligned blocks never straddle two chips): the sequential layout is the one the fan-out was
    cut in, and wherever units move the image still simulates bit-exactly."""
    assert per_chip(MCAST) == 14 < MCAST.usable_cores
    model = _spread_model(seed)
    result = compile_model(model, MCAST, placer=placer, seed=seed, place_seconds=0.2)
    spread = [f for f in result.tiling.fanout.values() if f.spread]
    assert spread  # the test is about layers over several chips
    by_layer = np.cumsum([0] + [len(t) for t in result.tiling.layers.values()])
    for i, (name, tiles) in enumerate(result.tiling.layers.items()):
        if len(tiles) > MCAST.usable_cores and placer == "sequential":
            chip_of = result.placement.coords[by_layer[i]:by_layer[i + 1], :2]
            _, per = np.unique(chip_of, axis=0, return_counts=True)
            assert per.max() <= per_chip(MCAST)
    simulate_exactly(result, model, images(model, 6, seed), batch=3)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=networks(), seed=st.integers(0, 1000))
def test_other_tile_sizes_weighed_for_every_layer_stay_exact(model, seed):
    """Layers above LOOKAHEAD_TILES weigh a tile of another size besides their best shape; with
    the threshold at 0 every layer of a small network does, and its image simulates exactly."""
    from snnmap.passes import tiling

    x = images(model, 6, seed)
    old, tiling.LOOKAHEAD_TILES = tiling.LOOKAHEAD_TILES, 0
    try:
        result = compile_model(model, MCAST, seed=seed, place_seconds=0.1)
    except DesignRuleError as e:
        assert "limit" in str(e)
        return
    finally:
        tiling.LOOKAHEAD_TILES = old
    simulate_exactly(result, model, x, batch=3)

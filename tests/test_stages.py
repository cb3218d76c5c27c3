"""Networks larger than the chip: compiled in stages, run stage by stage, bit-exact."""

import copy

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from snnmap.chip import address
from snnmap.chip.spec import SG64, ChipSpec
from snnmap.errors import DesignRuleError, SnnmapError
from snnmap.image import image_to_bytes, parse_image
from snnmap.passes.stages import cut, parse_stages
from snnmap.pipeline import compile_model
from snnmap.reference import evaluate
from snnmap.sim import Simulator

from conftest import need_shared, LENET_PARAMS, MNIST
from randnet import images, networks
from test_cli import assert_clean_failure, run
from test_end_to_end import COPIES, OR_UNICAST, TINY, simulate_exactly
from test_image import small_model

# chips of two cores: random networks need several stages
TWO = ChipSpec(**{**TINY.to_dict(), "name": "two", "mesh_w": 2, "mesh_h": 1})
TWO_COPIES = ChipSpec(**{**COPIES.to_dict(), "name": "two-copies", "mesh_w": 2, "mesh_h": 1})
TWO_OR = ChipSpec(**{**OR_UNICAST.to_dict(), "name": "two-or", "mesh_w": 1, "mesh_h": 2})


@pytest.mark.parametrize("spec", [TWO, TWO_COPIES, TWO_OR], ids=["two", "copies", "or-unicast"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=networks(), seed=st.integers(0, 1000), extra=st.integers(0, 3))
def test_random_networks_in_stages_equal_reference(spec, model, seed, extra):
    x = images(model, 9, seed)
    try:
        flat = compile_model(model, spec, chips=None, placer="sequential")
    except DesignRuleError as e:
        assert "limit" in str(e)
        return
    n = len(flat.image.cores)
    need = -(-n // spec.cores_per_chip)
    want = min(n, need + extra) if extra else 0
    result = compile_model(model, spec, stages=want)
    img = parse_image(image_to_bytes(result.image))  # through the bytes, as a user would
    assert img.stages == (want or need)
    event(f"stages {'>= 3' if img.stages >= 3 else img.stages}")
    assert np.bincount([c.stage for c in img.cores]).max() <= spec.cores_per_chip
    out, _ = simulate_exactly(result, model, x, batch=4, img=img)
    fast = Simulator(img).run(x, batch=5)  # the grouped fast paths
    base = Simulator(flat.image).run(x, batch=5)  # the same network on a board, configured once
    for key in ("pred", "logits", "spikes", "sops", "layer_spikes"):
        assert np.array_equal(fast[key], out[key]), key
        assert np.array_equal(fast[key], base[key]), key
    if img.stages > 1:
        s = fast["stages"]
        np.testing.assert_allclose(s["stage_s"].sum(axis=0), fast["latency_s"], rtol=1e-12)
        assert s["count"] == img.stages


def test_staged_image_round_trips_and_validates():
    img = compile_model(small_model(), TWO, stages=0).image
    assert img.stages > 2
    b = image_to_bytes(img)
    back = parse_image(b)
    assert image_to_bytes(back) == b
    # coordinates repeat across stages, never within one
    coords = [(c.stage, c.coord) for c in back.cores]
    assert len(set(coords)) == len(coords) and len({c.coord for c in back.cores}) < len(coords)

    def broken(edit):
        bad = copy.deepcopy(back)
        edit(bad)
        with pytest.raises(SnnmapError) as e:
            parse_image(image_to_bytes(bad), "img")
        return str(e.value)

    def same_coord(m):
        a, b2 = [c for c in m.cores if c.stage == 0][:2]
        b2.coord = a.coord

    assert "same core" in broken(same_coord)

    def slot_out_of_range(m):
        c = next(c for c in m.cores if ((c.dest & address.HOST_FLAG) != 0).any() and c.tick < m.ticks)
        h = np.flatnonzero((c.dest & address.HOST_FLAG) != 0)[0]
        c.dest[h] = address.host_words(np.array([len(m.relay_ptr) + 5]))[0]

    assert "slot" in broken(slot_out_of_range)

    def relay_backwards(m):
        m.relay_stage[:] = 0

    assert "stage" in broken(relay_backwards)

    def stage_out_of_range(m):
        m.cores[-1].stage = m.stages

    assert "stage" in broken(stage_out_of_range)

    def host_wrong_stage(m):  # the encoder's words name their cores in another stage
        m.host_stage[:] = m.stages - 1

    assert "does not configure" in broken(host_wrong_stage) or "tick" in broken(host_wrong_stage)


def test_unstaged_images_are_unchanged():
    a = compile_model(small_model(), SG64).image
    assert a.stages == 1 and b'"stages"' not in image_to_bytes(a)[:4096]


def test_reconfiguration_is_amortized_over_the_batch():
    img = compile_model(small_model(), TWO, stages=0).image
    x = images(small_model(), 6, 0)
    sim = Simulator(img)
    one, many = sim.run(x, stage_batch=1), sim.run(x, stage_batch=1000)
    r = one["stages"]["reconfiguration_s_per_batch"].sum()
    assert r > 0 and one["stages"]["reconfiguration_share"] > many["stages"]["reconfiguration_share"]
    # per image: each stage's run time (fill spread over the batch) plus the reconfiguration share
    for out, b in ((one, 1), (many, 1000)):
        s = out["stages"]
        np.testing.assert_allclose(out["latency_s"], s["run_s"].sum(axis=0) + r / b, rtol=1e-12)
    assert np.array_equal(one["pred"], many["pred"])


def test_cut():
    assert cut(10, 4, 0).tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert cut(10, 4, 5).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    with pytest.raises(SnnmapError, match="at least 3"):
        cut(10, 4, 2)
    with pytest.raises(SnnmapError, match="more stages"):
        cut(10, 4, 11)
    c = np.zeros(11)
    c[1:10] = [5, 5, 5, 1, 5, 5, 1, 5, 5]  # cheap cuts before tiles 4 and 7
    assert cut(10, 4, 0, c).tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert cut(10, 4, 4, c).tolist() == [0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert parse_stages("auto") == 0 and parse_stages("7") == 7 and parse_stages(None) is None
    for bad in ("0", "-1", "x", "1.5", "", "99999999"):
        with pytest.raises(SnnmapError):
            parse_stages(bad)


@pytest.mark.parametrize("value", ["0", "-2", "many", "2.5", "1", "100000"])
def test_bad_stages_exit_2(tmp_path, value):
    from snnmap.modelfile import save_model

    save_model(small_model(), tmp_path / "m.snnm")
    chip = tmp_path / "two.toml"
    chip.write_text('base = "sg64"\nmesh_w = 2\nmesh_h = 1\naxons_per_core = 96\nneurons_per_core = 32\n'
                    'fanin_max_level = 0\n')
    out = tmp_path / "m.snnimg"
    p = run("compile", tmp_path / "m.snnm", "-o", out, "--chip", chip, "--stages", value)
    line = assert_clean_failure(p, out)
    assert "--stages" in line


def test_compile_and_simulate_cli(tmp_path):
    import json

    from snnmap.modelfile import save_model

    save_model(small_model(), tmp_path / "m.snnm")
    chip = tmp_path / "two.toml"
    chip.write_text('base = "sg64"\nmesh_w = 2\nmesh_h = 1\naxons_per_core = 96\nneurons_per_core = 32\n'
                    'fanin_max_level = 0\n')
    out = tmp_path / "m.snnimg"
    p = run("compile", tmp_path / "m.snnm", "-o", out, "--chip", chip, "--stages", "auto", "--batch", "10")
    assert p.returncode == 0, p.stderr
    assert "stages:" in p.stdout and "instead of stages" in p.stdout
    x = images(small_model(), 5, 1)
    np.savez(tmp_path / "x.npz", x=x)
    p = run("simulate", out, "--input", tmp_path / "x.npz", "--json", "--batch", "10")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    s = res["stages"]
    assert s["count"] >= 3 and len(s["stage_ms_per_image"]) == s["count"]
    assert abs(sum(s["stage_ms_per_image"]) - res["latency_ms_per_image"]) < 1e-9
    assert 0 < s["reconfiguration_share"] < 1


def test_published_lenet_in_three_stages_is_exact(lenet_model, mnist):
    need_shared(LENET_PARAMS, MNIST)
    result = compile_model(lenet_model, SG64, stages=3)
    img = parse_image(image_to_bytes(result.image))
    assert img.stages == 3 and img.relay_ptr is not None and len(img.relay_ptr) > 1
    x = mnist["x_test"][:1000]
    out = Simulator(img).run(x, batch=250)
    ref = evaluate(lenet_model, x)
    assert np.array_equal(out["pred"], ref["pred"])
    np.testing.assert_allclose(out["logits"], ref["logits"], rtol=1e-12, atol=1e-12)
    for t, want in enumerate(ref["counts"][1:]):
        assert np.array_equal(out["layer_spikes"][t], want.reshape(len(x), -1).sum(axis=1))
    assert (out["pred"] == mnist["y_test"][:1000]).mean() > 0.98


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 12), cap=st.integers(1, 6), extra=st.integers(0, 3), seed=st.integers(0, 2**32 - 1))
def test_cut_is_the_cheapest(n, cap, extra, seed):
    """The dynamic programme against every way to cut n tiles into S stages of at most cap."""
    import itertools

    S = min(n, -(-n // cap) + extra)
    c = np.random.default_rng(seed).integers(0, 5, n + 1).astype(float)
    stage = cut(n, cap, S, c)
    assert np.all(np.diff(stage) >= 0) and stage[0] == 0 and stage[-1] == S - 1
    sizes = np.bincount(stage, minlength=S)
    assert sizes.min() >= 1 and sizes.max() <= cap
    got = c[np.flatnonzero(np.diff(stage)) + 1].sum()
    best = min(c[list(k)].sum() for k in itertools.combinations(range(1, n), S - 1)
               if all(b - a <= cap for a, b in zip((0, *k), (*k, n))))
    assert got == best


def test_from_refuses_staged_images_and_stages(tmp_path):
    """--from recompiles single-stage images only: a staged old image, or --stages with --from,
    is one line and exit 2, with no output."""
    from snnmap.modelfile import save_model

    save_model(small_model(), tmp_path / "m.snnm")
    chip = tmp_path / "two.toml"
    chip.write_text('base = "sg64"\nmesh_w = 2\nmesh_h = 1\naxons_per_core = 96\nneurons_per_core = 32\n'
                    'fanin_max_level = 0\n')
    old = tmp_path / "old.snnimg"
    assert run("compile", tmp_path / "m.snnm", "-o", old, "--chip", chip, "--stages", "auto").returncode == 0
    out = tmp_path / "new.snnimg"
    p = run("compile", tmp_path / "m.snnm", "-o", out, "--chip", chip, "--from", old)
    assert "staged image" in assert_clean_failure(p, out)
    p = run("compile", tmp_path / "m.snnm", "-o", out, "--chip", chip, "--from", old, "--stages", "auto")
    assert "--from" in assert_clean_failure(p, out)

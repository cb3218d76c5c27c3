"""compile --from: unchanged parts stay byte for byte, changed layers are rewritten in place, and
the result simulates exactly like a full compile of the new model (and like the reference)."""

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from randnet import images, networks
from test_cli import assert_clean_failure, run
from test_end_to_end import MCAST, TINY

from snnmap.chip.spec import PAICORE2, SG64
from snnmap.errors import DesignRuleError, SnnmapError
from snnmap.image.format import image_to_bytes, parse_image, write_image
from snnmap.incremental import compile_from, diff_images, read_old
from snnmap.io.container import parse_container
from snnmap.model import BatchNorm, Classifier, Layer
from snnmap.modelfile import save_model
from snnmap.pipeline import compile_model
from snnmap.reference import evaluate
from snnmap.sim import Simulator
from snnmap.zoo import lenet


def with_layer(model, i, **changes):
    layers = list(model.layers)
    layers[i] = dataclasses.replace(layers[i], **changes)
    return dataclasses.replace(model, layers=tuple(layers))


def shift_bn(model, i, by=0.37):
    bn = model.layers[i].bn
    return with_layer(model, i, bn=dataclasses.replace(bn, beta=bn.beta + by))


def flip_weights(model, i, count=20, seed=1):
    w = model.layers[i].weights.copy()
    rng = np.random.default_rng(seed)
    idx = rng.choice(w.size, min(count, w.size), replace=False)
    w.reshape(-1)[idx] = rng.choice(np.array([-1, 0, 1], np.int8), len(idx))
    return with_layer(model, i, weights=w)


def append_layer(model, channels=8, seed=3):
    rng = np.random.default_rng(seed)
    H, W, C = model.shapes()[-1]
    w = rng.choice(np.array([-1, 0, 1], np.int8), size=(1, 1, C, channels))
    bn = BatchNorm(beta=rng.uniform(0.2, 0.8, channels) * model.B, gamma=rng.uniform(0.5, 1.5, channels),
                   mean=np.zeros(channels), var=np.full(channels, C * 2 / 9 * model.B ** 2))
    clf = Classifier(rng.normal(0, 0.1, (H * W * channels, model.classifier.classes)),
                     np.zeros(model.classifier.classes))
    return dataclasses.replace(model, layers=model.layers + (Layer("extra", "conv", w, bn),),
                               classifier=clf).validate()


_COMPILED: dict = {}


def old_image(tmp_path, model, spec):
    key = (id(model), spec.name)
    if key not in _COMPILED:  # the module's LeNet is compiled once per chip
        _COMPILED[key] = (model, image_to_bytes(compile_model(model, spec).image))
    data = _COMPILED[key][1]
    (tmp_path / "old.snnimg").write_bytes(data)
    return data, read_old(str(tmp_path / "old.snnimg"))


def core_payloads(data):
    """coord -> CORE payload, straight from the container."""
    img = parse_image(data)
    _, sections = parse_container(data, b"SNNMAPIM", {1}, "image", "<test>")
    return {c.coord: (img.layers[c.layer]["name"], c.tile, p) for c, (_, p) in zip(img.cores, sections[2:])}


def same_simulation(a_bytes, model, spec, n=12, seed=0):
    """The incremental image against a full compile of the same model and against the reference."""
    x = images(model, n, seed)
    full = compile_model(model, spec).image
    a = Simulator(parse_image(a_bytes)).run(x, batch=5)
    f = Simulator(parse_image(image_to_bytes(full))).run(x, batch=5)
    for key in ("pred", "logits", "layer_spikes", "spikes"):
        assert np.array_equal(a[key], f[key]), key
    ref = evaluate(model, x)
    assert np.array_equal(a["pred"], ref["pred"])
    np.testing.assert_allclose(a["logits"], ref["logits"], rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def net():
    """A LeNet-like network on 16x16 inputs: the same kinds of layers, compiles in a few seconds."""
    from snnmap.zoo import random_model

    return random_model("16C5p2-16C5-16C2s2-32C3-32C2s2-10", (16, 16), 1, seed=0, name="lenet-16")


@pytest.mark.parametrize("spec", [SG64, PAICORE2], ids=["sg64", "paicore2"])
def test_unchanged_model_gives_the_same_bytes(tmp_path, spec):
    model = lenet(0)  # LeNet at full size: 111 cores on sg64, 432 on paicore2
    data, old = old_image(tmp_path, model, spec)
    res = compile_from(model, spec, old)
    assert res.data == data
    assert res.summary["cores_reused"] == len(old.cores) and res.summary["cores_rewritten"] == 0


def test_published_lenet_unchanged_and_one_layer_retrained(tmp_path, lenet_model):
    data, old = old_image(tmp_path, lenet_model, SG64)
    assert compile_from(lenet_model, SG64, old).data == data
    changed = shift_bn(lenet_model, 3)
    res = compile_from(changed, SG64, old)
    names = {c for c, *_ in core_payloads(res.data).values()}
    diff = {k: v[0] for k, v in core_payloads(res.data).items() if core_payloads(data)[k][2] != v[2]}
    assert set(diff.values()) == {lenet_model.layers[3].name} and names
    same_simulation(res.data, changed, SG64, n=20)


@pytest.mark.parametrize("spec", [SG64, PAICORE2], ids=["sg64", "paicore2"])
@pytest.mark.parametrize("edit", ["thresholds", "weights"])
def test_one_layer_changed_rewrites_only_that_layer(tmp_path, net, spec, edit):
    data, old = old_image(tmp_path, net, spec)
    new = shift_bn(net, 2) if edit == "thresholds" else flip_weights(net, 2)
    res = compile_from(new, spec, old)
    (tmp_path / "new.snnimg").write_bytes(res.data)
    before, after = core_payloads(data), core_payloads(res.data)
    assert before.keys() == after.keys()
    changed = {k for k in after if before[k][2] != after[k][2]}
    layer = net.layers[2].name
    mine = {k for k, v in after.items() if v[0] == layer}
    # every core of the edited layer changed, on the same core as before; the producer's cores
    # change only where the edit changed the axons its spikes go to (not the case for these edits)
    assert changed == mine
    assert all(before[k][:2] == after[k][:2] for k in after)
    d = diff_images(str(tmp_path / "old.snnimg"), str(tmp_path / "new.snnimg"))
    assert d["cores_contents"] == len(mine) and d["cores_destinations"] == d["cores_moved"] == 0
    assert {r["layer"] for r in d["changed_cores"]} == {layer}
    assert res.summary["cores_rewritten"] == len(mine) and res.summary["cores_new"] == 0
    same_simulation(res.data, new, spec)


def test_weights_that_change_the_axons_reroute_the_producer(tmp_path, net):
    """Dense edits change which inputs a tile reads: the producer's destinations follow, its
    synapses and slots stay."""
    _, old = old_image(tmp_path, net, SG64)
    w = net.layers[3].weights.copy()
    w[..., :8] = 0  # eight channels lose every synapse: fewer axons in those tiles
    new = with_layer(net, 3, weights=w)
    res = compile_from(new, SG64, old)
    (tmp_path / "new.snnimg").write_bytes(res.data)
    d = diff_images(str(tmp_path / "old.snnimg"), str(tmp_path / "new.snnimg"))
    kinds = {(r["layer"], r["change"]) for r in d["changed_cores"]}
    assert (net.layers[3].name, "contents") in kinds
    assert kinds <= {(net.layers[3].name, "contents"), (net.layers[2].name, "destinations")}
    assert d["cores_moved"] == d["cores_added"] == 0
    same_simulation(res.data, new, SG64)


@pytest.mark.parametrize("spec", [SG64, PAICORE2], ids=["sg64", "paicore2"])
def test_added_last_layer_leaves_every_old_core_in_place(tmp_path, net, spec):
    data, old = old_image(tmp_path, net, spec)
    new = append_layer(net)
    res = compile_from(new, spec, old)
    before, after = core_payloads(data), core_payloads(res.data)
    for coord, (name, tile, payload) in before.items():
        assert after[coord][:2] == (name, tile)
        if name != net.layers[-1].name:  # the old last layer now sends to the new one
            assert after[coord][2] == payload
    assert sum(1 for v in after.values() if v[0] == "extra") == res.summary["cores_new"] > 0
    same_simulation(res.data, new, spec)


def test_max_moves_bounds_the_old_tiles_that_move(tmp_path, net):
    data, old = old_image(tmp_path, net, SG64)
    new = append_layer(net)
    for n in (0, 2):
        res = compile_from(new, SG64, old, max_moves=n)
        before, after = core_payloads(data), core_payloads(res.data)
        where = {v[:2]: k for k, v in after.items()}
        moved = sum(1 for k, v in before.items() if where[v[:2]] != k)
        assert moved <= n
        if n:
            assert res.summary["placement"]["old_tiles_moved"] == moved
        same_simulation(res.data, new, SG64, n=6)


def test_retile_when_the_new_weights_do_not_fit(tmp_path):
    """Sparse weights let big tiles fit; dense ones do not: the layer is re-tiled, says so, and
    its new tiles are placed around the kept ones."""
    from snnmap.zoo import random_model

    dense = random_model("6C3-8C3-8C3-10", (10, 10), 1, seed=4)
    w = dense.layers[0].weights
    sparse = with_layer(dense, 0, weights=np.where(np.arange(w.size).reshape(w.shape) % 7 == 0, w, 0).astype(np.int8))
    _, old = old_image(tmp_path, sparse, TINY)
    res = compile_from(dense, TINY, old)
    layer = res.summary["layers"][0]
    assert any("re-tiled" in n for n in layer["notes"]), res.summary
    assert layer["new"] > 0
    same_simulation(res.data, dense, TINY, n=6)


def test_layer_that_starts_reading_moves_to_aligned_cores(tmp_path):
    """A layer whose weights were all zero read nothing, so its tiles needed no alignment; once
    it reads, its producer's multicast blocks need aligned cores: the recompile moves it (found by
    hypothesis: the image named a core it did not configure)."""
    from snnmap.zoo import random_model

    model = random_model("5C1-4C2-4C1-6C1-2", (4, 4), 1, seed=1)
    silent = with_layer(model, 0, weights=np.zeros_like(model.layers[0].weights))
    data, old = old_image(tmp_path, silent, MCAST)
    res = compile_from(model, MCAST, old)
    parse_image(res.data)
    layer = res.summary["layers"][0]
    assert any("aligned" in n for n in layer["notes"]), res.summary
    same_simulation(res.data, model, MCAST, n=6)


@pytest.mark.parametrize("spec", [TINY, MCAST], ids=["tiny", "mcast"])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(model=networks(), which=st.integers(0, 5), edit=st.sampled_from(["thresholds", "weights"]))
def test_random_networks(tmp_path, spec, model, which, edit):
    try:
        data = image_to_bytes(compile_model(model, spec).image)
    except DesignRuleError:
        return
    (tmp_path / "old.snnimg").write_bytes(data)
    old = read_old(str(tmp_path / "old.snnimg"))
    assert compile_from(model, spec, old).data == data  # unchanged: the same bytes
    i = which % len(model.layers)
    new = shift_bn(model, i, 1.0) if edit == "thresholds" else flip_weights(model, i, 3, seed=which)
    try:
        res = compile_from(new, spec, old)
    except DesignRuleError:
        return
    before, after = core_payloads(data), core_payloads(res.data)
    names = [lay.name for lay in model.layers]
    # the edited layer and its producer may change; further only where the summary says why (a
    # layer re-tiled or given other copies changes its own producer's destinations in turn)
    allowed = {names[i], names[i - 1] if i else None}
    for j, r in enumerate(res.summary["layers"]):
        if r["notes"]:
            allowed |= {names[j], names[j - 1] if j else None}
    for k, (layer, tile, payload) in after.items():
        if layer not in allowed and k in before:
            assert before[k][2] == payload, (layer, tile)  # nothing else is rewritten
    name = names[i]
    if edit == "thresholds":  # the axons stay: only the edited layer's cores change
        assert {v[0] for k, v in after.items() if before.get(k, (None, None, b""))[2] != v[2]} <= {name}
    same_simulation(res.data, new, spec, n=6)


def test_cli_from_diff_and_bad_old_images(tmp_path, net):
    model = net
    save_model(model, tmp_path / "a.snnm")
    save_model(shift_bn(model, 1), tmp_path / "b.snnm")
    old, new = tmp_path / "a.snnimg", tmp_path / "b.snnimg"
    assert run("compile", tmp_path / "a.snnm", "-o", old, "--quiet").returncode == 0
    p = run("compile", tmp_path / "b.snnm", "--from", old, "-o", new, "--json")
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    tiles = {r["layer"]: r["tiles"] for r in s["layers"]}
    assert s["cores_rewritten"] == tiles[model.layers[1].name] and s["cores_new"] == 0
    assert s["cores_reused"] == s["cores"] - s["cores_rewritten"]
    p = run("compile", tmp_path / "b.snnm", "--from", old, "-o", tmp_path / "c.snnimg")
    assert p.returncode == 0 and "reused byte for byte" in p.stdout
    p = run("diff", old, new, "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["cores_contents"] == s["cores_rewritten"] and {r["layer"] for r in d["changed_cores"]} == {
        model.layers[1].name}
    assert d["quality"]["old"]["cores"] == d["quality"]["new"]["cores"] == s["cores"]
    p = run("diff", old, new, "--cores")
    assert p.returncode == 0 and "contents" in p.stdout and "spike-hops" in p.stdout
    # another chip: refused, one line, no output
    out = tmp_path / "x.snnimg"
    assert "same chip" in assert_clean_failure(
        run("compile", tmp_path / "b.snnm", "--from", old, "-o", out, "--chip", "paicore2"), out)
    # damaged, truncated, not an image, missing
    raw = bytearray(old.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "bad.snnimg").write_bytes(bytes(raw))
    (tmp_path / "short.snnimg").write_bytes(bytes(raw[:500]))
    for bad in ("bad.snnimg", "short.snnimg", "a.snnm", "missing.snnimg"):
        assert_clean_failure(run("compile", tmp_path / "b.snnm", "--from", tmp_path / bad, "-o", out), out)
    assert_clean_failure(run("diff", old, tmp_path / "bad.snnimg"))
    assert_clean_failure(run("compile", tmp_path / "b.snnm", "-o", out, "--max-moves", "2"), out)


def test_old_image_without_or_with_a_broken_record(tmp_path, net):
    model = net
    img = compile_model(model, SG64).image
    del img.info["incremental"]
    write_image(img, tmp_path / "plain.snnimg")
    with pytest.raises(SnnmapError, match="no incremental record"):
        compile_from(model, SG64, read_old(str(tmp_path / "plain.snnimg")))
    img = compile_model(model, SG64).image
    img.info["incremental"]["layers"][0]["tiles"] = img.info["incremental"]["layers"][0]["tiles"][1:]
    write_image(img, tmp_path / "broken.snnimg")
    with pytest.raises(SnnmapError, match="one 16-digit hex hash per tile"):
        read_old(str(tmp_path / "broken.snnimg"))
    with pytest.raises(SnnmapError, match="one 16-digit hex hash per tile"):
        parse_image((tmp_path / "broken.snnimg").read_bytes())
    from test_image import small_model

    small = small_model()
    img = compile_model(small, SG64, tiling="baseline").image
    write_image(img, tmp_path / "base.snnimg")
    with pytest.raises(SnnmapError, match="--tiling baseline"):
        compile_from(small, SG64, read_old(str(tmp_path / "base.snnimg")))
    res = compile_from(small, SG64, read_old(str(tmp_path / "base.snnimg")), tiling="baseline")
    assert res.data == (tmp_path / "base.snnimg").read_bytes()


@pytest.mark.parametrize("damage", ["threshold", "truncated arrays"])
def test_a_resealed_damaged_core_in_the_old_image_is_refused(tmp_path, damage):
    """`compile --from OLD` where a CORE section of OLD was damaged and its checksums recomputed:
    the reader refuses OLD, but --from copied the kept core's bytes and wrote, with exit 0, a new
    image that nothing could read. OLD is now checked like any image, and nothing is written."""
    from snnmap.image.format import MAGIC, VERSION
    from snnmap.io.arrays import pack_arrays, unpack_arrays
    from snnmap.io.container import pack_container

    from test_image import small_model

    model = small_model()
    raw = image_to_bytes(compile_model(model, SG64).image)
    _, sections = parse_container(raw, MAGIC, {VERSION}, "x", "x")
    sections = [(t.encode(), p) for t, p in sections]
    a = unpack_arrays(sections[2][1], "x")
    if damage == "threshold":
        a["thr"] = a["thr"].copy()
        a["thr"][0] = 1 << 30
        sections[2] = (b"CORE", pack_arrays(a))
    else:
        sections[2] = (b"CORE", sections[2][1][:200] + bytes(50))
    old = tmp_path / "old.snnimg"
    old.write_bytes(pack_container(MAGIC, VERSION, sections))
    with pytest.raises(SnnmapError, match="CORE #0"):
        read_old(str(old))
    save_model(model, tmp_path / "m.snnm")
    line = assert_clean_failure(run("compile", tmp_path / "m.snnm", "--from", old, "-o", tmp_path / "new.snnimg"),
                                tmp_path / "new.snnimg")
    assert str(old) in line

"""PAICORE 2.0 frames: cross-checked field by field with paicorelib's own frame definitions, read back
into an image that simulates like the original, and refused with one line when damaged."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snnmap.chip import address
from snnmap.chip.spec import PAICORE2, SG64
from snnmap.errors import SnnmapError
from snnmap.image.format import image_to_bytes, parse_image, write_image
from snnmap.paicore import frames as F
from snnmap.paicore.export import export_paicore, read_frames
from snnmap.pipeline import compile_model
from snnmap.sim import Simulator
from snnmap.zoo import lenet, random_model
from tests.randnet import images, networks

ROOT = Path(__file__).resolve().parent.parent


def _paicorelib():
    return pytest.importorskip("paicorelib", reason="paicorelib (the `test` extra) is not installed")


def _field(words, offset, mask):
    return (words >> np.uint64(offset)) & np.uint64(mask)


def _signed30(v):
    v = v.astype(np.int64)
    return np.where(v >= 1 << 29, v - (1 << 30), v)


def check_with_paicorelib(img, out_dir: Path, generate_every: int = 1) -> int:
    """Decode every core's frames with paicorelib's offsets and masks and compare with the image;
    also let paicorelib's frame generator build config II and (every `generate_every`-th neuron)
    config III from snnmap's values, and require the same words. Returns the neurons checked."""
    _paicorelib()
    from paicorelib import Coord, ReplicationId
    from paicorelib.framelib.frame_defs import FrameFormat as FF
    from paicorelib.framelib.frame_defs import FrameHeader as FH
    from paicorelib.framelib.frame_defs import OfflineCoreRegFormat as R
    from paicorelib.framelib.frame_defs import OfflineNeuronRAMFormat as N
    from paicorelib.framelib.frame_gen import OfflineFrameGen
    from paicorelib.hw_defs import HwParams

    man = json.loads((out_dir / "manifest.json").read_text())
    out_chip = tuple(man["output"]["chip"])
    spec = img.spec
    level_of = {c.coord: c.level for c in img.cores}
    assert len(man["cores"]) == len(img.cores)
    checked = 0
    for ent, c in zip(man["cores"], img.cores):
        words = np.fromfile(out_dir / ent["file"], dtype="<u8").astype(np.uint64)
        L, n = c.level, c.neurons
        rep = 1 << (L + 1)
        hdr = _field(words, FF.GENERAL_HEADER_OFFSET, FF.GENERAL_HEADER_MASK)
        n3, n4 = 4 * n * rep, 18 * n * rep
        want_hdr = [FH.CONFIG_TYPE1] * 3 + [FH.CONFIG_TYPE2] * 3 + [FH.CONFIG_TYPE3] + [FH.CONFIG_TYPE4]
        heads = np.r_[0:7, 7 + n3]
        assert len(words) == 8 + n3 + n4
        assert list(hdr[heads]) == [int(h) for h in want_hdr]
        assert (_field(words[heads], FF.GENERAL_CHIP_X_ADDR_OFFSET, FF.GENERAL_CHIP_X_ADDR_MASK) == c.coord[0]).all()
        assert (_field(words[heads], FF.GENERAL_CHIP_Y_ADDR_OFFSET, FF.GENERAL_CHIP_Y_ADDR_MASK) == c.coord[1]).all()
        assert (_field(words[heads], FF.GENERAL_CORE_X_ADDR_OFFSET, FF.GENERAL_CORE_X_ADDR_MASK) == c.coord[2]).all()
        assert (_field(words[heads], FF.GENERAL_CORE_Y_ADDR_OFFSET, FF.GENERAL_CORE_Y_ADDR_MASK) == c.coord[3]).all()
        assert (_field(words[heads], FF.GENERAL_CORE_EX_ADDR_OFFSET, FF.GENERAL_CORE_EX_ADDR_MASK) == 0).all()
        for pos, count in ((6, n3), (7 + n3, n4)):
            p = int(words[pos])
            assert _field(p, FF.GENERAL_PACKAGE_SRAM_ADDR_OFFSET, FF.GENERAL_PACKAGE_SRAM_ADDR_MASK) == 0
            assert _field(p, FF.GENERAL_PACKAGE_TYPE_OFFSET, FF.GENERAL_PACKAGE_TYPE_MASK) == 0
            assert _field(p, FF.GENERAL_PACKAGE_NUM_OFFSET, FF.GENERAL_PACKAGE_NUM_MASK) == count

        # registers
        r1, r2, r3 = (int(w) for w in words[3:6])
        g = lambda w, o, m: (w >> o) & m
        regs = {"weight_width": g(r1, R.WEIGHT_WIDTH_OFFSET, R.WEIGHT_WIDTH_MASK),
                "LCN": g(r1, R.LCN_OFFSET, R.LCN_MASK),
                "input_width": g(r1, R.INPUT_WIDTH_OFFSET, R.INPUT_WIDTH_MASK),
                "spike_width": g(r1, R.SPIKE_WIDTH_OFFSET, R.SPIKE_WIDTH_MASK),
                "num_dendrite": g(r1, R.NUM_VALID_DENDRITE_OFFSET, R.NUM_VALID_DENDRITE_MASK),
                "pool_max": g(r1, R.POOL_MAX_OFFSET, R.POOL_MAX_MASK),
                "tick_wait_start": (g(r1, R.TICK_WAIT_START_HIGH8_OFFSET, R.TICK_WAIT_START_HIGH8_MASK)
                                    << R.TICK_WAIT_START_COMBINATION_OFFSET)
                | g(r2, R.TICK_WAIT_START_LOW7_OFFSET, R.TICK_WAIT_START_LOW7_MASK),
                "tick_wait_end": g(r2, R.TICK_WAIT_END_OFFSET, R.TICK_WAIT_END_MASK),
                "snn_en": g(r2, R.SNN_EN_OFFSET, R.SNN_EN_MASK),
                "target_LCN": g(r2, R.TARGET_LCN_OFFSET, R.TARGET_LCN_MASK),
                "test_chip_addr": (g(r2, R.TEST_CHIP_ADDR_HIGH3_OFFSET, R.TEST_CHIP_ADDR_HIGH3_MASK)
                                   << R.TEST_CHIP_ADDR_LOW7_OFFSET)
                | g(r3, R.TEST_CHIP_ADDR_LOW7_OFFSET, R.TEST_CHIP_ADDR_LOW7_MASK)}
        if c.tick == img.ticks:
            target = 0
        else:
            _, uw = address.expand(spec, c.dest)
            _, dcx, dcy, dx, dy, _ = address.decode(spec, uw)
            targets = {level_of[(int(a), int(b), int(x), int(y))] for a, b, x, y in zip(dcx, dcy, dx, dy)}
            assert len(targets) <= 1
            target = targets.pop() if targets else 0
        assert regs == {"weight_width": 1, "LCN": L, "input_width": 0, "spike_width": 0, "num_dendrite": n * rep,
                        "pool_max": 0, "tick_wait_start": c.tick, "tick_wait_end": 1, "snn_en": 0,
                        "target_LCN": target, "test_chip_addr": 0}
        chip, core, rid = Coord(*c.coord[:2]), Coord(*c.coord[2:]), ReplicationId(0, 0)
        assert np.array_equal(OfflineFrameGen.gen_config_frame2(chip, core, rid, regs).value, words[3:6])

        # neuron memory: every neuron's threshold and destination
        rec = words[7:7 + n3].reshape(n, rep, 4)
        assert (rec == rec[:, :1]).all()
        w0, w1, w2, w3 = (rec[:, 0, i] for i in range(4))
        leak = _signed30(_field(w0, N.LEAK_V_LOW28_OFFSET, N.LEAK_V_LOW28_MASK)
                         | (_field(w1, N.LEAK_V_HIGH2_OFFSET, N.LEAK_V_HIGH2_MASK) << np.uint64(28)))
        pos = _field(w1, N.THRESHOLD_POS_OFFSET, N.THRESHOLD_POS_MASK).astype(np.int64)
        # fire iff V + leak_v >= threshold_pos (leak before the comparison, leak_post = 0)
        assert (_field(w2, N.LEAK_POST_OFFSET, N.LEAK_POST_MASK) == 0).all()
        assert np.array_equal(pos - leak, c.thresholds.astype(np.int64))
        dest = {"addr_chip_x": _field(w2, N.ADDR_CHIP_X_OFFSET, N.ADDR_CHIP_X_MASK),
                "addr_chip_y": _field(w2, N.ADDR_CHIP_Y_OFFSET, N.ADDR_CHIP_Y_MASK),
                "addr_core_x": _field(w2, N.ADDR_CORE_X_LOW2_OFFSET, N.ADDR_CORE_X_LOW2_MASK)
                | (_field(w3, N.ADDR_CORE_X_HIGH3_OFFSET, N.ADDR_CORE_X_HIGH3_MASK) << np.uint64(2)),
                "addr_core_y": _field(w2, N.ADDR_CORE_Y_OFFSET, N.ADDR_CORE_Y_MASK),
                "addr_core_x_ex": _field(w2, N.ADDR_CORE_X_EX_OFFSET, N.ADDR_CORE_X_EX_MASK),
                "addr_core_y_ex": _field(w2, N.ADDR_CORE_Y_EX_OFFSET, N.ADDR_CORE_Y_EX_MASK),
                "addr_axon": _field(w3, N.ADDR_AXON_OFFSET, N.ADDR_AXON_MASK),
                "tick_relative": _field(w3, N.TICK_RELATIVE_OFFSET, N.TICK_RELATIVE_MASK)}
        dest = {k: v.astype(np.int64) for k, v in dest.items()}
        counts = np.diff(c.dest_ptr.astype(np.int64))
        assert counts.max(initial=0) <= 1
        has = counts == 1
        words_n = np.zeros(n, np.uint64)
        words_n[has] = c.dest[c.dest_ptr[:-1].astype(np.int64)[has]]
        is_host, cx, cy, x, y, low = address.decode(spec, words_n)
        mx, my = address.masks(spec, words_n)
        on_chip = has & ~is_host
        for k, want in (("addr_chip_x", cx), ("addr_chip_y", cy), ("addr_core_x", x), ("addr_core_y", y),
                        ("addr_core_x_ex", mx), ("addr_core_y_ex", my), ("addr_axon", low % 1152),
                        ("tick_relative", low // 1152)):
            assert np.array_equal(dest[k][on_chip], want[on_chip]), k
        host = has & is_host
        assert (dest["addr_chip_x"][host] == out_chip[0]).all() and (dest["addr_chip_y"][host] == out_chip[1]).all()
        assert np.array_equal(dest["tick_relative"][host] * 1152 + dest["addr_axon"][host], low[host])
        assert ((dest["addr_core_x"][~has] == 0) & (dest["addr_core_y"][~has] == 1)).all()  # the sink core
        for m in range(0, n, generate_every):
            attrs = {"reset_mode": 0, "reset_v": 0, "leak_post": 0, "threshold_mask_ctrl": 0,
                     "threshold_neg_mode": 1, "threshold_neg": (1 << 29) - 1, "threshold_pos": int(pos[m]),
                     "leak_reversal_flag": 0, "leak_det_stoch": 0, "leak_v": int(leak[m]), "weight_det_stoch": 0,
                     "bit_truncate": 0}
            info = {k: int(v[m]) for k, v in dest.items() if k not in ("addr_axon", "tick_relative")}
            info.update(addr_axon=[int(dest["addr_axon"][m])], tick_relative=[int(dest["tick_relative"][m])])
            f3 = OfflineFrameGen.gen_config_frame3(chip, core, rid, m * rep, 1, attrs, info, rep)
            assert np.array_equal(f3.packages, rec[m].reshape(-1)), (c.coord, m)
            checked += 1

        # weight memory: address (m * 2^LCN + t) * 2 + b = bit b of neuron m's weights in timeslot t
        wram = words[8 + n3:].reshape(n * rep, 18)
        bits = np.unpackbits(wram.astype("<u8").view(np.uint8), axis=1, bitorder=HwParams.WEIGHT_BITORDER)
        bits = bits.reshape(n, 1 << L, 2, 1152).astype(np.int8)
        w = bits[:, :, 0] - 2 * bits[:, :, 1]  # 2-bit two's complement
        logical = w.transpose(1, 2, 0).reshape((1 << L) * 1152, n)
        want_w = c.crossbar.astype(np.int8) * c.axon_sign[:, None]
        assert np.array_equal(logical[:c.axons], want_w)
        assert not logical[c.axons:].any()
    return checked


@pytest.fixture(scope="module")
def small_image():
    return compile_model(lenet(3), PAICORE2).image


@pytest.fixture(scope="module")
def small_export(small_image, tmp_path_factory):
    d = tmp_path_factory.mktemp("frames") / "lenet3"
    export_paicore(small_image, d)
    return d


@pytest.fixture(scope="module")
def wide_image():
    """A layer whose neurons need 64 x 3 x 3 + ... inputs: fan-in level (LCN) 3 and multicast."""
    return compile_model(random_model("16C3-64C3-96C5-10", (10, 10), 1, seed=1), PAICORE2).image


@pytest.fixture(scope="module")
def wide_export(wide_image, tmp_path_factory):
    d = tmp_path_factory.mktemp("frames") / "wide"
    export_paicore(wide_image, d, text=False)
    return d


def test_lcn8_frames_match_paicorelib_and_simulate(wide_image, wide_export):
    assert {c.level for c in wide_image.cores} == {0, 3}
    assert check_with_paicorelib(wide_image, wide_export, generate_every=5) > 0
    x = np.random.default_rng(2).integers(0, 256, size=(30, 10, 10, 1)).astype(np.uint8)
    a = Simulator(parse_image(image_to_bytes(wide_image))).run(x)
    b = Simulator(read_frames(wide_export)).run(x)
    for k in ("pred", "logits", "spikes", "layer_spikes"):
        assert np.array_equal(a[k], b[k]), k


def test_random_lenet_frames_match_paicorelib(small_image, small_export):
    assert check_with_paicorelib(small_image, small_export, generate_every=7) > 0


def test_random_lenet_frames_simulate_identically(small_image, small_export):
    back = read_frames(small_export)
    x = images(lenet(3), 10, 1)
    a = Simulator(parse_image(image_to_bytes(small_image))).run(x)
    b = Simulator(back).run(x)
    for k in ("pred", "logits", "spikes", "layer_spikes"):
        assert np.array_equal(a[k], b[k]), k


def test_text_twin_equals_binary(small_export):
    man = json.loads((small_export / "manifest.json").read_text())
    for rel in (man["cores"][0]["file"], man["input"]["file"]):
        words = np.fromfile(small_export / rel, dtype="<u8")
        lines = (small_export / rel).with_suffix(".txt").read_text().splitlines()
        assert [int(s, 2) for s in lines] == [int(v) for v in words]
        assert all(len(s) == 64 for s in lines)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(model=networks(max_layers=3), seed=st.integers(0, 1000))
def test_random_networks_round_trip(model, seed, tmp_path_factory):
    img = compile_model(model, PAICORE2).image
    d = tmp_path_factory.mktemp("rt") / "f"
    export_paicore(img, d, text=False)
    if importlib.util.find_spec("paicorelib") is not None:
        check_with_paicorelib(img, d)
    back = read_frames(d)
    x = images(model, 6, seed)
    a = Simulator(parse_image(image_to_bytes(img))).run(x)
    b = Simulator(back).run(x)
    for k in ("pred", "logits", "spikes"):
        assert np.array_equal(a[k], b[k]), k


def test_neuron_record_fields_round_trip():
    rng = np.random.default_rng(0)
    n = 50
    vals = {}
    for name, _, width in F.NEURON_FIELDS:
        if name in F.SIGNED_FIELDS:
            vals[name] = rng.integers(-(1 << (width - 1)), 1 << (width - 1), n)
        else:
            vals[name] = rng.integers(0, 1 << width, n)
    back = F.unpack_neurons(F.pack_neurons(vals, n))
    for k, v in vals.items():
        assert np.array_equal(back[k], v), k


def test_weights_round_trip():
    rng = np.random.default_rng(1)
    for level in (0, 1, 3):
        w = rng.integers(-2, 2, size=(1152 * (1 << level) - 5, 7)).astype(np.int8)
        back = F.unpack_weights(F.pack_weights(w, level), 7, level)
        assert np.array_equal(back[:w.shape[0]], w) and not back[w.shape[0]:].any()


def _run(*args):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "snnmap", *args], check=False, capture_output=True, text=True, env=env)


def test_export_refuses_a_non_paicore_image(tmp_path):
    img = compile_model(lenet(1), SG64).image
    write_image(img, tmp_path / "a.snnimg")
    r = _run("export", str(tmp_path / "a.snnimg"), "--format", "paicore", "-o", str(tmp_path / "out"))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "not a PAICORE 2.0 chip" in r.stderr and "a.snnimg" in r.stderr
    assert not (tmp_path / "out").exists()


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_truncated_and_damaged_frames_exit_2(small_export, tmp_path):
    man = json.loads((small_export / "manifest.json").read_text())
    core = man["cores"][5]["file"]
    cases = {
        "truncated by 3 bytes": lambda b: b[:-3],
        "truncated by one frame": lambda b: b[:-8],
        "one frame more": lambda b: b + b[-8:],
        "empty": lambda b: b"",
        "header of config II": lambda b: b[:24] + bytes([b[24]]) + b[25:31] + bytes([b[31] ^ 0x80]) + b[32:],
    }
    for i, (what, damage) in enumerate(cases.items()):
        d = _copy(small_export, tmp_path / f"c{i}")
        (d / core).write_bytes(damage((d / core).read_bytes()))
        r = _run("simulate", str(d), "--input", str(tmp_path / "none.npz"))
        assert r.returncode == 2, (what, r.stderr)
        assert r.stderr.startswith("snnmap: error: ") and r.stderr.count("\n") == 1, (what, r.stderr)
        assert "Traceback" not in r.stderr
    d = _copy(small_export, tmp_path / "m")
    (d / "manifest.json").write_text("{")
    r = _run("simulate", str(d), "--input", str(tmp_path / "none.npz"))
    assert r.returncode == 2 and "manifest.json" in r.stderr and r.stderr.count("\n") == 1


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_frames_are_refused_or_valid(wide_export, data, tmp_path_factory):
    """Any flipped bit or cut in a core's frames either still decodes to a valid image or gives one
    SnnmapError, never another exception."""
    import shutil

    d = tmp_path_factory.mktemp("fz") / "f"
    shutil.copytree(wide_export, d)
    man = json.loads((d / "manifest.json").read_text())
    target = data.draw(st.sampled_from([c["file"] for c in man["cores"]] + [man["input"]["file"], "host.arrays"]))
    raw = bytearray((d / target).read_bytes())
    if data.draw(st.booleans()):
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] ^= 1 << data.draw(st.integers(0, 7))
    else:
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    (d / target).write_bytes(bytes(raw))
    try:
        read_frames(d)
    except SnnmapError as e:
        assert "\n" not in str(e)


def test_reading_a_frames_dir_validates_the_manifest(small_export, tmp_path):
    d = _copy(small_export, tmp_path / "x")
    man = json.loads((d / "manifest.json").read_text())
    man["chip"]["axons_per_core"] = 1024
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(SnnmapError, match="not a PAICORE 2.0 chip"):
        read_frames(d)
    man["chip"]["axons_per_core"] = 1152
    man["cores"][0]["file"] = "../escape.bin"
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(SnnmapError, match="not a plain relative path"):
        read_frames(d)
    man = json.loads((small_export / "manifest.json").read_text())
    man["cores"][3]["neurons"] += 1
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(SnnmapError, match="the manifest says"):
        read_frames(d)


def test_export_replaces_only_an_earlier_export(small_image, tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    (d / "keep.txt").write_text("mine")
    with pytest.raises(SnnmapError, match="neither empty nor an earlier frames export"):
        export_paicore(small_image, d, text=False)
    assert (d / "keep.txt").read_text() == "mine" and len(list(tmp_path.iterdir())) == 1
    e = tmp_path / "frames"
    export_paicore(small_image, e, text=False)
    (e / "stale.bin").write_bytes(b"x")
    export_paicore(small_image, e, text=False)
    assert not (e / "stale.bin").exists() and (e / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "out"]


def test_export_does_not_replace_a_folder_that_merely_has_a_manifest(small_image, tmp_path):
    """`export -o proj` where proj/ had any manifest.json (a web app's) deleted the whole folder,
    src/ and all; `export frames/x.snnimg -o frames` deleted the image it had just read. Neither
    is an earlier export: both are refused, untouched, and a real one is still replaced."""
    proj = tmp_path / "proj"
    (proj / "src").mkdir(parents=True)
    (proj / "manifest.json").write_text('{"name": "my web app"}')
    (proj / "src" / "main.c").write_text("precious")
    with pytest.raises(SnnmapError, match="manifest.json is not a 'snnmap-paicore-frames' manifest"):
        export_paicore(small_image, proj, text=False)
    assert (proj / "src" / "main.c").read_text() == "precious"
    e = tmp_path / "frames"
    export_paicore(small_image, e, text=False)
    write_image(small_image, e / "lenet.snnimg")
    with pytest.raises(SnnmapError, match="holds 'lenet.snnimg'"):
        export_paicore(small_image, e, text=False)
    assert (e / "lenet.snnimg").is_file()
    (e / "lenet.snnimg").unlink()
    (e / "cores" / "notes").mkdir()
    with pytest.raises(SnnmapError, match="holds 'cores/notes'"):
        export_paicore(small_image, e, text=False)
    (e / "cores" / "notes").rmdir()
    export_paicore(small_image, e, text=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "proj"]


def test_interrupted_overwrite_keeps_the_earlier_export(small_image, tmp_path, monkeypatch):
    """Ctrl-C between moving the earlier export aside and renaming the new one in: the earlier one
    is back, whole, and nothing hidden is left beside it."""
    from snnmap.paicore import export as ex

    e = tmp_path / "frames"
    export_paicore(small_image, e, text=False)
    def tree(root):
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    before = tree(e)
    real = ex.os.replace
    calls = []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the new export going in
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(ex.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        export_paicore(small_image, e, text=True)
    monkeypatch.setattr(ex.os, "replace", real)
    assert tree(e) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


def test_published_lenet_frames_match_paicorelib(lenet_model, tmp_path):
    """Skipped without shared/ (the lenet_model fixture says so)."""
    img = compile_model(lenet_model, PAICORE2).image
    export_paicore(img, tmp_path / "f", text=False)
    assert check_with_paicorelib(img, tmp_path / "f", generate_every=37) > 0


def _leaves(obj, path=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(obj, list) and obj and len(obj) < 500:
        for i, v in enumerate(obj):
            yield from _leaves(v, (*path, i))
    else:
        yield path


_JUNK = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70), st.floats(allow_nan=True),
                  st.text(max_size=5), st.just([]), st.just({}), st.just([1, 2, 3]))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_manifest_is_refused_or_valid(wide_export, data, tmp_path_factory):
    import shutil

    d = tmp_path_factory.mktemp("mf") / "f"
    shutil.copytree(wide_export, d)
    man = json.loads((d / "manifest.json").read_text())
    paths = list(_leaves(man))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        node = man
        for k in path[:-1]:
            node = node[k]
        if path:
            node[path[-1]] = data.draw(_JUNK)
    (d / "manifest.json").write_text(json.dumps(man))
    try:
        read_frames(d)
    except SnnmapError as e:
        assert "\n" not in str(e)

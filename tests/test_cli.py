"""The snnmap command as users run it: exit status, one-line errors, no partial outputs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from snnmap.modelfile import save_model

from conftest import LENET_ARCH, LENET_PARAMS, need_shared
from test_image import small_model


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "snnmap", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


def assert_clean_failure(p, *absent: Path):
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("snnmap: error:"), p.stderr
    for f in absent:
        assert not f.exists()
    return lines[0]


@pytest.fixture
def model_file(tmp_path):
    save_model(small_model(), tmp_path / "m.snnm")
    return tmp_path / "m.snnm"


def test_compile_simulate_report(tmp_path, model_file):
    img = tmp_path / "m.snnimg"
    p = run("compile", model_file, "-o", img)
    assert p.returncode == 0, p.stderr
    assert "cores on one sg64 chip" in p.stdout
    assert p.stderr == ""  # no progress bar when stderr is not a terminal
    x = np.random.default_rng(0).integers(0, 256, (20, 8, 8)).astype(np.uint8)
    np.savez(tmp_path / "in.npz", x=x, y=np.zeros(20, np.int64))
    p = run("simulate", img, "--input", tmp_path / "in.npz", "--json", "--output", tmp_path / "out.npz")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["images"] == 20 and 0 <= res["accuracy"] <= 1
    assert res["spikes_per_image"] >= 0 and res["sops_per_image"] >= 0
    with np.load(tmp_path / "out.npz") as f:
        assert f["pred"].dtype == np.int64 and f["pred"].shape == (20,)
        assert f["logits"].dtype == np.float64 and f["logits"].shape == (20, 3)
    p = run("report", img, "--cores")
    assert p.returncode == 0 and "conv1" in p.stdout and "synapse util" in p.stdout
    p = run("report", img, "--json")
    assert json.loads(p.stdout)["cores"] >= 2


def test_import_tl_cli(tmp_path):
    need_shared(LENET_PARAMS)
    out = tmp_path / "lenet.snnm"
    p = run("import-tl", LENET_PARAMS, "--arch", LENET_ARCH, "--k", 1, "--B", 2, "--input-scale", "1/256",
            "-o", out)
    assert p.returncode == 0, p.stderr
    assert out.exists() and "28x28x1" in p.stdout


@pytest.mark.parametrize("arch, says", [("16C5p2-16X5-10", "16X5"), ("16C5p2-16C5-10", "31 arrays")],
                         ids=["malformed arch", "wrong count of arrays"])
def test_import_errors_are_one_line(tmp_path, arch, says):
    need_shared(LENET_PARAMS)
    out = tmp_path / "m.snnm"
    line = assert_clean_failure(run("import-tl", LENET_PARAMS, "--arch", arch, "--k", 1, "--B", 2,
                                    "--input-scale", "1/256", "-o", out), out)
    assert says in line


def test_malicious_pickle_cli(tmp_path):
    import pickle

    from test_safe_npz import _Evil, _npz_with_pickle

    marker = tmp_path / "pwned"
    _npz_with_pickle(tmp_path / "evil.npz", pickle.dumps([_Evil(marker)], protocol=2))
    out = tmp_path / "m.snnm"
    line = assert_clean_failure(run("import-tl", tmp_path / "evil.npz", "--arch", "4C3-4C3-3", "--k", 0, "--B", 1,
                                    "--input-scale", "1", "-o", out), out, marker)
    assert "posix.system" in line or "os.system" in line


def test_corrupted_image(tmp_path, model_file):
    img = tmp_path / "m.snnimg"
    assert run("compile", model_file, "-o", img).returncode == 0
    raw = bytearray(img.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    img.write_bytes(bytes(raw))
    np.savez(tmp_path / "in.npz", x=np.zeros((2, 8, 8), np.uint8))
    out = tmp_path / "out.npz"
    line = assert_clean_failure(run("simulate", img, "--input", tmp_path / "in.npz", "--output", out), out)
    assert "corrupted" in line
    img.write_bytes(bytes(raw[:100]))
    assert_clean_failure(run("report", img))


def test_wrong_input_shape(tmp_path, model_file):
    img = tmp_path / "m.snnimg"
    assert run("compile", model_file, "-o", img).returncode == 0
    np.savez(tmp_path / "in.npz", x=np.zeros((2, 9, 8), np.uint8))
    line = assert_clean_failure(run("simulate", img, "--input", tmp_path / "in.npz"))
    assert "'x' has shape" in line


def test_model_breaking_a_chip_limit(tmp_path, model_file):
    (tmp_path / "small.toml").write_text('base = "sg64"\naxons_per_core = 20\nfanin_max_level = 0\n')
    out = tmp_path / "m.snnimg"
    line = assert_clean_failure(run("compile", model_file, "-o", out, "--chip", tmp_path / "small.toml"), out)
    assert "layer 'conv1'" in line and "axons_per_core=20" in line


def test_bad_chip_file(tmp_path, model_file):
    (tmp_path / "c.toml").write_text('base = "sg64"\nmesh_w = "eight"\n')
    out = tmp_path / "m.snnimg"
    line = assert_clean_failure(run("compile", model_file, "-o", out, "--chip", tmp_path / "c.toml"), out)
    assert "mesh_w" in line and "c.toml" in line


def test_unknown_chip_and_missing_model(tmp_path, model_file):
    assert "unknown chip" in assert_clean_failure(run("compile", model_file, "-o", tmp_path / "o", "--chip", "x"))
    assert "cannot read" in assert_clean_failure(run("compile", tmp_path / "none.snnm", "-o", tmp_path / "o"))


def test_help_shows_examples():
    p = run("--help")
    assert p.returncode == 0 and "Example" in p.stdout
    for cmd in ("import-tl", "compile", "simulate", "report"):
        p = run(cmd, "--help")
        assert p.returncode == 0 and "Example" in p.stdout


def test_simulate_drop_and_trace(tmp_path, model_file):
    img = tmp_path / "m.snnimg"
    assert run("compile", model_file, "-o", img).returncode == 0
    x = np.random.default_rng(0).integers(0, 256, (12, 8, 8)).astype(np.uint8)
    np.savez(tmp_path / "in.npz", x=x)
    results = []
    for _ in range(2):
        p = run("simulate", img, "--input", tmp_path / "in.npz", "--json", "--drop", "0.3", "--seed", "4",
                "--trace", tmp_path / "trace.npz")
        assert p.returncode == 0, p.stderr
        results.append(json.loads(p.stdout))
    assert results[0] == results[1] and results[0]["drop"] == {"p": 0.3, "layer": "encoder", "seed": 4}
    with np.load(tmp_path / "trace.npz") as f:
        assert f["trace"].shape[0] == 12 and f["core_coord"].shape[1] == 4
        assert f["trace"].sum(axis=1).mean() == pytest.approx(results[0]["spikes_per_image"])
    line = assert_clean_failure(run("simulate", img, "--input", tmp_path / "in.npz", "--drop", "0.1",
                                    "--drop-layer", "nope"))
    assert "nope" in line
    assert run("simulate", img, "--input", tmp_path / "in.npz", "--drop", "1.5").returncode == 2


def test_report_html_json_and_inspect(tmp_path, model_file):
    img = tmp_path / "m.snnimg"
    assert run("compile", model_file, "-o", img).returncode == 0
    np.savez(tmp_path / "in.npz", x=np.random.default_rng(1).integers(0, 256, (5, 8, 8)).astype(np.uint8))
    p = run("simulate", img, "--input", tmp_path / "in.npz", "--json")
    (tmp_path / "sim.json").write_text(p.stdout)
    page = tmp_path / "r.html"
    p = run("report", img, "--format", "html", "--sim", tmp_path / "sim.json", "-o", page)
    assert p.returncode == 0, p.stderr
    text = page.read_text()
    assert text.startswith("<!doctype html>") and "<svg" in text and "conv1" in text
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # self-contained
    assert text.count('class="core"') == json.loads(run("report", img, "--format", "json").stdout)["cores"]
    assert "latency per image" in text and "packets per image" in text
    summary = json.loads(text.split('id="summary">')[1].split("</script>")[0])
    assert summary["chip"] == "sg64" and summary["layers"][0]["layer"] == "conv1"
    assert_clean_failure(run("report", img, "--format", "html"))  # needs -o
    (tmp_path / "bad.json").write_text("{nope")
    assert_clean_failure(run("report", img, "--format", "html", "--sim", tmp_path / "bad.json", "-o", page))
    p = run("inspect", img, "--core", "0,0")
    assert p.returncode == 0 and "sha256" in p.stdout and "crossbar" in p.stdout and "threshold" in p.stdout
    assert "not configured" in assert_clean_failure(run("inspect", img, "--core", "7,7"))
    assert_clean_failure(run("inspect", img, "--core", "a,b"))


def test_report_json_schema_and_text_width(tmp_path, model_file):
    """The JSON report validates against docs/report.schema.json; the text report fits 100 columns."""
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the test extras")
    from conftest import ROOT

    schema = json.loads((ROOT / "docs" / "report.schema.json").read_text())
    img = tmp_path / "m.snnimg"
    assert run("compile", model_file, "-o", img).returncode == 0
    np.savez(tmp_path / "in.npz", x=np.random.default_rng(1).integers(0, 256, (5, 8, 8)).astype(np.uint8))
    (tmp_path / "sim.json").write_text(run("simulate", img, "--input", tmp_path / "in.npz", "--json").stdout)
    for extra in ([], ["--cores"], ["--sim", tmp_path / "sim.json"]):
        s = json.loads(run("report", img, "--format", "json", *extra).stdout)
        jsonschema.validate(s, schema)
        assert sum(r["cores"] for r in s["layers"]) == s["cores"]
        if extra == ["--cores"]:
            assert len(s["per_core"]) == s["cores"]
    bad = json.loads(run("report", img, "--format", "json").stdout)
    bad["layers"][0]["axon_util"] = 2.0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    text = run("report", img, "--cores", "--sim", tmp_path / "sim.json").stdout
    assert max(len(line) for line in text.splitlines()) <= 100


def test_missing_output_folder_fails_before_work(tmp_path, model_file):
    out = tmp_path / "nodir" / "x.snnimg"
    line = assert_clean_failure(run("compile", model_file, "-o", out))
    assert "does not exist" in line
    img = tmp_path / "m.snnimg"
    assert run("compile", model_file, "-o", img).returncode == 0
    np.savez(tmp_path / "in.npz", x=np.zeros((2, 8, 8), np.uint8))
    trace = tmp_path / "t.npz"
    assert_clean_failure(run("simulate", img, "--input", tmp_path / "in.npz", "--trace", trace,
                             "--output", tmp_path / "nodir" / "o.npz"), trace)


def test_sim_summary_of_another_image_is_refused(tmp_path, model_file):
    img = tmp_path / "m.snnimg"
    assert run("compile", model_file, "-o", img).returncode == 0
    np.savez(tmp_path / "in.npz", x=np.zeros((2, 8, 8), np.uint8))
    sim = json.loads(run("simulate", img, "--input", tmp_path / "in.npz", "--json").stdout)
    sim["per_core"][0]["core"] = [7, 7]
    (tmp_path / "other.json").write_text(json.dumps(sim))
    line = assert_clean_failure(run("report", img, "--format", "json", "--sim", tmp_path / "other.json"))
    assert "do not match" in line
    assert run("simulate", img, "--input", tmp_path / "in.npz", "--drop", "0.5", "--seed", "-1").returncode == 2


def _capped_run(*args, cwd=None):
    """run() with address space capped at 2 GiB and 60 s: a reader that trusts a device's stream
    fails fast here rather than taking the machine's memory."""
    import resource

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    return subprocess.run([sys.executable, "-m", "snnmap", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, preexec_fn=cap, timeout=60)


@pytest.mark.skipif(not Path("/dev/zero").exists() or sys.platform != "linux", reason="needs /dev/zero")
@pytest.mark.parametrize("case", ["image", "input", "calibrate", "chip", "sim", "onnx", "tl", "fifo"])
def test_a_device_or_pipe_as_input_is_refused_before_reading(tmp_path, model_file, case):
    """/dev/zero (or /dev/urandom) as any input file: stat says 0 bytes, so every reader read it
    until memory ran out; a named pipe blocked on open. Each is now refused by name, at once."""
    import os

    from snnmap.chip.spec import SG64
    from snnmap.image import write_image
    from snnmap.pipeline import compile_model

    img = tmp_path / "m.snnimg"
    write_image(compile_model(small_model(), SG64).image, img)
    zero = tmp_path / f"zero.{'toml' if case == 'chip' else 'npz'}"
    if case == "fifo":
        os.mkfifo(zero)
    else:
        zero.symlink_to("/dev/zero")
    out = tmp_path / "out.file"
    args = {"image": ("inspect", zero), "input": ("simulate", img, "--input", zero),
            "calibrate": ("compile", model_file, "-o", out, "--calibrate", zero),
            "chip": ("compile", model_file, "-o", out, "--chip", zero), "sim": ("report", img, "--sim", zero),
            "onnx": ("import-onnx", zero, "-o", out),
            "tl": ("import-tl", zero, "--arch", "4C3-4C3-10", "--k", "1", "--B", "2", "--input-scale", "1/256",
                   "-o", out),
            "fifo": ("simulate", img, "--input", zero)}[case]
    line = assert_clean_failure(_capped_run(*args), out)
    assert "not a regular file" in line and str(zero) in line


@pytest.mark.parametrize("case", ["compile-model", "compile-calibrate", "simulate-image", "simulate-input",
                                  "simulate-trace", "report-image", "report-sim", "import-tl", "export-nir"])
def test_an_output_onto_an_input_is_refused(tmp_path, model_file, case):
    """`compile m.snnm -o m.snnm`, `simulate x.snnimg --output x.snnimg`, `report x.snnimg -o
    x.snnimg`...: the output silently replaced the input file (the model or image was gone). Now
    one error before any work, the input untouched; also through a symlink, and for two outputs."""
    from snnmap.chip.spec import SG64
    from snnmap.image import write_image
    from snnmap.pipeline import compile_model

    img = tmp_path / "m.snnimg"
    write_image(compile_model(small_model(), SG64).image, img)
    x = tmp_path / "in.npz"
    np.savez(x, x=np.zeros((2, 8, 8), np.uint8))
    sim = tmp_path / "sim.json"
    sim.write_text(run("simulate", img, "--input", x, "--json").stdout)
    link = tmp_path / "link.snnm"
    link.symlink_to(model_file)
    out = tmp_path / "out.npz"
    args, victim = {
        "compile-model": (("compile", model_file, "-o", link), model_file),
        "compile-calibrate": (("compile", model_file, "-o", x, "--calibrate", x), x),
        "simulate-image": (("simulate", img, "--input", x, "--output", img), img),
        "simulate-input": (("simulate", img, "--input", x, "--trace", x), x),
        "simulate-trace": (("simulate", img, "--input", x, "--output", out, "--trace", out), out),
        "report-image": (("report", img, "-o", img), img),
        "report-sim": (("report", img, "--sim", sim, "-o", sim), sim),
        "import-tl": (("import-tl", x, "--arch", "4C3-4C3-10", "--k", "1", "--B", "2", "--input-scale", "1/256",
                       "-o", x), x),
        "export-nir": (("export-nir", model_file, "-o", model_file), model_file),
    }[case]
    before = victim.read_bytes() if victim.exists() else None
    line = assert_clean_failure(run(*args))
    assert "is also the input" in line or "two outputs" in line
    assert (victim.read_bytes() if victim.exists() else None) == before


@pytest.mark.parametrize("value", [float("nan"), 1e308, -1.0])
def test_report_refuses_a_non_finite_spike_count_in_the_summary(tmp_path, value):
    """A `simulate --json` summary edited to hold NaN or 1e308 spikes for a core: `report --json
    --sim` printed "NaN" / "Infinity" link loads, which is not JSON. Now one error naming the entry."""
    from snnmap.chip.spec import SG64
    from snnmap.image import write_image
    from snnmap.pipeline import compile_model

    img = tmp_path / "m.snnimg"
    write_image(compile_model(small_model(), SG64).image, img)
    np.savez(tmp_path / "in.npz", x=np.zeros((2, 8, 8), np.uint8))
    sim = json.loads(run("simulate", img, "--input", tmp_path / "in.npz", "--json").stdout)
    sim["per_core"][0]["spikes_per_image"] = value
    (tmp_path / "sim.json").write_text(json.dumps(sim))
    line = assert_clean_failure(run("report", img, "--json", "--sim", tmp_path / "sim.json"))
    assert "per_core[0].spikes_per_image" in line


@pytest.mark.parametrize("case", ["inspect", "simulate", "compile", "header"])
def test_a_huge_sparse_file_is_refused_before_it_is_read(tmp_path, model_file, case):
    """A sparse 4 GiB file (no disk, reads as zeros) given as an image or model was read whole
    before its magic was looked at (out of memory, or 4 GiB taken); so was one that starts with a
    valid header whose section table does not add up to the file. Both are refused at once."""
    big = tmp_path / "big.snnimg"
    with open(big, "wb") as f:
        if case == "header":
            f.write(b"SNNMAPIM" + (1).to_bytes(2, "little") + bytes(2) + (1).to_bytes(4, "little"))
        f.truncate(4 << 30)
    args = {"inspect": ("inspect", big), "simulate": ("simulate", big, "--input", big),
            "compile": ("compile", big, "-o", tmp_path / "o.snnimg"), "header": ("inspect", big)}[case]
    line = assert_clean_failure(_capped_run(*args), tmp_path / "o.snnimg")
    assert ("declares" if case == "header" else "magic") in line and str(big) in line


@pytest.mark.parametrize("args, says", [
    (("compile", "{m}", "-o", "{d}/o.snnimg", "--seed", "-1"), "--seed"),
    (("compile", "{m}", "-o", "{d}"), "--output"),
    (("compile", "{m}"), "--output"),
    (("compile", "{m}", "-o", "{d}/o.snnimg", "--fo"), "--fo"),
    (("simulate", "{m}", "--input", "{m}", "--batch", "0"), "--batch"),
    (("report", "{m}", "--format", "pdf"), "--format"),
    (("inspect", "{m}", "extra"), "extra"),
    (("compiel",), "compiel"),
])
def test_usage_errors_are_one_line(tmp_path, model_file, args, says):
    """A bad option value, a missing or unknown option, a folder for a file: click printed its
    three-line usage block (Usage / Try / Error). Now one `snnmap: error:` line naming the option
    and the command, exit 2."""
    p = run(*(a.format(m=model_file, d=tmp_path) for a in args))
    line = assert_clean_failure(p, tmp_path / "o.snnimg")
    assert says in line and "--help" in line

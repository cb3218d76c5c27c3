"""The HTML report of the bundled example: structure, self-containment, and a real browser."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

EXAMPLE = ROOT / "examples" / "lenet_mnist"


def run(*args):
    return subprocess.run([sys.executable, "-m", "snnmap", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    d = tmp_path_factory.mktemp("html")
    img = d / "lenet.snnimg"
    assert run("compile", EXAMPLE / "lenet_k1_B2.snnm", "-o", img, "--quiet").returncode == 0
    with np.load(EXAMPLE / "test_images.npz") as f:
        np.savez(d / "in.npz", x=f["x"][:50], y=f["y"][:50])
    p = run("simulate", img, "--input", d / "in.npz", "--json")
    assert p.returncode == 0, p.stderr
    (d / "sim.json").write_text(p.stdout)
    out = d / "report.html"
    p = run("report", img, "--format", "html", "--sim", d / "sim.json", "-o", out)
    assert p.returncode == 0, p.stderr
    cores = json.loads(run("report", img, "--format", "json").stdout)["cores"]
    return out, cores, json.loads((d / "sim.json").read_text())


def test_structure(page):
    path, cores, sim = page
    text = path.read_text()
    assert text.count('<rect class="core"') == cores  # one rect per used core
    assert text.count('<span class="key">') == 5  # legend: one entry per on-chip layer
    assert text.count("<table>") == 2 and "<th>layer</th>" in text  # figures and layers
    assert "spike-hops" in text and "latency per image" in text and "lower bound on cores" in text
    urls = re.findall(r"(?:https?:)?//[^\s\"'<>)]+", text)
    assert urls == ["http://www.w3.org/2000/svg"]  # only the SVG namespace name, never fetched
    assert "<link" not in text and "src=" not in text and "@import" not in text


def test_renders_in_chromium_without_console_errors(page, tmp_path):
    browser = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no headless Chromium on this machine (apt-get install chromium to run this test)")
    path, cores, _ = page
    p = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
                        "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.count('class="core"') == cores  # the DOM the browser built
    console = [ln for ln in p.stderr.splitlines() if ":CONSOLE" in ln]
    assert console == []

"""Atomic outputs, interrupted compiles, reproducible images across processes, the time limit."""

import contextlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from snnmap.chip.spec import PAICORE2, SG64
from snnmap.image import image_to_bytes, read_image
from snnmap.errors import SnnmapError
from snnmap.io import atomic
from snnmap.model import BatchNorm, Classifier, Layer, QuantModel
from snnmap.modelfile import save_model
from snnmap.pipeline import compile_model


def lenet_like(seed=0) -> QuantModel:
    """Random ternary weights in the published LeNet's shape: a compile takes about a second."""
    rng = np.random.default_rng(seed)

    def bn(c):
        return BatchNorm(rng.normal(0, 0.5, c), rng.uniform(0.5, 1.5, c), rng.normal(0, 5, c),
                         rng.uniform(50, 300, c))

    def tern(*shape):
        return rng.choice(np.array([-1, 0, 1], np.int8), size=shape, p=[0.3, 0.4, 0.3])

    enc = Layer("encoder", "conv", rng.normal(0, 0.3, (5, 5, 1, 16)), bn(16), 1, 2)
    layers = (Layer("conv2", "conv", tern(5, 5, 16, 16), bn(16)), Layer("conv3", "conv", tern(2, 2, 16, 16), bn(16), 2),
              Layer("conv4", "conv", tern(5, 5, 16, 32), bn(32)), Layer("conv5", "conv", tern(2, 2, 32, 32), bn(32), 2),
              Layer("conv6", "conv", tern(4, 4, 32, 256), bn(256)))
    return QuantModel((28, 28, 1), 1, 2, 1 / 256, enc, layers,
                      Classifier(rng.normal(size=(256, 10)), np.zeros(10)), name="lenet-like").validate()


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(SnnmapError, match="disk on fire"):
        atomic.write_bytes_atomic(tmp_path / "out.bin", b"x" * 1000)
    assert list(tmp_path.iterdir()) == []


def test_overwrite_is_all_or_nothing(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    atomic.write_bytes_atomic(target, b"old")
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        atomic.write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def _fifo_reader(path, got: list) -> "threading.Thread":
    import threading

    def read():
        with open(path, "rb") as f:
            got.append(f.read())

    th = threading.Thread(target=read, daemon=True)
    th.start()
    return th


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_output_onto_a_pipe_or_device_writes_through_it(tmp_path):
    """`-o /dev/null`, `-o /dev/stdout` or a named pipe: renaming a temp file over it replaced the
    device node itself with a regular file (as root, /dev/null and /dev/full were gone) and left
    whoever read the pipe waiting; such a target is written through instead."""
    import stat

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list = []
    th = _fifo_reader(fifo, got)
    time.sleep(0.05)  # the reader opens first (a pipe with no reader is an error, below)
    atomic.write_bytes_atomic(fifo, b"image bytes")
    th.join(5)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and got == [b"image bytes"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]
    with pytest.raises(SnnmapError, match="pipe"):  # nobody reads it: one error, not a hang
        atomic.write_bytes_atomic(fifo, b"x")


def test_output_through_a_symlink_replaces_its_target(tmp_path):
    """A symlinked output keeps its link; the file it points to gets the new bytes, atomically."""
    (tmp_path / "real").mkdir()
    real = tmp_path / "real" / "out.bin"
    real.write_bytes(b"old")
    link = tmp_path / "link.bin"
    link.symlink_to(real)
    atomic.write_bytes_atomic(link, b"new")
    assert link.is_symlink() and real.read_bytes() == b"new"
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["out.bin"]


@pytest.fixture(scope="module")
def lenet_like_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "lenet_like.snnm"
    save_model(lenet_like(), path)
    return path


def _wait_for_snnmap_handlers(pid: int) -> None:
    """Until snnmap's main() catches SIGTERM (Linux: SigCgt in /proc); elsewhere, a fixed 0.3 s."""
    status = f"/proc/{pid}/status"
    if not os.path.exists(status):
        time.sleep(0.3)
        return
    for _ in range(2000):
        try:
            with open(status) as f:
                caught = next((int(line.split()[1], 16) for line in f if line.startswith("SigCgt:")), 0)
        except FileNotFoundError:  # it has ended already
            return
        if caught >> (signal.SIGTERM - 1) & 1:
            return
        time.sleep(0.005)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_compile_leaves_no_output(tmp_path, lenet_like_file, signum):
    """SIGINT or SIGTERM at several moments of a compile: a whole valid image or no file, never a
    part, and no temp file left behind."""
    outcomes = set()
    for delay in (0.0, 0.3, 0.6, 0.9, 1.2):
        out = tmp_path / f"out{delay}.snnimg"
        p = subprocess.Popen([sys.executable, "-m", "snnmap", "compile", str(lenet_like_file), "-o", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for_snnmap_handlers(p.pid)  # a signal during the interpreter's own start is Python's affair
        time.sleep(delay)
        p.send_signal(signum)
        _, err = p.communicate(timeout=120)
        leftovers = [f.name for f in tmp_path.iterdir() if f.name.startswith(f".{out.name}")]
        assert leftovers == []
        if p.returncode == 0:
            read_image(out)  # complete and valid
            outcomes.add("finished")
        else:
            assert p.returncode == 128 + signum, (p.returncode, err)
            if out.exists():  # the signal came after the rename: the file is whole
                read_image(out)
            else:
                outcomes.add("interrupted")
    assert "interrupted" in outcomes


def test_reproducible_across_processes(tmp_path, lenet_like_file):
    digests = []
    for seed in ("0", "12345"):
        out = tmp_path / f"img{seed}.snnimg"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        p = subprocess.run([sys.executable, "-m", "snnmap", "compile", str(lenet_like_file), "-o", str(out), "--quiet"],
                           env=env, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        digests.append(out.read_bytes())
    assert digests[0] == digests[1]


class _SlowClock:
    """A monotonic clock on which every reading is a second after the last: a deadline of 0.01 s
    is past at its first check, on any machine, however loaded."""

    def __init__(self):
        self.t = 0.0

    def monotonic(self):
        self.t += 1.0
        return self.t


@pytest.mark.parametrize("spec, counted", [(SG64, "_producer_copies"), (PAICORE2, "cut_layer")])
def test_time_limit_is_respected(monkeypatch, spec, counted):
    """Past its deadline the shape search weighs one candidate per layer (the beam's copy counts on
    sg64, the cuts of candidate shapes on paicore2) and still gives a legal tiling. Counted, not timed."""
    from snnmap import deadline
    from snnmap.passes import tiling

    model = lenet_like()
    weighed = []
    real = getattr(tiling, counted)

    def counting(name, *args, **kwargs):
        weighed.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(tiling, counted, counting)
    full = compile_model(model, spec)
    assert len(weighed) > len(set(weighed))  # without a limit some layer weighs several candidates
    weighed.clear()
    monkeypatch.setattr(deadline, "time", _SlowClock())
    quick = compile_model(model, spec, time_limit=0.01)
    assert weighed and len(weighed) == len(set(weighed))
    assert len(quick.image.cores) >= len(full.image.cores)
    assert image_to_bytes(quick.image)[:8] == b"SNNMAPIM"


@pytest.mark.parametrize("limit", ["0", "-1", "nan", "inf", "-inf"])
def test_time_limit_must_be_positive(tmp_path, lenet_like_file, limit):
    out = tmp_path / "o.snnimg"
    p = subprocess.run([sys.executable, "-m", "snnmap", "compile", str(lenet_like_file), "-o", str(out),
                        "--time-limit", limit], capture_output=True, text=True)
    assert p.returncode == 2 and "time-limit" in p.stderr and "Traceback" not in p.stderr
    assert not out.exists()


@pytest.mark.parametrize("spec", [SG64, PAICORE2], ids=["sg64", "paicore2"])
def test_a_huge_finite_time_limit_compiles(spec):
    """--time-limit 1e308 overflowed the placement passes' integer budget (OverflowError, exit 1)."""
    from test_image import small_model

    res = compile_model(small_model(), spec, time_limit=1e308)
    assert res.image.cores


def test_outputs_get_the_usual_file_mode(tmp_path):
    old = os.umask(0o022)
    try:
        atomic.write_bytes_atomic(tmp_path / "out.bin", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "out.bin").stat().st_mode & 0o777 == 0o644


def test_progress_reports_every_tile():
    seen = {}

    def progress(label, total):
        seen[label] = [total, 0]

        def step(n):
            seen[label][1] += n
        return step

    result = compile_model(lenet_like(), SG64, progress=progress)
    assert seen["cutting tiles"] == [len(result.image.cores)] * 2


@pytest.mark.parametrize("signum, says", [(signal.SIGINT, "interrupted"), (signal.SIGTERM, "terminated")])
def test_interrupt_turned_into_another_error_still_reads_as_an_interrupt(monkeypatch, capsys, signum, says):
    """An extension module being imported when the signal lands (ortools' pybind11 init) raises
    ImportError('initialization failed') instead of KeyboardInterrupt: exit 128 + signal, not an
    internal error, and the handlers the caller had are back afterwards."""
    from snnmap import cli

    def interrupted_import(**kwargs):
        try:
            os.kill(os.getpid(), signum)
            time.sleep(5)
        except KeyboardInterrupt:
            raise ImportError("initialization failed") from None
        raise AssertionError("SIGINT did not arrive")

    monkeypatch.setattr(cli.cli, "main", interrupted_import)
    with _signals_raise() as before:
        with pytest.raises(SystemExit) as e:
            cli.main()
        assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == before
    assert e.value.code == 128 + signum
    assert says in capsys.readouterr().err


@contextlib.contextmanager
def _signals_raise():
    """While a test signals its own process: a SIGTERM the code under test fails to catch becomes a
    failing test, not the end of pytest."""
    def raiser(signum, frame):
        raise KeyboardInterrupt

    old = [signal.signal(s, raiser) for s in (signal.SIGINT, signal.SIGTERM)]
    try:
        yield [raiser, raiser]
    finally:
        for s, h in zip((signal.SIGINT, signal.SIGTERM), old):
            signal.signal(s, h)


_SIGNAL_IN_FSYNC = """
import os, sys, time
from snnmap import cli
def signalled(fd):
    os.kill(os.getpid(), {signum})
    time.sleep(5)
    sys.exit("the signal did not arrive")
os.fsync = signalled
sys.argv = ["snnmap", "compile", {model!r}, "-o", {out!r}, "--quiet"]
cli.main()
"""


@pytest.mark.parametrize("signum, says", [(signal.SIGINT, "interrupted"), (signal.SIGTERM, "terminated")])
def test_signal_while_the_image_is_written_leaves_nothing(tmp_path, lenet_like_file, signum, says):
    """The signal lands in the one window where a temp file exists (between write and rename),
    after placement has run CP-SAT (which, left to itself, resets SIGINT to kill the process)."""
    folder = tmp_path / "out"
    folder.mkdir()
    code = _SIGNAL_IN_FSYNC.format(signum=int(signum), model=str(lenet_like_file), out=str(folder / "o.snnimg"))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 128 + signum and f"snnmap: error: {says}" in p.stderr, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr
    assert sorted(f.name for f in folder.iterdir()) == []

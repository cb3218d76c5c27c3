"""Signals at random moments of real compiles, for campaigns run by hand (the CPU loaded or not).

    python tests/fuzz/signal_stress.py 100            # SIGTERM and SIGINT alternately
    python tests/fuzz/signal_stress.py 100 --load 2   # with 2 busy processes beside it

Each compile must end with exit status 0, 130 (SIGINT) or 143 (SIGTERM), leave no hidden temp
file, and a file it leaves must be a whole image. Prints the count of each exit status.
"""

from __future__ import annotations

import argparse
import collections
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the helpers below

from test_reliability import _wait_for_snnmap_handlers, lenet_like  # noqa: E402

from snnmap.image import read_image  # noqa: E402
from snnmap.modelfile import save_model  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", type=int)
    ap.add_argument("--load", type=int, default=0, help="busy processes to run beside the compiles")
    args = ap.parse_args()
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    try:
        folder = Path(tempfile.mkdtemp())
        model = folder / "m.snnm"
        save_model(lenet_like(), model)
        codes, bad = collections.Counter(), []
        for i in range(args.runs):
            sig = (signal.SIGTERM, signal.SIGINT)[i % 2]
            delay = (0.0, 0.3, 0.6, 0.9, 1.2)[i // 2 % 5]
            out = folder / f"o{i}.snnimg"
            p = subprocess.Popen([sys.executable, "-m", "snnmap", "compile", str(model), "-o", str(out)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            _wait_for_snnmap_handlers(p.pid)
            time.sleep(delay)
            p.send_signal(sig)
            _, err = p.communicate(timeout=300)
            codes[p.returncode] += 1
            if p.returncode not in (0, 128 + sig):
                bad.append((sig.name, delay, p.returncode, err.strip()[-300:]))
            if out.exists():
                read_image(out)
        hidden = [f.name for f in folder.iterdir() if f.name.startswith(".")]
        print(dict(codes), "hidden files left:", hidden)
        for b in bad[:10]:
            print(b)
        return 1 if bad or hidden else 0
    finally:
        for b in busy:
            b.kill()


if __name__ == "__main__":
    sys.exit(main())

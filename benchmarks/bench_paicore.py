"""What exporting an image as PAICORE frames costs, and reading the frames back: time and size.

    python benchmarks/bench_paicore.py IMAGE.snnimg [--repeat 3]

IMAGE must be compiled for paicore2 (e.g. `snnmap compile lenet.snnm --chip paicore2 -o IMAGE`).
Prints, per repeat: the export with and without the .txt twins (wall seconds, bytes written,
frames), and snnmap's decoder reading the directory back into an image (wall seconds), plus the
load average (this machine is shared).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from snnmap.image.format import read_image
from snnmap.paicore.export import export_paicore, read_frames


def _size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("image")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    img = read_image(args.image)
    tmp = Path(tempfile.mkdtemp(prefix="bench_paicore."))
    try:
        for r in range(args.repeat):
            for text in (True, False):
                d = tmp / f"f{r}{int(text)}"
                t0 = time.perf_counter()
                man = export_paicore(img, d, text=text)
                dt = time.perf_counter() - t0
                frames = sum(c["frames"]["config4"][1] for c in man["cores"]) + man["input"]["frames"]
                print(f"export text={text!s:5}: {dt:6.2f} s, {_size(d) / 1e6:7.1f} MB, {len(man['cores'])} cores, "
                      f"{frames} frames; load {os.getloadavg()[0]:.2f}")
            t0 = time.perf_counter()
            read_frames(tmp / f"f{r}0")
            print(f"read_frames         : {time.perf_counter() - t0:6.2f} s; load {os.getloadavg()[0]:.2f}")
            for d in tmp.iterdir():
                shutil.rmtree(d)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

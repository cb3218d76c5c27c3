"""Why the simulator runs BLAS on one thread: the sgemm it does most, timed both ways in one run.

    python benchmarks/bench_blas_threads.py

One tick of the published LeNet's second layer for a block of 128 images: (130 x 768) float32
weights times (768 x 256) events per call, 36 calls. Prints GFLOP/s with OpenBLAS's own threads
and with one thread (snnmap.sim.blas), alternating, and the load average.
"""

from __future__ import annotations

import os
import time

import numpy as np

from snnmap.sim.blas import single_threaded_blas


def rate(w: np.ndarray, ev: np.ndarray, calls: int = 36) -> float:
    out = np.empty((w.shape[0], ev.shape[1]), np.float32)
    np.matmul(w, ev, out=out)
    t0 = time.perf_counter()
    for _ in range(calls):
        np.matmul(w, ev, out=out)
    return 2 * w.shape[0] * w.shape[1] * ev.shape[1] * calls / (time.perf_counter() - t0) / 1e9


def main() -> None:
    rng = np.random.default_rng(0)
    w = rng.integers(-1, 2, (130, 768)).astype(np.float32)
    ev = rng.integers(0, 5, (768, 256)).astype(np.float32)
    for _ in range(3):
        threaded = rate(w, ev)
        with single_threaded_blas():
            single = rate(w, ev)
        print(f"BLAS threads {threaded:6.1f} GFLOP/s, one thread {single:6.1f} GFLOP/s; "
              f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

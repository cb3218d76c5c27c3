"""Run BLAS single-threaded while the simulator's own worker threads share the cores.

The simulator splits a batch across Python threads (NumPy releases the GIL in matmul, ufuncs and
takes); a multithreaded BLAS under them oversubscribes the cores, and on a loaded machine its
spinning threads made one small sgemm 20-40x slower (measured, docs/benchmarks.md). OpenBLAS
exposes its thread count as a C function; NumPy does not, so it is looked up in the loaded
libraries. Without OpenBLAS (or off Linux) this does nothing.
"""

from __future__ import annotations

import ctypes
import threading
from contextlib import contextmanager

_NAMES = ("openblas_set_num_threads", "openblas_set_num_threads64_", "scipy_openblas_set_num_threads64_",
          "scipy_openblas_set_num_threads")
_lock = threading.Lock()
_users = 0
_found: list | None = None


def _openblas() -> list:
    """(set, get) function pairs of every OpenBLAS loaded into this process."""
    global _found
    if _found is not None:
        return _found
    _found = []
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
    except OSError:
        return _found
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _NAMES:
            getter = name.replace("set_num", "get_num")
            if hasattr(lib, name) and hasattr(lib, getter):
                setf, getf = getattr(lib, name), getattr(lib, getter)
                setf.argtypes, setf.restype, getf.restype = [ctypes.c_int], None, ctypes.c_int
                _found.append((setf, getf))
                break
    return _found


@contextmanager
def single_threaded_blas():
    """BLAS on one thread inside the block (nested and concurrent uses allowed), restored after."""
    global _users
    with _lock:
        libs = _openblas()
        if _users == 0:
            single_threaded_blas.saved = [getf() for _, getf in libs]
            for setf, _ in libs:
                setf(1)
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                for (setf, _), n in zip(libs, single_threaded_blas.saved):
                    setf(n)


single_threaded_blas.saved = []

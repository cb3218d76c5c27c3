"""Input batches for the simulator: an .npz with `x` images and optional `y` labels (no pickle)."""

from __future__ import annotations

import numpy as np

from snnmap.errors import SnnmapError
from snnmap.io.safe_npz import load_npz_safely


def load_inputs(path, input_shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    where = str(path)
    arrays = load_npz_safely(path, allow_objects=False)
    if "x" not in arrays:
        raise SnnmapError(f"has no array 'x' (found {sorted(arrays)})", where=where)
    x, y = arrays["x"], arrays.get("y")
    if x.dtype.kind not in "uifb":
        raise SnnmapError(f"'x' has dtype {x.dtype}, expected integers or floats", where=where)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(input_shape):
        raise SnnmapError(f"'x' has shape {x.shape}, expected (N, {input_shape[0]}, {input_shape[1]}) or "
                          f"(N, {', '.join(map(str, input_shape))})", where=where)
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise SnnmapError("'x' holds NaN or infinite values", where=where)
    if y is not None:
        if y.dtype.kind not in "ui" or y.shape != (x.shape[0],):
            raise SnnmapError(f"'y' must be integer labels of shape ({x.shape[0]},), got {y.dtype} "
                              f"{y.shape}", where=where)
        y = y.astype(np.int64)
    return x, y

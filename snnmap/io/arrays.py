"""A flat, typed codec for named numpy arrays: no pickle, no trust in declared sizes."""

from __future__ import annotations

import math
import struct

import numpy as np

from snnmap.errors import SnnmapError

_CODES = {
    1: np.dtype("<u1"), 2: np.dtype("<i1"), 3: np.dtype("<u2"), 4: np.dtype("<i2"),
    5: np.dtype("<u4"), 6: np.dtype("<i4"), 7: np.dtype("<u8"), 8: np.dtype("<i8"),
    9: np.dtype("<f4"), 10: np.dtype("<f8"), 11: np.dtype("?"),
}
_BY_DTYPE = {dt: code for code, dt in _CODES.items()}
MAX_NDIM = 8
MAX_ELEMENTS = 1 << 40


def pack_arrays(arrays: dict[str, np.ndarray]) -> bytes:
    parts = [struct.pack("<I", len(arrays))]
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        code = _BY_DTYPE.get(np.dtype(dt).newbyteorder("<") if dt.kind != "b" else np.dtype("?"))
        if code is None:
            raise TypeError(f"array {name!r}: dtype {arr.dtype} cannot be stored")
        raw_name = name.encode("utf-8")
        parts.append(struct.pack("<HBB", len(raw_name), code, arr.ndim))
        parts.append(raw_name)
        parts.append(struct.pack(f"<{arr.ndim}Q", *arr.shape))
        parts.append(arr.astype(_CODES[code], copy=False).tobytes())
    return b"".join(parts)


def unpack_arrays(data: bytes, where: str) -> dict[str, np.ndarray]:
    """Decode what pack_arrays wrote; every length is checked against the bytes present."""
    view = memoryview(data)
    pos = 0

    def take(n: int, what: str) -> memoryview:
        nonlocal pos
        if n < 0 or pos + n > len(view):
            raise SnnmapError(f"truncated while reading {what} (needs {n} bytes at offset {pos}, "
                              f"{len(view) - pos} left)", where=where)
        out = view[pos:pos + n]
        pos += n
        return out

    (count,) = struct.unpack("<I", take(4, "array count"))
    if count > len(view) // 4:
        raise SnnmapError(f"declares {count} arrays, more than its {len(view)} bytes can hold", where=where)
    out: dict[str, np.ndarray] = {}
    for i in range(count):
        name_len, code, ndim = struct.unpack("<HBB", take(4, f"array #{i} header"))
        try:
            name = bytes(take(name_len, f"array #{i} name")).decode("utf-8")
        except UnicodeDecodeError:
            raise SnnmapError(f"array #{i} has a name that is not UTF-8", where=where) from None
        if code not in _CODES:
            raise SnnmapError(f"array {name!r} has unknown dtype code {code}", where=where)
        if ndim > MAX_NDIM:
            raise SnnmapError(f"array {name!r} has {ndim} dimensions (at most {MAX_NDIM})", where=where)
        shape = struct.unpack(f"<{ndim}Q", take(8 * ndim, f"array {name!r} shape"))
        dt = _CODES[code]
        if math.prod(max(s, 1) for s in shape) > MAX_ELEMENTS:
            raise SnnmapError(f"array {name!r} declares shape {shape}: over {MAX_ELEMENTS} elements", where=where)
        nbytes = dt.itemsize
        for s in shape:
            nbytes *= s
        if nbytes > len(view) - pos:
            raise SnnmapError(f"array {name!r} declares shape {shape} ({nbytes} bytes) but only "
                              f"{len(view) - pos} bytes follow", where=where)
        if name in out:
            raise SnnmapError(f"array {name!r} appears twice", where=where)
        out[name] = np.frombuffer(take(nbytes, f"array {name!r} data"), dtype=dt).reshape(shape).copy()
    if pos != len(view):
        raise SnnmapError(f"{len(view) - pos} unexpected bytes after the last array", where=where)
    return out

"""Read .npz files that hold pickled object arrays without running pickle.

TensorLayer saves a parameter list as a numpy object array, which numpy stores as a pickle.
Unpickling executes whatever the stream names, so this module interprets the opcode stream
itself (pickletools only parses it) and admits exactly what numpy's array reconstruction
uses: numpy's ``_reconstruct``, ``ndarray``, ``dtype`` and ``_codecs.encode``. Any other global,
opcode or shape is refused with a located error before anything is built.
"""

from __future__ import annotations

import io
import math
import pickletools
import warnings
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np
from numpy.lib import format as npformat

from snnmap.errors import SnnmapError
from snnmap.io.files import require_regular

MAX_MEMBER_BYTES = 1 << 31
MAX_ELEMENTS = 1 << 40
_ZIP_ERRORS = (OSError, zipfile.BadZipFile, ValueError, EOFError, RuntimeError, NotImplementedError,
               zlib.error, UnicodeDecodeError, KeyError)
_MAX_RATIO = 1040  # deflate expands at most about 1032:1
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy._core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy", "ndarray"): "ndarray",
    ("numpy", "dtype"): "dtype",
    ("_codecs", "encode"): "encode",
    ("numpy.core.numeric", "_frombuffer"): "frombuffer",
    ("numpy._core.numeric", "_frombuffer"): "frombuffer",
}
_NUMERIC = {"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"}


@dataclass
class _Global:
    role: str


@dataclass
class _Dtype:
    code: str
    order: str = "<"


@dataclass
class _Array:
    value: object = None


_MARK = object()


def load_npz_safely(path, allow_objects: bool = True) -> dict[str, object]:
    """Map each member name (without .npy) to an ndarray, or to a list for an object array.

    Nothing is allocated beyond what the file's bytes justify: a member may not declare more
    than deflate can expand its compressed bytes to, and an array's declared shape must match
    the bytes present before it is built.
    """
    where = str(path)
    require_regular(path, ".npz file")
    try:
        zf = zipfile.ZipFile(path)
    except _ZIP_ERRORS as e:
        raise SnnmapError(f"not a readable .npz (zip) file: {e}", where=where) from None
    out: dict[str, object] = {}
    with zf:
        for info in zf.infolist():
            mwhere = f"{where}[{info.filename}]"
            if not info.filename.endswith(".npy"):
                raise SnnmapError("member is not a .npy array", where=mwhere)
            if info.filename[:-4] in out:  # two arrays of one name: which one a reader takes is arbitrary
                raise SnnmapError("member appears twice in the zip", where=mwhere)
            if info.file_size > min(MAX_MEMBER_BYTES, _MAX_RATIO * info.compress_size + 1024):
                raise SnnmapError(f"declares {info.file_size} bytes uncompressed from "
                                  f"{info.compress_size} compressed: over the limit", where=mwhere)
            try:
                with zf.open(info) as f:
                    raw = f.read(info.file_size + 1)
            except _ZIP_ERRORS as e:
                raise SnnmapError(f"cannot decompress: {e}", where=mwhere) from None
            if len(raw) != info.file_size:
                raise SnnmapError(f"holds {len(raw)} bytes, its header says {info.file_size}", where=mwhere)
            out[info.filename[:-4]] = _read_npy(raw, mwhere, allow_objects)
    return out


def _read_npy(raw: bytes, where: str, allow_objects: bool = True):
    with warnings.catch_warnings():
        return _read_npy_quietly(raw, where, allow_objects)


def _read_npy_quietly(raw: bytes, where: str, allow_objects: bool):
    fp = io.BytesIO(raw)
    try:
        warnings.simplefilter("ignore")  # numpy warns about Python 2 headers; they parse the same
        version = npformat.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(fp)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npformat.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except Exception as e:  # numpy raises ValueError, SyntaxError, TypeError, ... on bad headers
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SnnmapError(f"bad .npy header: {msg}", where=where) from None
    body = raw[fp.tell():]
    if dtype.hasobject:
        if not allow_objects:
            raise SnnmapError("holds Python objects (a pickle); only plain numeric arrays are accepted",
                              where=where)
        if dtype != np.dtype("O") or shape is None or len(shape) != 1:
            raise SnnmapError(f"object array of dtype {dtype} and shape {shape} is not a parameter list",
                              where=where)
        value = _interpret(body, where)
        if not isinstance(value, list) or len(value) != shape[0]:
            raise SnnmapError(f"pickle yields {type(value).__name__}, not a list of {shape[0]} arrays",
                              where=where)
        return value
    return _numeric_array(dtype, shape, fortran, body, where)


def _numeric_array(dtype, shape, fortran, data: bytes, where: str) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf" or f"{dtype.kind}{dtype.itemsize}" not in _NUMERIC:
        raise SnnmapError(f"dtype {dtype} is not a plain numeric type", where=where)
    if not isinstance(shape, tuple) or len(shape) > 32 or not all(isinstance(s, int) and s >= 0 for s in shape) \
            or math.prod(max(s, 1) for s in shape) > MAX_ELEMENTS:
        raise SnnmapError(f"shape {shape!r} is not at most 32 sizes >= 0 with {MAX_ELEMENTS} elements or fewer",
                          where=where)
    n = dtype.itemsize
    for s in shape:
        n *= s
    if n != len(data):
        raise SnnmapError(f"shape {shape} of {dtype} needs {n} bytes, the data has {len(data)}",
                          where=where)
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C").copy()


def _interpret(stream: bytes, where: str):
    """Run the restricted subset of the pickle machine that numpy object arrays use."""
    stack: list = []
    memo: dict[int, object] = {}

    def pop_mark() -> list:
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is _MARK:
                items = stack[i + 1:]
                del stack[i:]
                return items
        raise SnnmapError("pickle has no MARK where one is needed", where=where)

    def pop():
        if not stack or stack[-1] is _MARK:
            raise SnnmapError("pickle stack underflow", where=where)
        return stack.pop()

    try:
        ops = list(pickletools.genops(io.BytesIO(stream)))
    except Exception as e:  # pickletools raises ValueError and friends on malformed streams
        raise SnnmapError(f"malformed pickle stream: {e}", where=where) from None
    try:
        return _run(ops, stack, memo, pop, pop_mark, where)
    except (IndexError, KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
        raise SnnmapError(f"malformed pickle stream ({type(e).__name__}: {e})", where=where) from None


def _run(ops, stack, memo, pop, pop_mark, where):
    for op, arg, pos in ops:
        name = op.name
        if name in ("PROTO", "FRAME"):
            continue
        if name == "STOP":
            if len(stack) != 1:
                raise SnnmapError("pickle ends with a malformed stack", where=where)
            obj = stack[0]
            if not isinstance(obj, _Array) or not isinstance(obj.value, list):
                raise SnnmapError("pickle does not hold an object array", where=where)
            return obj.value
        if name in ("GLOBAL", "STACK_GLOBAL"):
            if name == "GLOBAL":
                module, _, attr = arg.partition(" ")
            else:
                attr, module = pop(), pop()
                if not isinstance(attr, str) or not isinstance(module, str):
                    raise SnnmapError(f"pickle STACK_GLOBAL at byte {pos} without names", where=where)
            role = _ALLOWED_GLOBALS.get((module, attr))
            if role is None:
                raise SnnmapError(f"pickle at byte {pos} imports {module}.{attr}: refused, only numpy "
                                  f"array reconstruction is allowed (nothing was executed)", where=where)
            stack.append(_Global(role))
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            if not stack:
                raise SnnmapError("pickle stores an empty stack", where=where)
            memo[int(arg)] = stack[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            if int(arg) not in memo:
                raise SnnmapError(f"pickle reads memo slot {arg} that was never written", where=where)
            stack.append(memo[int(arg)])
        elif name == "MARK":
            stack.append(_MARK)
        elif name in ("BININT", "BININT1", "BININT2", "LONG1", "INT", "BINUNICODE", "SHORT_BINUNICODE",
                      "UNICODE", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BINUNICODE8", "BYTEARRAY8", "BINFLOAT"):
            stack.append(arg)
        elif name == "NONE":
            stack.append(None)
        elif name in ("NEWTRUE", "NEWFALSE"):
            stack.append(name == "NEWTRUE")
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = [pop() for _ in range(n)][::-1]
            stack.append(tuple(items))
        elif name == "TUPLE":
            stack.append(tuple(pop_mark()))
        elif name == "EMPTY_LIST":
            stack.append([])
        elif name == "APPENDS":
            items = pop_mark()
            target = stack[-1] if stack else None
            if not isinstance(target, list):
                raise SnnmapError("pickle APPENDS to a non-list", where=where)
            target.extend(items)
        elif name == "APPEND":
            item = pop()
            if not stack or not isinstance(stack[-1], list):
                raise SnnmapError("pickle APPEND to a non-list", where=where)
            stack[-1].append(item)
        elif name == "REDUCE":
            args, fn = pop(), pop()
            stack.append(_reduce(fn, args, where, pos))
        elif name == "BUILD":
            state, obj = pop(), pop()
            stack.append(_build(obj, state, where, pos))
        else:
            raise SnnmapError(f"pickle opcode {name} at byte {pos} is not used by numpy arrays: refused",
                              where=where)
    raise SnnmapError("pickle stream has no STOP", where=where)


def _reduce(fn, args, where, pos):
    if not isinstance(fn, _Global) or not isinstance(args, tuple):
        raise SnnmapError(f"pickle REDUCE at byte {pos} calls something other than an allowed global",
                          where=where)
    if fn.role == "encode" and len(args) == 2 and isinstance(args[0], str) and args[1] == "latin1":
        try:
            return args[0].encode("latin1")
        except UnicodeEncodeError:
            raise SnnmapError("pickle byte string is not latin-1", where=where) from None
    if fn.role == "dtype" and len(args) == 3 and isinstance(args[0], str):
        if args[0] in ("O", "O4", "O8"):
            return _Dtype("O")
        if args[0] not in _NUMERIC:
            raise SnnmapError(f"pickle asks for dtype {args[0]!r}: only plain numeric types",
                              where=where)
        return _Dtype(args[0])
    if fn.role == "frombuffer" and len(args) == 4 and isinstance(args[0], (bytes, bytearray)) \
            and isinstance(args[1], _Dtype) and args[1].code != "O" and args[3] in ("C", "F"):
        order = "<" if args[1].order in ("|", "=") else args[1].order
        return _Array(_numeric_array(np.dtype(order + args[1].code), args[2], args[3] == "F", bytes(args[0]),
                                     f"{where}, pickled array"))
    if (fn.role == "reconstruct" and len(args) == 3 and isinstance(args[0], _Global)
            and args[0].role == "ndarray"):
        return _Array()
    raise SnnmapError(f"pickle REDUCE at byte {pos} has arguments numpy never writes", where=where)


def _build(obj, state, where, pos):
    if isinstance(obj, _Dtype) and isinstance(state, tuple) and len(state) >= 2:
        if state[1] not in ("<", ">", "|", "="):
            raise SnnmapError(f"pickle dtype byte order {state[1]!r} is invalid", where=where)
        obj.order = state[1]
        return obj
    if isinstance(obj, _Array) and obj.value is None and isinstance(state, tuple) and len(state) == 5:
        _, shape, dtype, fortran, data = state
        if not isinstance(dtype, _Dtype) or not isinstance(shape, tuple):
            raise SnnmapError(f"pickle array state at byte {pos} is malformed", where=where)
        if dtype.code == "O":
            if not isinstance(data, list) or len(shape) != 1 or shape[0] != len(data) or not all(
                    isinstance(x, _Array) and isinstance(x.value, np.ndarray) for x in data):
                raise SnnmapError("object array must hold only numeric arrays", where=where)
            obj.value = [x.value for x in data]
        else:
            if not isinstance(data, bytes):
                raise SnnmapError(f"pickle array data at byte {pos} is not bytes", where=where)
            order = "<" if dtype.order in ("|", "=") else dtype.order
            obj.value = _numeric_array(np.dtype(order + dtype.code), shape, bool(fortran), data,
                                       f"{where}, pickled array")
        return obj
    raise SnnmapError(f"pickle BUILD at byte {pos} on an unexpected object", where=where)

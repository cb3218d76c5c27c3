"""Import the scatter-and-gather authors' TensorLayer parameter dumps (.npz of an object array)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from snnmap.errors import SnnmapError
from snnmap.io.safe_npz import load_npz_safely
from snnmap.model import BatchNorm, Classifier, Layer, QuantModel

# at most 9 digits: int() refuses over 4,300 (ValueError) and no layer is that wide
_CONV = re.compile(r"(\d{1,9})C(\d{1,9})((?:[sp]\d{1,9})*)")
_SUFFIX = re.compile(r"([sp])(\d{1,9})")


@dataclass(frozen=True)
class ConvToken:
    channels: int
    kernel: int
    stride: int = 1
    padding: int = 0


def _cut(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[:n] + "..."


def parse_arch(arch: str) -> tuple[list[ConvToken], int]:
    """'16C5p2-16C5-16C2s2-32C5-32C2s2-256C4-10' -> conv tokens (first is the encoder), classes."""
    tokens = arch.strip().split("-")
    shown = _cut(arch, 80)
    if len(tokens) < 3:
        raise SnnmapError(f"needs an encoder conv, at least one on-chip conv and a classifier width, "
                          f"got {len(tokens)} token(s)", where=f"arch {shown!r}")
    convs = []
    for i, tok in enumerate(tokens[:-1]):
        m = _CONV.fullmatch(tok)
        if not m:
            raise SnnmapError(f"token {i + 1} {_cut(tok)!r} is not <C>C<K>[s<stride>][p<padding>]",
                              where=f"arch {shown!r}")
        opts = {"s": 1, "p": 0}
        seen = set()
        for key, val in _SUFFIX.findall(m.group(3)):
            if key in seen:
                raise SnnmapError(f"token {i + 1} {_cut(tok)!r} repeats suffix {key!r}", where=f"arch {shown!r}")
            seen.add(key)
            opts[key] = int(val)
        c, kern = int(m.group(1)), int(m.group(2))
        if c < 1 or kern < 1 or opts["s"] < 1 or opts["p"] >= kern:
            raise SnnmapError(f"token {i + 1} {_cut(tok)!r}: channels, kernel and stride must be >= 1 and "
                              f"padding < kernel", where=f"arch {shown!r}")
        convs.append(ConvToken(c, kern, opts["s"], opts["p"]))
    if not re.fullmatch(r"\d{1,9}", tokens[-1]) or int(tokens[-1]) < 1:
        raise SnnmapError(f"last token {_cut(tokens[-1])!r} must be the classifier width (a positive integer)",
                          where=f"arch {shown!r}")
    return convs, int(tokens[-1])


def parse_scale(text: str) -> float:
    """'1/256', '0.00390625' -> float; exact for dyadic fractions."""
    shown = _cut(text)
    # Fraction builds 10**exponent exactly: '1e100000000' took minutes; no float needs over 400
    if any(len(e.lstrip("0")) > 3 or int(e) > 400 for e in re.findall(r"[eE][+-]?(\d+)", text)):
        raise SnnmapError(f"input scale {shown!r} has an exponent beyond any float (at most e+-400)")
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise SnnmapError(f"input scale {shown!r} is not a number or fraction like 1/256") from None
    except OverflowError:  # 1e400
        value = float("inf")
    if not (value > 0 and np.isfinite(value)):
        raise SnnmapError(f"input scale {shown!r} must be positive and finite")
    return value


def _out_size(n: int, t: ConvToken) -> int:
    return (n + 2 * t.padding - t.kernel) // t.stride + 1


def infer_input_side(convs: list[ConvToken], features: int) -> int:
    """Smallest square input whose last conv output flattens to `features` values."""
    for side in range(1, 4097):
        n, ok = side, True
        for t in convs:
            n = _out_size(n, t)
            if n < 1:
                ok = False
                break
        if ok and n * n * convs[-1].channels == features:
            return side
    raise SnnmapError(f"no square input up to 4096 makes the last conv output {features} features; "
                      f"pass --input-shape")


def import_tl(path, arch: str, k: int, B: int, input_scale: float,
              input_shape: tuple[int, int] | None = None, name: str | None = None) -> QuantModel:
    convs, classes = parse_arch(arch)
    data = load_npz_safely(path)
    where = str(path)
    if "params" not in data:
        raise SnnmapError(f"has no 'params' array (members: {sorted(data)})", where=where)
    params = data["params"]
    if isinstance(params, np.ndarray):
        raise SnnmapError("'params' is a plain array, expected a TensorLayer object array of arrays",
                          where=where)
    expect = 5 * len(convs) + 1
    if len(params) not in (expect, expect + 1):
        raise SnnmapError(f"'params' holds {len(params)} arrays; arch {arch!r} needs {expect} "
                          f"(5 per conv: kernel, beta, gamma, mean, var; then the classifier weights) "
                          f"or {expect + 1} with a classifier bias", where=where)
    for i, p in enumerate(params):
        if p.dtype.kind not in "fiu":
            raise SnnmapError(f"params[{i}] has dtype {p.dtype}, expected a number type", where=where)
    with np.errstate(invalid="ignore"):  # a signaling NaN warns when widened; named as non-finite below
        params = [p.astype(np.float64) for p in params]
    c_in = None
    layers = []
    for li, tok in enumerate(convs):
        base = 5 * li
        lname = "encoder" if li == 0 else f"conv{li + 1}"
        w = params[base]
        if w.ndim != 4 or w.shape[0] != tok.kernel or w.shape[1] != tok.kernel or w.shape[3] != tok.channels \
                or (c_in is not None and w.shape[2] != c_in):
            want = f"({tok.kernel}, {tok.kernel}, {c_in if c_in is not None else 'c_in'}, {tok.channels})"
            raise SnnmapError(f"params[{base}] ({lname} kernel) has shape {w.shape}, expected {want}",
                              where=where)
        for j in range(1, 5):
            if params[base + j].shape != (tok.channels,):
                raise SnnmapError(f"params[{base + j}] ({lname} batch norm) has shape "
                                  f"{params[base + j].shape}, expected ({tok.channels},)", where=where)
        if li > 0:
            bad = ~np.isin(w, (-1.0, 0.0, 1.0))
            if bad.any():
                idx = tuple(int(x) for x in np.argwhere(bad)[0])
                raise SnnmapError(f"params[{base}] ({lname} kernel) value {w[idx]} at {idx} is not "
                                  f"ternary (-1, 0, +1)", where=where)
            w = w.astype(np.int8)
        bn = BatchNorm(*(params[base + j] for j in range(1, 5)))
        layers.append(Layer(name=lname, kind="conv", weights=w, bn=bn, stride=tok.stride,
                            padding=tok.padding))
        c_in = tok.channels
    cw = params[5 * len(convs)]
    if cw.ndim != 2 or cw.shape[1] != classes:
        raise SnnmapError(f"params[{5 * len(convs)}] (classifier) has shape {cw.shape}, expected "
                          f"(features, {classes})", where=where)
    bias = params[expect] if len(params) == expect + 1 else np.zeros(classes)
    c0 = params[0].shape[2]
    if input_shape is None:
        side = infer_input_side(convs, cw.shape[0])
        input_shape = (side, side)
    model = QuantModel(input_shape=(int(input_shape[0]), int(input_shape[1]), int(c0)), k=k, B=B,
                       input_scale=input_scale, encoder=layers[0], layers=tuple(layers[1:]),
                       classifier=Classifier(cw, bias),
                       name=name or "tl-model", meta={"source": "tensorlayer", "arch": arch})
    try:
        return model.validate()
    except SnnmapError as e:
        raise SnnmapError(str(e), where=where) from None

"""The native model file (.snnm): a checksummed container holding JSON metadata and typed arrays.

Layout and fields: docs/model-format.md. No pickle anywhere; every value is validated on read.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from snnmap.errors import SnnmapError
from snnmap.io.arrays import pack_arrays, unpack_arrays
from snnmap.io.atomic import write_bytes_atomic
from snnmap.io.container import pack_container, read_container
from snnmap.model import BN_EPS, BatchNorm, Classifier, Layer, QuantModel

MAGIC = b"SNNMODEL"
VERSION = 1
_BN = ("beta", "gamma", "mean", "var")


def model_to_bytes(model: QuantModel) -> bytes:
    model.validate()
    layers_meta, arrays = [], {}
    for i, layer in enumerate((model.encoder, *model.layers)):
        layers_meta.append({"name": layer.name, "kind": layer.kind, "stride": layer.stride,
                            "padding": layer.padding, "bn_eps": layer.bn.eps})
        wdtype = np.float64 if i == 0 else np.int8
        arrays[f"layer{i}.weights"] = np.asarray(layer.weights, dtype=wdtype)
        for part in _BN:
            arrays[f"layer{i}.bn.{part}"] = np.asarray(getattr(layer.bn, part), dtype=np.float64)
    arrays["classifier.weights"] = np.asarray(model.classifier.weights, dtype=np.float64)
    arrays["classifier.bias"] = np.asarray(model.classifier.bias, dtype=np.float64)
    meta = {"format": "snnmap-model", "version": VERSION, "name": model.name, "k": model.k,
            "B": model.B, "input_shape": list(model.input_shape), "input_scale": model.input_scale,
            "layers": layers_meta, "info": model.meta}
    return pack_container(MAGIC, VERSION, [
        (b"META", json.dumps(meta, sort_keys=True).encode("utf-8")),
        (b"ARRS", pack_arrays(arrays)),
    ])


def save_model(model: QuantModel, path: str | Path) -> None:
    write_bytes_atomic(path, model_to_bytes(model))


def load_model(path: str | Path) -> QuantModel:
    where = str(path)
    _, sections = read_container(path, MAGIC, {VERSION}, "snnmap model file")
    tags = [t for t, _ in sections]
    if tags != ["META", "ARRS"]:
        raise SnnmapError(f"expected sections META, ARRS; found {tags}", where=where)
    try:
        meta = json.loads(sections[0][1].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as e:
        raise SnnmapError(f"META section is not valid JSON: {str(e)[:200]}", where=where) from None
    arrays = unpack_arrays(sections[1][1], where=f"{where}, ARRS section")
    return _model_from(meta, arrays, where)


def _field(d, key, typ, where):
    if not isinstance(d, dict) or key not in d:
        raise SnnmapError(f"metadata lacks field {key!r}", where=where)
    v = d[key]
    ok = isinstance(v, typ) and not (typ is not bool and isinstance(v, bool) and typ in (int, float))
    if typ is float and isinstance(v, int) and not isinstance(v, bool):
        v, ok = float(v), True
    if not ok:
        raise SnnmapError(f"field {key!r} is {type(v).__name__} {v!r}, expected {typ.__name__}", where=where)
    return v


def _model_from(meta, arrays, where) -> QuantModel:
    if _field(meta, "format", str, where) != "snnmap-model":
        raise SnnmapError("META format is not 'snnmap-model'", where=where)
    shape = _field(meta, "input_shape", list, where)
    if len(shape) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and 0 < s < 1 << 20
                                  for s in shape):
        raise SnnmapError(f"input_shape {shape!r} is not three positive integers", where=where)
    scale = _field(meta, "input_scale", float, where)
    if not math.isfinite(scale):
        raise SnnmapError(f"input_scale {scale!r} is not finite", where=where)
    layer_meta = _field(meta, "layers", list, where)
    if len(layer_meta) < 2:
        raise SnnmapError(f"needs an encoder and at least one on-chip layer; has {len(layer_meta)}",
                          where=where)
    used = set()

    def arr(name: str, ndim: int) -> np.ndarray:
        if name not in arrays:
            raise SnnmapError(f"array {name!r} is missing", where=where)
        a = arrays[name]
        if a.ndim != ndim:
            raise SnnmapError(f"array {name!r} has {a.ndim} dimensions, expected {ndim}", where=where)
        used.add(name)
        return a

    def floats(name: str, ndim: int) -> np.ndarray:
        with np.errstate(invalid="ignore"):  # a signaling NaN warns when widened; named as non-finite later
            return arr(name, ndim).astype(np.float64)

    layers = []
    for i, lm in enumerate(layer_meta):
        lwhere = f"{where}, layers[{i}]"
        if not isinstance(lm, dict):
            raise SnnmapError(f"is {type(lm).__name__}, expected an object", where=lwhere)
        kind = _field(lm, "kind", str, lwhere)
        if kind not in ("conv", "dense"):
            raise SnnmapError(f"kind {kind!r} is not conv or dense", where=lwhere)
        w = arr(f"layer{i}.weights", 4 if kind == "conv" else 2)
        if i > 0 and w.dtype != np.int8:
            raise SnnmapError(f"ternary weights stored as {w.dtype}, expected int8", where=lwhere)
        if i == 0 and w.dtype != np.float64:
            raise SnnmapError(f"encoder weights stored as {w.dtype}, expected float64", where=lwhere)
        bn = BatchNorm(*(floats(f"layer{i}.bn.{p}", 1) for p in _BN),
                       eps=_field(lm, "bn_eps", float, lwhere) if "bn_eps" in lm else BN_EPS)
        layers.append(Layer(name=_field(lm, "name", str, lwhere), kind=kind,
                            weights=w if i == 0 else w.astype(np.int8), bn=bn,
                            stride=_field(lm, "stride", int, lwhere),
                            padding=_field(lm, "padding", int, lwhere)))
    clf = Classifier(weights=floats("classifier.weights", 2), bias=floats("classifier.bias", 1))
    extra = set(arrays) - used
    if extra:
        raise SnnmapError(f"unexpected arrays {sorted(extra)}", where=where)
    info = meta.get("info", {})
    model = QuantModel(input_shape=tuple(shape), k=_field(meta, "k", int, where),
                       B=_field(meta, "B", int, where), input_scale=scale, encoder=layers[0],
                       layers=tuple(layers[1:]), classifier=clf,
                       name=_field(meta, "name", str, where), meta=info if isinstance(info, dict) else {})
    try:
        return model.validate()
    except SnnmapError as e:
        raise SnnmapError(str(e), where=where) from None

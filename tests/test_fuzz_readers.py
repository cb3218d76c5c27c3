"""Fuzzing every reader: whatever the bytes, the result is a value or one SnnmapError line.

Mutations: bit flips, truncation, byte splices, wrong lengths, huge declared sizes, wrong dtypes,
NaN/inf values, negative and absurd shapes, and 'resealed' damage whose checksums were
recomputed so that it reaches the structural validation behind them. 500 cases per reader.
tests/fuzz/ holds atheris harnesses for longer campaigns by hand.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import warnings
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snnmap.chip.spec import load_chip
from snnmap.errors import SnnmapError
from snnmap.image import image_to_bytes, parse_image
from snnmap.image.format import MAGIC as IMG_MAGIC
from snnmap.image.format import VERSION as IMG_VERSION
from snnmap.io.arrays import pack_arrays, unpack_arrays
from snnmap.io.container import pack_container, parse_container
from snnmap.io.inputs import load_inputs
from snnmap.io.safe_npz import load_npz_safely
from snnmap.importers.tl import import_tl
from snnmap.modelfile import MAGIC as MODEL_MAGIC
from snnmap.modelfile import VERSION as MODEL_VERSION
from snnmap.modelfile import load_model, model_to_bytes
from snnmap.pipeline import compile_model
from snnmap.chip.spec import SG64

from test_image import small_model

CASES = settings(max_examples=500, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                        HealthCheck.data_too_large])


def one_line(e: SnnmapError) -> None:
    assert "\n" not in str(e) and str(e)


@st.composite
def mutated(draw, raw: bytes) -> bytes:
    b = bytearray(raw)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "splice", "set", "extend"]))
        if not b:
            break
        i = draw(st.integers(0, len(b) - 1))
        if op == "flip":
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del b[i:]
        elif op == "splice":
            del b[i:i + draw(st.integers(1, 64))]
        elif op == "set":
            val = draw(st.sampled_from([0, 0xFF, 0x7F, 0x80]))
            b[i:i + 8] = bytes([val]) * len(b[i:i + 8])
        else:
            b[i:i] = draw(st.binary(min_size=1, max_size=32))
    return bytes(b)


def _json_value():
    return st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40),
                                  st.floats(allow_nan=False), st.text(max_size=8)),
                        lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=6), c,
                                                                                      max_size=3)),
                        max_leaves=6)


def _bad_array():
    return st.one_of(
        st.just(np.array([np.nan, 1.0])), st.just(np.array([np.inf])), st.just(np.zeros((0, 3))),
        st.just(np.zeros((2, 2, 2), np.int64)), st.just(np.array([1e308, -1e308])),
        st.just(np.zeros(3, np.uint8)), st.just(np.full(4, 7, np.int8)), st.just(np.zeros(1, bool)),
        st.just(np.zeros((1, 1, 1, 1, 1))), st.just(np.zeros(5, np.uint32)))


@st.composite
def resealed(draw, raw: bytes, magic: bytes, version: int) -> bytes:
    """Damage inside sections, then recompute CRCs and SHA-256 so the validator must catch it."""
    _, sections = parse_container(raw, magic, {version}, "x", "x")
    sections = [(t.encode(), p) for t, p in sections]
    i = draw(st.integers(0, len(sections) - 1))
    tag, payload = sections[i]
    how = draw(st.sampled_from(["json", "array", "bytes", "drop", "dup"]))
    if tag == b"META" and how in ("json", "array"):
        meta = json.loads(payload)
        path = draw(st.sampled_from(sorted(meta)))
        meta[path] = draw(_json_value())
        payload = json.dumps(meta).encode()
    elif how == "array" and tag != b"META":
        arrays = unpack_arrays(payload, "x")
        name = draw(st.sampled_from(sorted(arrays)))
        arrays[name] = draw(_bad_array())
        payload = pack_arrays(arrays)
    elif how == "drop":
        sections.pop(i)
        return pack_container(magic, version, sections)
    elif how == "dup":
        sections.insert(i, sections[i])
        return pack_container(magic, version, sections)
    else:
        payload = draw(mutated(payload)) if payload else payload
    sections[i] = (tag, payload)
    return pack_container(magic, version, sections)


MODEL_BYTES = model_to_bytes(small_model())
IMAGE_BYTES = image_to_bytes(compile_model(small_model(), SG64).image)


@CASES
@given(st.data())
def test_model_reader(tmp_path, data):
    raw = data.draw(st.one_of(mutated(MODEL_BYTES), resealed(MODEL_BYTES, MODEL_MAGIC, MODEL_VERSION)))
    (tmp_path / "m.snnm").write_bytes(raw)
    try:
        model = load_model(tmp_path / "m.snnm")
    except SnnmapError as e:
        one_line(e)
    else:
        model.validate()  # whatever loads is a valid model


def test_model_reader_names_a_signaling_nan(tmp_path):
    """A float32 signaling NaN among the classifier weights of a .snnm is named as non-finite,
    with no RuntimeWarning from widening it."""
    _, sections = parse_container(MODEL_BYTES, MODEL_MAGIC, {MODEL_VERSION}, "x", "x")
    out = []
    for tag, payload in sections:
        if tag != "META":
            arrays = unpack_arrays(payload, "x")
            if "classifier.weights" in arrays:
                cw = arrays["classifier.weights"].astype(np.float32)
                cw.view(np.uint32)[0, 0] = 0x7FA00000  # quiet bit clear: signaling
                arrays["classifier.weights"] = cw
                payload = pack_arrays(arrays)
        out.append((tag.encode(), payload))
    (tmp_path / "m.snnm").write_bytes(pack_container(MODEL_MAGIC, MODEL_VERSION, out))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(SnnmapError, match="non-finite"):
            load_model(tmp_path / "m.snnm")


@CASES
@given(st.data())
def test_image_reader(data):
    raw = data.draw(st.one_of(mutated(IMAGE_BYTES), resealed(IMAGE_BYTES, IMG_MAGIC, IMG_VERSION)))
    try:
        img = parse_image(raw, "img")
    except SnnmapError as e:
        one_line(e)
    else:
        from snnmap.sim import Simulator

        try:
            Simulator(img).run(np.zeros((2, *img.input_shape), np.uint8))
        except SnnmapError as e:
            one_line(e)


@CASES
@given(st.binary(max_size=300), st.integers(0, 2**64 - 1))
def test_array_codec_never_trusts_sizes(blob, huge):
    # a header declaring a huge shape must fail before allocating
    crafted = struct.pack("<IHBB", 1, 1, 10, 2) + b"a" + struct.pack("<2Q", huge, huge) + blob
    for raw in (blob, crafted):
        try:
            unpack_arrays(raw, "arrays")
        except SnnmapError as e:
            one_line(e)


def _tl_npz(arrays, protocol=2) -> bytes:
    obj = np.empty(len(arrays), dtype=object)
    obj[:] = arrays
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": obj.shape})
    buf.write(pickle.dumps(obj, protocol=protocol))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("params.npy", buf.getvalue())
    return out.getvalue()


def _tl_arrays(rng):
    def bn(c):
        return [rng.normal(size=c).astype(np.float32), np.ones(c, np.float32), np.zeros(c, np.float32),
                np.ones(c, np.float32)]
    return [rng.normal(size=(3, 3, 1, 4)).astype(np.float32), *bn(4),
            rng.integers(-1, 2, size=(3, 3, 4, 5)).astype(np.float32), *bn(5),
            rng.normal(size=(5 * 4 * 4, 3)).astype(np.float32)]


TL_ARRAYS = _tl_arrays(np.random.default_rng(0))


@st.composite
def tl_files(draw) -> bytes:
    arrays = list(TL_ARRAYS)
    kind = draw(st.sampled_from(["zip", "npy", "values", "pickle"]))
    if kind == "values":
        i = draw(st.integers(0, len(arrays) - 1))
        arrays[i] = draw(st.one_of(_bad_array(), st.just(arrays[i].astype(np.float64) * np.nan),
                                   st.just(arrays[i][..., :1]), st.just(arrays[i] + 0.5)))
        if draw(st.booleans()):
            arrays.insert(draw(st.integers(0, len(arrays))), np.zeros(2, np.float32))
        return _tl_npz(arrays, draw(st.sampled_from([2, 3, 4, 5])))
    raw = _tl_npz(arrays, draw(st.sampled_from([2, 4])))
    if kind == "zip":
        return draw(mutated(raw))
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        inner = z.read("params.npy")
    if kind == "pickle":
        start = inner.index(b"\x80")
        inner = inner[:start] + draw(mutated(inner[start:]))
    else:
        inner = draw(mutated(inner))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=draw(st.sampled_from([zipfile.ZIP_STORED,
                                                                      zipfile.ZIP_DEFLATED]))) as z:
        z.writestr("params.npy", inner)
    return out.getvalue()


@CASES
@given(tl_files())
def test_tl_importer(tmp_path, raw):
    (tmp_path / "p.npz").write_bytes(raw)
    try:
        model = import_tl(tmp_path / "p.npz", "4C3p1-5C3-3", 0, 1, 1 / 256, input_shape=(6, 6))
    except SnnmapError as e:
        one_line(e)
    else:
        model.validate()


def test_tl_importer_reads_every_pickle_protocol(tmp_path):
    for protocol in (2, 3, 4, 5):
        (tmp_path / "p.npz").write_bytes(_tl_npz(TL_ARRAYS, protocol))
        m = import_tl(tmp_path / "p.npz", "4C3p1-5C3-3", 0, 1, 1 / 256, input_shape=(6, 6))
        assert np.array_equal(m.layers[0].weights, TL_ARRAYS[5].astype(np.int8))


def test_tl_importer_names_a_signaling_nan(tmp_path):
    """A float32 signaling NaN (fuzzing found one: widening it to float64 raised a RuntimeWarning)
    is named as a non-finite value, with no warning."""
    arrays = list(TL_ARRAYS)
    cw = np.asarray(arrays[-1], dtype=np.float32).copy()
    cw.view(np.uint32)[0, 0] = 0x7FA00000  # quiet bit clear: signaling
    arrays[-1] = cw
    (tmp_path / "p.npz").write_bytes(_tl_npz(arrays, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(SnnmapError, match="non-finite"):
            import_tl(tmp_path / "p.npz", "4C3p1-5C3-3", 0, 1, 1 / 256, input_shape=(6, 6))


def test_zip_bomb_declaration_is_refused(tmp_path):
    payload = b"\x00" * (4 << 20)
    with zipfile.ZipFile(tmp_path / "b.npz", "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", payload)
    raw = bytearray((tmp_path / "b.npz").read_bytes())
    # declare a larger uncompressed size in the central directory than deflate could produce
    cd = raw.rindex(b"PK\x01\x02")
    struct.pack_into("<I", raw, cd + 24, 0xFFFFFFF0)
    (tmp_path / "b.npz").write_bytes(bytes(raw))
    with pytest.raises(SnnmapError):
        load_npz_safely(tmp_path / "b.npz")


_FLOAT_FIELDS = sorted(k for k, v in SG64.to_dict().items() if isinstance(v, float))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(_FLOAT_FIELDS), st.floats())
def test_chip_spec_constants_are_finite(field, value):
    """A chip file (or an image's META) with clock_hz = inf loaded, and `simulate --json` printed
    "throughput_images_per_s": Infinity (not JSON) after a divide-by-zero warning: whatever loads
    has finite constants."""
    from snnmap.chip.spec import ChipSpec

    try:
        spec = ChipSpec.from_dict({**SG64.to_dict(), field: value}, "c.toml")
    except SnnmapError as e:
        one_line(e)
    else:
        assert all(np.isfinite(v) for v in spec.to_dict().values() if isinstance(v, float))
        assert spec.clock_hz >= 1


_CHIP_FIELDS = sorted(SG64.to_dict()) + ["base", "unknown"]


@CASES
@given(st.dictionaries(st.sampled_from(_CHIP_FIELDS), st.one_of(
    st.integers(-2**70, 2**70), st.floats(), st.booleans(), st.text(max_size=5),
    st.lists(st.integers(), max_size=2), st.sampled_from(["sg64", "nope"])), max_size=4),
    st.binary(max_size=40))
def test_chip_toml(tmp_path, fields, junk):
    lines = []
    for k, v in fields.items():
        lines.append(f"{k} = {json.dumps(v) if not isinstance(v, float) or np.isfinite(v) else 'nan'}")
    for text in ("\n".join(lines), junk.decode("latin1")):
        (tmp_path / "c.toml").write_text(text, encoding="latin1")
        try:
            spec = load_chip(str(tmp_path / "c.toml"))
        except SnnmapError as e:
            one_line(e)
        else:
            spec.check("again")


@CASES
@given(st.data())
def test_input_npz(tmp_path, data):
    x = data.draw(st.one_of(
        st.just(np.zeros((3, 8, 8), np.uint8)), st.just(np.zeros((3, 8, 8, 1), np.float32)),
        st.just(np.full((2, 8, 8), np.nan)), st.just(np.zeros((3, 8, 9), np.uint8)),
        st.just(np.zeros((3,), np.uint8)), st.just(np.array(["a", "b"])), st.just(np.zeros((0, 8, 8)))))
    arrays = {"x": x}
    if data.draw(st.booleans()):
        arrays["y"] = data.draw(st.sampled_from([np.zeros(3, np.int64), np.zeros(2, np.int64),
                                                 np.zeros(3, np.float32)]))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    raw = buf.getvalue()
    if data.draw(st.booleans()):
        raw = data.draw(mutated(raw))
    (tmp_path / "in.npz").write_bytes(raw)
    try:
        load_inputs(tmp_path / "in.npz", (8, 8, 1))
    except SnnmapError as e:
        one_line(e)


def test_input_npz_with_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    from test_safe_npz import _Evil

    obj = np.empty(1, dtype=object)
    obj[0] = _Evil(marker)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, obj, allow_pickle=True)
    with zipfile.ZipFile(tmp_path / "in.npz", "w") as z:
        z.writestr("x.npy", buf.getvalue())
    with pytest.raises(SnnmapError, match="pickle"):
        load_inputs(tmp_path / "in.npz", (8, 8, 1))
    assert not marker.exists()

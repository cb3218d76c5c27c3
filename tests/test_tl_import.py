"""Importer for the authors' TensorLayer dumps: arch strings, counts, shapes, ternary values."""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from snnmap.errors import SnnmapError
from snnmap.importers.tl import infer_input_side, import_tl, parse_arch, parse_scale

from conftest import LENET_ARCH


def test_parse_lenet():
    convs, classes = parse_arch(LENET_ARCH)
    assert classes == 10
    assert [(c.channels, c.kernel, c.stride, c.padding) for c in convs] == [
        (16, 5, 1, 2), (16, 5, 1, 0), (16, 2, 2, 0), (32, 5, 1, 0), (32, 2, 2, 0), (256, 4, 1, 0)]
    assert infer_input_side(convs, 256) == 28


@pytest.mark.parametrize("arch", ["", "10", "16C5-10", "16C5-X-10", "16C5-16C5-ten", "16C5s0-16C3-10",
                                  "16C3p3-16C3-10", "16C5s2s2-16C3-10", "16C5-16C3-0", "C5-16C3-10"])
def test_malformed_arch(arch):
    with pytest.raises(SnnmapError, match="arch"):
        parse_arch(arch)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=12), st.from_regex(r"\d{1,12}C\d{1,12}([sp]\d{1,12})*", fullmatch=True),
                          st.from_regex(r"\d{1,12}", fullmatch=True)), min_size=1, max_size=5))
@example(["16C5p2", "16C5", "9" * 5000])  # int() refuses over 4,300 digits: it was an internal error
@example(["9" * 5000 + "C5", "16C5", "10"])
@example(["16C5", "16C5", "\u00b2"])  # '²'.isdigit() but int('²') fails
def test_any_arch_text_is_parsed_or_one_error(tokens):
    arch = "-".join(tokens)
    try:
        convs, classes = parse_arch(arch)
    except SnnmapError as e:
        assert "\n" not in str(e) and len(str(e)) < 400
    else:
        assert classes >= 1 and all(c.channels >= 1 and c.kernel > c.padding for c in convs)


def test_scale():
    assert parse_scale("1/256") == 1 / 256
    for bad in ("0", "-1", "x", "1/0", "inf"):
        with pytest.raises(SnnmapError):
            parse_scale(bad)


def test_scale_with_an_absurd_exponent_is_one_quick_error():
    """--input-scale 1e400 raised OverflowError (internal error, exit 1); 1e100000000 made Fraction
    build 10**100000000 (minutes: a hang). Both are now a quick SnnmapError; ordinary exponents
    and fractions of them still parse."""
    import time

    t0 = time.perf_counter()
    for bad in ("1e400", "1e-400", "1e100000000", "1/1e-99999999999", "1e" + "9" * 5000):
        with pytest.raises(SnnmapError, match="input scale"):
            parse_scale(bad)
    assert time.perf_counter() - t0 < 2
    assert parse_scale("3.90625e-3") == 1 / 256 and parse_scale("1E+2") == 100
    assert parse_scale("1e-0000000000000001") == 0.1


def _save(path, arrays):
    obj = np.empty(len(arrays), dtype=object)
    obj[:] = arrays
    np.savez(path, params=obj)


def _small(rng, ternary=True):
    def bn(c):
        return [rng.normal(size=c).astype(np.float32), np.ones(c, np.float32), np.zeros(c, np.float32),
                np.ones(c, np.float32)]
    w2 = rng.integers(-1, 2, size=(3, 3, 4, 5)).astype(np.float32)
    if not ternary:
        w2[1, 1, 2, 3] = 0.5
    return [rng.normal(size=(3, 3, 1, 4)).astype(np.float32), *bn(4), w2, *bn(5),
            rng.normal(size=(5 * 4 * 4, 3)).astype(np.float32)]


def test_small_import(tmp_path):
    rng = np.random.default_rng(0)
    _save(tmp_path / "p.npz", _small(rng))
    m = import_tl(tmp_path / "p.npz", "4C3p1-5C3-3", 0, 1, 1 / 256, input_shape=(6, 6))
    assert m.shapes() == [(6, 6, 4), (4, 4, 5)]


def test_wrong_count_and_shape_and_ternary(tmp_path):
    rng = np.random.default_rng(0)
    arrays = _small(rng)
    _save(tmp_path / "few.npz", arrays[:-1])
    with pytest.raises(SnnmapError, match="holds 10 arrays"):
        import_tl(tmp_path / "few.npz", "4C3p1-5C3-3", 0, 1, 1.0)
    bad = list(arrays)
    bad[5] = bad[5][:, :, :3]
    _save(tmp_path / "shape.npz", bad)
    with pytest.raises(SnnmapError, match=r"params\[5\]"):
        import_tl(tmp_path / "shape.npz", "4C3p1-5C3-3", 0, 1, 1.0)
    _save(tmp_path / "tern.npz", _small(rng, ternary=False))
    with pytest.raises(SnnmapError, match="not ternary"):
        import_tl(tmp_path / "tern.npz", "4C3p1-5C3-3", 0, 1, 1.0, input_shape=(6, 6))


def test_plain_npz_without_params(tmp_path):
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    with pytest.raises(SnnmapError, match="no 'params'"):
        import_tl(tmp_path / "x.npz", "4C3p1-5C3-3", 0, 1, 1.0)

"""The configuration image: round trip, and every truncation or flipped bit ends in one clear error."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snnmap.chip.spec import SG64
from snnmap.errors import SnnmapError
from snnmap.image import image_to_bytes, parse_image
from snnmap.model import BatchNorm, Classifier, Layer, QuantModel
from snnmap.pipeline import compile_model
from snnmap.sim import Simulator


def small_model(seed=0) -> QuantModel:
    rng = np.random.default_rng(seed)

    def bn(c):
        return BatchNorm(rng.normal(size=c), rng.uniform(0.5, 2, c), rng.normal(size=c), rng.uniform(0.5, 3, c))

    enc = Layer("encoder", "conv", rng.normal(0, 0.3, (3, 3, 1, 4)), bn(4), 1, 1)
    l1 = Layer("conv1", "conv", rng.integers(-1, 2, (3, 3, 4, 6)).astype(np.int8), bn(6), 2, 0)
    l2 = Layer("fc", "dense", rng.integers(-1, 2, (3 * 3 * 6, 8)).astype(np.int8), bn(8))
    return QuantModel((8, 8, 1), 1, 2, 1 / 256, enc, (l1, l2), Classifier(rng.normal(size=(8, 3)), np.zeros(3)),
                      name="small").validate()


@pytest.fixture(scope="module")
def image_bytes():
    return image_to_bytes(compile_model(small_model(), SG64).image)


def test_round_trip_is_identical(image_bytes):
    img = parse_image(image_bytes)
    assert image_to_bytes(img) == image_bytes
    x = np.random.default_rng(1).integers(0, 256, (7, 8, 8)).astype(np.uint8)
    a = Simulator(img).run(x)
    assert a["pred"].shape == (7,)


def test_compile_is_deterministic():
    assert image_to_bytes(compile_model(small_model(), SG64).image) == \
        image_to_bytes(compile_model(small_model(), SG64).image)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_flipped_bit_is_detected(image_bytes, data):
    pos = data.draw(st.integers(0, len(image_bytes) * 8 - 1))
    b = bytearray(image_bytes)
    b[pos // 8] ^= 1 << (pos % 8)
    with pytest.raises(SnnmapError) as e:
        parse_image(bytes(b), "img")
    assert "\n" not in str(e.value) and str(e.value).startswith("img")


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_truncation_is_detected(image_bytes, data):
    n = data.draw(st.integers(0, len(image_bytes) - 1))
    with pytest.raises(SnnmapError):
        parse_image(image_bytes[:n], "img")


def test_resealed_tampering_is_still_validated(image_bytes):
    """A damaged core whose checksums were recomputed still fails validation, with its location."""
    from snnmap.io.arrays import pack_arrays, unpack_arrays
    from snnmap.io.container import pack_container, parse_container
    from snnmap.image.format import MAGIC, VERSION

    _, sections = parse_container(image_bytes, MAGIC, {VERSION}, "image", "img")
    arrays = unpack_arrays(sections[2][1], "core")
    arrays["dest"] = arrays["dest"] | np.uint32(0x3FF)  # axon 1023: beyond the target core
    forged = [(t.encode(), p) for t, p in sections]
    forged[2] = (b"CORE", pack_arrays(arrays))
    with pytest.raises(SnnmapError, match="CORE #0"):
        parse_image(pack_container(MAGIC, VERSION, forged), "img")

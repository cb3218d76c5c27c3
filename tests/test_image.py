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


def test_destinations_to_missing_or_late_cores_are_named(image_bytes):
    """Every destination word is looked up among the configured cores at once: the first wrong
    core (in address order) is named, whether the image lacks it or runs it at another tick."""
    from snnmap.chip import address
    from snnmap.image.format import MAGIC, VERSION
    from snnmap.io.arrays import pack_arrays, unpack_arrays
    from snnmap.io.container import pack_container, parse_container

    img = parse_image(image_bytes)
    _, sections = parse_container(image_bytes, MAGIC, {VERSION}, "image", "img")
    used = {c.coord for c in img.cores}
    free = next((0, 0, x, y) for y in range(SG64.mesh_h) for x in range(SG64.mesh_w) if (0, 0, x, y) not in used)
    same_tick = next(c.coord for c in img.cores if c.tick == 1)  # a tick-1 core sends to tick 2, not to tick 1

    def forged(coord):
        arrays = unpack_arrays(sections[2][1], "core")
        d = arrays["dest"].copy()
        d[-1] = address.encode(SG64, *coord, 0)
        arrays["dest"] = d
        out = [(t.encode(), p) for t, p in sections]
        out[2] = (b"CORE", pack_arrays(arrays))
        return pack_container(MAGIC, VERSION, out)

    assert img.cores[0].tick == 1
    with pytest.raises(SnnmapError, match=rf"CORE #0.*names core \(0, 0, {free[2]}, {free[3]}\), which the image "
                                          "does not configure"):
        parse_image(forged(free), "img")
    with pytest.raises(SnnmapError, match=rf"CORE #0.*core \(0, 0, {same_tick[2]}, {same_tick[3]}\) runs at tick 1, "
                                          "not 2"):
        parse_image(forged(same_tick), "img")


def test_an_encoder_kernel_as_wide_as_its_padding_is_refused(image_bytes):
    """A 4 MB image whose encoder kernel is 300 x 300 with padding 299 on an 8 x 8 input (307 x 307
    output positions) passed the reader; the simulator's tap index then asked for 68 GB. The
    reader bounds kernel taps x output positions (a real 3 x 3 kernel at 224 x 224 is 1.4e6)."""
    img = parse_image(image_bytes)
    C = img.encoder["weights"].shape[3]
    for k, ok in ((300, False), (20, True)):
        img.encoder["weights"], img.encoder["padding"] = np.zeros((k, k, 1, C)), k - 1
        oh = img.input_shape[0] + k - 1
        img.host_ptr, img.host_dest = np.zeros(oh * oh * C + 1, np.uint32), np.zeros(0, np.uint64)
        if ok:
            parse_image(image_to_bytes(img), "img")
        else:
            with pytest.raises(SnnmapError, match=r"img, HOST: encoder kernel \(300, 300, 1\).*taps"):
                parse_image(image_to_bytes(img), "img")

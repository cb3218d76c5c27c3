"""CoreImage keeps the crossbar factored (distinct columns + a column per neuron): every consumer
must see the crossbar the dense form held, and a CORE section must not depend on the factoring."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from randnet import networks

from snnmap.chip.spec import PAICORE2, SG64, ChipSpec
from snnmap.errors import DesignRuleError
from snnmap.image import image_to_bytes, parse_image
from snnmap.image.format import (
    CoreImage,
    core_payload,
    distinct_columns,
    factor_crossbar,
)
from snnmap.io.arrays import pack_arrays, unpack_arrays
from snnmap.pipeline import compile_model
from snnmap.sim.simulator import _core_plan

MCAST = ChipSpec(**{**PAICORE2.to_dict(), "name": "mcast", "mesh_w": 4, "mesh_h": 4, "core_x_bits": 2,
                    "core_y_bits": 2, "axons_per_core": 96, "neurons_per_core": 32, "fanin_max_level": 2,
                    "bank_bits": 2, "axon_bits": 7, "reserved_corner": 1})
COPIES = ChipSpec(**{**SG64.to_dict(), "name": "copies", "mesh_w": 4, "mesh_h": 4, "axons_per_core": 96,
                     "neurons_per_core": 32, "max_destinations": 2, "fanin_max_level": 0})


def dense_payload(c: CoreImage, crossbar: np.ndarray, spec: ChipSpec) -> bytes:
    """The CORE section written from a dense crossbar, column by column over every neuron (how the
    writer stored it before CoreImage was factored): the oracle for the factored writer."""
    signed = spec.weight_bits >= 2
    xt = crossbar.T
    ids, first, keys = np.zeros(c.neurons, np.int64), [], {}
    for n in range(c.neurons):  # distinct columns, numbered by the first neuron holding each
        key = xt[n].tobytes()
        if key not in keys:
            keys[key] = len(first)
            first.append(n)
        ids[n] = keys[key]
    cols = xt[np.array(first, dtype=np.int64)] if first else np.zeros((0, c.axons), np.int8)
    arrays = unpack_arrays(core_payload(c, spec), "payload")  # header and destinations as written
    arrays["xcol"] = ids.astype(np.uint32)
    arrays["xbar"] = np.packbits(cols.ravel() != 0, bitorder="little")
    if signed:
        arrays["xneg"] = np.packbits(cols.ravel() < 0, bitorder="little")
    return pack_arrays({k: arrays[k] for k in ("hdr", "axon_neg", "thr", "xcol", "xbar", *(("xneg",) if signed
                                                                                            else ()),
                                               "dlist", "dptr", "dest")})


@pytest.mark.parametrize("spec", [SG64, PAICORE2, MCAST, COPIES], ids=["sg64", "paicore2", "mcast", "copies"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=networks())
def test_factored_cores_equal_the_tiles_dense_crossbars(spec, model):
    try:
        result = compile_model(model, spec, placer="sequential")
    except DesignRuleError as e:
        assert "limit" in str(e)
        return
    img = result.image
    tiles = {(t.layer, t.index): t for name in result.tiling.layers for t in result.tiling.layers[name]}
    back = parse_image(image_to_bytes(img)).cores
    assert len(back) == len(img.cores)
    for c, r in zip(img.cores, back):
        dense = tiles[img.layers[c.layer]["name"], c.tile].crossbar
        assert np.array_equal(c.crossbar, dense) and np.array_equal(r.crossbar, dense)
        assert np.array_equal(c.axon_synapses(), np.count_nonzero(dense, axis=1))
        payload = core_payload(c, spec)
        assert payload == dense_payload(c, dense, spec) == core_payload(r, spec)
        # the reader keeps the section's factoring: no more columns than distinct ones
        assert r.xbar.shape[1] == len({col.tobytes() for col in dense.T})


@st.composite
def factorings(draw):
    """A dense ternary crossbar with repeated columns, and a random factoring of it: columns in any
    order, duplicated, with unused ones among them."""
    a, d, n = draw(st.integers(0, 12)), draw(st.integers(1, 5)), draw(st.integers(0, 20))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    base = rng.integers(-1, 2, size=(a, d)).astype(np.int8)
    dense = base[:, rng.integers(0, d, size=n)] if n else np.zeros((a, 0), np.int8)
    # the factoring: every neuron's column, copied 1-2 times, shuffled, plus unused columns
    copies = rng.integers(1, 3, size=n)
    pool = np.repeat(np.arange(n), copies)
    extra = rng.integers(-1, 2, size=(a, draw(st.integers(0, 3)))).astype(np.int8)
    xbar = np.concatenate([dense[:, pool], extra], axis=1)
    perm = rng.permutation(xbar.shape[1])
    xbar = xbar[:, perm]
    where = np.argsort(perm)  # new position of each old column
    start = np.concatenate([[0], np.cumsum(copies)])[:-1]
    xcol = where[start + rng.integers(0, copies)] if n else np.zeros(0, np.int64)
    return dense, xbar, xcol


def _core(xbar, xcol, a, n, rng) -> CoreImage:
    sign = np.where(rng.random(a) < 0.5, -1, 1).astype(np.int8)
    ptr = np.arange(n + 1, dtype=np.uint32)  # one host word per neuron: the writer needs no routes
    return CoreImage((0, 0, 0, 0), 0, 1, 0, 0, sign, rng.integers(-3, 4, n).astype(np.int32), xbar, xcol, ptr,
                     np.zeros(n, np.uint64))


@settings(max_examples=300, deadline=None)
@given(f=factorings(), seed=st.integers(0, 1000))
def test_any_factoring_writes_and_simulates_as_the_dense_crossbar(f, seed):
    dense, xbar, xcol = f
    a, n = dense.shape
    rng = np.random.default_rng(seed)
    c = _core(xbar, xcol, a, n, rng)
    d = _core(*factor_crossbar(dense), a, n, np.random.default_rng(seed))
    assert np.array_equal(c.crossbar, dense) and np.array_equal(d.crossbar, dense)
    cols, ids = distinct_columns(xbar, xcol)
    assert np.array_equal(cols[:, ids], dense)
    assert len({col.tobytes() for col in cols.T}) == cols.shape[1]  # distinct
    # numbered by first use: each neuron's number is at most one more than any before it
    assert (ids <= np.maximum.accumulate(np.r_[-1, ids[:-1]]) + 1).all()
    assert np.array_equal(c.axon_synapses(), np.count_nonzero(dense, axis=1))
    assert core_payload(c, SG64 if (dense >= 0).all() else PAICORE2) == \
        dense_payload(c, dense, SG64 if (dense >= 0).all() else PAICORE2)
    pc, pd = _core_plan(c, SG64), _core_plan(d, SG64)
    for field in ("weights", "column", "thr", "order", "group_starts", "group_ptr", "group_dest", "row_syn"):
        assert np.array_equal(getattr(pc, field), getattr(pd, field)), field
    assert (pc.uniform, pc.shared) == (pd.uniform, pd.shared)
    # the simulator's potentials: one per distinct column, read by each neuron through its column
    ev = rng.integers(0, 5, size=(a, 3)).astype(np.float32)
    want = (dense.astype(np.float32) * c.axon_sign[:, None]).T @ ev
    assert np.array_equal((pc.weights @ ev)[pc.column], want)


def test_unsigned_chip_refuses_negative_synapses_in_any_column():
    from snnmap.errors import SnnmapError

    xbar = np.array([[1, -1], [0, 1]], np.int8)
    c = _core(xbar, np.array([0, 0, 1]), 2, 3, np.random.default_rng(0))
    with pytest.raises(SnnmapError, match="negative synapses"):
        core_payload(c, ChipSpec(**{**SG64.to_dict(), "weight_bits": 1}))
    # a column no neuron uses is not configured: nothing to refuse
    core_payload(_core(xbar, np.array([0, 0]), 2, 2, np.random.default_rng(0)),
                 ChipSpec(**{**SG64.to_dict(), "weight_bits": 1}))

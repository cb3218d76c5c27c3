"""Writer and validating reader of the configuration image (.snnimg); byte layout in docs/image-format.md."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snnmap.chip import address
from snnmap.chip.spec import ChipSpec
from snnmap.errors import SnnmapError
from snnmap.io.arrays import pack_arrays, unpack_arrays
from snnmap.io.atomic import write_bytes_atomic
from snnmap.io.container import pack_container, parse_container, read_container
from snnmap.rows import csr_ids, first_index, row_ids

MAGIC = b"SNNMAPIM"
VERSION = 1
MAX_ENCODER_TAPS = 1 << 26  # kernel taps x output positions; VGG on 224 x 224 images needs 1.4e6


@dataclass
class CoreImage:
    coord: tuple[int, int, int, int]  # chip_x, chip_y, core_x, core_y
    level: int  # fan-in level L: each neuron joins 2^L crossbar columns, one per axon bank
    tick: int
    layer: int
    tile: int
    axon_sign: np.ndarray  # int8 (A,)
    thresholds: np.ndarray  # int32 (Nn,)
    # the crossbar, factored: replicas and fan-out copies of an ANN neuron share a column
    xbar: np.ndarray  # int8 (A, D): columns, synapse weight in {-1, 0, 1} times the axon's sign
    xcol: np.ndarray  # int (Nn,): the column of xbar each neuron uses
    dest_ptr: np.ndarray  # uint32 (Nn + 1,)
    dest: np.ndarray  # uint64
    stage: int = 0  # staged images: the configuration this core belongs to (passes/stages.py)

    @property
    def axons(self) -> int:
        return int(self.axon_sign.shape[0])

    @property
    def neurons(self) -> int:
        return int(self.thresholds.shape[0])

    @property
    def crossbar(self) -> np.ndarray:
        """int8 (A, Nn), expanded on demand (a fresh array): for the few callers that need it dense."""
        return self.xbar[:, np.asarray(self.xcol, dtype=np.int64)]

    def distinct(self) -> tuple[np.ndarray, np.ndarray]:
        """(columns (A, D), ids (Nn,)): see distinct_columns."""
        return distinct_columns(self.xbar, self.xcol)

    def axon_synapses(self) -> np.ndarray:
        """int64 (A,): synapses on each axon, counted from the columns times the neurons using each."""
        uses = np.bincount(np.asarray(self.xcol, dtype=np.int64), minlength=self.xbar.shape[1])
        return (self.xbar != 0).astype(np.int64) @ uses


def distinct_columns(xbar: np.ndarray, xcol: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The crossbar's distinct columns, numbered by the first neuron that uses each, and each
    neuron's number: one form per crossbar (what a CORE section stores), whatever factoring the
    caller holds, found over the columns alone (A x D, not A x Nn)."""
    xcol = np.asarray(xcol, dtype=np.int64)
    if len(xcol) == 0:
        return np.zeros((xbar.shape[0], 0), dtype=np.int8), np.zeros(0, dtype=np.int64)
    xt = np.ascontiguousarray(xbar.T)  # a column per row: the comparisons below run along memory
    same = row_ids(np.packbits(np.concatenate([xt != 0, xt < 0], axis=1), axis=1))  # equal columns
    _, first, inv = np.unique(same[xcol], return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(first), dtype=np.int64)
    rank[order] = np.arange(len(first))
    ids = rank[inv.ravel()]
    return np.ascontiguousarray(xbar[:, xcol[first[order]]], dtype=np.int8), ids


def factor_crossbar(crossbar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(xbar, xcol) of a dense (A, Nn) crossbar, for readers of formats that store it dense."""
    return distinct_columns(crossbar, np.arange(crossbar.shape[1]))


@dataclass
class ChipImage:
    spec: ChipSpec
    k: int
    B: int
    input_shape: tuple[int, int, int]
    input_scale: float
    ticks: int
    layers: list[dict]  # {"name", "tick", "shape"}
    encoder: dict  # weights, stride, padding, theta (C, N), sign (C,)
    classifier_w: np.ndarray
    classifier_b: np.ndarray
    host_ptr: np.ndarray
    host_dest: np.ndarray
    cores: list[CoreImage]
    info: dict = field(default_factory=dict)
    # staged images (stages > 1): the stage of each host word, and the host buffer's relay table:
    # per slot, the words (and each word's stage) its buffered spikes are replayed to
    stages: int = 1
    host_stage: np.ndarray | None = None  # uint16 per host.dest word
    relay_ptr: np.ndarray | None = None  # uint32 (slots + 1,)
    relay_dest: np.ndarray | None = None  # uint64
    relay_stage: np.ndarray | None = None  # uint16 per relay word

    @property
    def replicas(self) -> int:
        return (1 << self.k) * self.B


def image_to_bytes(img: ChipImage) -> bytes:
    sections = [(b"META", meta_payload(img)), (b"HOST", host_payload(img))]
    sections += [(b"CORE", core_payload(c, img.spec, img.stages > 1)) for c in img.cores]
    return pack_container(MAGIC, VERSION, sections)


def meta_payload(img: ChipImage) -> bytes:
    enc = img.encoder
    meta = {"format": "snnmap-image", "version": VERSION, "chip": img.spec.to_dict(), "k": img.k,
            "B": img.B, "input_shape": list(img.input_shape), "input_scale": img.input_scale,
            "ticks": img.ticks, "layers": img.layers,
            "encoder": {"stride": enc["stride"], "padding": enc["padding"]},
            "info": img.info}
    if img.stages > 1:
        meta["stages"] = img.stages
    return json.dumps(meta, sort_keys=True).encode()


def host_payload(img: ChipImage) -> bytes:
    enc = img.encoder
    host = {"enc.weights": enc["weights"].astype(np.float64),
            "enc.theta": enc["theta"].astype(np.float64), "enc.sign": enc["sign"].astype(np.int8),
            "clf.weights": img.classifier_w.astype(np.float64),
            "clf.bias": img.classifier_b.astype(np.float64),
            "host.ptr": img.host_ptr.astype(np.uint32), "host.dest": img.host_dest.astype(np.uint64)}
    if img.stages > 1:
        host.update({"host.stage": img.host_stage.astype(np.uint16), "relay.ptr": img.relay_ptr.astype(np.uint32),
                     "relay.dest": img.relay_dest.astype(np.uint64),
                     "relay.stage": img.relay_stage.astype(np.uint16)})
    return pack_arrays(host)


def core_payload(c: CoreImage, spec: ChipSpec, staged: bool = False) -> bytes:
    """One CORE section (incremental recompiles write changed cores alone and copy the rest)."""
    hdr = np.array([*c.coord, c.level, c.tick, c.layer, c.tile, c.axons, c.neurons] + ([c.stage] if staged else []),
                   dtype=np.int64)
    signed = spec.weight_bits >= 2
    cols, ids = c.distinct()
    if not signed and (cols < 0).any():
        raise SnnmapError(f"core {c.coord}: negative synapses on a chip with weight_bits=1")
    # replicas share their destination list: store each distinct list once
    lists = csr_ids(c.dest_ptr, c.dest)
    first = first_index(lists)
    ptr = c.dest_ptr.astype(np.int64)
    counts = ptr[first + 1] - ptr[first]
    lptr = np.zeros(len(first) + 1, dtype=np.int64)
    np.cumsum(counts, out=lptr[1:])
    take = np.repeat(ptr[first] - lptr[:-1], counts) + np.arange(int(lptr[-1]))
    return pack_arrays({
        "hdr": hdr,
        "axon_neg": np.packbits(c.axon_sign < 0, bitorder="little"),
        "thr": c.thresholds.astype(np.int32),
        # replicas share their crossbar column: store each distinct column once
        "xcol": ids.astype(np.uint32),
        "xbar": np.packbits(cols.T.ravel() != 0, bitorder="little"),
        **({"xneg": np.packbits(cols.T.ravel() < 0, bitorder="little")} if signed else {}),
        "dlist": lists.astype(np.uint32),
        "dptr": lptr.astype(np.uint32),
        "dest": c.dest[take].astype(np.uint64),
    })


def write_image(img: ChipImage, path: str | Path) -> None:
    write_bytes_atomic(path, image_to_bytes(img))


def read_image(path: str | Path) -> ChipImage:
    _, sections = read_container(path, MAGIC, {VERSION}, "snnmap image")
    return _from_sections(sections, str(path))


def parse_image(data: bytes, where: str = "<image>") -> ChipImage:
    _, sections = parse_container(data, MAGIC, {VERSION}, "snnmap image", where)
    return _from_sections(sections, where)


def _bad(msg: str, where: str) -> SnnmapError:
    return SnnmapError(msg, where=where)


def _get(d: dict, key: str, typ, where: str):
    if not isinstance(d, dict) or key not in d:
        raise _bad(f"lacks field {key!r}", where)
    v = d[key]
    if typ is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        raise _bad(f"field {key!r} is {str(v)[:60]!r}, expected {typ.__name__}", where)
    return v


def _arr(arrays: dict, name: str, dtype, ndim: int, where: str) -> np.ndarray:
    if name not in arrays:
        raise _bad(f"array {name!r} is missing", where)
    a = arrays[name]
    if a.dtype != np.dtype(dtype) or a.ndim != ndim:
        raise _bad(f"array {name!r} is {a.dtype} with {a.ndim} dims, expected {np.dtype(dtype)} with {ndim}",
                   where)
    return a


def _from_sections(sections, where: str) -> ChipImage:
    tags = [t for t, _ in sections]
    if tags[:2] != ["META", "HOST"] or any(t != "CORE" for t in tags[2:]):
        raise _bad(f"sections must be META, HOST, then CORE...; found {tags[:4]}...", where)
    try:
        meta = json.loads(sections[0][1].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as e:
        raise _bad(f"META section is not valid JSON: {str(e)[:200]}", where) from None
    mw = f"{where}, META"
    if _get(meta, "format", str, mw) != "snnmap-image":
        raise _bad("format is not 'snnmap-image'", mw)
    spec = ChipSpec.from_dict(_get(meta, "chip", dict, mw), f"{mw}.chip")
    k, B = _get(meta, "k", int, mw), _get(meta, "B", int, mw)
    if not (0 <= k <= 8 and 1 <= B <= 256):
        raise _bad(f"k={k}, B={B} out of range", mw)
    n_rep = (1 << k) * B
    shape = _get(meta, "input_shape", list, mw)
    if len(shape) != 3 or not all(isinstance(s, int) and 0 < s < 1 << 16 for s in shape):
        raise _bad(f"input_shape {shape!r} is not three positive integers", mw)
    scale = _get(meta, "input_scale", float, mw)
    ticks = _get(meta, "ticks", int, mw)
    layers = _get(meta, "layers", list, mw)
    if not 1 <= ticks <= 1 << 15 or len(layers) != ticks:
        raise _bad(f"ticks={ticks} must equal the number of layers ({len(layers)})", mw)
    names = set()
    for i, lay in enumerate(layers):
        lw = f"{mw}.layers[{i}]"
        name = _get(lay, "name", str, lw)
        if name in names or name == "encoder":
            raise _bad(f"layer name {name!r} is not unique", lw)
        names.add(name)
        if _get(lay, "tick", int, lw) != i + 1:
            raise _bad(f"tick {lay['tick']} should be {i + 1}", lw)
        shp = _get(lay, "shape", list, lw)
        if len(shp) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 1 << 24 for v in shp):
            raise _bad(f"shape {shp!r} is not three positive integers", lw)
        if not 0 <= _get(lay, "tiles", int, lw) < 1 << 31:
            raise _bad("tiles is out of range", lw)
    if not (np.isfinite(scale) and scale > 0):
        raise _bad(f"input_scale {scale!r} is not a positive finite number", mw)
    enc_meta = _get(meta, "encoder", dict, mw)
    stride, pad = _get(enc_meta, "stride", int, mw), _get(enc_meta, "padding", int, mw)
    info = meta.get("info", {}) if isinstance(meta.get("info", {}), dict) else {}
    n_stages = _get(meta, "stages", int, mw) if "stages" in meta else 1
    if not 2 <= n_stages <= 1 << 15 and "stages" in meta:
        raise _bad(f"stages={n_stages} is outside 2..{1 << 15}", mw)
    if "incremental" in info:  # optional: what `compile --from` reuses; checked so that it can trust it
        from snnmap.incremental import check_record

        check_record(info["incremental"], layers, f"{mw}.info.incremental")

    hw = f"{where}, HOST"
    host = unpack_arrays(sections[1][1], hw)
    ew = _arr(host, "enc.weights", np.float64, 4, hw)
    if ew.shape[2] != shape[2] or stride < 1 or not 0 <= pad < min(ew.shape[:2]):
        raise _bad(f"encoder kernel {ew.shape} / stride {stride} / padding {pad} do not fit input {shape}",
                   hw)
    c_enc = ew.shape[3]
    theta = _arr(host, "enc.theta", np.float64, 2, hw)
    sign = _arr(host, "enc.sign", np.int8, 1, hw)
    if theta.shape != (c_enc, n_rep) or sign.shape != (c_enc,):
        raise _bad(f"encoder thresholds {theta.shape} / signs {sign.shape} do not fit {c_enc} channels x "
                   f"{n_rep} replicas", hw)
    if np.isnan(theta).any() or not np.isin(sign, (-1, 1)).all():
        raise _bad("encoder thresholds hold NaN or signs other than -1 and +1", hw)
    enc = {"weights": ew, "stride": stride, "padding": pad, "theta": theta, "sign": sign}
    oh = (shape[0] + 2 * pad - ew.shape[0]) // stride + 1
    ow = (shape[1] + 2 * pad - ew.shape[1]) // stride + 1
    if oh < 1 or ow < 1:
        raise _bad("encoder output would be empty", hw)
    # the simulator indexes every kernel tap at every output position: a kernel as wide as its padding
    # makes that product grow with the square of the file (a 4 MB image asked for 68 GB)
    if ew.shape[0] * ew.shape[1] * ew.shape[2] * oh * ow > MAX_ENCODER_TAPS:
        raise _bad(f"encoder kernel {ew.shape[:3]} at {oh}x{ow} output positions is over {MAX_ENCODER_TAPS} "
                   f"taps", hw)
    n_enc = oh * ow * c_enc
    cw = _arr(host, "clf.weights", np.float64, 2, hw)
    cb = _arr(host, "clf.bias", np.float64, 1, hw)
    if cb.shape != (cw.shape[1],):
        raise _bad(f"classifier bias {cb.shape} does not match weights {cw.shape}", hw)
    for name, a in (("enc.weights", ew), ("clf.weights", cw), ("clf.bias", cb)):
        if not np.isfinite(a).all():
            raise _bad(f"array {name!r} holds a non-finite value", hw)
    host_ptr = _arr(host, "host.ptr", np.uint32, 1, hw)
    host_dest = _arr(host, "host.dest", np.uint64, 1, hw)
    # where axons OR spikes, each replica of an encoder neuron has its own list; the host has no
    # destination limit of its own
    _check_csr(host_ptr, host_dest, n_enc * (1 if spec.axon_accumulates else n_rep), 1 << 31, hw)
    relay = None
    if n_stages > 1:
        host_stage = _arr(host, "host.stage", np.uint16, 1, hw)
        relay_ptr = _arr(host, "relay.ptr", np.uint32, 1, hw)
        relay_dest = _arr(host, "relay.dest", np.uint64, 1, hw)
        relay_stage = _arr(host, "relay.stage", np.uint16, 1, hw)
        if host_stage.shape != host_dest.shape or relay_stage.shape != relay_dest.shape:
            raise _bad("host.stage / relay.stage do not match their destination words in size", hw)
        if len(relay_ptr) < 1:
            raise _bad("relay.ptr is empty", hw)
        _check_csr(relay_ptr, relay_dest, len(relay_ptr) - 1, 1 << 31, hw)
        if (host_stage >= n_stages).any() or (relay_stage >= n_stages).any():
            raise _bad(f"a host or relay word names a stage >= stages={n_stages}", hw)
        # per slot: the tick and the latest stage of the cores that send to it (filled below)
        relay = {"slots": len(relay_ptr) - 1, "tick": np.full(len(relay_ptr) - 1, -1, np.int64),
                 "stage": np.full(len(relay_ptr) - 1, -1, np.int64)}

    cores: list[CoreImage] = []
    by_coord: dict[tuple, int] = {}
    lo, hi = spec.threshold_range
    for ci, (_, payload) in enumerate(sections[2:]):
        cw_ = f"{where}, CORE #{ci}"
        a = unpack_arrays(payload, cw_)
        hdr = _arr(a, "hdr", np.int64, 1, cw_)
        n_hdr = 10 if n_stages == 1 else 11
        if hdr.shape != (n_hdr,):
            raise _bad(f"header has {hdr.shape[0]} fields, expected {n_hdr}", cw_)
        chip_x, chip_y, core_x, core_y, level, tick, layer, tile, n_ax, n_nr = (int(v) for v in hdr[:10])
        stage = int(hdr[10]) if n_stages > 1 else 0
        if not 0 <= stage < n_stages:
            raise _bad(f"stage {stage} is outside 0..{n_stages - 1}", f"{where}, CORE #{ci}")
        coord = (chip_x, chip_y, core_x, core_y)
        cw_ = f"{where}, CORE #{ci} at chip ({chip_x},{chip_y}) core ({core_x},{core_y})"
        if not (0 <= chip_x < 1 << spec.chip_x_bits and 0 <= chip_y < 1 << spec.chip_y_bits
                and 0 <= core_x < spec.mesh_w and 0 <= core_y < spec.mesh_h):
            raise _bad("coordinates outside the board", cw_)
        r = spec.reserved_corner
        if r and core_x >= spec.mesh_w - r and core_y >= spec.mesh_h - r:
            raise _bad(f"core in the reserved corner (x and y >= {spec.mesh_w - r})", cw_)
        if (stage, coord) in by_coord:
            raise _bad(f"same core as CORE #{by_coord[stage, coord]}" + (f" in stage {stage}" if n_stages > 1 else ""),
                       cw_)
        if not 1 <= tick <= ticks or layer != tick - 1:
            raise _bad(f"tick {tick} / layer {layer} inconsistent (ticks 1..{ticks})", cw_)
        if not 0 <= level <= spec.fanin_max_level:
            raise _bad(f"fan-in level {level} is outside 0..{spec.fanin_max_level}", cw_)
        if not (0 <= n_ax <= spec.axons_at(level) and 0 <= n_nr <= spec.neurons_at(level)):
            raise _bad(f"{n_ax} axons / {n_nr} neurons exceed the core's {spec.axons_at(level)} / "
                       f"{spec.neurons_at(level)} at fan-in level {level}", cw_)
        neg = _arr(a, "axon_neg", np.uint8, 1, cw_)
        xbar = _arr(a, "xbar", np.uint8, 1, cw_)
        xcol = _arr(a, "xcol", np.uint32, 1, cw_)
        thr = _arr(a, "thr", np.int32, 1, cw_)
        if xcol.shape[0] != n_nr or thr.shape[0] != n_nr:
            raise _bad("array sizes do not match the header's neuron count", cw_)
        n_cols = int(xcol.max()) + 1 if n_nr else 0
        if neg.shape[0] != (n_ax + 7) // 8 or n_cols > n_nr or xbar.shape[0] != (n_ax * n_cols + 7) // 8:
            raise _bad("array sizes do not match the header's axon and neuron counts", cw_)
        if ((thr < lo) | (thr > hi)).any():
            raise _bad(f"a threshold is outside {lo}..{hi}", cw_)
        dlist = _arr(a, "dlist", np.uint32, 1, cw_)
        dptr = _arr(a, "dptr", np.uint32, 1, cw_)
        dest = _arr(a, "dest", np.uint64, 1, cw_)
        if dlist.shape != (n_nr,):
            raise _bad(f"dlist has {dlist.shape[0]} entries for {n_nr} neurons", cw_)
        _check_csr(dptr, dest, len(dptr) - 1 if len(dptr) else 0, spec.max_destinations, cw_)
        if n_nr and int(dlist.max()) >= len(dptr) - 1:
            raise _bad(f"a neuron names destination list {int(dlist.max())} of {len(dptr) - 1}", cw_)
        expected = {"hdr", "axon_neg", "xbar", "xcol", "thr", "dlist", "dptr", "dest"}
        if spec.weight_bits >= 2:
            expected.add("xneg")
        if set(a) != expected:
            raise _bad(f"arrays {sorted(set(a))}, expected {sorted(expected)}", cw_)
        if spec.weight_bits >= 2:
            xneg = _arr(a, "xneg", np.uint8, 1, cw_)
            if xneg.shape != xbar.shape:
                raise _bad("xneg does not match xbar in size", cw_)
        lp = dptr.astype(np.int64)
        counts = (lp[1:] - lp[:-1])[dlist]
        nptr = np.zeros(n_nr + 1, dtype=np.int64)
        np.cumsum(counts, out=nptr[1:])
        dest = dest[np.repeat(lp[dlist] - nptr[:-1], counts) + np.arange(int(nptr[-1]))]
        dptr = nptr.astype(np.uint32)
        sign = np.where(np.unpackbits(neg, count=n_ax, bitorder="little").astype(bool), -1, 1).astype(np.int8)
        distinct = np.unpackbits(xbar, count=n_ax * n_cols, bitorder="little").astype(np.int8).reshape(n_cols, n_ax)
        if spec.weight_bits >= 2:
            neg_syn = np.unpackbits(xneg, count=n_ax * n_cols, bitorder="little").reshape(n_cols, n_ax)
            if (neg_syn > distinct).any():
                raise _bad("xneg marks a synapse that xbar leaves out", cw_)
            distinct = distinct - 2 * neg_syn.astype(np.int8)
        by_coord[stage, coord] = ci
        cores.append(CoreImage(coord, level, tick, layer, tile, sign, thr, distinct.T, xcol.astype(np.int64), dptr,
                               dest, stage))

    features = cw.shape[0]
    table = _CoreTable(spec, cores, n_stages)
    if n_stages == 1:
        _check_destinations(spec, host_dest, 0, table, ticks, features, f"{where}, HOST")
    else:
        if set(range(n_stages)) - {c.stage for c in cores}:
            raise _bad(f"a stage of 0..{n_stages - 1} configures no core", where)
        for s in np.unique(host_stage):
            _check_destinations(spec, host_dest[host_stage == s], 0, table, ticks, features,
                                f"{where}, HOST (stage {s})", int(s))
    for ci, c in enumerate(cores):
        _check_destinations(spec, c.dest, c.tick, table, ticks, features, f"{where}, CORE #{ci}",
                            c.stage, relay)
    if relay is None:
        return ChipImage(spec, k, B, tuple(shape), scale, ticks, layers, enc, cw, cb, host_ptr, host_dest,
                         cores, info)
    # the relay: every slot has senders of one tick, and replays to later stages at the next tick
    if (relay["tick"] < 0).any():
        raise _bad(f"relay slot {int(np.flatnonzero(relay['tick'] < 0)[0])} has no sender", f"{where}, HOST")
    lp = relay_ptr.astype(np.int64)
    owner = np.repeat(np.arange(len(lp) - 1), np.diff(lp))
    if (relay_stage <= relay["stage"][owner]).any():
        raise _bad("a relay word goes to a stage that does not run after its slot's senders", f"{where}, HOST")
    key = relay["tick"][owner] * n_stages + relay_stage
    for kk in np.unique(key):
        t, s = divmod(int(kk), n_stages)
        _check_destinations(spec, relay_dest[key == kk], t, table, ticks, features,
                            f"{where}, HOST relay (stage {s})", s)
    return ChipImage(spec, k, B, tuple(shape), scale, ticks, layers, enc, cw, cb, host_ptr, host_dest,
                     cores, info, n_stages, host_stage, relay_ptr, relay_dest, relay_stage)


def _check_csr(ptr: np.ndarray, dest: np.ndarray, n: int, max_dest: int, where: str) -> None:
    if ptr.shape != (n + 1,) or int(ptr[0]) != 0 or int(ptr[-1]) != dest.shape[0]:
        raise _bad(f"destination table shape {ptr.shape} / {dest.shape} does not fit {n} sources", where)
    d = np.diff(ptr.astype(np.int64))
    if (d < 0).any():
        raise _bad("destination table pointers decrease", where)
    if n and int(d.max()) > max_dest:
        raise _bad(f"a source has {int(d.max())} destinations, over max_destinations={max_dest}", where)


class _CoreTable:
    """The configured cores by (core address, stage), sorted, for looking up every destination at once."""

    def __init__(self, spec: ChipSpec, cores: list[CoreImage], n_stages: int):
        self.n_stages = n_stages
        if cores:
            cx, cy, x, y = (np.array([c.coord[i] for c in cores], dtype=np.int64) for i in range(4))
            addr = (address.encode(spec, cx, cy, x, y, 0) >> np.uint64(address.core_shift(spec))).astype(np.int64)
            key = addr * n_stages + np.array([c.stage for c in cores], dtype=np.int64)
        else:
            key = np.zeros(0, dtype=np.int64)
        order = np.argsort(key, kind="stable")
        self.key = key[order]
        self.tick = np.array([c.tick for c in cores], dtype=np.int64)[order]
        self.axons = np.array([c.axons for c in cores], dtype=np.int64)[order]

    def find(self, addr: np.ndarray, stage: int) -> tuple[np.ndarray, np.ndarray]:
        """(found, position) of each core address in the given stage."""
        q = addr * self.n_stages + stage
        pos = np.minimum(np.searchsorted(self.key, q), max(len(self.key) - 1, 0))
        return (self.key[pos] == q) if len(self.key) else np.zeros(len(q), bool), pos


def _check_destinations(spec, words, tick, table, ticks, features, where, stage=0, relay=None) -> None:
    """Words sent at `tick` from `stage`; relay (staged images) records which slots the host
    buffer words fill."""
    if words.size == 0:
        return
    is_host, cx, cy, x, y, low = address.decode(spec, words)
    if relay is not None and tick < ticks and is_host.any():
        slots = low[is_host]
        if (slots >= relay["slots"]).any():
            raise _bad(f"a host buffer word names slot {int(slots.max())} of {relay['slots']}", where)
        t = relay["tick"][slots]
        if ((t >= 0) & (t != tick)).any():
            raise _bad("a host buffer slot has senders at two ticks", where)
        relay["tick"][slots] = tick
        relay["stage"][slots] = np.maximum(relay["stage"][slots], stage)
        words = words[~is_host]
        if words.size == 0:
            return
        is_host, cx, cy, x, y, low = address.decode(spec, words)
    if tick == ticks:
        if not is_host.all():
            raise _bad("a neuron of the last layer sends to a core instead of the host", where)
        if (low >= features).any():
            raise _bad(f"a readout index is >= the classifier's {features} features", where)
        return
    if is_host.any():
        raise _bad(f"a neuron at tick {tick} sends to the host before the last tick", where)
    used_bits = address.address_bits(spec)
    if (words >> np.uint64(used_bits)).any():
        raise _bad(f"a destination word sets bits above its {used_bits} address bits", where)
    if spec.multicast:
        mx, my = address.masks(spec, words)
        n_cores = (1 << np.bitwise_count(mx.astype(np.uint64)).astype(np.int64)) \
            << np.bitwise_count(my.astype(np.uint64)).astype(np.int64)
        if int(n_cores.sum()) > 1 << 24:
            raise _bad("multicast destinations reach too many cores", where)
        words = address.expand(spec, words)[1]
        is_host, cx, cy, x, y, low = address.decode(spec, words)
    if ((words & np.uint64((1 << spec.axon_bits) - 1)) >= np.uint64(spec.axons_per_core)).any():
        raise _bad(f"a destination's axon field is >= axons_per_core={spec.axons_per_core}", where)
    core_key = (words >> np.uint64(address.core_shift(spec))).astype(np.int64)
    found, pos = table.find(core_key, stage)  # per word: a search of the core table, no sort of the words
    bad = ~found | (found & (table.tick[pos] != tick + 1))
    if bad.any():  # the first such core in address order, as its first word names it
        f = int(np.flatnonzero(bad & (core_key == core_key[bad].min()))[0])
        key = (int(cx[f]), int(cy[f]), int(x[f]), int(y[f]))
        if not found[f]:
            raise _bad(f"a destination names core {key}, which the image does not configure", where)
        raise _bad(f"a destination core {key} runs at tick {int(table.tick[pos[f]])}, not {tick + 1}", where)
    if (low >= table.axons[pos]).any():
        raise _bad("a destination axon is beyond its core's configured axons", where)

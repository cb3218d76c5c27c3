"""Incremental re-mapping: recompile an edited model from its previous image, rewriting only what changed.

A compile stores a record in the image's META info (`info.incremental`, docs/image-format.md): per
layer a hash of its geometry and one of its weights and thresholds, its tile shape and level, the
fan-out copies its neurons had (what its consumer's tiling asked for), the alignment of its
multicast blocks, a hash of its tiles' axon layout (what its producer's destinations depend on)
and a hash per tile; which slot each tile occupies is in the CORE headers. `compile_from` then:

* a layer whose geometry, contents and copies match keeps its tiles; its CORE sections are copied
  byte for byte when its destinations are unchanged too (the next layer kept its axon layout and
  its slots), else its tiles are recut and rerouted in place;
* a layer with the same geometry but other weights or thresholds keeps its shape and slots and is
  recut with the new contents; if a tile no longer fits a core at that level, or the copies its
  consumer needs no longer fit, it is re-tiled (the summary says so) and placed as new;
* a new or reshaped layer is tiled by the usual shape search and placed by CP-SAT windows with
  every kept tile fixed, starting from the free slots nearest its neighbours (its old slots
  first); `max_moves` lets a refinement move that many old tiles, each move only for a
  spike-hop gain of at least MOVE_GAIN of the total.

The old image must be for the same chip spec (else a one-line error: a changed chip changes every
core, so nothing is there to keep). Its sections are checked by the container's CRC-32 and SHA-256,
its META and record and every core header are validated; reused CORE payloads are copied without
re-decoding them (the image reader validates the whole new image whenever it is read).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
import time
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from snnmap.chip.spec import ChipSpec
from snnmap.errors import DesignRuleError, SnnmapError

if TYPE_CHECKING:
    from snnmap.image.format import ChipImage

RECORD_VERSION = 1
MOVE_GAIN = 0.001  # an old tile moves only for at least this share of the total spike-hops per tile moved
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX16 = re.compile(r"[0-9a-f]{16}")


# --- hashes and the record ---------------------------------------------------------------------
def _hash(*parts, size: int = 16) -> str:
    h = hashlib.blake2b(digest_size=size)
    for p in parts:
        if isinstance(p, np.ndarray):
            a = np.ascontiguousarray(p)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        else:
            h.update(repr(p).encode())
        h.update(b"|")
    return h.hexdigest()


def layer_keys(g, name: str) -> tuple[str, str]:
    """(geometry, contents) hashes of an on-chip layer: what its tiles can depend on."""
    from snnmap.passes.tiling import _layer

    pop, src, proj = _layer(g, name)
    geometry = _hash("geometry", src.shape, src.replicas, src.on_chip, pop.shape, pop.replicas,
                     proj.kh, proj.kw, proj.stride, proj.padding)
    content = _hash("content", proj.weights.astype(np.int8), pop.thresholds.astype(np.int64))
    return geometry, content


def _layout_hash(tiles) -> str:
    """The tiles' axons (the producer's destinations and multicast blocks depend on these alone)."""
    return _hash("layout", len(tiles), *[a for t in tiles for a in (
        t.axon_src, t.axon_sign, np.zeros(0) if t.axon_rep is None else t.axon_rep)])


def _tile_hash(content: str, t) -> str:
    """A tile is its layer's weights seen through its axons and neurons: hashing those (not the
    crossbar itself) identifies it at a fraction of the cost."""
    return _hash(content, t.region, t.level, t.axon_src, t.axon_sign,
                 np.zeros(0) if t.axon_rep is None else t.axon_rep, t.neuron_src, t.neuron_copy,
                 t.neuron_rep, t.thresholds, size=8)


def _mult_hash(m: np.ndarray | None) -> str:
    return "" if m is None else _hash("copies", np.asarray(m, np.int64))


def _mult_data(m: np.ndarray | None) -> str:
    if m is None or int(m.max(initial=1)) <= 1:
        return ""
    return base64.b64encode(zlib.compress(np.asarray(m, "<u4").tobytes(), 9)).decode("ascii")


def layer_record(name: str, geometry: str, content: str, shape, mult, align: int, layout: str,
                 tiles: list[str]) -> dict:
    return {"name": name, "geometry": geometry, "content": content,
            "shape": [shape.th, shape.tw, shape.cg, shape.level, int(shape.packed)],
            "copies": _mult_hash(mult), "copies_data": _mult_data(mult), "align": int(align),
            "layout": layout, "tiles": tiles}


def make_record(g, order: list[str], tiling, tiling_mode: str, board: tuple[int, int] | None) -> dict:
    """The record a full compile stores (pipeline.compile_model)."""
    from snnmap.ir import source_of

    layers = []
    for name in order:
        geometry, content = layer_keys(g, name)
        tiles = tiling.layers[name]
        fo = tiling.fanout.get(name)
        mult = fo.mult if fo is not None and name != order[-1] else None
        layers.append(layer_record(name, geometry, content, tiling.shapes[name], mult,
                                   tiling.fanout[source_of(g, name)].align, _layout_hash(tiles),
                                   [_tile_hash(content, t) for t in tiles]))
    return {"version": RECORD_VERSION, "tiling": tiling_mode, "board": None if board is None else list(board),
            "layers": layers}


def check_record(rec, layers: list, where: str) -> dict:
    """Validate the record against the image's layer list; every failure names the field."""
    def bad(msg):
        return SnnmapError(msg, where=where)

    if not isinstance(rec, dict):
        raise bad("is not an object")
    if type(rec.get("version")) is not int or rec["version"] != RECORD_VERSION:
        raise bad(f"version {rec.get('version')!r} is not {RECORD_VERSION}")
    if rec.get("tiling") not in ("locality", "baseline"):
        raise bad(f"tiling {rec.get('tiling')!r} is not locality or baseline")
    b = rec.get("board")
    if b is not None and not (isinstance(b, list) and len(b) == 2
                              and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1 << 16 for v in b)):
        raise bad(f"board {b!r} is not two positive integers")
    recs = rec.get("layers")
    if not isinstance(recs, list) or len(recs) != len(layers):
        raise bad(f"has {len(recs) if isinstance(recs, list) else 'no'} layers, the image {len(layers)}")
    for i, (r, lay) in enumerate(zip(recs, layers)):
        lw = f"layers[{i}]"
        if not isinstance(r, dict) or r.get("name") != lay.get("name"):
            raise bad(f"{lw} does not name layer {lay.get('name')!r}")
        for key in ("geometry", "content", "layout"):
            if not isinstance(r.get(key), str) or not _HEX32.fullmatch(r[key]):
                raise bad(f"{lw}.{key} is not a 32-digit hex hash")
        if not isinstance(r.get("copies"), str) or not (r["copies"] == "" or _HEX32.fullmatch(r["copies"])):
            raise bad(f"{lw}.copies is not a hash or empty")
        if not isinstance(r.get("copies_data"), str) or len(r["copies_data"]) > 1 << 26:
            raise bad(f"{lw}.copies_data is not a string")
        s = r.get("shape")
        if not (isinstance(s, list) and len(s) == 5 and all(isinstance(v, int) and not isinstance(v, bool) for v in s)
                and all(1 <= v < 1 << 24 for v in s[:3]) and 0 <= s[3] <= 16 and s[4] in (0, 1)):
            raise bad(f"{lw}.shape {s!r} is not [th, tw, cg, level, packed]")
        if not (isinstance(r.get("align"), int) and not isinstance(r["align"], bool) and 1 <= r["align"] < 1 << 31):
            raise bad(f"{lw}.align is not a positive integer")
        t = r.get("tiles")
        if not isinstance(t, list) or len(t) != lay.get("tiles") or not all(isinstance(h, str) and _HEX16.fullmatch(h)
                                                                            for h in t):
            raise bad(f"{lw}.tiles is not one 16-digit hex hash per tile ({lay.get('tiles')})")
    return rec


def _decode_mult(r: dict, size: int, where: str) -> np.ndarray | None:
    if r["copies"] == "":
        return None
    if r["copies_data"] == "":
        m = np.ones(size, np.int64)
    else:
        try:
            raw = zlib.decompressobj().decompress(base64.b64decode(r["copies_data"], validate=True), size * 4 + 1)
        except (ValueError, zlib.error):
            raise SnnmapError(f"layer {r['name']!r}: copies_data is not base64 zlib data", where=where) from None
        if len(raw) != size * 4:
            raise SnnmapError(f"layer {r['name']!r}: copies_data holds {len(raw) // 4} counts, the layer "
                              f"{size} neurons", where=where)
        m = np.frombuffer(raw, "<u4").astype(np.int64)
    if _mult_hash(m) != r["copies"] or int(m.min(initial=1)) < 1:
        raise SnnmapError(f"layer {r['name']!r}: copies_data does not match its hash", where=where)
    return m


# --- the old image -------------------------------------------------------------------------------
@dataclass
class OldImage:
    path: str
    image: ChipImage  # as the image reader parsed it
    record: dict | None
    cores: list[bytes]  # CORE payloads in image order, copied byte for byte where kept
    hdr: np.ndarray  # (cores, 10) int64
    index: dict  # (layer, tile) -> core number

    @property
    def spec(self) -> ChipSpec:
        return self.image.spec

    def coords(self, layer: int, n: int) -> np.ndarray:
        return np.array([self.hdr[self.index[layer, t], :4] for t in range(n)], dtype=np.int64).reshape(-1, 4)


def _core_codes(coords: np.ndarray, spec: ChipSpec) -> np.ndarray:
    """Each core's place in the order place_blocks lays layers along: chip (row-major on the
    board) x cores_per_chip + the core's Morton code."""
    chip = coords[:, 0] + (coords[:, 1] << spec.chip_x_bits)
    return chip * spec.cores_per_chip + _morton(coords[:, 2], coords[:, 3])


def _blocks_hold(coords: np.ndarray, align: int, spec: ChipSpec) -> bool:
    """Whether tiles kept at these cores still keep every multicast block of their producer an
    aligned block: each run of `align` positions (as fanout.py cut them, place_mcast's units) at
    consecutive codes from a multiple of `align`."""
    from snnmap.passes.fanout import slots

    n = len(coords)
    if n == 0 or align == 1:
        return True
    codes = _core_codes(coords, spec)
    run, off = np.divmod(slots(n, spec), align)
    base = codes - off
    first = np.r_[True, run[1:] != run[:-1]]
    return bool((base % align == 0).all() and (base == base[first][np.cumsum(first) - 1]).all())


def read_old(path: str) -> OldImage:
    """The image --from names, through every check of the image reader: kept cores, the host table
    and their destinations are copied as they are, so an image the reader refuses (a CORE section
    damaged and resealed) would make an unreadable new one. Here only what --from adds: a single
    stage, and one core per tile of the layer list."""
    from snnmap.image.format import MAGIC, VERSION, _from_sections
    from snnmap.io.container import read_container

    _, sections = read_container(path, MAGIC, {VERSION}, "snnmap image")
    img = _from_sections(sections, path)
    if img.stages > 1:
        raise SnnmapError(f"is a staged image ({img.stages!r} stages); --from recompiles single-stage images "
                          "(compile without --from)", where=path)
    layers = img.layers
    record = None
    if "incremental" in img.info:
        record = check_record(img.info["incremental"], layers, f"{path}, META.info.incremental")
    hdr = np.array([(*c.coord, c.level, c.tick, c.layer, c.tile, c.axons, c.neurons) for c in img.cores],
                   np.int64).reshape(-1, 10)
    index: dict = {}
    for i, (layer, tile) in enumerate(hdr[:, 6:8].tolist()):
        if not 0 <= tile < layers[layer]["tiles"] or (layer, tile) in index:
            raise SnnmapError(f"layer {layer} / tick {layer + 1} / tile {tile} do not fit the layer list",
                              where=f"{path}, CORE #{i}")
        index[layer, tile] = i
    if len(index) != sum(lay["tiles"] for lay in layers):
        raise SnnmapError(f"{len(index)} cores for {sum(lay['tiles'] for lay in layers)} tiles", where=path)
    return OldImage(path, img, record, [p for _, p in sections[2:]], hdr, index)


# --- the recompile -------------------------------------------------------------------------------
@dataclass
class _Layer:
    name: str
    old: int | None  # index of the same layer (name and geometry) in the old image
    shape: object = None
    mult: np.ndarray | None = None
    mult_same: bool = False
    content_same: bool = False
    tiles: list | None = None  # None: identical to the old tiles, not cut
    kept: bool = False  # tile i stays at the old tile i's slot
    layout_same: bool = False
    moved: bool = False
    notes: list = field(default_factory=list)


@dataclass
class IncrementalResult:
    data: bytes
    summary: dict
    timings: dict


def compile_from(model, spec: ChipSpec, old: OldImage, tiling: str = "locality", max_moves: int = 0,
                 seed: int = 0, chips: tuple[int, int] | None = None, calibration: np.ndarray | None = None,
                 calibration_name: str = "", time_limit: float | None = None,
                 place_seconds: float | None = None, progress=None) -> IncrementalResult:
    from snnmap.convert import convert
    from snnmap.deadline import Deadline
    from snnmap.image.format import (
        MAGIC,
        VERSION,
        ChipImage,
        CoreImage,
        core_payload,
        host_payload,
        meta_payload,
    )
    from snnmap.io.container import pack_container
    from snnmap.ir import chip_layers, source_of
    from snnmap.passes import drc
    from snnmap.passes.bounds import layer_bound
    from snnmap.passes.fanout import fan_out
    from snnmap.passes.route import route_host, route_tiles
    from snnmap.passes.tiling import Tiling, _layer, cut_layer
    from snnmap.pipeline import _timer

    if max_moves < 0:
        raise SnnmapError(f"--max-moves must be >= 0, got {max_moves}")
    if old.spec != spec:
        diff = sorted(k for k, v in spec.to_dict().items() if old.spec.to_dict().get(k) != v)
        raise SnnmapError(f"was compiled for chip {old.spec.name!r}, not {spec.name!r} (fields differ: "
                          f"{', '.join(diff)}); --from needs the same chip (compile without --from)",
                          where=old.path)
    if old.record is None:
        raise SnnmapError("carries no incremental record (made before snnmap stored one); compile without "
                          "--from once", where=old.path)
    if old.record["tiling"] != tiling:
        raise SnnmapError(f"was tiled with --tiling {old.record['tiling']}, not {tiling}; --from keeps the "
                          f"tiling mode", where=old.path)
    deadline = Deadline(time_limit)
    timings: dict[str, float] = {}
    rec = old.record
    with _timer(timings, "convert"):
        g = convert(model)
    with _timer(timings, "drc (layers)"):
        drc.check_before_tiling(g, spec)
    order = chip_layers(g)
    n = len(order)
    old_layers = rec["layers"]
    old_by_name = {r["name"]: i for i, r in enumerate(old_layers)}
    keys = {name: layer_keys(g, name) for name in order}
    st: dict[str, _Layer] = {}
    for name in order:
        oi = old_by_name.get(name)
        st[name] = _Layer(name, oi if oi is not None and old_layers[oi]["geometry"] == keys[name][0] else None)

    with _timer(timings, "bounds"):
        old_bounds = old.image.info.get("bounds", {})
        bounds = {}
        for name in order:
            s = st[name]
            ob = old_bounds.get(name) if isinstance(old_bounds, dict) else None
            if s.old is not None and old_layers[s.old]["content"] == keys[name][1] and isinstance(ob, dict) \
                    and set(ob) == {"bound", "baseline"}:
                bounds[name] = ob
            else:
                b = layer_bound(g, name, spec)
                bounds[name] = {"bound": b.bound, "baseline": b.baseline}

    whole = tiling == "baseline"
    from snnmap.passes.tiling import TileShape, baseline_shape, choose_shape

    def new_shape(name, m):
        pop, src, proj = _layer(g, name)
        if whole:
            b = layer_bound(g, name, spec)
            shape = baseline_shape(pop, b.signed_inputs if spec.axon_accumulates else src.size * src.replicas, spec)
            if shape is None:
                raise DesignRuleError(f"layer {name!r}: the whole input map does not fit a core (baseline tiling)")
            return shape
        return choose_shape(pop, src, proj, spec, deadline, m)

    def cut(name, shape, m):
        pop, src, proj = _layer(g, name)
        return cut_layer(name, pop, src, proj, shape, spec, m, whole)

    def tiles_of(name):
        s = st[name]
        if s.tiles is None:
            s.tiles = cut(name, s.shape, s.mult)
        return s.tiles

    fans: dict = {}

    def fan_to(name):
        """The fan-out of `name`'s producer towards `name`'s tiles."""
        src = source_of(g, name)
        if src not in fans:
            fans[src] = fan_out(g.nodes[src]["pop"], tiles_of(name), spec)
        return fans[src]

    with _timer(timings, "tiling"):
        for i in range(n - 1, -1, -1):
            name = order[i]
            s = st[name]
            o = old_layers[s.old] if s.old is not None else None
            nxt = order[i + 1] if i + 1 < n else None
            pop = g.nodes[name]["pop"]
            if nxt is None:
                s.mult, mh = None, ""
            elif st[nxt].tiles is None and s.old is not None and st[nxt].old == s.old + 1:
                s.mult, mh = _decode_mult(o, pop.size, f"{old.path}, META.info.incremental"), o["copies"]
            else:
                s.mult = fan_to(nxt).mult
                mh = _mult_hash(s.mult)
            # a last layer has no copies: the same as one copy of every neuron
            ones = _mult_hash(np.ones(pop.size, np.int64))
            s.mult_same = o is not None and (mh or ones) == (o["copies"] or ones)
            s.content_same = o is not None and o["content"] == keys[name][1]
            if o is not None:
                th, tw, cg, level, packed = o["shape"]
                s.shape = TileShape(th, tw, cg, level, bool(packed))
            if o is not None and s.content_same and s.mult_same:
                s.kept = s.layout_same = True
                continue
            if o is not None:
                try:
                    tiles = cut(name, s.shape, s.mult)
                    bad = next((t for t in tiles if t.axons > spec.axons_at(t.level)
                                or t.neurons > spec.neurons_at(t.level)), None)
                except DesignRuleError as e:
                    tiles, bad = None, str(e)
                if bad is not None:
                    why = bad if isinstance(bad, str) else (
                        f"tile {bad.index} needs {bad.axons} axons / {bad.neurons} neurons at fan-in level "
                        f"{bad.level}, over {spec.axons_at(bad.level)} / {spec.neurons_at(bad.level)}")
                    s.shape = new_shape(name, s.mult)
                    tiles = cut(name, s.shape, s.mult)
                    s.notes.append(f"re-tiled: the new {'copies' if s.content_same else 'weights'} do not fit "
                                   f"the old tile shape ({why})")
                s.tiles = tiles
                s.kept = (s.shape == TileShape(th, tw, cg, level, bool(packed)) and len(tiles) == len(o["tiles"])
                          and (not s.shape.packed or s.mult_same))
                s.layout_same = s.kept and _layout_hash(tiles) == o["layout"]
                if not s.mult_same:
                    s.notes.append("fan-out copies changed (its consumer's tiling asks for others)")
            else:
                s.shape = new_shape(name, s.mult)
                s.tiles = cut(name, s.shape, s.mult)
        cut_layers = {name: st[name].tiles for name in order if st[name].tiles is not None}
        drc.check_tiles(Tiling(cut_layers, {}), spec)

    # alignment of each layer's multicast blocks (its producer's fan-out towards it)
    align = {name: (old_layers[st[name].old]["align"] if st[name].tiles is None else fan_to(name).align)
             for name in order}
    first = np.cumsum([0] + [len(tiles_of(nm)) if st[nm].tiles is not None else len(old_layers[st[nm].old]["tiles"])
                             for nm in order])
    if spec.multicast:  # a kept layer whose producer's blocks now need another alignment moves
        for i, name in enumerate(order):
            s = st[name]
            if s.kept and not _blocks_hold(old.coords(s.old, int(first[i + 1] - first[i])), align[name], spec):
                s.kept = s.layout_same = False
                s.notes.append(f"moved: its producer's multicast blocks now need {align[name]}-aligned cores")
    n_total = int(first[-1])
    coords = np.full((n_total, 4), -1, np.int64)
    for i, name in enumerate(order):
        s = st[name]
        if s.kept:
            coords[first[i]:first[i + 1]] = old.coords(s.old, first[i + 1] - first[i])
    fresh = [i for i, name in enumerate(order) if not st[name].kept]
    board = None
    place_report: dict = {"placer": "kept"}
    with _timer(timings, "place"):
        if spec.multicast:
            if fresh:
                from snnmap.passes.place_blocks import place_blocks

                full = place_blocks([(int(first[i + 1] - first[i]), align[nm]) for i, nm in enumerate(order)], spec)
                kept_rows = coords[:, 0] >= 0
                if np.array_equal(full.coords[kept_rows], coords[kept_rows]):
                    coords = full.coords
                else:  # after every kept core, in the Morton order of the chips
                    code = _core_codes(coords[kept_rows], spec)
                    start = int(code.max()) + 1 if len(code) else 0
                    part = place_blocks([(int(first[i + 1] - first[i]), align[order[i]]) for i in fresh], spec, start)
                    rows = np.concatenate([np.arange(first[i], first[i + 1]) for i in fresh])
                    coords[rows] = part.coords
            place_report = {"placer": "blocks"}
        elif fresh or max_moves:
            coords, board, place_report = _place_fresh(
                g, order, st, old, first, coords, fresh, spec, chips, model, calibration, calibration_name,
                tiles_of, max_moves, seed, deadline, place_seconds, progress, timings)
    if board is None and not spec.multicast:
        b = rec["board"] or [1, 1]
        board = (max(b[0], int(coords[:, 0].max()) + 1 if n_total else 1), b[1])
    if (coords < 0).any():
        raise SnnmapError("internal: a tile was left unplaced")

    # cores: copied, recut in place, or routed anew
    with _timer(timings, "route and pack"):
        payloads: list[bytes] = []
        new_layers = []
        n_old = len(old_layers)
        for i, name in enumerate(order):
            s = st[name]
            nxt = order[i + 1] if i + 1 < n else None
            if nxt is None:
                dests_same = s.old is not None and s.old == n_old - 1
            else:
                t = st[nxt]
                dests_same = (s.old is not None and t.old == s.old + 1 and t.kept and t.layout_same
                              and not t.moved)
            dests_same = dests_same and s.kept and s.mult_same and not s.moved
            rows = range(int(first[i]), int(first[i + 1]))
            if s.tiles is None and dests_same and s.old == i:
                payloads += [old.cores[old.index[s.old, t]] for t in range(len(rows))]
                new_layers.append(old_layers[s.old])
                continue
            tiles = tiles_of(name)
            if dests_same:
                ptrs, dests = [], []
                for t, tile in enumerate(tiles):
                    ci = old.index[s.old, t]
                    core = old.image.cores[ci]  # its destination table, as the reader expanded it
                    if core.neurons != tile.neurons:
                        raise SnnmapError("destination arrays do not fit the core", where=f"{old.path}, CORE #{ci}")
                    ptrs.append(core.dest_ptr)
                    dests.append(core.dest)
            else:
                fo = fan_to(nxt) if nxt is not None else None
                ptrs, dests = route_tiles(tiles, fo, coords[first[i + 1]:first[i + 2]] if nxt else None, spec)
            for t, tile in enumerate(tiles):
                c = CoreImage(coord=tuple(int(v) for v in coords[rows[t]]), level=tile.level, tick=i + 1, layer=i,
                              tile=tile.index, axon_sign=tile.axon_sign, thresholds=tile.thresholds.astype(np.int32),
                              xbar=tile.xbar, xcol=tile.xcol, dest_ptr=ptrs[t], dest=dests[t])
                payloads.append(core_payload(c, spec))
            geometry, content = keys[name]
            new_layers.append(layer_record(name, geometry, content, s.shape, s.mult, align[name],
                                           _layout_hash(tiles), [_tile_hash(content, t) for t in tiles]))
        # the host: its destinations are kept while the first layer keeps its axons and slots
        s0 = st[order[0]]
        if s0.old == 0 and s0.kept and s0.layout_same and not s0.moved:
            host_ptr, host_dest = old.image.host_ptr, old.image.host_dest
        else:
            enc = g.nodes[source_of(g, order[0])]["pop"]
            host_ptr, host_dest = route_host(fan_to(order[0]), coords[:first[1]], enc.replicas, spec)

    from snnmap.convert import float_thresholds

    enc = model.encoder
    theta, sign = float_thresholds(enc.bn, model.k, model.B)
    info = dict(old.image.info)
    info.update({"model": model.name, "chips": len({(int(a), int(b)) for a, b in coords[:, :2]}),
                 "cores": n_total, "bounds": bounds, "tiling": tiling,
                 "incremental": {"version": RECORD_VERSION, "tiling": tiling,
                                 "board": None if spec.multicast else list(board), "layers": new_layers}})
    img = ChipImage(spec=spec, k=model.k, B=model.B, input_shape=model.input_shape, input_scale=model.input_scale,
                    ticks=n, layers=[{"name": nm, "tick": i + 1, "shape": list(g.nodes[nm]["pop"].shape),
                                      "tiles": int(first[i + 1] - first[i])} for i, nm in enumerate(order)],
                    encoder={"weights": enc.weights.astype(np.float64), "stride": enc.stride, "padding": enc.padding,
                             "theta": theta, "sign": sign},
                    classifier_w=model.classifier.weights, classifier_b=model.classifier.bias,
                    host_ptr=np.asarray(host_ptr, np.uint32), host_dest=np.asarray(host_dest, np.uint64),
                    cores=[], info=info)
    with _timer(timings, "write image"):
        data = pack_container(MAGIC, VERSION, [(b"META", meta_payload(img)), (b"HOST", host_payload(img))]
                              + [(b"CORE", p) for p in payloads])
    summary = _summary(order, st, old, coords, first, payloads, place_report)
    summary["timings_s"] = timings
    return IncrementalResult(data, summary, timings)


def _morton(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    code = np.zeros_like(np.asarray(x, np.int64))
    for b in range(16):
        code |= ((np.asarray(x) >> b) & 1) << (2 * b) | ((np.asarray(y) >> b) & 1) << (2 * b + 1)
    return code


def _summary(order, st, old: OldImage, coords, first, payloads, place_report) -> dict:
    """Per core: reused (byte for byte), rewritten (same layer and tile on the same core, other
    contents) or new; per layer the same counts and what happened to it."""
    by_coord = {tuple(int(v) for v in old.hdr[i, :4]): i for i in range(len(old.cores))}
    layers, totals = [], {"reused": 0, "rewritten": 0, "new": 0}
    for i, name in enumerate(order):
        s = st[name]
        counts = {"reused": 0, "rewritten": 0, "new": 0}
        for t, row in enumerate(range(int(first[i]), int(first[i + 1]))):
            ci = by_coord.get(tuple(int(v) for v in coords[row]))
            if ci is not None and old.cores[ci] == payloads[row]:
                counts["reused"] += 1
            elif ci is not None and s.old is not None and int(old.hdr[ci, 6]) == s.old and int(old.hdr[ci, 7]) == t:
                counts["rewritten"] += 1
            else:
                counts["new"] += 1
        status = ("new" if s.old is None else "changed" if not s.content_same
                  else "copies changed" if not s.mult_same else "unchanged")
        layers.append({"layer": name, "status": status, "tiles": int(first[i + 1] - first[i]), **counts,
                       "notes": s.notes})
        for k in totals:
            totals[k] += counts[k]
    kept = set(map(tuple, coords.tolist()))
    dropped = sum(1 for c in by_coord if c not in kept)
    return {"cores": len(payloads), **{f"cores_{k}": v for k, v in totals.items()}, "old_cores_dropped": dropped,
            "layers": layers, "placement": place_report}


def _local_traffic(g, order, first, tiles_of, pairs, counts):
    """Traffic (packets per image) between the tiles of the given consecutive layer pairs."""
    from snnmap.passes.traffic import pair_traffic

    names = {n for pair in pairs for n in pair}
    starts = {name: int(first[i]) for i, name in enumerate(order)}
    return pair_traffic(g, {n: tiles_of(n) for n in names}, starts, int(first[-1]), pairs, counts, "")


def _place_fresh(g, order, st, old, first, coords, fresh, spec, chips, model, calibration, calibration_name,
                 tiles_of, max_moves, seed, deadline, place_seconds, progress, timings):
    """New tiles onto free slots by CP-SAT windows with every kept tile fixed; then, with max_moves,
    a refinement that may move that many old tiles."""
    from snnmap.passes.place import make_board
    from snnmap.passes.place_cpsat import (
        LNS_SLOTS,
        WINDOW_TILES,
        Cost,
        PassReport,
        Placer,
        _candidates,
        _nearest,
    )
    from snnmap.passes.place_curve import curve_slots
    from snnmap.pipeline import WORK_PER_SECOND, _timer, default_place_seconds

    n_total = int(first[-1])
    b = old.record["board"] or [1, 1]
    if chips is None:
        need = -(-n_total // spec.cores_per_chip)
        w = max(b[0], int(coords[:, 0].max()) + 1 if (coords[:, 0] >= 0).any() else 1)
        chips = (max(w, -(-need // b[1])), b[1])
    board = make_board(spec, n_total, chips)
    kept_rows = np.flatnonzero(coords[:, 0] >= 0)
    if len(kept_rows) and ((coords[kept_rows, 0] >= board.chips_x).any() or (coords[kept_rows, 1] >= board.chips_y).any()):
        raise SnnmapError(f"--chips {board.chips_x}x{board.chips_y} is smaller than the board the old image uses")
    pos = np.full(n_total, -1, np.int64)
    pos[kept_rows] = board.slots_of(coords[kept_rows])
    curve = curve_slots(board)
    rank = np.empty(board.slots, np.int64)
    rank[curve] = np.arange(board.slots)
    taken = np.zeros(board.slots, bool)
    taken[pos[kept_rows]] = True
    for i in fresh:  # free slots nearest (along the curve) to the placed neighbours; old slots first
        name = order[i]
        rows = np.arange(first[i], first[i + 1])
        near = [pos[first[j]:first[j + 1]] for j in (i - 1, i + 1) if 0 <= j < len(order)]
        near = np.concatenate(near) if near else np.zeros(0, np.int64)
        near = near[near >= 0]
        anchor = float(np.median(rank[near])) if len(near) else float(rank[pos[pos >= 0]].max(initial=-1) + 1)
        hint = np.zeros(0, np.int64)
        if st[name].old is not None and st[name].old < len(old.record["layers"]):
            o = st[name].old
            hint = board.slots_of(old.coords(o, len(old.record["layers"][o]["tiles"])))
            hint = hint[~taken[hint]]
        free = np.flatnonzero(~taken)
        free = free[~np.isin(free, hint)]
        free = free[np.argsort(np.abs(rank[free] - anchor), kind="stable")]
        chosen = np.concatenate([hint, free])[:len(rows)]
        if len(chosen) < len(rows):
            raise SnnmapError(f"the board of {board.chips_x}x{board.chips_y} chips has no room for layer {name!r}")
        pos[rows] = chosen[np.argsort(rank[chosen], kind="stable")]
        taken[pos[rows]] = True
    counts = None
    if calibration is not None:
        from snnmap.passes.traffic import calibrated_counts

        counts = calibrated_counts(model, calibration)
    fresh_set = set(fresh)
    if max_moves:
        pairs = list(itertools.pairwise(order))
    else:
        pairs = [(order[i], order[i + 1]) for i in range(len(order) - 1) if i in fresh_set or i + 1 in fresh_set]
    with _timer(timings, "place: traffic"):
        traffic = _local_traffic(g, order, first, tiles_of, pairs, counts)
    placer = Placer(board, Cost(board, traffic, n_total), seed, deadline)
    new_rows = np.concatenate([np.arange(first[i], first[i + 1]) for i in fresh]) if fresh else np.zeros(0, np.int64)
    seconds = place_seconds if place_seconds is not None else default_place_seconds(max(len(new_rows), 1))
    budget = seconds * WORK_PER_SECOND
    rep = PassReport("windows (new tiles)")
    t0 = time.perf_counter()
    start_hops = placer.cost.spike_hops(pos)
    if len(new_rows) and len(traffic.src):
        chunks = new_rows[np.argsort(rank[pos[new_rows]], kind="stable")]
        chunks = [chunks[k:k + WINDOW_TILES] for k in range(0, len(chunks), WINDOW_TILES)]
        per = budget * (0.5 if max_moves else 1.0) / len(chunks)
        for chunk in chunks:
            used = np.zeros(board.slots, bool)
            used[pos] = True
            used[pos[chunk]] = False
            placer.solve(pos, chunk, _candidates(board, pos, chunk, np.flatnonzero(~used), 3), per, rep)
            if placer.cut_by_clock:
                break
    rep.seconds = time.perf_counter() - t0
    rep.spike_hops = placer.cost.spike_hops(pos)
    timings["place: windows (new tiles)"] = rep.seconds
    passes = [rep.to_dict()]
    moved_old = 0
    if max_moves:
        orig = pos.copy()
        old_rows = kept_rows
        ref = PassReport("refine (old tiles may move)")
        t0 = time.perf_counter()
        rng = np.random.default_rng(seed)
        pool = new_rows if len(new_rows) else np.arange(n_total)
        idle, left = 0, budget - rep.work
        while ref.work < left and idle < max(30, len(pool)) and not placer.cut_by_clock and n_total > 1:
            t = int(pool[rng.integers(len(pool))])
            region = _nearest(board, pos[t], LNS_SLOTS)
            occ = np.full(board.slots, -1, np.int64)
            occ[pos] = np.arange(n_total)
            free = occ[region]
            free = free[free >= 0]
            if len(free) < 1:
                idle += 1
                continue
            before_pos = pos.copy()
            before = placer.cost.spike_hops(pos)
            improved = placer.solve(pos, free, [region] * len(free), min(0.1, left - ref.work), ref)
            if improved:
                moved_now = int((pos[old_rows] != orig[old_rows]).sum())
                newly = moved_now - int((before_pos[old_rows] != orig[old_rows]).sum())
                gain = before - placer.cost.spike_hops(pos)
                if moved_now > max_moves or (newly > 0 and gain < MOVE_GAIN * before * newly):
                    pos[:] = before_pos
                    improved = False
            idle = 0 if improved else idle + 1
        moved_old = int((pos[old_rows] != orig[old_rows]).sum())
        ref.seconds = time.perf_counter() - t0
        ref.spike_hops = placer.cost.spike_hops(pos)
        timings["place: refine"] = ref.seconds
        passes.append(ref.to_dict())
        moved = set()
        for r in old_rows[pos[old_rows] != orig[old_rows]]:
            moved.add(int(np.searchsorted(first, r, side="right") - 1))
        for i in moved:
            st[order[i]].moved = True
            st[order[i]].notes.append("tiles moved by the refinement")
    report = {"placer": "cpsat (new tiles, kept tiles fixed)", "board": [board.chips_x, board.chips_y],
              "traffic": "edges touching new tiles" if not max_moves else "every edge",
              "spike_hops_before": start_hops, "spike_hops": placer.cost.spike_hops(pos),
              "old_tiles_moved": moved_old, "max_moves": max_moves, "passes": passes}
    return board.coords(pos), (board.chips_x, board.chips_y), report



# --- snnmap diff ---------------------------------------------------------------------------------
def _quality(img) -> dict:
    from snnmap.links import link_loads, spike_hops

    h, v = link_loads(img)
    return {"chips": len({c.coord[:2] for c in img.cores}), "cores": len(img.cores),
            "spike_hops": spike_hops(img), "max_link_load": float(max(h.max(initial=0.0), v.max(initial=0.0)))}


def _same_crossbar(a, b) -> bool:
    """Equal crossbars, compared through their distinct columns (one form per crossbar), not dense."""
    if a.xbar.shape[0] != b.xbar.shape[0] or len(a.xcol) != len(b.xcol):
        return False
    (xa, ia), (xb, ib) = a.distinct(), b.distinct()
    return np.array_equal(ia, ib) and np.array_equal(xa, xb)


def diff_images(old_path: str, new_path: str) -> dict:
    """Which cores changed between two images, and how: contents (axons, synapses, thresholds,
    level, layer or tile), destinations only, placement (a layer's tile on another core), added
    or removed; the bytes of the sections that differ; and both images' quality figures (spike-hops
    and link loads counted per route, as `snnmap report` does without a simulation)."""
    from snnmap.image.format import MAGIC, VERSION, read_image
    from snnmap.io.container import read_container

    imgs, secs = [], []
    for p in (old_path, new_path):
        imgs.append(read_image(p))
        secs.append(read_container(p, MAGIC, {VERSION}, "snnmap image")[1])
    a, b = imgs
    if a.spec != b.spec:
        note = f"the images are for different chips ({a.spec.name} and {b.spec.name})"
    else:
        note = ""

    def cores(img, sec):
        out = {}
        for c, (_, payload) in zip(img.cores, sec[2:]):
            out[c.coord] = (img.layers[c.layer]["name"], c.tile, c, payload)
        return out

    ca, cb = cores(a, secs[0]), cores(b, secs[1])
    where_a = {(v[0], v[1]): k for k, v in ca.items()}
    rows, bytes_changed = [], 0
    per_layer: dict = {}

    def bump(layer, key):
        per_layer.setdefault(layer, {"layer": layer, "unchanged": 0, "contents": 0, "destinations": 0, "moved": 0,
                                     "added": 0, "removed": 0})[key] += 1

    where_b = {(v[0], v[1]) for v in cb.values()}
    for coord in sorted(set(ca) | set(cb)):
        if coord not in cb:
            name, tile, _, payload = ca[coord]
            if (name, tile) not in where_b:
                rows.append({"chip": list(coord[:2]), "core": list(coord[2:]), "layer": name, "tile": tile,
                             "change": "removed"})
                bump(name, "removed")
            bytes_changed += len(payload)
            continue
        name, tile, c, payload = cb[coord]
        if coord in ca and ca[coord][3] == payload:
            bump(name, "unchanged")
            continue
        bytes_changed += len(payload)
        if coord in ca and ca[coord][:2] == (name, tile):
            o = ca[coord][2]
            same_config = (o.level, o.tick) == (c.level, c.tick) and np.array_equal(o.axon_sign, c.axon_sign) \
                and np.array_equal(o.thresholds, c.thresholds) and _same_crossbar(o, c)
            change = "destinations" if same_config else "contents"
        else:  # another tile sits here now (or the core was free)
            change = "moved" if (name, tile) in where_a else "added"
        row = {"chip": list(coord[:2]), "core": list(coord[2:]), "layer": name, "tile": tile, "change": change}
        if change == "moved":
            fro = where_a[name, tile]
            row["from"] = {"chip": list(fro[:2]), "core": list(fro[2:])}
        rows.append(row)
        bump(name, change)
    host_meta = [k for k, i in (("META", 0), ("HOST", 1)) if secs[0][i][1] != secs[1][i][1]]
    bytes_changed += sum(len(secs[1][i][1]) for i in (0, 1) if secs[0][i][1] != secs[1][i][1])
    counts = {k: sum(1 for r in rows if r["change"] == k) for k in ("contents", "destinations", "moved", "added",
                                                                     "removed")}
    order = [lay["name"] for lay in b.layers] + [lay["name"] for lay in a.layers if lay["name"] not in
                                                 {x["name"] for x in b.layers}]
    return {"old": old_path, "new": new_path, "note": note,
            "cores_unchanged": sum(1 for k, v in cb.items() if k in ca and ca[k][3] == v[3]),
            **{f"cores_{k}": v for k, v in counts.items()},
            "sections_changed": host_meta, "bytes_changed": bytes_changed,
            "bytes": {"old": sum(len(p) for _, p in secs[0]), "new": sum(len(p) for _, p in secs[1])},
            "layers": [per_layer[n] for n in order if n in per_layer],
            "quality": {"old": _quality(a), "new": _quality(b)}, "changed_cores": rows}

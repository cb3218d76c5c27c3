"""Export a paicore2 image as PAICORE configuration frames, and read such a directory back.

The directory (docs/paicore.md): manifest.json (layers, cores, frame offsets, the host's
scalars), host.arrays (encoder and classifier, snnmap's array codec, no pickle),
input_frames.bin (one spike-frame template per host destination), cores/*.bin (the config
frames of each used core), and, unless disabled, a .txt twin of every .bin.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from snnmap.chip import address
from snnmap.chip.spec import ChipSpec
from snnmap.errors import SnnmapError
from snnmap.io.files import require_regular
from snnmap.image.format import (
    ChipImage,
    CoreImage,
    _bad,
    factor_crossbar,
    image_to_bytes,
    parse_image,
)
from snnmap.image.format import _get as _field
from snnmap.io.arrays import pack_arrays, unpack_arrays
from snnmap.paicore import frames as F

FORMAT = "snnmap-paicore-frames"
VERSION = 1
HOST_CORE = (0, 0)  # on the output chip: readout slot f arrives at timeslot f // 1152, axon f % 1152
SINK_CORE = (0, 1)  # on the output chip: where a neuron without a destination sends (the host ignores it)
MAX_MANIFEST_BYTES = 64 << 20
MAX_CORE_WORDS = 3 + 3 + 1 + F.WORDS_PER_NEURON * F.NRAM_ADDRESSES + 1 + F.WORDS_PER_COLUMN * F.NRAM_ADDRESSES

# what a core of a stateless scatter-and-gather layer holds in every neuron record, besides its
# threshold and destination: deterministic, no random threshold, leak before the comparison,
# negative threshold never reached (saturation at -(2^29 - 1)), reset to 0
NEURON_CONSTANTS = {"voltage": 0, "bit_truncate": 0, "weight_det_stoch": 0, "leak_det_stoch": 0,
                    "leak_reversal_flag": 0, "threshold_neg": F.THRESHOLD_MAX, "threshold_neg_mode": 1,
                    "threshold_mask_ctrl": 0, "leak_post": 0, "reset_v": 0, "reset_mode": 0}


def check_spec(spec: ChipSpec, where: str) -> None:
    """Only a spec whose cores are PAICORE 2.0 offline cores in 1-bit mode can become frames."""
    need = [("axons_per_core", spec.axons_per_core == F.AXONS, f"== {F.AXONS}"),
            ("neurons_per_core", spec.neurons_per_core <= F.NRAM_ADDRESSES // F.WEIGHT_BITS,
             f"<= {F.NRAM_ADDRESSES // F.WEIGHT_BITS}"),
            ("weight_bits", spec.weight_bits == F.WEIGHT_BITS, f"== {F.WEIGHT_BITS}"),
            ("axon_accumulates", not spec.axon_accumulates, "false (1-bit axons)"),
            ("max_destinations", spec.max_destinations == 1, "== 1"),
            ("multicast", spec.multicast, "true"),
            ("mesh_w", spec.mesh_w == 32, "== 32"), ("mesh_h", spec.mesh_h == 32, "== 32"),
            ("core_x_bits", spec.core_x_bits == 5, "== 5"), ("core_y_bits", spec.core_y_bits == 5, "== 5"),
            ("chip_x_bits", spec.chip_x_bits == 5, "== 5"), ("chip_y_bits", spec.chip_y_bits == 5, "== 5"),
            ("axon_bits", spec.axon_bits == 11, "== 11"),
            ("fanin_max_level", spec.fanin_max_level <= 6, "<= 6 (LCN 64x)"),
            ("threshold_bits", spec.threshold_bits <= 29, "<= 29")]
    for name, ok, rule in need:
        if not ok:
            raise SnnmapError(f"chip {spec.name!r} is not a PAICORE 2.0 chip: {name} = {getattr(spec, name)!r}, "
                              f"frames need {rule} (compile with --chip paicore2)", where=where)


def _online(x: int, y: int) -> bool:
    return x >= 28 and y >= 28


def _neuron_fields(spec: ChipSpec, c: CoreImage, out_chip: tuple[int, int], where: str) -> dict:
    n = c.neurons
    counts = np.diff(c.dest_ptr.astype(np.int64))
    if n and counts.max() > 1:
        raise SnnmapError("a neuron has more than one destination; PAICORE holds one", where=where)
    words = np.zeros(n, np.uint64)
    has = counts == 1
    words[has] = c.dest[c.dest_ptr[:-1].astype(np.int64)[has]]
    is_host, cx, cy, x, y, low = address.decode(spec, words)
    mx, my = address.masks(spec, words)
    feat = np.where(is_host, low, 0)
    if (feat >= F.AXONS * F.TIMESLOTS).any():
        raise SnnmapError(f"a readout slot is >= {F.AXONS * F.TIMESLOTS}, beyond the output frame's "
                          "timeslot and axon", where=where)
    host_or_none = is_host | ~has
    cx = np.where(host_or_none, out_chip[0], cx)
    cy = np.where(host_or_none, out_chip[1], cy)
    x = np.where(is_host, HOST_CORE[0], np.where(has, x, SINK_CORE[0]))
    y = np.where(is_host, HOST_CORE[1], np.where(has, y, SINK_CORE[1]))
    mx, my = np.where(host_or_none, 0, mx), np.where(host_or_none, 0, my)
    axon = np.where(has, low, 0)
    thr = c.thresholds.astype(np.int64)
    return {**NEURON_CONSTANTS, "leak_v": np.where(thr < 0, -thr, 0), "threshold_pos": np.maximum(thr, 0),
            "addr_chip_x": cx, "addr_chip_y": cy, "addr_core_x": x, "addr_core_y": y,
            "addr_core_x_ex": mx, "addr_core_y_ex": my,
            "addr_axon": axon % F.AXONS, "tick_relative": axon // F.AXONS}


def _target_level(spec: ChipSpec, c: CoreImage, level_of: dict, where: str) -> int:
    if c.dest.size == 0 or (c.dest & address.HOST_FLAG).any():
        return 0
    words = address.expand(spec, c.dest)[1]
    keys = np.unique(words >> np.uint64(address.core_shift(spec)))
    levels = {level_of.get(int(k)) for k in keys}
    if len(levels) != 1 or None in levels:
        raise SnnmapError(f"the cores this core sends to use fan-in levels {sorted(v for v in levels if v is not None)}; "
                          "PAICORE's target_LCN register holds one", where=where)
    return levels.pop()


def core_frames(spec: ChipSpec, c: CoreImage, target_lcn: int, out_chip: tuple[int, int], where: str
                ) -> tuple[np.ndarray, dict]:
    """All configuration frames of one core, and the [start, end) word ranges of each frame kind."""
    chip_x, chip_y, x, y = c.coord
    L = c.level
    repeat = 1 << (L + 1)  # 2^(LCN + weight-width code) memory rows per neuron
    regs = {"weight_width": F.WEIGHT_WIDTH_2BIT, "LCN": L, "input_width": 0, "spike_width": 0,
            "num_dendrite": c.neurons * repeat, "pool_max": 0, "tick_wait_start": c.tick, "tick_wait_end": 1,
            "snn_en": 0, "target_LCN": target_lcn, "test_chip_addr": 0}
    hdr = lambda kind: F.header(kind, chip_x, chip_y, x, y)
    c1 = hdr(F.CONFIG1) | np.zeros(3, np.uint64)  # random seed 0: no stochastic mode is used
    c2 = hdr(F.CONFIG2) | F.core_registers(regs)
    rec = F.pack_neurons(_neuron_fields(spec, c, out_chip, where), c.neurons)
    nram = np.repeat(rec, repeat, axis=0).reshape(-1)
    c3 = np.concatenate([[hdr(F.CONFIG3) | np.uint64(F.package_payload(0, nram.size))], nram])
    # the chip's weight memory is dense (a row per axon, a column per neuron): signed once per
    # distinct column, then expanded
    w = (c.xbar.astype(np.int16) * c.axon_sign[:, None]).astype(np.int8)[:, np.asarray(c.xcol, dtype=np.int64)]
    wram = F.pack_weights(w, L)
    c4 = np.concatenate([[hdr(F.CONFIG4) | np.uint64(F.package_payload(0, wram.size))], wram])
    parts = {"config1": c1, "config2": c2, "config3": c3, "config4": c4}
    spans, pos = {}, 0
    for k, v in parts.items():
        spans[k] = [pos, pos + len(v)]
        pos += len(v)
    return np.concatenate(list(parts.values())).astype(np.uint64), spans


def input_frames(spec: ChipSpec, words: np.ndarray) -> np.ndarray:
    """Spike-frame templates (data 0) for host destination words: the host ORs in 1 where a spike goes."""
    _, cx, cy, x, y, low = address.decode(spec, words)
    mx, my = address.masks(spec, words)
    return F.header(F.WORK1, cx, cy, x, y, mx, my) | F.spike_payload(low % F.AXONS, low // F.AXONS)


def export_paicore(img: ChipImage, out_dir: str | os.PathLike, *, text: bool = True,
                   where: str = "<image>") -> dict:
    """Write the frames directory whole (built beside it, then renamed); returns the manifest."""
    spec = img.spec
    check_spec(spec, where)
    out = Path(out_dir)
    if out.exists():
        why = _not_an_export(out)
        if why:
            raise SnnmapError(f"exists and is neither empty nor an earlier frames export ({why}); not overwriting",
                              where=str(out))
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise SnnmapError(f"output folder {parent} does not exist", where=str(out))
    if img.ticks > F.TICK_WAIT_MAX:
        raise SnnmapError(f"{img.ticks} ticks exceed tick_wait_start's {F.TICK_WAIT_MAX}", where=where)
    used_chips = {c.coord[:2] for c in img.cores}
    out_chip = (max(cx for cx, _ in used_chips) + 1 if used_chips else 1, 0)
    if out_chip[0] >= 32:
        raise SnnmapError("no chip address is left for the output chip (x = 32)", where=where)
    level_of = {}
    for c in img.cores:
        key = int(address.encode(spec, *c.coord, 0)) >> address.core_shift(spec)
        level_of[key] = c.level
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    try:
        (tmp / "cores").mkdir()
        cores = []
        for i, c in enumerate(img.cores):
            cw = f"{where}, core #{i} at chip ({c.coord[0]},{c.coord[1]}) core ({c.coord[2]},{c.coord[3]})"
            if _online(*c.coord[2:]):
                raise SnnmapError("an online (learning) core cannot take offline frames", where=cw)
            tl = _target_level(spec, c, level_of, cw)
            words, spans = core_frames(spec, c, tl, out_chip, cw)
            name = f"cores/chip{c.coord[0]:02d}_{c.coord[1]:02d}_core{c.coord[2]:02d}_{c.coord[3]:02d}"
            _write_words(tmp / f"{name}.bin", words, text)
            cores.append({"file": f"{name}.bin", "chip": list(c.coord[:2]), "core": list(c.coord[2:]),
                          "layer": img.layers[c.layer]["name"], "tick": c.tick, "tile": c.tile, "lcn": c.level,
                          "neurons": c.neurons, "axons": c.axons, "nram_rows_per_neuron": 1 << (c.level + 1),
                          "frames": spans})
        in_words = input_frames(spec, img.host_dest)
        _write_words(tmp / "input_frames.bin", in_words, text)
        enc = img.encoder
        host = {"enc.weights": enc["weights"].astype(np.float64), "enc.theta": enc["theta"].astype(np.float64),
                "enc.sign": enc["sign"].astype(np.int8), "clf.weights": img.classifier_w.astype(np.float64),
                "clf.bias": img.classifier_b.astype(np.float64), "input.ptr": img.host_ptr.astype(np.uint32)}
        (tmp / "host.arrays").write_bytes(pack_arrays(host))
        manifest = {
            "format": FORMAT, "version": VERSION, "chip": spec.to_dict(), "k": img.k, "B": img.B,
            "input_shape": list(img.input_shape), "input_scale": img.input_scale, "ticks": img.ticks,
            "layers": img.layers, "encoder": {"stride": enc["stride"], "padding": enc["padding"]},
            "info": img.info,
            "input": {"file": "input_frames.bin", "frames": int(in_words.size), "lists": int(img.host_ptr.size - 1),
                      "list_pointers": "host.arrays: input.ptr",
                      "order": "list j*N + r is replica r of encoder neuron j, neurons in (h, w, c) order",
                      "data": "set bits [7:0] to 1 in each frame of a list whose replica fires"},
            "output": {"chip": list(out_chip), "core": list(HOST_CORE), "sink_core": list(SINK_CORE),
                       "slot": "timeslot * 1152 + axon", "features": int(img.classifier_w.shape[0])},
            "cores": cores,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
        _fsync_tree(tmp)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=parent))
            os.replace(out, old / "x")
            try:
                os.replace(tmp, out)
            except BaseException:  # a failure or a signal between the two renames
                os.replace(old / "x", out)  # put the earlier export back
                shutil.rmtree(old, ignore_errors=True)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


_EXPORT_FILES = {"manifest.json", "host.arrays", "cores"}
_FRAME_FILE = re.compile(r"[\w.-]+\.(bin|txt)")  # frames, also left from an earlier export (replaced)


def _not_an_export(out: Path) -> str:
    """Why `out` may not be replaced whole ('' if it is empty or holds only what an export writes):
    a folder that merely has a manifest.json (a web app's, say) or holds other files than frames
    (the image being exported, a subfolder) would be deleted with it."""
    if not out.is_dir():
        return "not a folder"
    names = {p.name for p in out.iterdir()}
    if not names:
        return ""
    if not (out / "manifest.json").is_file() or (out / "manifest.json").stat().st_size > MAX_MANIFEST_BYTES:
        return "no frames manifest.json"
    try:
        fmt = json.loads((out / "manifest.json").read_bytes().decode("utf-8")).get("format")
    except (OSError, UnicodeDecodeError, ValueError, RecursionError, AttributeError):
        fmt = None
    if fmt != FORMAT:
        return f"its manifest.json is not a {FORMAT!r} manifest"
    foreign = sorted(p.name for p in out.iterdir() if p.name not in _EXPORT_FILES
                     and not (_FRAME_FILE.fullmatch(p.name) and p.is_file() and not p.is_symlink()))
    if not foreign and (out / "cores").is_dir() and not (out / "cores").is_symlink():
        foreign = sorted(f"cores/{p.name}" for p in (out / "cores").iterdir()
                         if not (_FRAME_FILE.fullmatch(p.name) and p.is_file() and not p.is_symlink()))
    return f"it holds {foreign[0]!r}, which no export writes" if foreign else ""


def _write_words(path: Path, words: np.ndarray, text: bool) -> None:
    path.write_bytes(np.ascontiguousarray(words.astype("<u8")).tobytes())
    if text:
        path.with_suffix(".txt").write_bytes(F.to_text(words))


def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                os.fsync(fh.fileno())


# ---- reading back ---------------------------------------------------------------------------------

def _read_bytes(path: Path, limit: int, where: str) -> bytes:
    require_regular(path, "frame file")
    try:
        size = path.stat().st_size
        if size > limit:
            raise _bad(f"is {size} bytes, over the {limit} a valid file can hold", where)
        return path.read_bytes()
    except IsADirectoryError:
        raise _bad("is a directory, expected a file", where) from None
    except OSError as e:
        raise _bad(f"cannot read: {e.strerror or e}", where) from None


def _words(path: Path, limit_words: int, where: str) -> np.ndarray:
    data = _read_bytes(path, 8 * limit_words, where)
    if len(data) % 8:
        raise _bad(f"{len(data)} bytes is not a whole number of 64-bit frames (truncated?)", where)
    return np.frombuffer(data, dtype="<u8").astype(np.uint64)


def _inside(root: Path, rel: str, where: str) -> Path:
    if not rel or rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in rel.split("/")):
        raise _bad(f"file name {rel!r} is not a plain relative path", where)
    return root / rel


def read_frames(path: str | os.PathLike) -> ChipImage:
    """Decode a frames directory into the ChipImage it configures; every failure is one located line."""
    root = Path(path)
    where = str(root)
    mpath = root / "manifest.json"
    raw = _read_bytes(mpath, MAX_MANIFEST_BYTES, str(mpath))
    try:
        man = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as e:
        raise _bad(f"not valid JSON: {str(e)[:200]}", str(mpath)) from None
    mw = str(mpath)
    if _field(man, "format", str, mw) != FORMAT:
        raise _bad(f"format is not {FORMAT!r}", mw)
    if _field(man, "version", int, mw) != VERSION:
        raise _bad(f"version {man['version']} is not {VERSION}", mw)
    spec = ChipSpec.from_dict(_field(man, "chip", dict, mw), f"{mw}: chip")
    check_spec(spec, mw)
    layers = _field(man, "layers", list, mw)
    ticks = _field(man, "ticks", int, mw)
    names = {}
    for i, lay in enumerate(layers):
        names[_field(lay, "name", str, f"{mw}: layers[{i}]")] = i
    out = _field(man, "output", dict, mw)
    out_chip = _field(out, "chip", list, f"{mw}: output")
    if len(out_chip) != 2 or not all(isinstance(v, int) and 0 <= v < 32 for v in out_chip):
        raise _bad(f"output chip {out_chip!r} is not two 5-bit integers", mw)
    for key, want in (("core", HOST_CORE), ("sink_core", SINK_CORE)):
        if _field(out, key, list, f"{mw}: output") != list(want):
            raise _bad(f"output {key} must be {list(want)}", mw)
    out_chip = tuple(out_chip)

    hw = str(root / "host.arrays")
    host = unpack_arrays(_read_bytes(root / "host.arrays", 1 << 32, hw), hw)
    want = {"enc.weights", "enc.theta", "enc.sign", "clf.weights", "clf.bias", "input.ptr"}
    if set(host) != want:
        raise _bad(f"arrays {sorted(host)}, expected {sorted(want)}", hw)
    inp = _field(man, "input", dict, mw)
    iw = str(_inside(root, _field(inp, "file", str, f"{mw}: input"), mw))
    in_words = _words(Path(iw), 1 << 32, iw)
    host_dest = _spike_words(spec, in_words, iw)
    if _field(inp, "frames", int, f"{mw}: input") != in_words.size:
        raise _bad(f"the manifest announces {inp['frames']} input frames, the file holds {in_words.size}", iw)

    cores, targets = [], []
    entries = _field(man, "cores", list, mw)
    for ci, ent in enumerate(entries):
        ew = f"{mw}: cores[{ci}]"
        rel = _field(ent, "file", str, ew)
        fpath = _inside(root, rel, ew)
        layer_name = _field(ent, "layer", str, ew)
        if layer_name not in names:
            raise _bad(f"layer {layer_name!r} is not in the manifest's layers", ew)
        tile, n_ax = _field(ent, "tile", int, ew), _field(ent, "axons", int, ew)
        words = _words(fpath, MAX_CORE_WORDS, str(fpath))
        core, target = _decode_core(spec, words, names[layer_name], tile, n_ax, out_chip, str(fpath))
        said = (_field(ent, "chip", list, ew) + _field(ent, "core", list, ew), _field(ent, "lcn", int, ew),
                _field(ent, "neurons", int, ew), _field(ent, "tick", int, ew))
        if said != (list(core.coord), core.level, core.neurons, core.tick):
            raise _bad(f"the manifest says chip+core {said[0]}, LCN {said[1]}, {said[2]} neurons, tick {said[3]}; "
                       f"the frames configure {list(core.coord)}, LCN {core.level}, {core.neurons} neurons, "
                       f"tick {core.tick}", str(fpath))
        cores.append(core)
        targets.append(target)

    enc = {"weights": host["enc.weights"], "theta": host["enc.theta"], "sign": host["enc.sign"]}
    enc_meta = _field(man, "encoder", dict, mw)
    enc.update(stride=_field(enc_meta, "stride", int, mw), padding=_field(enc_meta, "padding", int, mw))
    shape = _field(man, "input_shape", list, mw)
    info = man.get("info", {})
    img = ChipImage(spec, _field(man, "k", int, mw), _field(man, "B", int, mw),
                    tuple(shape) if len(shape) == 3 else (0, 0, 0),
                    _field(man, "input_scale", float, mw), ticks, layers, enc, host["clf.weights"], host["clf.bias"],
                    host["input.ptr"], host_dest, cores, info if isinstance(info, dict) else {})
    # the image reader is the one place that knows every rule an image must keep: run it
    try:
        blob = image_to_bytes(img)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as e:
        raise _bad(f"does not form a valid image ({type(e).__name__}: {str(e)[:200]})", where) from None
    img = parse_image(blob, where)
    for ci, c in enumerate(img.cores):
        if c.tick != img.layers[c.layer]["tick"]:
            raise _bad(f"tick_wait_start {c.tick} differs from layer {img.layers[c.layer]['name']!r}'s tick",
                       str(_inside(root, entries[ci]["file"], mw)))
    level_of = {int(address.encode(spec, *c.coord, 0)) >> address.core_shift(spec): c.level for c in img.cores}
    for ci, c in enumerate(img.cores):
        cw = str(_inside(root, entries[ci]["file"], mw))
        want = _target_level(spec, c, level_of, cw)
        if targets[ci] != want:
            raise _bad(f"target_LCN {targets[ci]} differs from the fan-in level {want} of the cores it sends to", cw)
    return img


def _spike_words(spec: ChipSpec, words: np.ndarray, where: str) -> np.ndarray:
    kind, cx, cy, x, y, mx, my, payload = F.split_header(words)
    reserved, axon, slot, data = F.split_spike_payload(payload)
    for bad, what in ((kind != F.WORK1, "is not a spike frame (header 0x8)"),
                      (reserved != 0, "sets reserved payload bits [29:27]"),
                      (data != 0, "carries data; templates hold 0"),
                      (axon >= F.AXONS, f"names axon >= {F.AXONS}"),
                      (slot >= 1 << spec.bank_bits, f"names timeslot >= {1 << spec.bank_bits}")):
        if bad.any():
            raise _bad(f"frame #{int(np.argmax(bad))} {what}", where)
    return address.encode(spec, cx, cy, x, y, slot * F.AXONS + axon, mx, my)


def _decode_core(spec: ChipSpec, words: np.ndarray, layer: int, tile: int, n_ax: int,
                 out_chip: tuple[int, int], where: str) -> tuple[CoreImage, int]:
    if words.size < 8:
        raise _bad(f"{words.size} frames: fewer than the 8 a core's configuration needs (truncated?)", where)
    kind, cx, cy, x, y, rx, ry, payload = F.split_header(words)
    coord = (int(cx[0]), int(cy[0]), int(x[0]), int(y[0]))
    pos = 0

    def take(n: int, what: str) -> slice:
        nonlocal pos
        if pos + n > words.size:
            raise _bad(f"ends inside the {what} ({words.size} frames; truncated?)", where)
        s = slice(pos, pos + n)
        pos += n
        return s

    for kind_want, what, s in ((F.CONFIG1, "config I (random seed) frames", take(3, "config I frames")),
                               (F.CONFIG2, "config II (register) frames", take(3, "config II frames"))):
        if (kind[s] != kind_want).any():
            raise _bad(f"frame #{s.start + int(np.argmax(kind[s] != kind_want))} should be one of the {what}", where)
    if (payload[0:3] != 0).any():
        raise _bad("the random seed is not 0 (snnmap configures no stochastic mode)", where)
    regs = F.parse_registers(payload[3:6], where)
    expect = {"weight_width": F.WEIGHT_WIDTH_2BIT, "input_width": 0, "spike_width": 0, "pool_max": 0,
              "snn_en": 0, "tick_wait_end": 1}
    for k, v in expect.items():
        if regs[k] != v:
            raise _bad(f"register {k} = {regs[k]}, snnmap's stateless 1-bit mode needs {v}", where)
    L = regs["LCN"]
    if L > spec.fanin_max_level:
        raise _bad(f"LCN {L} exceeds the chip's fan-in level {spec.fanin_max_level}", where)
    if regs["target_LCN"] > 6:
        raise _bad(f"target_LCN {regs['target_LCN']} is outside 0..6", where)
    repeat = 1 << (L + 1)
    if regs["num_dendrite"] % repeat or regs["num_dendrite"] > F.NRAM_ADDRESSES:
        raise _bad(f"num_dendrite {regs['num_dendrite']} is not a multiple of {repeat} up to {F.NRAM_ADDRESSES}",
                   where)
    n = regs["num_dendrite"] // repeat
    s3 = take(1, "config III header")
    if kind[s3.start] != F.CONFIG3:
        raise _bad(f"frame #{s3.start} should be the config III (neuron memory) header", where)
    if int(payload[s3.start]) != F.package_payload(0, F.WORDS_PER_NEURON * n * repeat):
        raise _bad(f"config III header {int(payload[s3.start]):#x} does not announce {n} neurons x {repeat} "
                   "rows from address 0", where)
    nram = words[take(F.WORDS_PER_NEURON * n * repeat, "neuron memory")].reshape(n, repeat, 4)
    s4 = take(1, "config IV header")
    if kind[s4.start] != F.CONFIG4:
        raise _bad(f"frame #{s4.start} should be the config IV (weight memory) header", where)
    n_w = F.WORDS_PER_COLUMN * n * repeat
    if int(payload[s4.start]) != F.package_payload(0, n_w):
        raise _bad(f"config IV header {int(payload[s4.start]):#x} does not announce {n * repeat} weight "
                   "addresses from address 0", where)
    wram = words[take(n_w, "weight memory")]
    if pos != words.size:
        raise _bad(f"{words.size - pos} frames after the weight memory", where)
    heads = np.concatenate([np.arange(7), [s4.start]])
    for arr, what in ((cx, "chip x"), (cy, "chip y"), (x, "core x"), (y, "core y")):
        if (arr[heads] != arr[0]).any():
            raise _bad(f"the frames name more than one {what}", where)
    if (rx[heads] != 0).any() or (ry[heads] != 0).any():
        raise _bad("a configuration frame has a replication mask; each core is configured on its own", where)
    if regs["tick_wait_start"] < 1:
        raise _bad("tick_wait_start is 0: the core would never run", where)

    if (nram != nram[:, :1]).any():
        m = int(np.argmax((nram != nram[:, :1]).any(axis=(1, 2))))
        raise _bad(f"neuron {m}'s {repeat} memory rows differ", where)
    rec = nram[:, 0]
    if F.record_spare_bits(rec).any():
        raise _bad(f"neuron {int(np.argmax(F.record_spare_bits(rec)))} sets bits above bit 213", where)
    f = F.unpack_neurons(rec)
    for k, v in NEURON_CONSTANTS.items():
        if (f[k] != v).any():
            raise _bad(f"neuron {int(np.argmax(f[k] != v))}: {k} = {int(f[k][np.argmax(f[k] != v)])}, "
                       f"snnmap's stateless neurons use {v}", where)
    thr = f["threshold_pos"] - f["leak_v"]  # V + leak >= pos  <=>  V >= pos - leak (leak before comparison)
    if ((thr < -(1 << 31)) | (thr >= 1 << 31)).any():
        raise _bad("a threshold does not fit 32 bits", where)
    to_out = (f["addr_chip_x"] == out_chip[0]) & (f["addr_chip_y"] == out_chip[1])
    host = to_out & (f["addr_core_x"] == HOST_CORE[0]) & (f["addr_core_y"] == HOST_CORE[1])
    sink = to_out & (f["addr_core_x"] == SINK_CORE[0]) & (f["addr_core_y"] == SINK_CORE[1])
    if (to_out & ~host & ~sink).any():
        raise _bad(f"neuron {int(np.argmax(to_out & ~host & ~sink))} sends to the output chip but to neither "
                   "its readout core nor its sink core", where)
    plain = to_out & ((f["addr_core_x_ex"] != 0) | (f["addr_core_y_ex"] != 0))
    plain |= sink & ((f["addr_axon"] != 0) | (f["tick_relative"] != 0))
    if plain.any():
        raise _bad(f"neuron {int(np.argmax(plain))}: an output-chip destination with a replication mask or "
                   "a sink destination with an axon", where)
    if (f["addr_axon"] >= F.AXONS).any():
        raise _bad(f"neuron {int(np.argmax(f['addr_axon'] >= F.AXONS))} names axon >= {F.AXONS}", where)
    logical = f["tick_relative"] * F.AXONS + f["addr_axon"]
    if ((f["tick_relative"] >= 1 << spec.bank_bits) & ~host).any():
        raise _bad(f"a destination timeslot is >= {1 << spec.bank_bits}", where)
    dest = np.where(host, address.host_words(np.where(host, logical, 0)),
                    address.encode(spec, f["addr_chip_x"], f["addr_chip_y"], f["addr_core_x"], f["addr_core_y"],
                                   np.where(host, 0, logical), f["addr_core_x_ex"], f["addr_core_y_ex"]))
    keep = ~sink
    dest_ptr = np.zeros(n + 1, np.uint32)
    np.cumsum(keep, out=dest_ptr[1:])
    dest = dest[keep].astype(np.uint64)

    w = F.unpack_weights(wram, n, L)
    if (w == -2).any():
        r, m = np.argwhere(w == -2)[0]
        raise _bad(f"weight -2 at axon {int(r)} of neuron {int(m)}: snnmap's synapses are ternary", where)
    if not 0 <= n_ax <= w.shape[0]:
        raise _bad(f"manifest axons {n_ax} exceed the {w.shape[0]} of LCN {L}", where)
    if w[n_ax:].any():
        raise _bad(f"a synapse on axon {n_ax + int(np.argwhere(w[n_ax:])[0][0])}, beyond the manifest's "
                   f"{n_ax} axons", where)
    xbar, xcol = factor_crossbar(w[:n_ax])
    core = CoreImage(coord, L, regs["tick_wait_start"], layer, tile, np.ones(n_ax, np.int8),
                     thr.astype(np.int32), xbar, xcol, dest_ptr, dest)
    return core, regs["target_LCN"]

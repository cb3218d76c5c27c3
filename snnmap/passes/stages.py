"""Stages: a network larger than the chip (or board) runs as a sequence of configurations.

The tiles, in topological (layer) order, are cut into consecutive stages that each fit the board.
All neurons are stateless within the one time step, so any cut in layer order is exact: the host
runs a batch of images through stage 0, keeps the spikes that leave it, reconfigures the chip with
stage 1, replays those spikes into it, and so on.

Addressing (docs/image-format.md): a core's coordinates are unique within its stage. A neuron's
destination words name cores of its own stage as before; all its destinations in later stages are
replaced by one word to the host buffer (bit 63 set, low bits = a buffer slot), so a neuron never
has more words than before. The host's relay table lists, per slot, the words (and the stage of
each) it sends every spike of that slot to when that stage runs; the encoder's words carry a
stage each too. A slot is one distinct later-stage list of one tile (replicas share it: their
spikes add up in the slot as they would at the axons).

Routing reuses passes/route.py unchanged on a virtual board in which tile i is chip i, so every
word names its consumer tile; the words are then rewritten with the real per-stage coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from snnmap.chip import address
from snnmap.chip.spec import ChipSpec
from snnmap.errors import SnnmapError
from snnmap.passes.place import Board, Placement, sequential_slots
from snnmap.passes.route import Routes, _ranges, route
from snnmap.rows import csr_ids, first_index


def parse_stages(text: str | None) -> int | None:
    """--stages: None (no staging), 0 (auto: as few as fit) or a count >= 1."""
    if text is None:
        return None
    t = str(text).strip().lower()
    if t == "auto":
        return 0
    try:
        n = int(t, 10)
    except ValueError:
        raise SnnmapError(f"--stages {text!r} is neither 'auto' nor a positive integer") from None
    if not 1 <= n <= 1 << 15:
        raise SnnmapError(f"--stages {text!r} must be 'auto' or an integer in 1..{1 << 15}")
    return n


def cut(n_tiles: int, capacity: int, want: int, cut_cost: np.ndarray | None = None) -> np.ndarray:
    """Stage of each tile (tiles in layer order): `want` stages (0: as few as fit), each within
    `capacity` cores. cut_cost[p] (p = 1..n-1) prices a cut before tile p (the packets per image
    that then go through the host buffer); the cuts minimize its sum (dynamic programme), else the
    stages are as even as possible."""
    need = max(1, -(-n_tiles // capacity))
    if want == 0:
        want = need
    if want > 1 << 15:
        raise SnnmapError(f"--stages: {n_tiles} cores need {want} stages of {capacity} cores, over the image's "
                          f"limit of {1 << 15}")
    if want < need:
        raise SnnmapError(f"--stages {want}: {n_tiles} cores need at least {need} stages of {capacity} cores")
    if want > max(1, n_tiles):
        raise SnnmapError(f"--stages {want}: more stages than the {n_tiles} cores the network needs")
    if cut_cost is None or want == 1:
        size, extra = divmod(n_tiles, want)
        sizes = np.full(want, size, dtype=np.int64)
        sizes[:extra] += 1
        return np.repeat(np.arange(want, dtype=np.int64), sizes)
    from numpy.lib.stride_tricks import sliding_window_view

    c = np.zeros(n_tiles + 1)
    c[1:n_tiles] = cut_cost[1:n_tiles]
    # f[p]: least cost of the stages so far ending with a cut before tile p; a stage takes 1..capacity tiles
    w = min(capacity, n_tiles)
    f = np.full(n_tiles + 1, np.inf)
    f[0] = 0.0
    back = np.zeros((want, n_tiles + 1), dtype=np.int64)
    for k in range(want):
        win = sliding_window_view(np.r_[np.full(w, np.inf), f[:-1]], w)  # row p: f[p - w .. p - 1]
        arg = win.argmin(axis=1)
        f = win[np.arange(n_tiles + 1), arg] + c
        back[k] = np.arange(n_tiles + 1) - w + arg
    if not np.isfinite(f[n_tiles]):
        raise AssertionError("no cut fits")
    ends = [n_tiles]
    for k in range(want - 1, 0, -1):
        ends.append(int(back[k, ends[-1]]))
    sizes = np.diff(np.r_[0, ends[::-1]])
    return np.repeat(np.arange(want, dtype=np.int64), sizes)


def place(stage: np.ndarray, board: Board, traffic=None) -> Placement:
    """Each stage's tiles on the board: along the space-filling curve ordered by the traffic within
    the stage (place_curve.py), or without traffic in tile order (the sequential fill)."""
    from snnmap.passes.place_curve import place_curve
    from snnmap.passes.traffic import Traffic

    coords = np.zeros((len(stage), 4), dtype=np.int64)
    for s in np.unique(stage):
        idx = np.flatnonzero(stage == s)
        if traffic is None:
            slots = sequential_slots(len(idx), board)
        else:
            local = np.full(len(stage), -1, dtype=np.int64)
            local[idx] = np.arange(len(idx))
            inside = (local[traffic.src] >= 0) & (local[traffic.dst] >= 0)
            sub = Traffic(local[traffic.src[inside]], local[traffic.dst[inside]], traffic.packets[inside],
                          traffic.model)
            slots = place_curve(len(idx), board, sub)
        coords[idx] = board.coords(slots)
    return Placement(coords)


@dataclass
class StagedRoutes(Routes):
    host_stage: np.ndarray = None  # uint16 per host word
    relay_ptr: np.ndarray = None  # uint32 (slots + 1,)
    relay_dest: np.ndarray = None  # uint64 words in their stage's coordinates
    relay_stage: np.ndarray = None  # uint16 per relay word


def _virtual(spec: ChipSpec, n_tiles: int) -> ChipSpec:
    """A spec in which tile i is chip (i, 0) with one core: words then name their tile."""
    return replace(spec, mesh_w=1, mesh_h=1, core_x_bits=1, core_y_bits=1, chip_y_bits=1,
                   chip_x_bits=max(1, int(n_tiles).bit_length()), multicast=False, reserved_corner=0)


def cut_costs(traffic, n_tiles: int) -> np.ndarray:
    """Packets per image that a cut before tile p sends through the host: traffic from a tile
    before p to one at or after it."""
    d = np.zeros(n_tiles + 2)
    np.add.at(d, np.minimum(traffic.src, traffic.dst) + 1, traffic.packets)
    np.add.at(d, np.maximum(traffic.src, traffic.dst) + 1, -traffic.packets)
    return np.cumsum(d)[:n_tiles + 1]


def route_staged(g, tiling, order: list[str], stage: np.ndarray, placement: Placement,
                 spec: ChipSpec) -> StagedRoutes:
    if spec.multicast:
        raise SnnmapError("--stages serves chips without multicast for now (the block placer fixes each "
                          "layer's cores across the whole chip)")
    n = len(stage)
    vspec = _virtual(spec, n)
    vcoords = np.zeros((n, 4), dtype=np.int64)
    vcoords[:, 0] = np.arange(n)
    vr = route(g, tiling, Placement(vcoords), vspec)
    coords = placement.coords

    def real(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Virtual words -> (real words, consumer tile)."""
        _, tile, _, _, _, axon = address.decode(vspec, words)
        c = coords[tile]
        return address.encode(spec, c[:, 0], c[:, 1], c[:, 2], c[:, 3], axon), tile

    hw, htile = real(vr.host_dest)
    tile_ptr, tile_dest = [], []
    relay_ptr, relay_dest, relay_stage = [np.zeros(1, np.int64)], [], []
    n_slots, n_relay = 0, 0
    for i, (ptr, words) in enumerate(zip(vr.tile_ptr, vr.tile_dest)):
        is_host = (words & address.HOST_FLAG) != 0
        if is_host.all():  # the last layer: readout words stay
            tile_ptr.append(ptr)
            tile_dest.append(words)
            continue
        rw, ctile = real(words)
        later = stage[ctile] > stage[i]
        if (stage[ctile] < stage[i]).any():
            raise AssertionError("a tile feeds an earlier stage")
        ptr = ptr.astype(np.int64)
        owner = np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))
        # later-stage words of each neuron, as a list; equal lists share one buffer slot
        lcount = np.bincount(owner[later], minlength=len(ptr) - 1)
        lptr = np.zeros(len(ptr), dtype=np.int64)
        np.cumsum(lcount, out=lptr[1:])
        has = lcount > 0
        ids = csr_ids(lptr, words[later])  # virtual words: unique across stages
        slot = np.full(len(ptr) - 1, -1, dtype=np.int64)
        if has.any():
            uniq, dense = np.unique(ids[has], return_inverse=True)
            slot[has] = n_slots + dense.ravel()
            firsts = np.flatnonzero(has)[first_index(dense.ravel())]
            optr, idx = _ranges(lptr, firsts)  # one relay list per slot, in slot order
            relay_dest.append(rw[later][idx])
            relay_stage.append(stage[ctile[later][idx]])
            relay_ptr.append(optr[1:] + n_relay)
            n_relay += int(optr[-1])
            n_slots += len(uniq)
        # the neuron's list: its same-stage words in order, then its slot's host word
        kc = np.bincount(owner[~later], minlength=len(ptr) - 1)
        nptr = np.zeros(len(ptr), dtype=np.int64)
        np.cumsum(kc + has, out=nptr[1:])
        out = np.zeros(int(nptr[-1]), dtype=np.uint64)
        ko = owner[~later]
        out[nptr[ko] + np.arange(len(ko)) - (np.cumsum(kc) - kc)[ko]] = rw[~later]
        out[nptr[1:][has] - 1] = address.host_words(slot[has])
        tile_ptr.append(nptr.astype(np.uint32))
        tile_dest.append(out)
    return StagedRoutes(tile_ptr, tile_dest, vr.host_ptr, hw.astype(np.uint64),
                        host_stage=stage[htile].astype(np.uint16),
                        relay_ptr=np.concatenate(relay_ptr).astype(np.uint32),
                        relay_dest=(np.concatenate(relay_dest) if relay_dest else np.zeros(0)).astype(np.uint64),
                        relay_stage=(np.concatenate(relay_stage) if relay_stage else np.zeros(0)).astype(np.uint16))


def config_bits(spec: ChipSpec, axons: int, neurons: int, words: int) -> int:
    """Configuration bits of one core (the model of docs/chips.md): its crossbar (weight_bits per
    synapse of its logical axons x neurons), one sign bit per axon, a threshold per neuron, its
    destination words at the spec's address width, and three 64-bit register frames."""
    return (axons * neurons * spec.weight_bits + axons + neurons * spec.threshold_bits
            + words * address.address_bits(spec) + 3 * 64)


def attach(image, stage: np.ndarray, routes: StagedRoutes) -> None:
    """Mark an assembled image as staged: a stage per core, the host's stage words and relay."""
    n = int(stage.max()) + 1 if len(stage) else 1
    for c, s in zip(image.cores, stage):
        c.stage = int(s)
    if n > 1:
        image.stages = n
        image.host_stage = routes.host_stage
        image.relay_ptr, image.relay_dest, image.relay_stage = routes.relay_ptr, routes.relay_dest, routes.relay_stage
    image.info["stages"] = n


def stage_config_bits(image) -> np.ndarray:
    """Configuration bits of each stage (config_bits summed over its cores)."""
    bits = np.zeros(max(image.stages, 1), dtype=np.float64)
    for c in image.cores:
        bits[c.stage] += config_bits(image.spec, c.axons, c.neurons, len(c.dest))
    return bits


def summary(image, board: Board) -> dict:
    """Staged mapping against a multi-chip board: the facts that need no inputs (the modeled time
    and energy of both come from the simulator, benchmarks/bench_stages.py)."""
    spec = image.spec
    n = len(image.cores)
    bits = stage_config_bits(image)
    chips = max(1, -(-n // spec.usable_cores))
    fits = chips <= (1 << spec.chip_x_bits) * (1 << spec.chip_y_bits)
    return {"stages": image.stages, "cores_per_stage": np.bincount([c.stage for c in image.cores],
                                                                   minlength=image.stages).tolist(),
            "host_buffer_slots": 0 if image.relay_ptr is None else len(image.relay_ptr) - 1,
            "config_bits_per_stage": bits.tolist(),
            "reconfiguration_ms_per_batch": float(bits.sum() / spec.config_bits_per_s * 1e3),
            "config_bits_per_s": spec.config_bits_per_s, "usable_cores": spec.usable_cores,
            "board_alternative": {"chips": chips, "addressable": fits,
                                  "board": _board_shape(chips, spec) if fits else None}}


def _board_shape(chips: int, spec: ChipSpec) -> list[int]:
    """A board of `chips`: a row where the chip address allows (the default board), else near-square."""
    if chips <= 1 << spec.chip_x_bits:
        return [chips, 1]
    w = min(1 << spec.chip_x_bits, max(1, int(np.ceil(np.sqrt(chips)))))
    return [w, -(-chips // w)]

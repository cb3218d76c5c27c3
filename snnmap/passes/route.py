"""Routing: fill in every neuron's destination words from the fan-out plans and the placement.

A source neuron's destinations are the (tile, axon) places of the next layer that read it, or on
a multicast chip the aligned blocks of tiles (fanout.py); its copies share them out. On a chip
whose axons add events, all replicas of a neuron send to the same axons (their spikes add up
there); where axons OR spikes, replica r goes r axons further. The last layer sends to the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from snnmap.chip import address
from snnmap.chip.spec import ChipSpec
from snnmap.ir import chip_layers, source_of
from snnmap.passes.fanout import FanOut
from snnmap.passes.place import Placement
from snnmap.passes.tiling import Tiling, demorton


@dataclass
class Routes:
    tile_ptr: list[np.ndarray]  # per tile (all_tiles order): uint32 (neurons + 1,)
    tile_dest: list[np.ndarray]  # per tile: uint64 destination words
    host_ptr: np.ndarray  # per encoder ANN neuron (per (neuron, replica) where axons OR spikes)
    host_dest: np.ndarray


def block_masks(free: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replication masks (x, y) of a block whose Morton-code bits `free` are free."""
    return demorton(free)


def _ranges(ptr: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR of the rows ptr[k]..ptr[k+1] for each k in keys: (out_ptr, row indices)."""
    cnt = ptr[keys + 1] - ptr[keys]
    out_ptr = np.zeros(len(keys) + 1, dtype=np.int64)
    np.cumsum(cnt, out=out_ptr[1:])
    idx = np.repeat(ptr[keys] - out_ptr[:-1], cnt) + np.arange(out_ptr[-1])
    return out_ptr, idx


def _words(fo: FanOut, coords: np.ndarray, spec: ChipSpec, idx: np.ndarray, rep: np.ndarray | None) -> np.ndarray:
    """Words of the pieces idx, replica rep (None: all replicas share the axon)."""
    c = coords[fo.tile[idx]]
    mx, my = block_masks(fo.free[idx])
    axon = fo.axon[idx] if rep is None else fo.axon[idx] + rep
    return address.encode(spec, c[:, 0], c[:, 1], c[:, 2], c[:, 3], axon, mx, my)


def _xptr(fo: FanOut) -> np.ndarray:
    n_src = len(fo.mult)
    xptr = np.zeros(n_src + 1, dtype=np.int64)
    np.cumsum(np.bincount(fo.src, minlength=n_src), out=xptr[1:])
    return xptr


def route_host(fo: FanOut, coords: np.ndarray, replicas: int, spec: ChipSpec) -> tuple[np.ndarray, np.ndarray]:
    """The host encoder's destination table: every piece of each neuron, no copies. coords: the
    first layer's tiles."""
    xptr, n_src = _xptr(fo), len(fo.mult)
    if spec.axon_accumulates:
        ptr, idx = _ranges(xptr, np.arange(n_src))
        return ptr.astype(np.uint32), _words(fo, coords, spec, idx, None).astype(np.uint64)
    keys = np.repeat(np.arange(n_src), replicas)  # one list per (neuron, replica), replica r at axon + r
    ptr, idx = _ranges(xptr, keys)
    rep = np.repeat(np.tile(np.arange(replicas), n_src), np.diff(ptr))
    return ptr.astype(np.uint32), _words(fo, coords, spec, idx, rep).astype(np.uint64)


def route_tiles(tiles: list, fo: FanOut | None, coords: np.ndarray | None,
                spec: ChipSpec) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Destination tables of one layer's tiles; fo None: the last layer, read out by the host.
    coords: the next layer's tiles."""
    ptrs, dests = [], []
    xptr = _xptr(fo) if fo is not None else None
    for t in tiles:
        if fo is None:
            ptrs.append(np.arange(t.neurons + 1, dtype=np.uint32))
            dests.append(address.host_words(t.neuron_src))
            continue
        # copy j of neuron x sends the pieces of x ranked j*D .. j*D+D-1 (D = max_destinations)
        first = xptr[t.neuron_src] + t.neuron_copy * spec.max_destinations
        cnt = np.minimum(xptr[t.neuron_src + 1] - first, spec.max_destinations).clip(min=0)
        ptr = np.zeros(t.neurons + 1, dtype=np.int64)
        np.cumsum(cnt, out=ptr[1:])
        idx = np.repeat(first - ptr[:-1], cnt) + np.arange(int(ptr[-1]))
        d = _words(fo, coords, spec, idx, None if spec.axon_accumulates else np.repeat(t.neuron_rep, cnt))
        ptrs.append(ptr.astype(np.uint32))
        dests.append(d.astype(np.uint64))
    return ptrs, dests


def route(g: nx.DiGraph, tiling: Tiling, placement: Placement, spec: ChipSpec) -> Routes:
    order = chip_layers(g)
    start, n = {}, 0
    for name in order:
        start[name] = n
        n += len(tiling.layers[name])
    tile_ptr, tile_dest = [], []
    host_ptr = host_dest = None
    by_src = {source_of(g, name): name for name in order}
    for name in [source_of(g, order[0])] + order:
        nxt = by_src.get(name)
        fo = tiling.fanout.get(name) if nxt is not None else None
        coords = placement.coords[start[nxt]:start[nxt] + len(tiling.layers[nxt])] if fo is not None else None
        if name not in start:
            host_ptr, host_dest = route_host(fo, coords, g.nodes[name]["pop"].replicas, spec)
            continue
        ptrs, dests = route_tiles(tiling.layers[name], fo, coords, spec)
        tile_ptr += ptrs
        tile_dest += dests
    return Routes(tile_ptr, tile_dest, host_ptr, host_dest)

"""Routing, simplest correct version: fill in each neuron's destination words.

A source ANN neuron's destinations are every (tile, signed axon) of the next layer that uses it;
all its replicas share them (their spikes add up at the axon). The last layer sends to the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from snnmap.chip import address
from snnmap.chip.spec import ChipSpec
from snnmap.ir import chip_layers, source_of
from snnmap.passes.place import Placement
from snnmap.passes.tiling import Tiling


@dataclass
class Routes:
    tile_ptr: list[np.ndarray]  # per tile (all_tiles order): uint32 (neurons + 1,)
    tile_dest: list[np.ndarray]  # per tile: uint64 destination words
    host_ptr: np.ndarray  # per encoder ANN neuron
    host_dest: np.ndarray


def _csr_by_source(n_src: int, src: np.ndarray, words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((words, src))
    ptr = np.zeros(n_src + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n_src), out=ptr[1:])
    return ptr, words[order]


def _expand(ptr: np.ndarray, words: np.ndarray, neuron_src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-neuron slices of a per-ANN-neuron CSR, as a CSR of its own."""
    cnt = ptr[neuron_src + 1] - ptr[neuron_src]
    out_ptr = np.zeros(len(neuron_src) + 1, dtype=np.int64)
    np.cumsum(cnt, out=out_ptr[1:])
    idx = np.repeat(ptr[neuron_src] - out_ptr[:-1], cnt) + np.arange(out_ptr[-1])
    return out_ptr.astype(np.uint32), words[idx].astype(np.uint64)


def route(g: nx.DiGraph, tiling: Tiling, placement: Placement, spec: ChipSpec) -> Routes:
    order = chip_layers(g)
    tiles = tiling.all_tiles(order)
    coord_of = {(t.layer, t.index): placement.coords[i] for i, t in enumerate(tiles)}
    # incoming[L] = CSR over the source population of L: which words reach L's tiles
    incoming = {}
    for name in order:
        src = g.nodes[source_of(g, name)]["pop"]
        srcs, words = [], []
        for t in tiling.layers[name]:
            cx, cy, x, y = coord_of[(t.layer, t.index)]
            srcs.append(t.axon_src)
            words.append(address.encode(spec, cx, cy, x, y, np.arange(t.axons)))
        incoming[name] = _csr_by_source(src.size, np.concatenate(srcs), np.concatenate(words))
    tile_ptr, tile_dest = [], []
    for li, name in enumerate(order):
        nxt = order[li + 1] if li + 1 < len(order) else None
        for t in tiling.layers[name]:
            if nxt is None:
                n = t.neurons
                tile_ptr.append(np.arange(n + 1, dtype=np.uint32))
                tile_dest.append(address.host_words(t.neuron_src))
            else:
                p, d = _expand(*incoming[nxt], t.neuron_src)
                tile_ptr.append(p)
                tile_dest.append(d)
    enc_ptr, enc_words = incoming[order[0]]
    return Routes(tile_ptr, tile_dest, enc_ptr.astype(np.uint32), enc_words.astype(np.uint64))

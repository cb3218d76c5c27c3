"""Link loads and spike-hops of an image: every word routed X then Y over the board's global grid.

A multicast word (paicore2) travels a tree: the union of the X-then-Y routes from its source to
the cores of its block, each link of the union carrying the word once (tree_segments). For an
aligned block of w x h cores reached from outside, that is the hops to the block's columns along
the source's row plus, in each of the w columns, the hops from the source's row through the
block: at least w x h hops, against w x h x (distance) if each core were sent its own copy.
PAICORE's own quadtree routers are not modelled; the mesh model keeps one hop count for both
presets (address.route_hops is the one-destination case).
"""

from __future__ import annotations

import numpy as np

from snnmap.chip import address
from snnmap.image.format import ChipImage


def _traffic(img: ChipImage, per_core_weight: np.ndarray | None):
    """Per core with chip destinations: (index, packets per word, word of each destination,
    cx, cy, x, y of each destination core). A multicast word is expanded to the cores of its
    block; `word` says which destinations one word serves (they share one delivery tree)."""
    for i, c in enumerate(img.cores):
        if len(c.dest) == 0:
            continue
        words = c.dest[(c.dest & address.HOST_FLAG) == 0]
        if not len(words):
            continue
        if img.spec.multicast:
            word, words = address.expand(img.spec, words)
        else:
            word = np.arange(len(words))
        _, cx, cy, x, y, _ = address.decode(img.spec, words)
        w = 1.0 if per_core_weight is None else float(per_core_weight[i]) / max(c.neurons, 1)
        yield i, w, word, cx, cy, x, y


def tree_segments(sx, sy, word, dx, dy) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """The delivery tree of each word, as the union of the X-then-Y routes from its source to
    each of its destination cores (links shared by destinations carry the word once): one
    horizontal segment on the source's row spanning the source and every destination column,
    and per destination column one vertical segment spanning the source's row and that column's
    destinations. A unicast word is one X-then-Y route. All coordinates on the board's global
    grid; sx, sy per destination (the word's source). Returns ((word, row, lo, hi), (word,
    column, lo, hi)) per segment."""
    word, sx, sy, dx, dy = (np.asarray(v, np.int64) for v in (word, sx, sy, dx, dy))
    if len(word) == 0:
        z = np.zeros(0, np.int64)
        return (z, z, z, z), (z, z, z, z)
    o = np.argsort(word, kind="stable")
    word, sx, sy, dx, dy = word[o], sx[o], sy[o], dx[o], dy[o]
    first = np.flatnonzero(np.r_[True, word[1:] != word[:-1]])
    h = (word[first], sy[first], np.minimum(sx[first], np.minimum.reduceat(dx, first)),
         np.maximum(sx[first], np.maximum.reduceat(dx, first)))
    o = np.lexsort((dx, word))
    word, sy, dx, dy = word[o], sy[o], dx[o], dy[o]
    first = np.flatnonzero(np.r_[True, (word[1:] != word[:-1]) | (dx[1:] != dx[:-1])])
    v = (word[first], dx[first], np.minimum(sy[first], np.minimum.reduceat(dy, first)),
         np.maximum(sy[first], np.maximum.reduceat(dy, first)))
    return h, v


def segment_hops(spec, h, v) -> np.ndarray:
    """Hops per segment: its links, a chip-to-chip link counting chip_link_hops (as route_hops)."""
    extra = spec.chip_link_hops - 1
    hh = h[3] - h[2] + (h[3] // spec.mesh_w - h[2] // spec.mesh_w) * extra
    vv = v[3] - v[2] + (v[3] // spec.mesh_h - v[2] // spec.mesh_h) * extra
    return np.concatenate([hh, vv])


def link_loads(img: ChipImage, per_core_weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(H, V): H[y, x] packets per image on the link between cores (x, y) and (x+1, y), V[y, x] on
    the link between (x, y) and (x, y+1), over the board's global grid (chips side by side).
    Every word travels its delivery tree (tree_segments: X-then-Y routes, a multicast word's
    shared links loaded once).

    Without weights every destination word counts once (routes); with per_core_weight (spikes
    per image of each core) a word carries its core's spikes divided evenly among its neurons.
    """
    spec = img.spec
    chips_x = 1 + max((c.coord[0] for c in img.cores), default=0)
    chips_y = 1 + max((c.coord[1] for c in img.cores), default=0)
    hs, vs = [], []
    for i, w, word, cx, cy, x, y in _traffic(img, per_core_weight):
        c = img.cores[i]
        n = len(cx)
        h, v = tree_segments(np.full(n, c.coord[0] * spec.mesh_w + c.coord[2]),
                             np.full(n, c.coord[1] * spec.mesh_h + c.coord[3]), word,
                             cx * spec.mesh_w + x, cy * spec.mesh_h + y)
        hs.append((h[2], h[1], h[3], h[1], np.full(len(h[0]), w)))
        vs.append((v[1], v[2], v[1], v[3], np.full(len(v[0]), w)))
    cols = [np.concatenate(p) for p in zip(*(hs + vs))] if hs else [np.zeros(0, np.int64)] * 5
    return grid_link_loads(chips_x * spec.mesh_w, chips_y * spec.mesh_h, *cols)


def grid_link_loads(width: int, height: int, sx, sy, dx, dy, w) -> tuple[np.ndarray, np.ndarray]:
    """(H, V) loads of packets routed X then Y on a width x height grid (dimension-order routing,
    deadlock-free on a mesh): H[y, x] on the link (x, y)-(x+1, y), V[y, x] on (x, y)-(x, y+1)."""
    sx, sy, dx, dy = (np.asarray(v, np.int64) for v in (sx, sy, dx, dy))
    w = np.broadcast_to(np.asarray(w, np.float64), sx.shape)
    hd = np.zeros((height, width + 1))
    vd = np.zeros((height + 1, width))
    lo, hi = np.minimum(sx, dx), np.maximum(sx, dx)
    np.add.at(hd, (sy, lo), w)
    np.add.at(hd, (sy, hi), -w)
    lo, hi = np.minimum(sy, dy), np.maximum(sy, dy)
    np.add.at(vd, (lo, dx), w)
    np.add.at(vd, (hi, dx), -w)
    return np.cumsum(hd, axis=1)[:, :width - 1], np.cumsum(vd, axis=0)[:height - 1, :]


def spike_hops(img: ChipImage, per_core_weight: np.ndarray | None = None, seed: int | None = None) -> float:
    return float(spike_hops_per_core(img, per_core_weight, seed).sum())


def spike_hops_per_core(img: ChipImage, per_core_weight: np.ndarray | None = None,
                        seed: int | None = None) -> np.ndarray:
    """Packets x hops per image of the words each core sends, each word over its delivery tree
    (tree_segments; a unicast word: X then Y, a chip-to-chip link counting chip_link_hops),
    weighted like link_loads. With a seed, the same traffic on a random placement: the cores'
    positions shuffled over the same slots (a multicast word then reaches scattered cores)."""
    spec = img.spec
    coords = np.array([c.coord for c in img.cores], dtype=np.int64).reshape(-1, 4)
    # a staged image repeats coordinates across stages: keys carry the stage, and a random
    # placement shuffles the cores within each stage
    stage = np.array([c.stage for c in img.cores], dtype=np.uint64)
    shift = np.uint64(address.address_bits(spec) - address.core_shift(spec))
    keys = address.encode(spec, coords[:, 0], coords[:, 1], coords[:, 2], coords[:, 3], 0) >> np.uint64(
        address.core_shift(spec)) | stage << shift
    order = np.argsort(keys)
    place = coords
    if seed is not None:
        rng = np.random.default_rng(seed)
        perm = np.arange(len(coords))
        for s in np.unique(stage):
            idx = np.flatnonzero(stage == s)
            perm[idx] = idx[rng.permutation(len(idx))]
        place = coords[perm]
    gx = place[:, 0] * spec.mesh_w + place[:, 2]
    gy = place[:, 1] * spec.mesh_h + place[:, 3]
    total = np.zeros(len(img.cores))
    for i, w, word, cx, cy, x, y in _traffic(img, per_core_weight):
        dkeys = address.encode(spec, cx, cy, x, y, 0) >> np.uint64(address.core_shift(spec)) | stage[i] << shift
        dst = order[np.searchsorted(keys[order], dkeys)]
        n = len(dst)
        h, v = tree_segments(np.full(n, gx[i]), np.full(n, gy[i]), word, gx[dst], gy[dst])
        total[i] = w * float(segment_hops(spec, h, v).sum())
    return total

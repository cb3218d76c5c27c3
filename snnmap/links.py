"""Mesh link loads of an image: every destination routed X then Y over the board's global grid."""

from __future__ import annotations

import numpy as np

from snnmap.chip import address
from snnmap.image.format import ChipImage


def _traffic(img: ChipImage, per_core_weight: np.ndarray | None):
    """Per core with chip destinations: (index, packets per destination, unicast words, cx, cy, x,
    y). A multicast word counts as one packet to every core of its block (as if unicast: an upper
    bound on the hops of the chip's multicast tree)."""
    for i, c in enumerate(img.cores):
        if len(c.dest) == 0:
            continue
        words = c.dest[(c.dest & address.HOST_FLAG) == 0]
        if not len(words):
            continue
        if img.spec.multicast:
            words = address.expand(img.spec, words)[1]
        _, cx, cy, x, y, _ = address.decode(img.spec, words)
        w = 1.0 if per_core_weight is None else float(per_core_weight[i]) / max(c.neurons, 1)
        yield i, w, words, cx, cy, x, y


def link_loads(img: ChipImage, per_core_weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(H, V): H[y, x] packets per image on the link between cores (x, y) and (x+1, y), V[y, x] on
    the link between (x, y) and (x, y+1), over the board's global grid (chips side by side).

    Without weights every destination counts once (routes); with per_core_weight (spikes per image
    of each core) a destination carries its core's spikes divided evenly among its neurons.
    """
    spec = img.spec
    chips_x = 1 + max((c.coord[0] for c in img.cores), default=0)
    chips_y = 1 + max((c.coord[1] for c in img.cores), default=0)
    parts = []
    for i, w, _, cx, cy, x, y in _traffic(img, per_core_weight):
        c = img.cores[i]
        n = len(cx)
        parts.append((np.full(n, c.coord[0] * spec.mesh_w + c.coord[2]),
                      np.full(n, c.coord[1] * spec.mesh_h + c.coord[3]),
                      cx * spec.mesh_w + x, cy * spec.mesh_h + y, np.full(n, w)))
    cols = [np.concatenate(p) for p in zip(*parts)] if parts else [np.zeros(0, np.int64)] * 5
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
    """Packets x mesh hops per image between cores (X then Y, a chip-to-chip link counting
    chip_link_hops), each destination weighted like link_loads. With a seed, the same traffic on
    a random placement: the cores' positions shuffled over the same slots."""
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
    total = np.zeros(len(img.cores))
    for i, w, words, *_ in _traffic(img, per_core_weight):
        dkeys = words >> np.uint64(address.core_shift(spec)) | stage[i] << shift
        dst = order[np.searchsorted(keys[order], dkeys)]
        hops = address.route_hops(spec, place[i], place[dst].T)
        total[i] = w * float(hops.sum())
    return total

"""Expected spike packets per image between tiles: what placement minimizes (spikes x hops).

A spike of a neuron sends one packet to each of its destinations (tile, signed axon), so the
traffic from tile s to tile d is the sum, over s's neurons, of spikes per image times the axons
of d that neuron feeds. Spikes per image come from one of two activity models:

* uniform activity (the default): every input of a neuron carries a count uniform on 0..N,
  independently, so its potential V has mean N/2 x (positive - negative synapses) and variance
  N(N+2)/12 x synapses; a replica with threshold theta fires with P(V >= theta) by the central
  limit theorem. Replicas whose threshold lies beyond the reachable potentials get 0 or 1.
* calibrated: the mean replica count of every neuron over a batch of images run through the
  independent reference (`snnmap.reference`), spread evenly over the neuron's replicas.

The host's own links (encoder in, last layer out) do not depend on placement and are left out.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import networkx as nx
import numpy as np

from snnmap.errors import SnnmapError
from snnmap.ir import source_of
from snnmap.model import QuantModel
from snnmap.passes.tiling import Tiling


@dataclass
class Traffic:
    src: np.ndarray  # int64 (E,): tile index in all_tiles order
    dst: np.ndarray  # int64 (E,)
    packets: np.ndarray  # float64 (E,): expected packets per image from src to dst
    model: str  # which activity model, for the report

    @property
    def total(self) -> float:
        return float(self.packets.sum())


def _normal_sf(z: np.ndarray) -> np.ndarray:
    """P(Z >= z) for a standard normal, by Abramowitz-Stegun 7.1.26 (error < 1.5e-7): numpy has no erf."""
    x = np.abs(z) / np.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erfc = poly * np.exp(-x * x)
    return np.where(z >= 0, 0.5 * erfc, 1.0 - 0.5 * erfc)


def uniform_rates(tile, replicas: int) -> np.ndarray:
    """Firing probability of each neuron of a tile under the uniform-activity model."""
    signed = tile.xbar * tile.axon_sign[:, None]  # int8: weights in [-2, 1] times a sign, per distinct column
    pos = np.count_nonzero(signed > 0, axis=0)[tile.xcol].astype(np.float64)
    neg = np.count_nonzero(signed < 0, axis=0)[tile.xcol].astype(np.float64)
    if tile.axon_rep is not None and len(tile.axon_rep):
        # axons that OR spikes: an input has one axon per source replica, each with the input's
        # weight (signed in the crossbar), so synapses per input are the axons' over the replicas
        ns = float(tile.axon_rep.max() + 1)
        pos, neg = pos / ns, neg / ns
    n = float(replicas)
    mean = n / 2 * (pos - neg)
    sd = np.sqrt(n * (n + 2) / 12 * (pos + neg))
    theta = tile.thresholds.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = _normal_sf((theta - 0.5 - mean) / sd)
    p = np.where(sd > 0, p, (mean >= theta).astype(np.float64))
    p[theta > n * pos] = 0.0  # unreachable threshold
    p[theta <= -n * neg] = 1.0  # always reached
    return p


def calibrated_counts(model: QuantModel, images: np.ndarray) -> dict[str, np.ndarray]:
    """Mean spikes per image of every ANN neuron (all its replicas) of each on-chip layer."""
    from snnmap.reference import evaluate

    if len(images) == 0:
        raise SnnmapError("the calibration batch has no images")
    counts = evaluate(model, images)["counts"]
    return {layer.name: counts[i + 1].reshape(len(images), -1).mean(axis=0)
            for i, layer in enumerate(model.layers)}


def tile_traffic(g: nx.DiGraph, tiling: Tiling, order: list[str],
                 counts: dict[str, np.ndarray] | None = None, model: str | None = None) -> Traffic:
    """Traffic between tiles; counts (per layer, mean spikes per ANN neuron) from calibrated_counts,
    or None for the uniform-activity model."""
    first = {}
    i = 0
    for name in order:
        first[name] = i
        i += len(tiling.layers[name])
    desc = model or "uniform activity (inputs uniform on 0..N, potentials by the central limit theorem)"
    return pair_traffic(g, tiling.layers, first, i, itertools.pairwise(order), counts, desc)


def pair_traffic(g: nx.DiGraph, layer_tiles, first: dict[str, int], n_tiles: int, pairs,
                 counts: dict[str, np.ndarray] | None, desc: str) -> Traffic:
    """Traffic between the tiles of the given (producer, consumer) layer pairs; tile t of layer L
    is number first[L] + t.index of n_tiles (an incremental recompile asks for a few pairs only)."""
    srcs, dsts, ws = [], [], []
    for name, nxt in pairs:
        pop = g.nodes[name]["pop"]
        rate = np.zeros(pop.size)
        tile_of = np.full(pop.size, -1, dtype=np.int64)
        for t in layer_tiles[name]:
            r = uniform_rates(t, pop.replicas) if counts is None else counts[name][t.neuron_src] / pop.replicas
            orig = t.neuron_copy == 0  # a fan-out copy fires with its original and sends a share of its packets
            np.add.at(rate, t.neuron_src[orig], r[orig])
            tile_of[t.neuron_src] = first[name] + t.index
        assert source_of(g, nxt) == name
        pairs_ = np.concatenate([t.axon_src[t.axon_src >= 0] * n_tiles + first[nxt] + t.index
                                 for t in layer_tiles[nxt]])
        key, cnt = np.unique(pairs_, return_counts=True)
        ann, dst = np.divmod(key, n_tiles)
        srcs.append(tile_of[ann])
        dsts.append(dst)
        ws.append(rate[ann] * cnt)
    if not srcs:
        return Traffic(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), desc)
    src, dst, w = np.concatenate(srcs), np.concatenate(dsts), np.concatenate(ws)
    key, inv = np.unique(src * n_tiles + dst, return_inverse=True)
    packets = np.bincount(inv, weights=w, minlength=len(key))
    s, d = np.divmod(key, n_tiles)
    keep = packets > 0
    return Traffic(s[keep], d[keep], packets[keep], desc)


@dataclass
class Words:
    """Multicast traffic: expected words per image from a tile to a block of the next layer's tiles
    (the fan-out plan's pieces, fanout.py), each word delivered once to the whole block."""
    src: np.ndarray  # int64 (W,): sending tile, all_tiles order
    dst: np.ndarray  # int64 (W,): first tile of the block, all_tiles order
    free: np.ndarray  # int64 (W,): bits of the tile position the block leaves free (fanout.FanOut.free)
    packets: np.ndarray  # float64 (W,): expected words per image
    model: str

    @property
    def total(self) -> float:
        return float(self.packets.sum())


def block_words(g: nx.DiGraph, tiling: Tiling, order: list[str], counts: dict[str, np.ndarray] | None = None,
                model: str | None = None, per_replica: float | None = None) -> Words:
    """Words between tiles and blocks on a multicast chip, summed over the replicas that send each
    piece (on an OR chip replica r sends its own word to axon + r). per_replica, if given, replaces
    every replica's firing rate (1.0 counts the routes, as links.spike_hops does unweighted)."""
    first, i = {}, 0
    for name in order:
        first[name] = i
        i += len(tiling.layers[name])
    n_tiles = i
    srcs, dsts, frees, ws = [], [], [], []
    for name, nxt in itertools.pairwise(order):
        pop = g.nodes[name]["pop"]
        rate = np.zeros(pop.size)
        tile_of = np.full(pop.size, -1, dtype=np.int64)
        for t in tiling.layers[name]:
            if per_replica is not None:
                r = np.full(t.neurons, float(per_replica))
            else:
                r = uniform_rates(t, pop.replicas) if counts is None else counts[name][t.neuron_src] / pop.replicas
            orig = t.neuron_copy == 0  # every copy fires with its original: the pieces' rate is the original's
            np.add.at(rate, t.neuron_src[orig], r[orig])
            tile_of[t.neuron_src] = first[name] + t.index
        fo = tiling.fanout[name]
        srcs.append(tile_of[fo.src])
        dsts.append(first[nxt] + fo.tile)
        frees.append(fo.free)
        ws.append(rate[fo.src])
    z = np.zeros(0, np.int64)
    desc = model or "uniform activity (inputs uniform on 0..N, potentials by the central limit theorem)"
    if not srcs:
        return Words(z, z, z, np.zeros(0), desc)
    src, dst, free, w = (np.concatenate(v) for v in (srcs, dsts, frees, ws))
    key = (src * n_tiles + dst) * (int(free.max(initial=0)) + 1) + free
    key, inv = np.unique(key, return_inverse=True)
    packets = np.bincount(inv, weights=w, minlength=len(key))
    sd, f = np.divmod(key, int(free.max(initial=0)) + 1)
    s, d = np.divmod(sd, n_tiles)
    keep = packets > 0
    return Words(s[keep], d[keep], f[keep], packets[keep], desc)

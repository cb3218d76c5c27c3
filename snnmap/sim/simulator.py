"""Bit-exact simulation of a configuration image, tick by tick, vectorized over a batch of inputs.

It knows nothing but the image (no model, no IR), so a passing simulation proves the image.
Host encoder -> spike counts into tick-1 axons; each tick every core configured for it computes
V = sum over axons of sign * crossbar * events and fires where V >= threshold; spikes travel
along the destination words to the next tick's axons, where events add up; the last tick's
spikes reach the host readout, which sums them per feature and applies the classifier.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snnmap.chip import address
from snnmap.errors import SnnmapError
from snnmap.image.format import ChipImage


@dataclass
class _Inbound:
    """Gather plan for one destination: rows of the previous tick's spike matrix, summed per axon."""

    src: np.ndarray  # source rows, sorted by axon
    starts: np.ndarray  # start of each axon's run in src
    axons: np.ndarray  # axon index of each run
    size: int  # axons (or readout features) of the destination


def _plan(spec, ptr: np.ndarray, words: np.ndarray, key_to_dst: dict[int, int], n_dst: int,
          sizes: list[int], host: bool) -> list[_Inbound]:
    counts = np.diff(ptr.astype(np.int64))
    src = np.repeat(np.arange(len(counts)), counts)
    is_host, *_, low = address.decode(spec, words)
    if host:
        dst = np.zeros(len(words), dtype=np.int64)
    else:
        ckey = (words >> np.uint64(address.core_shift(spec))).astype(np.int64)
        uniq, inv = np.unique(ckey, return_inverse=True)
        dst = np.array([key_to_dst[int(u)] for u in uniq], dtype=np.int64)[inv] if len(uniq) else ckey
    order = np.lexsort((low, dst))
    src, dst, low = src[order], dst[order], low[order]
    bounds = np.searchsorted(dst, np.arange(n_dst + 1))
    plans = []
    for d in range(n_dst):
        s, a = src[bounds[d]:bounds[d + 1]], low[bounds[d]:bounds[d + 1]]
        if len(a):
            starts = np.flatnonzero(np.r_[True, a[1:] != a[:-1]])
            axons = a[starts]
        else:
            starts = axons = np.zeros(0, dtype=np.int64)
        plans.append(_Inbound(s, starts, axons, sizes[d]))
    return plans


def _gather(plan: _Inbound, spikes: np.ndarray) -> np.ndarray:
    out = np.zeros((plan.size, spikes.shape[1]), dtype=np.float32)
    if len(plan.src):
        out[plan.axons] = np.add.reduceat(spikes[plan.src], plan.starts, axis=0)
    return out


class Simulator:
    def __init__(self, img: ChipImage):
        self.img = img
        spec = img.spec
        self.by_tick: list[list[int]] = [[] for _ in range(img.ticks + 1)]
        for i, c in enumerate(img.cores):
            self.by_tick[c.tick].append(i)
        if any(not self.by_tick[t] for t in range(1, img.ticks + 1)):
            raise SnnmapError("image has a tick with no core configured to run", where="image")
        self.weights = [(c.crossbar * c.axon_sign[:, None]).astype(np.float32).T.copy() for c in img.cores]
        self.thr = [c.thresholds.astype(np.float32)[:, None] for c in img.cores]
        self.row_syn = [c.crossbar.sum(axis=1).astype(np.float32) for c in img.cores]

        def core_key(c) -> int:
            cx, cy, x, y = c.coord
            return int(address.encode(spec, cx, cy, x, y, 0)) >> address.core_shift(spec)

        # inbound plans for every tick's cores, from the previous tick's sources
        self.inbound: list[list[_Inbound]] = [[]]
        for t in range(1, img.ticks + 1):
            dsts = self.by_tick[t]
            key_to_dst = {core_key(img.cores[i]): j for j, i in enumerate(dsts)}
            ptr, words = self._sources(t - 1)
            self.inbound.append(_plan(spec, ptr, words, key_to_dst, len(dsts),
                                      [img.cores[i].axons for i in dsts], host=False))
        ptr, words = self._sources(img.ticks)
        self.readout = _plan(spec, ptr, words, {}, 1, [img.classifier_w.shape[0]], host=True)[0]

    def _sources(self, tick: int) -> tuple[np.ndarray, np.ndarray]:
        if tick == 0:
            return self.img.host_ptr, self.img.host_dest
        ptrs, words, base = [np.zeros(1, np.int64)], [], 0
        for i in self.by_tick[tick]:
            c = self.img.cores[i]
            ptrs.append(c.dest_ptr[1:].astype(np.int64) + base)
            words.append(c.dest)
            base += len(c.dest)
        return np.concatenate(ptrs), np.concatenate(words)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Host encoder: full-precision conv + batch norm, then replica i fires iff 2^k*y >= i + 1/2.

        Returns spike counts (n_encoder_neurons, batch) in (h, w, c) order.
        """
        img, enc = self.img, self.img.encoder
        w = enc["weights"]
        kh, kw, cin, cout = w.shape
        s, p = enc["stride"], enc["padding"]
        xp = np.pad(x * img.input_scale, ((0, 0), (p, p), (p, p), (0, 0)))
        n, H, W, _ = xp.shape
        oh, ow = (H - kh) // s + 1, (W - kw) // s + 1
        win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::s, ::s]
        cols = win.transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, kh * kw * cin)
        u = (cols @ w.reshape(-1, cout)).reshape(n, oh * ow * cout)
        gamma, beta = np.tile(enc["gamma"], oh * ow), np.tile(enc["beta"], oh * ow)
        mean, std = np.tile(enc["mean"], oh * ow), np.tile(np.sqrt(enc["var"] + enc["eps"]), oh * ow)
        y = np.clip(gamma * (u - mean) / std + beta, 0.0, float(img.B)) * float(1 << img.k)
        counts = np.zeros(y.shape, dtype=np.float32)
        for i in range(img.replicas):
            counts += y >= i + 0.5
        return counts.T.copy()

    def run(self, x: np.ndarray, batch: int = 1000, record: bool = False) -> dict:
        """Predictions, logits, spikes and synaptic operations per image.

        With record=True also `core_spikes`: per core, a (neurons, images) uint8 array of spikes.
        """
        img = self.img
        x = np.asarray(x)
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(img.input_shape):
            raise SnnmapError(f"inputs have shape {x.shape[1:]}, the image expects {tuple(img.input_shape)}")
        n = len(x)
        logits = np.zeros((n, img.classifier_w.shape[1]))
        spikes = np.zeros(n)
        sops = np.zeros(n)
        layer_spikes = np.zeros((img.ticks, n))
        recorded: list[list[np.ndarray]] = [[] for _ in img.cores]
        for s0 in range(0, n, batch):
            xb = x[s0:s0 + batch].astype(np.float64)
            prev = self.encode(xb)
            for t in range(1, img.ticks + 1):
                outs = []
                for j, ci in enumerate(self.by_tick[t]):
                    ev = _gather(self.inbound[t][j], prev)
                    v = self.weights[ci] @ ev
                    outs.append((v >= self.thr[ci]).astype(np.float32))
                    if record:
                        recorded[ci].append(outs[-1].astype(np.uint8))
                    sops[s0:s0 + len(xb)] += self.row_syn[ci] @ ev
                prev = np.concatenate(outs, axis=0)
                layer_spikes[t - 1, s0:s0 + len(xb)] = prev.sum(axis=0)
            feats = _gather(self.readout, prev).astype(np.float64) / float(1 << img.k)
            logits[s0:s0 + len(xb)] = feats.T @ img.classifier_w + img.classifier_b
            spikes[s0:s0 + len(xb)] = layer_spikes[:, s0:s0 + len(xb)].sum(axis=0)
        out = {"pred": np.argmax(logits, axis=1).astype(np.int64) if n else np.zeros(0, np.int64),
               "logits": logits, "spikes": spikes, "sops": sops, "layer_spikes": layer_spikes}
        if record:
            out["core_spikes"] = [np.concatenate(r, axis=1) if r else np.zeros((c.neurons, 0), np.uint8)
                                  for r, c in zip(recorded, img.cores)]
        return out


def simulate_image(img: ChipImage, x: np.ndarray, batch: int = 1000) -> dict:
    return Simulator(img).run(x, batch=batch)

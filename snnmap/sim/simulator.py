"""Bit-exact simulation of a configuration image, tick by tick, vectorized over a batch of inputs.

It knows nothing but the image (no model, no IR), so a passing simulation proves the image.
Host encoder -> spike counts into tick-1 axons; each tick every core configured for it computes
V = sum over axons of sign * crossbar * events and fires where V >= threshold; spikes travel
along the destination words to the next tick's axons, where events add up; the last tick's
spikes reach the host readout, which sums them per feature and applies the classifier.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from snnmap.chip import address
from snnmap.errors import SnnmapError
from snnmap.image.format import ChipImage
from snnmap.rows import csr_ids, first_index, row_ids


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
    if spec.multicast and not host:  # a masked word reaches a block of cores: one entry per core
        idx, words = address.expand(spec, words)
        src = src[idx]
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


def _gather(plan: _Inbound, spikes: np.ndarray, accumulate: bool = True) -> np.ndarray:
    """Events per axon; where the chip's axons OR spikes together, at most one."""
    out = np.zeros((plan.size, spikes.shape[1]), dtype=np.float32)
    if len(plan.src) == len(plan.starts):  # one source per axon: a plain gather
        out[plan.axons] = spikes[plan.src]
    elif len(plan.src):
        out[plan.axons] = np.add.reduceat(spikes[plan.src], plan.starts, axis=0)
    if not accumulate:
        np.minimum(out, 1.0, out=out)
    return out


@dataclass
class _CorePlan:
    """One core, computed once per distinct crossbar column, emitting counts per source group.

    Neurons with identical columns (the replicas of an ANN neuron) share one potential; neurons
    with identical columns and identical destination lists form a group whose spikes add up at
    every destination, so they travel as one count. Both are read off the image, bit for bit.
    """

    weights: np.ndarray  # float32 (U, A): distinct signed columns, transposed
    column: np.ndarray  # (Nn,) distinct column of each neuron
    thr: np.ndarray  # float32 (Nn, 1)
    order: np.ndarray  # neurons sorted by group
    group_starts: np.ndarray  # start of each group's run in order
    uniform: int  # k > 0: groups are consecutive runs of k neurons (replicas side by side)
    shared: bool  # and each group is exactly one distinct column
    group_ptr: np.ndarray  # (G + 1,) destination CSR per group
    group_dest: np.ndarray
    row_syn: np.ndarray  # float32 (A,) synapses per axon, for synaptic-operation counts
    fanout: np.ndarray  # float32 (G,) packets one spike of each group sends
    hops: np.ndarray  # float32 (G,) mesh hops those packets travel, summed
    max_hops: float  # the longest route out of this core
    neurons: int
    wide: bool = False  # potentials may reach 2^24: computed in float64


def _route_lengths(spec, src: tuple[int, int, int, int], words: np.ndarray, ptr: np.ndarray) -> tuple[np.ndarray, float]:
    """Hops of every destination list from core src, one more than the mesh hops (the
    injection), summed per list, and the longest single route. The host port sits beside core
    (0, 0) of chip (0, 0)."""
    is_host, cx, cy, x, y, _ = address.decode(spec, words)
    h = 1 + address.route_hops(spec, src, (cx, cy, x, y))
    to_host = 1 + address.route_hops(spec, src, (0, 0, 0, 0))
    h = np.where(is_host, to_host, h).astype(np.float64)
    owner = np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))
    sums = np.bincount(owner, weights=h, minlength=len(ptr) - 1)
    return sums.astype(np.float32), float(h.max(initial=0))


def _core_plan(c, spec) -> _CorePlan:
    # axon signs are per row, so two neurons compute the same potential iff their columns match
    xt = c.crossbar.T
    column = row_ids(np.packbits(np.concatenate([xt != 0, xt < 0], axis=1), axis=1))
    first_of = first_index(column)
    uniq = xt[first_of].astype(np.float32) * c.axon_sign[None, :].astype(np.float32)
    ptr = c.dest_ptr.astype(np.int64)
    counts = np.diff(ptr)
    group = csr_ids(ptr, c.dest, prefix=column)
    order = np.argsort(group, kind="stable")
    g_sorted = group[order]
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]]) if len(order) else np.zeros(0, np.int64)
    first = order[starts]  # a representative neuron of each group
    g_ptr = np.zeros(len(first) + 1, dtype=np.int64)
    np.cumsum(counts[first], out=g_ptr[1:])
    take = np.repeat(ptr[first], counts[first]) + np.arange(int(g_ptr[-1])) - np.repeat(g_ptr[:-1], counts[first])
    g_dest = c.dest[take] if len(take) else np.zeros(0, np.uint64)
    sizes = np.diff(np.r_[starts, len(order)])
    uniform = int(sizes[0]) if len(sizes) and (sizes == sizes[0]).all() and \
        np.array_equal(order, np.arange(len(order))) else 0
    shared = bool(uniform) and len(first_of) == len(starts) and np.array_equal(column, np.arange(len(column)) // uniform)
    hop_sums, max_hops = _route_lengths(spec, c.coord, g_dest, g_ptr)
    return _CorePlan(uniq, column, c.thresholds.astype(np.float32)[:, None], order, starts, uniform, shared,
                     g_ptr, g_dest.astype(np.uint64), np.count_nonzero(c.crossbar, axis=1).astype(np.float32),
                     np.diff(g_ptr).astype(np.float32), hop_sums, max_hops, c.neurons)


def cost_model(spec, chips: int, tick_cycles: np.ndarray, sops: np.ndarray, hops: np.ndarray) -> dict:
    """Latency, throughput and energy per image from the simulated activity.

    Tick t lasts as long as its slowest core: input events read crossbar rows, neurons fire,
    packets leave through the core's router port, the longest route is walked; tick 0 is the host
    link carrying the encoder's spikes. One image takes the sum of its ticks; with layers
    pipelined a new image enters every tick, so throughput is set by the longest tick. Energy:
    synaptic operations, packet hops, and every chip's static power over the time one image
    occupies the board.
    """
    if tick_cycles.shape[1] == 0:
        return {"latency_s": np.zeros(0), "energy_j": np.zeros(0), "tick_s": np.zeros(0)}
    tick_s = tick_cycles / spec.clock_hz
    latency = tick_s.sum(axis=0)
    period = tick_s.max(axis=0)
    energy = spec.energy_per_sop_j * sops + spec.energy_per_hop_j * hops + spec.static_power_w * chips * period
    return {"latency_s": latency, "period_s": period, "energy_j": energy, "tick_s": tick_s,
            "energy_sop_j": spec.energy_per_sop_j * sops, "energy_hop_j": spec.energy_per_hop_j * hops}


def _thin(counts: np.ndarray, p: float, seed: int, tick: int, first: int) -> np.ndarray:
    """Keep each of `counts` spikes with probability 1 - p, drawn per image from (seed, tick, index)."""
    out = np.empty_like(counts)
    c = counts.astype(np.int64)
    for i in range(counts.shape[1]):
        rng = np.random.default_rng((seed, tick, first + i))
        out[:, i] = rng.binomial(c[:, i], 1.0 - p)
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
        self.cores = [_core_plan(c, spec) for c in img.cores]
        hptr = img.host_ptr.astype(np.int64)
        self.host_fanout = np.diff(hptr).astype(np.float32)
        # host packets enter beside core (0, 0): route lengths from there
        self.host_hops = _route_lengths(spec, (0, 0, 0, 0), img.host_dest, hptr)[0]

        def core_key(c) -> int:
            cx, cy, x, y = c.coord
            return int(address.encode(spec, cx, cy, x, y, 0)) >> address.core_shift(spec)

        # inbound plans for every tick's cores, from the previous tick's source groups
        self.inbound: list[list[_Inbound]] = [[]]
        for t in range(1, img.ticks + 1):
            dsts = self.by_tick[t]
            key_to_dst = {core_key(img.cores[i]): j for j, i in enumerate(dsts)}
            ptr, words = self._sources(t - 1)
            self.inbound.append(_plan(spec, ptr, words, key_to_dst, len(dsts),
                                      [img.cores[i].axons for i in dsts], host=False))
            # float32 is exact for integers below 2^24: bound |V| by the most events each axon can
            # receive (a source's group size, or N from the host) and widen a core that could exceed it
            most = (np.full(len(ptr) - 1, float(img.replicas)) if t == 1 else
                    np.concatenate([np.diff(np.r_[self.cores[i].group_starts, len(self.cores[i].order)])
                                    for i in self.by_tick[t - 1]]).astype(np.float64))
            for j, i in enumerate(dsts):
                plan, inbound = self.cores[i], self.inbound[t][j]
                bound = float(np.sum(most[inbound.src])) if len(inbound.src) else 0.0
                if bound >= 2 ** 24 or float(np.abs(plan.thr).max(initial=0)) >= 2 ** 24:
                    self.cores[i] = replace(plan, weights=plan.weights.astype(np.float64),
                                            thr=img.cores[i].thresholds.astype(np.float64)[:, None], wide=True)
        ptr, words = self._sources(img.ticks)
        self.readout = _plan(spec, ptr, words, {}, 1, [img.classifier_w.shape[0]], host=True)[0]

    def _sources(self, tick: int) -> tuple[np.ndarray, np.ndarray]:
        if tick == 0:
            return self.img.host_ptr, self.img.host_dest
        ptrs, words, base = [np.zeros(1, np.int64)], [], 0
        for i in self.by_tick[tick]:
            plan = self.cores[i]
            ptrs.append(plan.group_ptr[1:] + base)
            words.append(plan.group_dest)
            base += len(plan.group_dest)
        return np.concatenate(ptrs), np.concatenate(words)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Host encoder: full-precision conv, V = 2^k * conv, replica i fires iff sign*V >= sign*theta_i.

        Returns spike counts (n_encoder_neurons, batch) in (h, w, c) order; where the chip's axons OR
        spikes together, spikes (n_encoder_neurons * N, batch), each replica its own row.
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
        wk = w.reshape(-1, cout)
        scale = float(1 << img.k)
        sign = enc["sign"].astype(np.float64)
        st = (sign[:, None] * enc["theta"]).T  # (N, C): sign * theta
        # The definition sums taps one by one in (ky, kx, ci) order from 0 (docs/image-format.md).
        # BLAS sums in another order; both lie within gamma_K * sum|x w| of the true sum, so a
        # comparison with more margin than twice that is decided the same way. Only entries closer
        # to a threshold are recomputed in the defined order.
        K = wk.shape[0]
        gamma = K * 2.0 ** -53 / (1 - K * 2.0 ** -53)
        sv = (cols @ wk) * (scale * sign)  # sign * V
        # sum |x w| <= max|x| * sum|w|: a looser bound, but an outer product instead of a matmul
        tol = np.abs(cols).max(axis=1, initial=0.0)[:, None] * (np.abs(wk).sum(axis=0) * (2.1 * gamma * scale)) + 1e-300
        close = np.zeros(sv.shape, dtype=bool)
        gap = np.empty_like(sv)
        for i in range(img.replicas):
            np.subtract(sv, st[i], out=gap)
            np.abs(gap, out=gap)
            close |= gap <= tol
        rows, chans = np.nonzero(close)
        if len(rows):
            acc = np.zeros(len(rows))
            for tap in range(K):
                acc += cols[rows, tap] * wk[tap, chans]
            sv[rows, chans] = acc * (scale * sign[chans])
        if not img.spec.axon_accumulates:  # each replica's spike travels on its own: (neuron, replica) rows
            fired = np.stack([sv >= st[i] for i in range(img.replicas)], axis=-1).astype(np.float32)
            return fired.reshape(n, oh * ow * cout * img.replicas).T.copy()
        counts = np.zeros(sv.shape, dtype=np.float32)
        for i in range(img.replicas):
            counts += sv >= st[i]
        counts = counts.reshape(n, oh * ow * cout)
        return counts.T.copy()

    def run(self, x: np.ndarray, batch: int = 1000, record: bool = False, drop: dict[int, float] | None = None,
            seed: int = 0, trace: bool = False, progress=None) -> dict:
        """Predictions, logits, spikes and synaptic operations per image.

        record=True adds `core_spikes`: per core, a (neurons, images) uint8 array of spikes.
        drop={tick: p} loses each spike sent at that tick (0: the encoder's output, t: the layer
        running at tick t) independently with probability p; the draws depend only on seed, tick
        and image index, so results do not depend on the batch size.
        trace=True adds `trace`: (images, cores) spikes each core emitted (at its one tick).
        progress, if given, is called with the number of images finished after each batch.
        """
        drop = {int(t): float(p) for t, p in (drop or {}).items() if p > 0}
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
        traced = np.zeros((n, len(img.cores)), dtype=np.int64) if trace else None
        tick_cycles = np.zeros((img.ticks + 1, n))  # per tick: slowest core + its routing
        hops = np.zeros(n)
        core_total = np.zeros(len(img.cores))
        spec = img.spec
        for s0 in range(0, n, batch):
            xb = x[s0:s0 + batch].astype(np.float64)
            nb = len(xb)
            prev = self.encode(xb)
            if 0 in drop:
                prev = _thin(prev, drop[0], seed, 0, s0)
            # the host link serializes every packet of the encoder's output
            tick_cycles[0, s0:s0 + nb] = spec.cycles_per_packet * (self.host_fanout @ prev)
            hops[s0:s0 + nb] += self.host_hops @ prev
            for t in range(1, img.ticks + 1):
                outs = []
                slowest = np.zeros(nb)
                for j, ci in enumerate(self.by_tick[t]):
                    plan = self.cores[ci]
                    ev = _gather(self.inbound[t][j], prev, spec.axon_accumulates)
                    v = plan.weights @ (ev.astype(np.float64) if plan.wide else ev)  # (U, batch): per distinct column
                    if plan.shared and not record:  # group g = column g = neurons g*k .. g*k+k-1
                        fired = v[:, None, :] >= plan.thr.reshape(-1, plan.uniform, 1)
                        counts = fired.sum(axis=1, dtype=np.float32)
                    else:
                        fired = v[plan.column] >= plan.thr  # (Nn, batch)
                        if record:
                            recorded[ci].append(fired.astype(np.uint8))
                        if plan.uniform:
                            counts = fired.reshape(-1, plan.uniform, nb).sum(axis=1, dtype=np.float32)
                        else:
                            counts = np.add.reduceat(fired[plan.order].astype(np.float32), plan.group_starts, axis=0) \
                                if len(plan.order) else np.zeros((0, nb), np.float32)
                    outs.append(counts)
                    sops[s0:s0 + nb] += plan.row_syn @ ev
                    core_total[ci] += counts.sum()
                    if trace:
                        traced[s0:s0 + nb, ci] = counts.sum(axis=0)
                    packets = plan.fanout @ counts
                    hops[s0:s0 + nb] += plan.hops @ counts
                    core = (spec.cycles_per_event * ev.sum(axis=0) + spec.cycles_per_neuron * plan.neurons
                            + spec.cycles_per_packet * packets + spec.cycles_per_hop * plan.max_hops)
                    np.maximum(slowest, core, out=slowest)
                tick_cycles[t, s0:s0 + nb] = slowest
                prev = np.concatenate(outs, axis=0) if outs else np.zeros((0, nb), np.float32)
                layer_spikes[t - 1, s0:s0 + nb] = prev.sum(axis=0)
                if t in drop:
                    prev = _thin(prev, drop[t], seed, t, s0)
            feats = _gather(self.readout, prev).astype(np.float64) / float(1 << img.k)
            res = np.broadcast_to(img.classifier_b, (nb, len(img.classifier_b))).copy()
            for f in range(feats.shape[0]):  # fixed order: independent of the batch size
                res += feats[f][:, None] * img.classifier_w[f]
            logits[s0:s0 + nb] = res
            spikes[s0:s0 + nb] = layer_spikes[:, s0:s0 + nb].sum(axis=0)
            if progress is not None:
                progress(nb)
        out = {"pred": np.argmax(logits, axis=1).astype(np.int64) if n else np.zeros(0, np.int64),
               "logits": logits, "spikes": spikes, "sops": sops, "layer_spikes": layer_spikes,
               "core_spikes_per_image": core_total / max(n, 1),
               **cost_model(spec, len({c.coord[:2] for c in img.cores}), tick_cycles, sops, hops)}
        if trace:
            out["trace"] = traced
        if record:
            out["core_spikes"] = [np.concatenate(r, axis=1) if r else np.zeros((c.neurons, 0), np.uint8)
                                  for r, c in zip(recorded, img.cores)]
        return out


def simulate_image(img: ChipImage, x: np.ndarray, batch: int = 1000) -> dict:
    return Simulator(img).run(x, batch=batch)

"""Bit-exact simulation of a configuration image, tick by tick, vectorized over a batch of inputs.

It knows nothing but the image (no model, no IR), so a passing simulation proves the image.
Host encoder -> spike counts into tick-1 axons; each tick every core configured for it computes
V = sum over axons of sign * crossbar * events and fires where V >= threshold; spikes travel
along the destination words to the next tick's axons, where events add up; the last tick's
spikes reach the host readout, which sums them per feature and applies the classifier.

Speed without leaving the image (docs/benchmarks.md): replicas share one potential per distinct
column; both sign axons fed by one source become one input column; a core's crossbar splits into
independent blocks (columns linked by shared inputs); identical blocks of a tick (tiles of one
shape) run as one float32 matmul, exact because every potential is an integer sum below 2^24,
checked per core from the image (else that core runs alone in float64); the encoder decides in
float32 with a rigorous error bound and recomputes in the defined float64 order only entries near
a threshold; blocks of images run on worker threads with BLAS single-threaded.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from snnmap.chip import address
from snnmap.errors import SnnmapError
from snnmap.image.format import ChipImage
from snnmap.rows import csr_ids
from snnmap.sim import staged
from snnmap.sim.blas import single_threaded_blas

EXACT = 2.0 ** 24  # float32 holds every integer of smaller magnitude exactly
CACHE_BYTES = 1 << 22  # events gathered per matmul call (1-8 MB measured alike; docs/benchmarks.md)


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
        del idx
    low = address.low_field(spec, words)
    if host:
        dst = np.zeros(len(words), dtype=np.int64)
    else:
        # destination cores by a sorted table (the words run to tens of millions on VGG: no sort of them)
        keys = np.array(sorted(key_to_dst), dtype=np.int64)
        ckey = (words >> np.uint64(address.core_shift(spec))).astype(np.int64)
        at = np.searchsorted(keys, ckey)
        if len(ckey) and (at.max() >= len(keys) or not np.array_equal(keys[at], ckey)):
            raise SnnmapError("a destination names a core that the image does not configure", where="image")
        dst = np.array([key_to_dst[int(k)] for k in keys], dtype=np.int64)[at]
        del ckey, at
    del words
    # by destination, then axon (one stable sort of a combined key, as lexsort((low, dst)) orders them)
    span = int(low.max(initial=0)) + 1
    order = np.argsort(dst * span + low, kind="stable")
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


def _axon_events(spikes: np.ndarray, slots: np.ndarray, accumulate: bool = True) -> np.ndarray:
    """Events at each axon: the spike counts of its sources added up where the chip's axons
    accumulate, else at most one (the axon ORs its inputs).

    spikes: (rows, batch), its last row zero; slots: (..., m, A) the rows feeding each axon,
    padded with the zero row. Returns (..., A, batch).
    """
    ev = np.take(spikes, slots[..., 0, :], axis=0)
    for j in range(1, slots.shape[-2]):
        ev += np.take(spikes, slots[..., j, :], axis=0)
    if not accumulate:  # several sources, or one group of neurons counting more than one spike
        np.minimum(ev, 1, out=ev)
    return ev


def _slots(inb: _Inbound, rows: np.ndarray, zero: int) -> np.ndarray:
    """(m, axons used) buffer rows of each used axon's sources (m = most sources of one axon)."""
    runs = np.diff(np.r_[inb.starts, len(inb.src)]).astype(np.int64)
    m = int(runs.max(initial=1))
    out = np.full((m, len(inb.axons)), zero, dtype=np.int64)
    if len(inb.src):
        pos = np.arange(len(inb.src)) - np.repeat(inb.starts, runs)
        out[pos, np.repeat(np.arange(len(inb.axons)), runs)] = rows[inb.src]
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
    cols, column = c.distinct()  # synapses in {-1, 0, 1} (negative only on chips with signed synapses)
    n_cols = cols.shape[1]
    uniq = cols.T.astype(np.float32) * c.axon_sign[None, :].astype(np.float32)
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
    shared = bool(uniform) and n_cols == len(starts) and np.array_equal(column, np.arange(len(column)) // uniform)
    hop_sums, max_hops = _route_lengths(spec, c.coord, g_dest, g_ptr)
    return _CorePlan(uniq, column, c.thresholds.astype(np.float32)[:, None], order, starts, uniform, shared,
                     g_ptr, g_dest.astype(np.uint64), c.axon_synapses().astype(np.float32),
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


class _Encoder:
    """Host encoder: V = 2^k * conv summed tap by tap in (ky, kx, ci) order from 0 (the image's
    definition, docs/image-format.md); replica i fires iff sign * V >= sign * theta_i.

    Output rows are channel-major (row c * P + p for output position p); `canon` maps the host
    neurons' (h, w, c) order onto them.
    """

    def __init__(self, img: ChipImage):
        enc = img.encoder
        w = np.asarray(enc["weights"], dtype=np.float64)
        kh, kw, cin, C = w.shape
        s, p = int(enc["stride"]), int(enc["padding"])
        H, W, _ = img.input_shape
        Hp, Wp = H + 2 * p, W + 2 * p
        oh, ow = (Hp - kh) // s + 1, (Wp - kw) // s + 1
        self.pad, self.padded, self.scale_in = p, (Hp, Wp, cin), float(img.input_scale)
        self.C, self.P, self.K = C, oh * ow, kh * kw * cin
        self.rows = C * self.P
        ky, kx, ci = (a.ravel() for a in np.meshgrid(np.arange(kh), np.arange(kw), np.arange(cin), indexing="ij"))
        oy, ox = (a.ravel() for a in np.meshgrid(np.arange(oh), np.arange(ow), indexing="ij"))
        # padded input row of tap t at output position p; one more row holds the constant 1
        self.taps = ((oy[None] * s + ky[:, None]) * Wp + ox[None] * s + kx[:, None]) * cin + ci[:, None]
        self.one_row = Hp * Wp * cin
        j = np.arange(self.rows)
        self.canon = (j % C) * self.P + j // C
        self.wk = w.reshape(self.K, C)
        sign = enc["sign"].astype(np.float64)
        self.vscale = float(1 << img.k) * sign  # power of two times +-1: multiplying by it is exact
        self.st = sign[:, None] * np.asarray(enc["theta"], dtype=np.float64)  # fires iff sign * V >= st
        self.sumabs = np.abs(self.wk).sum(axis=0) * float(1 << img.k)
        self.w64 = (self.wk * self.vscale).T.copy()
        self.lin = self._linear()
        # where axons OR spikes, each replica's spike travels alone: host list j * N + r carries
        # replica r of neuron j, which fires iff the count exceeds r (thresholds in order)
        self.replicas = 1 if img.spec.axon_accumulates else img.replicas
        if self.replicas > 1:
            with np.errstate(invalid="ignore"):
                steps = np.diff(self.st, axis=1)
            if not ((steps >= 0) | (np.isnan(steps) & np.isinf(self.st[:, 1:]))).all():
                raise SnnmapError("the image's encoder thresholds are not in replica order", where="image, HOST")
            self.canon = (self.canon[:, None] * self.replicas + np.arange(self.replicas)).ravel()
        self.out_rows = self.rows * self.replicas

    def _linear(self):
        """The float32 fast path needs each channel's thresholds evenly spaced, as the paper's
        formula makes them: then g(v) = (v - st_0) / spacing + 1 puts threshold i at i + 1 (within
        `dev`), and the count is floor(g) clipped to [0, N] wherever g is not near an integer."""
        st, N = self.st, self.st.shape[1]
        if not np.isfinite(st).all():
            return None
        a = st[:, 0]
        alpha = (st[:, -1] - a) / (N - 1) if N > 1 else np.ones(self.C)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            if not (np.isfinite(alpha).all() and (alpha > 0).all()):
                return None
            f = 1.0 / alpha
            pos = (st - a[:, None]) * f[:, None] + 1.0
            dev = np.abs(pos - np.arange(1, N + 1)).max(axis=1) + 2.0 ** -48 * (N + 2)
            if not (np.isfinite(f).all() and (dev < 0.05).all() and (np.abs(a * f) < 1e6).all()):
                return None
            w32 = np.empty((self.C, self.K + 1), dtype=np.float32)
            w32[:, :self.K] = (self.wk * (self.vscale * f)).T
            w32[:, self.K] = 1.0 - a * f
        if not np.isfinite(w32).all():
            return None
        taps = np.vstack([self.taps, np.full((1, self.P), self.one_row)])
        return w32, f, np.abs(a * f) + 1.0, dev, taps

    def counts(self, x: np.ndarray) -> np.ndarray:
        """Spike counts (out_rows + 1, batch) float32 for float64 images (batch, H, W, C); last row
        zero. Where each replica travels alone, one 0/1 row per (neuron, replica)."""
        buf = self._counts(x)
        if self.replicas == 1:
            return buf
        out = np.zeros((self.out_rows + 1, buf.shape[1]), dtype=np.float32)
        r = np.arange(self.replicas, dtype=np.float32)
        out[:-1] = (buf[:-1, None, :] > r[None, :, None]).reshape(self.out_rows, -1)
        return out

    def _counts(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        (Hp, Wp, cin), p, K, C = self.padded, self.pad, self.K, self.C
        xs = x * self.scale_in
        xp = np.zeros((Hp, Wp, cin, n))
        xp[p:Hp - p, p:Wp - p] = xs.transpose(1, 2, 3, 0)
        xp = np.concatenate([xp.reshape(-1, n), np.ones((1, n))])
        buf = np.empty((self.rows + 1, n), dtype=np.float32)
        buf[-1] = 0
        u = buf[:-1].reshape(C, self.P * n)
        if not np.isfinite(xs).all():  # no error bound holds: every entry in the defined order
            self._exact(u, np.arange(u.size), xp, n)
            return buf
        maxabs = float(np.abs(xs).max(initial=0.0))
        if self.lin is not None:
            w32, f, offset, dev, taps = self.lin
            # |u - g(V)| for V in the defined order: float32 inputs, weights and sgemm (gamma_{K+1}),
            # float64 defined order (gamma_K), all relative to sum |w' x| + |bias| + 1
            g32 = (K + 1) * 2.0 ** -24 / (1 - (K + 1) * 2.0 ** -24)
            g64 = K * 2.0 ** -53 / (1 - K * 2.0 ** -53)
            # (subnormal float32 values err by up to 2^-150 absolutely: the last term)
            err = 1.25 * (g32 + 4 * 2.0 ** -24 + g64) * (f * self.sumabs * maxabs + offset) + \
                (K + 2) * 2.0 ** -140 * (1 + maxabs + f * self.sumabs)
            lim = 0.5 - 2 * (err + dev) - 2.0 ** -20
            if (lim > 0.3).all():
                x32, lim32, close = xp.astype(np.float32), lim.astype(np.float32)[:, None], []
                step = max(1, CACHE_BYTES // (n * (C + K + 1) * 4))  # output positions per pass
                for p0 in range(0, self.P, step):
                    p1 = min(self.P, p0 + step)
                    part = u[:, p0 * n:p1 * n]
                    np.matmul(w32, np.take(x32, taps[:, p0:p1], axis=0).reshape(K + 1, -1), out=part)
                    fl = np.floor(part)
                    np.subtract(part, fl, out=part)  # exact but for u in (-1, 0): 2^-25, inside the 2^-20
                    np.subtract(part, 0.5, out=part)
                    np.abs(part, out=part)
                    near = part > lim32  # within err + dev of an integer
                    if near.any():
                        c, j = np.divmod(np.flatnonzero(near), (p1 - p0) * n)
                        close.append(c * (self.P * n) + p0 * n + j)
                    np.clip(fl, 0, self.st.shape[1], out=part)
                if close:
                    self._exact(u, np.concatenate(close), xp, n)
                return buf
        # float64 BLAS: within 2 gamma_K sum|x w| of the defined order; decide where the count is
        # the same at both ends of that interval, recompute the rest in the defined order
        sv = self.w64 @ np.take(xp, self.taps, axis=0).reshape(K, -1)
        g64 = K * 2.0 ** -53 / (1 - K * 2.0 ** -53)
        tol = ((2.5 * g64 + 2.0 ** -48) * maxabs * self.sumabs * (1 + 1e-9))[:, None]
        lo = self._count(sv - tol)
        u[...] = lo
        close = np.flatnonzero(lo != self._count(sv + tol))
        if len(close):
            self._exact(u, close, xp, n)
        return buf

    def _count(self, sv: np.ndarray) -> np.ndarray:
        out = np.zeros(sv.shape, dtype=np.float32)
        for i in range(self.st.shape[1]):
            out += sv >= self.st[:, i:i + 1]
        return out

    def _exact(self, u: np.ndarray, idx: np.ndarray, xp: np.ndarray, n: int) -> None:
        """Entries idx of u (C, P * n) in the defined order: taps one by one from 0, in float64."""
        c, j = np.divmod(idx, self.P * n)
        pos, b = np.divmod(j, n)
        acc = np.zeros(len(idx))
        for t in range(self.K):
            acc += xp[self.taps[t, pos], b] * self.wk[t, c]
        sv = acc * self.vscale[c]
        u.reshape(-1)[idx] = (sv[:, None] >= self.st[c]).sum(axis=1)


def _blocks(W: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Independent blocks of a crossbar: columns linked by a shared input, with their inputs.

    Returns each column's block, each input's block and the number of blocks. A layer whose
    windows do not overlap (2x2 stride 2) splits into one block per output position, a fraction
    of the dense work; columns without inputs form one block, inputs without columns join block 0.
    """
    U, S = W.shape
    nz = (W != 0).astype(np.float32)
    col, src = np.full(U, -1, dtype=np.int64), np.zeros(S, dtype=np.int64)
    has = nz.any(axis=1)
    blocks = 0
    for start in range(U):  # breadth-first from each column not yet reached
        if col[start] >= 0 or not has[start]:
            continue
        cols = np.zeros(U, dtype=np.float32)
        cols[start] = 1
        while True:
            srcs = (cols @ nz) > 0
            grown = (nz @ srcs.astype(np.float32)) > 0
            if np.array_equal(grown, cols > 0):
                break
            cols = grown.astype(np.float32)
        col[cols > 0], src[srcs] = blocks, blocks
        blocks += 1
    if (~has).any():
        col[~has] = blocks
        blocks += 1
    return col, src, blocks


@dataclass
class _Stack:
    """Blocks (see _blocks) with identical crossbars and thresholds, in one tick: one matmul.

    Tiles of one shape inside a convolution hold the same weights; only their sources differ.
    Every core here is float32-exact and `shared` (distinct column g is group g, `r` replicas
    side by side), and each of its axons has one source. Its input columns are the distinct
    sources: both sign axons of an input carry the same events, whatever an axon does with its
    sources' spikes, so their weights add up into one column.
    """

    cores: np.ndarray  # (n,) image core of each block, in runs
    groups: np.ndarray  # (n, U) the core's group of each column
    slots: np.ndarray  # int64 (S, 1, n): previous tick's buffer row feeding each input column
    weights: np.ndarray  # float32 (U + 2, S): signed columns, then axon events and synapses per input
    thr: np.ndarray  # float32 (U, 1, r): each column's replica thresholds
    out_stats: np.ndarray  # float32 (n, 3, U): packets, mesh hops, spikes per spike of each group
    stats64: bool  # events or synaptic operations of a block may reach 2^24: summed in float64
    out64: bool
    base: int  # first row in the tick's spike buffer (block q, column g: base + g * n + q)
    chunk: int  # blocks per matmul call


@dataclass
class _Loose:
    """A core outside any stack (float64, groups that are not one column each, or axons with
    several sources): run alone, axon by axon."""

    core: int
    slots: np.ndarray  # (m, A) buffer rows feeding each axon
    rows: np.ndarray  # buffer row of each of its groups
    most: np.ndarray  # (G,) group sizes


@dataclass
class _Tick:
    stacks: list
    loose: list
    rows: int  # spike buffer rows, then one zero row
    canon: np.ndarray  # buffer row of each source group, in the destination words' order
    most: np.ndarray  # (rows + 1,) most spikes each buffer row can carry per image


def _stacks(entries: list[dict], base: int, block: int) -> tuple[list[_Stack], int]:
    """Stacks of identical blocks, in order of first appearance; rows assigned from base."""
    same: dict[tuple, list[dict]] = {}
    for e in entries:
        key = (e["r"], e["W"].shape, e["W"].tobytes(), e["mult"].tobytes(), e["syn"].tobytes(), e["thr"].tobytes())
        same.setdefault(key, []).append(e)
    stacks = []
    for group in same.values():
        e0, n = group[0], len(group)
        U, S = e0["W"].shape
        weights = np.vstack([e0["W"], e0["mult"][None], e0["syn"][None]]).astype(np.float32)
        st = _Stack(np.array([e["core"] for e in group], dtype=np.int64), np.stack([e["cols"] for e in group]),
                    np.stack([e["slots"][0] for e in group], axis=1)[:, None, :], weights,
                    e0["thr"].astype(np.float32)[:, None, :], np.stack([e["out"] for e in group]),
                    False, False, base, max(1, CACHE_BYTES // (max(S, 1) * block * 4)))
        for q, e in enumerate(group):
            st.stats64 |= bool((e["mult"] * e["most"]).sum() >= EXACT or (e["syn"] * e["most"]).sum() >= EXACT)
            st.out64 |= bool((e["out"].astype(np.float64) * e["r"]).sum(axis=1).max(initial=0) >= EXACT)
            e["rows"] = base + np.arange(U) * n + q
        stacks.append(st)
        base += n * U
    return stacks, base


def _runs(ids: np.ndarray) -> np.ndarray:
    """Starts of the runs of equal values in ids."""
    return np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, np.int64)


def _count(v: np.ndarray, thr: np.ndarray, out: np.ndarray, keep: bool) -> np.ndarray | None:
    """out = number of replicas with v >= threshold, each of thr's last axis against v's column
    (counted in bytes, then written once). keep=True also returns every replica's decision,
    (..., U, r, batch)."""
    r = thr.shape[-1]
    fired = np.empty((*v.shape[:-1], r, v.shape[-1]), dtype=bool) if keep else None
    mask = np.empty(v.shape, dtype=bool)
    acc = np.zeros(v.shape, dtype=np.uint8 if r < 256 else np.float32)
    for i in range(r):
        np.greater_equal(v, thr[..., i:i + 1], out=mask)
        np.add(acc, mask, out=acc)
        if keep:
            fired[..., i, :] = mask
    np.copyto(out, acc)
    return fired


class Simulator:
    """threads: worker threads over blocks of `block` images (default: up to 2, the cores this
    project targets). Results never depend on either."""

    def __init__(self, img: ChipImage, threads: int | None = None, block: int = 128):
        self.img = img
        spec = img.spec
        self.threads = max(1, int(threads if threads is not None else min(2, os.cpu_count() or 1)))
        self.block = max(1, int(block))
        self.by_tick: list[list[int]] = [[] for _ in range(img.ticks + 1)]
        for i, c in enumerate(img.cores):
            self.by_tick[c.tick].append(i)
        if any(not self.by_tick[t] for t in range(1, img.ticks + 1)):
            raise SnnmapError("image has a tick with no core configured to run", where="image")
        self.cores = [_core_plan(c, spec) for c in img.cores]
        self.fixed = np.array([spec.cycles_per_neuron * p.neurons + spec.cycles_per_hop * p.max_hops
                               for p in self.cores], dtype=np.float64)
        self.encoder = _Encoder(img)
        hptr = img.host_ptr.astype(np.int64)
        # host packets enter beside core (0, 0): route lengths from there
        host = np.zeros((2, self.encoder.out_rows + 1))  # packets and hops per spike of each host neuron
        host[0, self.encoder.canon] = np.diff(hptr)
        host[1, self.encoder.canon] = _route_lengths(spec, (0, 0, 0, 0), img.host_dest, hptr)[0]
        self.host = host if (host.sum(axis=1) * img.replicas).max() >= EXACT else host.astype(np.float32)

        # staged images (sim/staged.py): coordinates are unique within a stage, so keys carry it
        self.staged = img.stages > 1
        self.stage_of = np.array([c.stage for c in img.cores], dtype=np.int64)
        self.io: list[dict | None] = [None] * (img.ticks + 1)
        shift = staged.stage_key_shift(spec)

        def core_key(c) -> int:
            cx, cy, x, y = c.coord
            return int(address.encode(spec, cx, cy, x, y, 0)) >> address.core_shift(spec) | c.stage << shift

        canon = self.encoder.canon
        most = np.full(self.encoder.out_rows + 1, float(img.replicas))
        most[-1] = 0
        self.ticks: list[_Tick | None] = [None]
        for t in range(1, img.ticks + 1):
            dsts = self.by_tick[t]
            key_to_dst = {core_key(img.cores[i]): j for j, i in enumerate(dsts)}
            ptr, words = self._sources(t - 1)
            if self.staged:
                ptr, words, self.io[t - 1] = staged.resolve(img, ptr, words, self._word_stage(t - 1, ptr),
                                                            t - 1, canon)
            inbound = _plan(spec, ptr, words, key_to_dst, len(dsts), [img.cores[i].axons for i in dsts], host=False)
            tick = self._tick(t, inbound, canon, most)
            self.ticks.append(tick)
            canon, most = tick.canon, tick.most
        ptr, words = self._sources(img.ticks)
        self.features = img.classifier_w.shape[0]
        readout = _plan(spec, ptr, words, {}, 1, [self.features], host=True)[0]
        self.readout, self.readout_axons = _slots(readout, canon, len(most) - 1), readout.axons

    def _tick(self, t: int, inbound: list[_Inbound], canon: np.ndarray, most: np.ndarray) -> _Tick:
        """Stacks and loose cores of tick t, and where each core's groups land in the buffer."""
        img = self.img
        zero = len(most) - 1
        entries, loose = [], []
        for j, ci in enumerate(self.by_tick[t]):
            plan, inb = self.cores[ci], inbound[j]
            # float32 is exact for integers below 2^24: bound |V| by the most events each axon can
            # receive and widen a core that could exceed it
            bound = float(np.sum(most[canon[inb.src]]))
            if bound >= EXACT or float(np.abs(plan.thr).max(initial=0)) >= EXACT:
                self.cores[ci] = plan = replace(plan, weights=plan.weights.astype(np.float64),
                                                thr=img.cores[ci].thresholds.astype(np.float64)[:, None], wide=True)
            slots = _slots(inb, canon, zero)
            if not plan.shared or plan.wide or not plan.neurons or slots.shape[0] > 1:
                core_slots = np.full((slots.shape[0], img.cores[ci].axons), zero, dtype=np.int64)
                core_slots[:, inb.axons] = slots
                sizes = np.diff(np.r_[plan.group_starts, len(plan.order)]).astype(np.float64)
                loose.append(_Loose(ci, core_slots, np.zeros(0, np.int64), sizes))
                continue
            # one input column per distinct source, in the order of their first axons (the same in
            # every tile of one shape): its axons' weights add up (integers: exact)
            uniq, first, inv = np.unique(slots[0], return_index=True, return_inverse=True)
            rank = np.empty(len(uniq), dtype=np.int64)
            rank[np.argsort(first, kind="stable")] = np.arange(len(uniq))
            uniq, inv = uniq[np.argsort(first, kind="stable")], rank[inv.ravel()]
            mult = np.bincount(inv, minlength=len(uniq))
            # add the j-th axon of every source that has one
            order = np.argsort(inv, kind="stable")
            nth = np.arange(len(inv)) - np.repeat(np.cumsum(mult) - mult, mult)
            pick = np.full((int(mult.max(initial=0)), len(uniq)), -1, dtype=np.int64)
            pick[nth, inv[order]] = inb.axons[order]
            W = plan.weights[:, pick[0]] if len(pick) else np.zeros((plan.weights.shape[0], 0), np.float32)
            for j in range(1, len(pick)):
                has = np.flatnonzero(pick[j] >= 0)
                W[:, has] += plan.weights[:, pick[j, has]]
            mult = mult.astype(np.float64)
            syn = np.bincount(inv, weights=plan.row_syn[inb.axons].astype(np.float64), minlength=len(uniq))
            thr = plan.thr.reshape(-1, plan.uniform)
            out = np.stack([plan.fanout, plan.hops, np.ones(len(plan.fanout), np.float32)])
            col_block, src_block, blocks = _blocks(W)
            for b in range(blocks):
                cols, srcs = np.flatnonzero(col_block == b), np.flatnonzero(src_block == b)
                entries.append({"core": ci, "cols": cols, "r": plan.uniform,
                                "W": W if blocks == 1 else W[np.ix_(cols, srcs)],
                                "slots": uniq[srcs][None, :], "most": most[uniq[srcs]], "mult": mult[srcs],
                                "syn": syn[srcs], "thr": thr[cols], "out": out[:, cols]})
        stacks, base = _stacks(entries, 0, self.block)
        for lc in loose:
            lc.rows = base + np.arange(len(lc.most))
            base += len(lc.most)
        rows_of = {lc.core: lc.rows for lc in loose}
        for e in entries:
            rows_of.setdefault(e["core"], np.zeros(len(self.cores[e["core"]].fanout), np.int64))[e["cols"]] = e["rows"]
        new_canon = np.concatenate([rows_of[ci] for ci in self.by_tick[t]]).astype(np.int64)
        new_most = np.zeros(base + 1)
        for e in entries:
            new_most[e["rows"]] = e["r"]
        for lc in loose:
            new_most[lc.rows] = lc.most
        return _Tick(stacks, loose, base, new_canon, new_most)

    def _word_stage(self, tick: int, ptr: np.ndarray) -> np.ndarray:
        """Stage of each source word of a tick (the host's words carry their own)."""
        if tick == 0:
            return self.img.host_stage.astype(np.int64)
        n = [len(self.cores[i].group_dest) for i in self.by_tick[tick]]
        return np.repeat(self.stage_of[self.by_tick[tick]], n)

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
        """Host encoder spike counts (n_encoder_neurons, batch) in (h, w, c) order."""
        return self.encoder.counts(np.asarray(x, dtype=np.float64))[self.encoder.canon]

    def _stack(self, st: _Stack, prev: np.ndarray, out: np.ndarray, acc: dict, record: bool) -> None:
        n, U = st.groups.shape
        S, nb = st.weights.shape[1], prev.shape[1]
        counts = out[st.base:st.base + U * n].reshape(U, n, nb)
        act = np.empty((n, 2, nb))  # events and synaptic operations of each block
        for c0 in range(0, n, st.chunk):
            c1 = min(n, c0 + st.chunk)
            ev = _axon_events(prev, st.slots[:, :, c0:c1], self.img.spec.axon_accumulates).reshape(
                S, (c1 - c0) * nb)  # (S, blocks * batch)
            vo = st.weights @ ev  # potentials per distinct column, then activity
            fired = _count(vo[:U].reshape(U, c1 - c0, nb), st.thr, counts[:, c0:c1], record)
            rest = st.weights[U:].astype(np.float64) @ ev.astype(np.float64) if st.stats64 else vo[U:]
            act[c0:c1] = rest.reshape(2, c1 - c0, nb).transpose(1, 0, 2)
            if record:
                for q in range(c0, c1):
                    ci = int(st.cores[q])
                    if ci not in acc["rec"]:
                        acc["rec"][ci] = np.zeros((len(self.cores[ci].fanout), st.thr.shape[2], nb), np.uint8)
                    acc["rec"][ci][st.groups[q]] = fired[:, q - c0]
        by_block = counts.transpose(1, 0, 2)  # (n, U, batch)
        sent = (np.matmul(st.out_stats.astype(np.float64), by_block.astype(np.float64)) if st.out64
                else np.matmul(st.out_stats, by_block).astype(np.float64))  # packets, hops, spikes per block
        acc["sops"] += act[:, 1].sum(axis=0)
        acc["hops"] += sent[:, 1].sum(axis=0)
        runs = _runs(st.cores)  # blocks of one core are adjacent
        for key, val in (("events", act[:, 0]), ("packets", sent[:, 0]), ("core", sent[:, 2])):
            acc[key][st.cores[runs]] += np.add.reduceat(val, runs, axis=0)

    def _loose(self, lc: _Loose, prev: np.ndarray, out: np.ndarray, acc: dict, record: bool) -> None:
        plan = self.cores[lc.core]
        nb = prev.shape[1]
        ev = _axon_events(prev, lc.slots, self.img.spec.axon_accumulates)  # (A, batch)
        ev64 = ev.astype(np.float64)
        v = plan.weights @ (ev64 if plan.wide else ev)  # (U, batch): per distinct column
        fired = v[plan.column] >= plan.thr  # (Nn, batch)
        if record:
            acc["rec"][lc.core] = fired.astype(np.uint8)
        counts = np.add.reduceat(fired[plan.order].astype(np.float32), plan.group_starts, axis=0) \
            if len(plan.order) else np.zeros((0, nb), np.float32)
        out[lc.rows] = counts
        c64 = counts.astype(np.float64)
        acc["sops"] += plan.row_syn.astype(np.float64) @ ev64
        acc["hops"] += plan.hops.astype(np.float64) @ c64
        acc["events"][lc.core] = ev64.sum(axis=0)
        acc["packets"][lc.core] = plan.fanout.astype(np.float64) @ c64
        acc["core"][lc.core] = c64.sum(axis=0)

    def _block(self, x: np.ndarray, first: int, drop: dict, seed: int, record: bool) -> dict:
        """One block of images through the encoder, every tick and the readout's feature sums."""
        img, spec = self.img, self.img.spec
        nb = len(x)
        cores = len(img.cores)
        acc = {"cycles": np.zeros((img.ticks + 1, nb)), "sops": np.zeros(nb), "hops": np.zeros(nb),
               "stage_cycles": np.zeros((img.stages, img.ticks + 1, nb)), "io": np.zeros((2 * img.stages, nb)),
               "layer": np.zeros((img.ticks, nb)), "core": np.zeros((cores, nb)), "events": np.zeros((cores, nb)),
               "packets": np.zeros((cores, nb)), "rec": {}}
        prev = self.encoder.counts(x)
        if 0 in drop:
            self._drop(prev, self.encoder.canon, drop[0], seed, 0, first)
        # the host link serializes every packet of the encoder's output
        host = (self.host @ prev).astype(np.float64)
        acc["cycles"][0] = spec.cycles_per_packet * host[0]
        acc["hops"] += host[1]
        if self.staged:  # the host's packets go to their stages (hops counted there)
            acc["hops"] -= host[1]
            staged.account(self.io[0], prev, acc["io"], acc["hops"])
        for t in range(1, img.ticks + 1):
            tick = self.ticks[t]
            out = np.empty((tick.rows + 1, nb), dtype=np.float32)
            out[-1] = 0
            for st in tick.stacks:
                self._stack(st, prev, out, acc, record)
            for lc in tick.loose:
                self._loose(lc, prev, out, acc, record)
            # a core reads a crossbar row per input event, fires its neurons, sends its packets;
            # the tick lasts as long as its slowest core
            on = self.by_tick[t]
            cycles = (spec.cycles_per_event * acc["events"][on] + self.fixed[on, None]
                      + spec.cycles_per_packet * acc["packets"][on])
            acc["cycles"][t] = cycles.max(axis=0, initial=0.0)
            if self.staged:
                acc["stage_cycles"][:, t] = staged.per_stage_max(cycles, self.stage_of[on], img.stages)
            acc["layer"][t - 1] = acc["core"][on].sum(axis=0)
            if t in drop:
                self._drop(out, tick.canon, drop[t], seed, t, first)
            if self.staged and t < img.ticks:
                staged.account(self.io[t], out, acc["io"], acc["hops"])
            prev = out
        acc["feats"] = _axon_events(prev, self.readout)
        return acc

    @staticmethod
    def _drop(buf: np.ndarray, canon: np.ndarray, p: float, seed: int, tick: int, first: int) -> None:
        buf[canon] = _thin(buf[canon], p, seed, tick, first)

    def run(self, x: np.ndarray, batch: int = 1000, record: bool = False, drop: dict[int, float] | None = None,
            seed: int = 0, trace: bool = False, progress=None, stage_batch: int | None = None) -> dict:
        """Predictions, logits, spikes and synaptic operations per image.

        record=True adds `core_spikes`: per core, a (neurons, images) uint8 array of spikes.
        drop={tick: p} loses each spike sent at that tick (0: the encoder's output, t: the layer
        running at tick t) independently with probability p; the draws depend only on seed, tick
        and image index, so results do not depend on the batch size.
        trace=True adds `trace`: (images, cores) spikes each core emitted (at its one tick).
        progress, if given, is called with the number of images finished after each batch.
        stage_batch: on a staged image, the images run per configuration between reconfigurations
        (default: batch); the results add `stages` (sim/staged.py).
        """
        for t, p in (drop or {}).items():
            if not 0 <= p <= 1:  # NaN compared false everywhere and silently lost nothing
                raise SnnmapError(f"--drop {p} is not a probability in 0..1 (tick {t})")
        drop = {int(t): float(p) for t, p in (drop or {}).items() if p > 0}
        img = self.img
        x = np.asarray(x)
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(img.input_shape):
            raise SnnmapError(f"inputs have shape {x.shape[1:]}, the image expects {tuple(img.input_shape)}")
        n = len(x)
        logits = np.zeros((n, img.classifier_w.shape[1]))
        sops, hops = np.zeros(n), np.zeros(n)
        layer_spikes = np.zeros((img.ticks, n))
        core_spikes = np.zeros((len(img.cores), n))
        tick_cycles = np.zeros((img.ticks + 1, n))  # per tick: slowest core + its routing
        stage_cycles, stage_io = np.zeros((img.stages, img.ticks + 1, n)), np.zeros((2 * img.stages, n))
        recorded: list[list[np.ndarray]] = [[] for _ in img.cores]
        pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None
        try:
            with single_threaded_blas():
                for s0 in range(0, n, batch):
                    nb = min(batch, n - s0)
                    starts = range(s0, s0 + nb, self.block)

                    def job(b0: int) -> dict:
                        b1 = min(b0 + self.block, s0 + nb)
                        return self._block(x[b0:b1].astype(np.float64), b0, drop, seed, record)

                    feats = np.zeros((self.features, nb))
                    for b0, acc in zip(starts, pool.map(job, starts) if pool else map(job, starts)):
                        b1 = b0 + acc["sops"].shape[0]
                        tick_cycles[:, b0:b1], sops[b0:b1], hops[b0:b1] = acc["cycles"], acc["sops"], acc["hops"]
                        layer_spikes[:, b0:b1], core_spikes[:, b0:b1] = acc["layer"], acc["core"]
                        stage_cycles[:, :, b0:b1], stage_io[:, b0:b1] = acc["stage_cycles"], acc["io"]
                        feats[self.readout_axons, b0 - s0:b1 - s0] = acc["feats"]
                        for ci, r in acc["rec"].items():
                            recorded[ci].append(r.reshape(-1, r.shape[-1]))
                    feats /= float(1 << img.k)
                    res = np.broadcast_to(img.classifier_b, (nb, len(img.classifier_b))).copy()
                    for f in range(self.features):  # fixed order: independent of the batch size
                        res += feats[f][:, None] * img.classifier_w[f]
                    logits[s0:s0 + nb] = res
                    if progress is not None:
                        progress(nb)
        finally:
            if pool is not None:
                pool.shutdown()
        out = {"pred": np.argmax(logits, axis=1).astype(np.int64) if n else np.zeros(0, np.int64),
               "logits": logits, "spikes": layer_spikes.sum(axis=0), "sops": sops, "layer_spikes": layer_spikes,
               "core_spikes_per_image": core_spikes.sum(axis=1) / max(n, 1),
               **(staged.cost(img.spec, _stage_chips(img), stage_cycles, stage_io, _config_bits(img),
                              stage_batch or batch, sops, hops) if self.staged else
                  cost_model(img.spec, len({c.coord[:2] for c in img.cores}), tick_cycles, sops, hops))}
        if trace:
            out["trace"] = core_spikes.T.astype(np.int64)
        if record:
            out["core_spikes"] = [np.concatenate(r, axis=1) if r else np.zeros((c.neurons, 0), np.uint8)
                                  for r, c in zip(recorded, img.cores)]
        return out


def _stage_chips(img: ChipImage) -> int:
    """Chips one stage occupies at most (the board that pays static power)."""
    return max(len({c.coord[:2] for c in img.cores if c.stage == s}) for s in range(img.stages))


def _config_bits(img: ChipImage) -> np.ndarray:
    from snnmap.passes.stages import stage_config_bits

    return stage_config_bits(img)


def simulate_image(img: ChipImage, x: np.ndarray, batch: int = 1000) -> dict:
    return Simulator(img).run(x, batch=batch)

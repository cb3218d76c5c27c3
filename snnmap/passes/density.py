"""How many distinct ANN neurons of a convolution one core can hold at most within its axons.

A rigorous cap, for any set of neurons (not only the tiler's boxes), that the neuron bound of a
layer limited by axons counts (bounds.py). For a set S, let P_j be the output positions where S
holds at least j channels. Every input position in the footprint of P_j (the kernel windows,
clipped to the map) is read by j channels of one position at one kernel offset, so it needs at
least g(j) axons, g(j) the fewest axons j channels need at any one offset. As a layer cake, S
needs at least sum_j (g(j) - g(j-1)) * |footprint(P_j)| axons, and |footprint(P)| >= phi(|P|),
a discrete isoperimetric bound for a point set plus the kernel box (rows, then columns).
|S| = sum_j |P_j| with |P_1| >= |P_2| >= ...; the largest such sum within A axons comes from a
dynamic programme over that chain (or, where it would be large, an upper bound on it by
Lagrangian duality). g is exact (every channel subset) for layers of up to EXACT_CHANNELS
output channels, else a lower bound (forced elements plus the j-th smallest support, or de
Caen's inequality, whichever is larger). On a chip
whose axons OR spikes an axon stands for (input, source replica) whatever the sign: supports are
unsigned and each element costs ns axons. One input is also read at several kernel offsets:
LayerDensity mixes in a second per-input bound, psi(positions around it), so that one channel
spread over many positions (which needs both signs of almost every input) does not pass.
"""

from __future__ import annotations

import numpy as np

EXACT_CHANNELS = 16
DP_STEPS = 20_000  # (channels x positions) rows of the exact programme at most, else the Lagrangian bound
DP_TABLE = 200_000  # cells of its table at most: axons counted in coarser units above that
OFFSET_UNIONS = 5  # psi(m) exactly for m up to this many offsets (psi stays flat beyond)
OFFSET_ITEMS = 1024  # (offset, channel) supports at most, else psi is left out
OFFSET_WORK = 400_000  # branch-and-bound steps for psi(m >= 3), all m together


def supports(weights: np.ndarray, signed: bool) -> np.ndarray:
    """(kh*kw, O, E) bool: the axon elements (input channel, and sign where axons add events)
    each output channel needs at each kernel offset."""
    kh, kw, c, o = weights.shape
    w = weights.reshape(kh * kw, c, o).transpose(0, 2, 1)  # (D, O, C)
    if signed:
        return np.concatenate([w > 0, w < 0], axis=2)
    return w != 0


def channel_union_lb(sup: np.ndarray) -> np.ndarray:
    """g[j], j = 0..O: a lower bound on the fewest elements the union of the supports of j
    distinct channels at one kernel offset has, nondecreasing. At offset d, an element that all
    but fewer than j channels contain is in every j-union (forced); the union holds the forced
    ones and, from the j-th smallest channel on, that channel's others."""
    n_d, n_o, n_e = sup.shape
    g = np.zeros(n_o + 1, dtype=np.int64)
    best = np.full(n_o, 1 << 62, dtype=np.int64)
    j = np.arange(1, n_o + 1)
    for d in range(n_d):
        s = sup[d]
        cnt = s.sum(axis=0)  # channels containing each element
        # per channel, its elements by how many channels contain them: h[o, v]
        h = np.zeros((n_o, n_o + 1), dtype=np.int64)
        oo, ee = np.nonzero(s)
        np.add.at(h, (oo, cnt[ee]), 1)
        per_v = np.bincount(cnt, minlength=n_o + 1)  # elements contained by v channels
        # forced for j: contained by more than O - j channels, i.e. v >= O - j + 1
        suffix_h = np.cumsum(h[:, ::-1], axis=1)[:, ::-1]  # suffix_h[o, v] = sum_{v' >= v} h[o, v']
        suffix_n = np.cumsum(per_v[::-1])[::-1]
        v = n_o - j + 1  # (O,) threshold per j
        forced = suffix_n[v]
        rest = s.sum(axis=1)[:, None] - suffix_h[:, v]  # (O channels, O values of j)
        kth = np.sort(rest, axis=0)[j - 1, j - 1]
        best = np.minimum(best, np.maximum(forced + kth, _de_caen(s)))
    g[1:] = np.maximum.accumulate(best)  # the true minimum is nondecreasing in j
    return g


def _de_caen(s: np.ndarray) -> np.ndarray:
    """Per j = 1..O, a lower bound on the union of any j of these sets (rows of s) by de Caen's
    inequality |U A_i| >= sum_i |A_i|^2 / sum_k |A_i & A_k|, each term bounded below with A_i's
    j - 1 largest intersections, and the j smallest terms summed."""
    n_o = len(s)
    f = s.astype(np.float32)
    inter = (f @ f.T).astype(np.float64)  # counts below 2^24: exact in float32
    size = np.diag(inter).copy()
    np.fill_diagonal(inter, 0)
    top = np.cumsum(-np.sort(-inter, axis=1), axis=1)  # top[i, m - 1]: sum of A_i's m largest
    others = np.concatenate([np.zeros((n_o, 1)), top[:, :-1]], axis=1)  # [i, j - 1]: j - 1 largest
    terms = np.sort(size[:, None] ** 2 / np.maximum(size[:, None] + others, 1), axis=0)  # (i sorted, j)
    sums = np.cumsum(terms, axis=0)[np.arange(n_o), np.arange(n_o)]  # j smallest terms at j
    return np.ceil(sums - 1e-6).astype(np.int64)


def line_union_min(n_out: int, n_in: int, k: int, s: int, p: int) -> np.ndarray:
    """f[t], t = 0..n_out: fewest inputs of a line of n_in that the windows (length k, stride s,
    padding p, clipped to the line) of t distinct outputs cover, exactly: windows are monotone,
    so a set's union grows, output by output from the left, by the part past the previous one's
    end (a dynamic programme over the last output taken)."""
    lo = np.clip(np.arange(n_out) * s - p, 0, n_in)
    hi = np.clip(np.arange(n_out) * s - p + k, 0, n_in)
    big = 1 << 40
    # grow[i', i]: inputs window i adds after window i' (i' < i)
    grow = np.maximum(hi[None, :] - np.maximum(lo[None, :], hi[:, None]), 0)
    grow = np.where(np.arange(n_out)[:, None] < np.arange(n_out)[None, :], grow, big)
    best = (hi - lo).astype(np.int64)  # t = 1, the last (only) output at i
    f = np.zeros(n_out + 1, dtype=np.int64)
    if n_out:
        f[1] = best.min()
    for t in range(2, n_out + 1):
        best = (best[:, None] + grow).min(axis=0)
        f[t] = best.min()
    return f


def _linear_minorant(f: np.ndarray, alpha: int) -> int:
    """Largest beta with f[t] >= alpha * t + beta for every t >= 1."""
    t = np.arange(1, len(f))
    return int((f[1:] - alpha * t).min()) if len(t) else 0


def footprint_lb(max_a: int, out_hw: tuple[int, int], in_hw: tuple[int, int], kernel: tuple[int, int],
                 stride: int, padding: int, lines: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """phi[a], a = 0..max_a: fewest input positions the windows of any a output positions cover.
    Rows first: r rows of a_i points cover at least sum f_w(a_i) >= aw * a + bw * r positions of
    their own rows (f_w the exact line bound, aw, bw its linear minorant); those span at least
    f_w(ceil(a / r)) columns, and each column with t of them covers >= ah * t + bh rows. Columns
    first alike; the larger of the two, minimized over the row count r. `lines`: (f_h, f_w) when
    the caller has them."""
    (OH, OW), (H, W), (kh, kw) = out_hw, in_hw, kernel
    fh, fw = lines if lines is not None else (line_union_min(OH, H, kh, stride, padding),
                                              line_union_min(OW, W, kw, stride, padding))
    a = np.arange(max_a + 1)
    out = np.zeros(max_a + 1, dtype=np.int64)
    for (f1, n1, f2, n2, span2) in ((fw, OW, fh, OH, W), (fh, OH, fw, OW, H)):
        # f1 along the lines of points (rows when rows first), n1 points per line at most,
        # n2 lines at most; f2 across (columns), span2 the most columns there are
        a1 = min(stride, kw if f1 is fw else kh)
        b1 = _linear_minorant(f1, a1)
        a2 = min(stride, kh if f2 is fh else kw)
        b2 = _linear_minorant(f2, a2)
        best = np.full(max_a + 1, 1 << 40, dtype=np.int64)
        for r in range(1, n2 + 1):
            ok = (a >= r) & (a <= r * n1)
            per_line = np.minimum(-(-a // r), n1)
            y = a1 * a + b1 * r  # covered in the lines' own direction
            cols = f1[np.clip(per_line, 0, n1)] if b2 >= 0 else np.full(max_a + 1, span2)
            q = a2 * y + b2 * cols
            best = np.where(ok, np.minimum(best, q), best)
        out = np.maximum(out, np.where(a >= 1, best, 0))
    return out


def exact_channel_unions(sup: np.ndarray) -> np.ndarray:
    """g[j] exactly: the fewest elements the supports of j channels cover at one offset, by
    enumerating every channel subset (at most EXACT_CHANNELS channels), all offsets at once."""
    n_d, n_o, n_e = sup.shape
    size = np.zeros(1 << n_o, dtype=np.int64)
    for o in range(n_o):  # channels in each subset, built as the unions below
        size[1 << o:2 << o] = size[:1 << o] + 1
    count = np.zeros((n_d, 1 << n_o), dtype=np.int64)
    for w in range(-(-n_e // 64)):  # elements in words of 64 bits
        chunk = sup[:, :, w * 64:(w + 1) * 64].astype(np.uint64)
        masks = (chunk << np.arange(chunk.shape[2], dtype=np.uint64)).sum(axis=2, dtype=np.uint64)  # (D, O)
        u = np.zeros((n_d, 1 << n_o), dtype=np.uint64)
        for o in range(n_o):  # the subsets with channel o as their highest: those without it, plus o
            u[:, 1 << o:2 << o] = u[:, :1 << o] | masks[:, o:o + 1]
        count += np.bitwise_count(u)
    least = count.min(axis=0)  # over offsets
    g = np.full(n_o + 1, 1 << 40, dtype=np.int64)
    np.minimum.at(g, size, least)
    return g


def offset_unions(sup: np.ndarray, m_max: int = OFFSET_UNIONS, budget: int = OFFSET_WORK) -> list[int]:
    """psi[m], m = 0..: the fewest elements the supports of m distinct kernel offsets cover, each
    offset with one channel of its choice (the positions around one input hold m neurons, maybe
    of m channels): exact, pairs all at once, then a branch and bound over the (offset, channel)
    supports smallest first, for m up to m_max while the search stays within `budget` steps."""
    n_d, n_o, n_e = sup.shape
    flat = sup.reshape(n_d * n_o, n_e)
    size = flat.sum(axis=1)
    off = np.repeat(np.arange(n_d), n_o)
    psi = [0, int(size.min())]
    if n_d < 2 or m_max < 2:
        return psi
    packed = np.packbits(flat, axis=1)  # (items, bytes)
    ones = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)  # bits set per byte
    pair = np.zeros((len(flat), len(flat)), dtype=np.int64)
    for b in range(packed.shape[1]):
        pair += ones[packed[:, None, b] | packed[None, :, b]]
    pair[off[:, None] == off[None, :]] = 1 << 40
    psi.append(max(int(pair.min()), psi[-1]))
    bits = [int.from_bytes(np.packbits(row[::-1]).tobytes(), "big") for row in flat]
    order = np.argsort(size, kind="stable")
    items = [(bits[i], int(off[i]), int(size[i])) for i in order]
    steps = [0]
    i, j = np.unravel_index(int(np.argmin(pair)), pair.shape)
    found = (bits[i] | bits[j], {int(off[i]), int(off[j])})  # a best pair: the greedy start below
    for m in range(3, min(m_max, n_d) + 1):
        # a feasible m-set (the last best plus its cheapest extension) bounds the search
        cur, used = found
        ext = min(((cur | mask).bit_count(), mask, d) for mask, d, _ in items if d not in used)
        best = [ext[0], (cur | ext[1], used | {ext[2]})]

        def dfs(start: int, cur: int, used: frozenset, depth: int) -> None:
            if depth == m:
                if cur.bit_count() < best[0]:
                    best[0], best[1] = cur.bit_count(), (cur, set(used))
                return
            for i in range(start, len(items)):
                steps[0] += 1
                if steps[0] > budget:
                    raise TimeoutError
                mask, d, sz = items[i]
                if sz >= best[0]:
                    break  # the rest are no smaller, and a union is at least its largest part
                if d not in used and (cur | mask).bit_count() < best[0]:
                    dfs(i + 1, cur | mask, used | {d}, depth + 1)

        try:
            dfs(0, 0, frozenset(), 0)
        except TimeoutError:
            break
        psi.append(max(best[0], psi[-1]))
        found = best[1]
    return psi


def _chain_max(cost: np.ndarray, axons: int, multipliers: int = 64) -> int:
    """Largest sum_j a_j over a_1 >= a_2 >= ... >= 0 with sum_j cost[j, a_j] <= axons (costs
    nondecreasing in a): by a dynamic programme over (a_j, axons spent), costs and axons counted
    in units of `unit` rounded down (a sum of rounded-down costs stays within the rounded-down
    axons, so the programme's answer is still an upper bound), or, with many channels, bounded
    from above by Lagrangian duality."""
    n_o, amax = cost.shape[0], cost.shape[1] - 1
    a = np.arange(amax + 1)
    if n_o * (amax + 1) <= DP_STEPS:
        unit = max(1, -(-(amax + 1) * (axons + 1) // DP_TABLE))
        icost = np.floor(cost / unit + 1e-9).astype(np.int64)
        budget = axons // unit
        neg = np.iinfo(np.int32).min // 4
        # best[a, c]: most neurons in channels j..O with a_j = a at cost exactly c
        nxt = np.full((amax + 1, budget + 1), neg, dtype=np.int32)
        nxt[:, 0] = 0  # past the last channel: a_{O+1} = 0 costs nothing
        for j in range(n_o - 1, -1, -1):
            pm = np.maximum.accumulate(nxt, axis=0)  # a_{j+1} <= a_j
            cur = np.full_like(nxt, neg)
            for ai in range(amax + 1):
                c = int(icost[j, ai])
                if c <= budget:
                    cur[ai, c:] = pm[ai, :budget + 1 - c] + ai
            nxt = cur
        return int(max(nxt.max(), 0))
    lam = np.geomspace(1e-6, float(n_o * max(amax, 1)), multipliers)[:, None]  # every multiplier at once
    v = np.zeros((multipliers, amax + 1))
    for j in range(n_o - 1, -1, -1):  # any multiplier bounds the chain's sum from above
        v = a - lam * cost[j] + np.maximum.accumulate(v, axis=1)
    return min(n_o * amax, int(np.floor((lam[:, 0] * axons + v.max(axis=1)).min() + 1e-9)))


class LayerDensity:
    """What the cap needs of one layer, computed once; cap(axons) per fan-in level.

    Two lower bounds hold for every input q of a set S's footprint: g(k_q), with k_q the most
    channels S has at one position around q, and psi(m_q), with m_q the positions of S around q.
    Any mix theta * g + (1 - theta) * psi is one too. Summed over q, the g part is the layer cake
    of the module docstring; the psi part, with psi(m) >= psi(1) + r (m - 1) (r the least slope
    psi allows) and sum_q m_q = the windows' inputs >= w a (a = positions of S, w the smallest
    window), is at least min(psi1 F + r (T - F), psi1 T), F = phi(a) <= |footprint| <= T = max(w a,
    F). The cap is the smallest, over a few theta, of the chain's largest sum."""

    THETAS = (1.0, 0.8, 0.7, 0.9, 0.6, 0.5, 0.3, 0.0)  # the plain cake first, then the usual best

    def __init__(self, weights: np.ndarray, signed: bool, per_element: int, out_hw: tuple[int, int],
                 in_hw: tuple[int, int], stride: int, padding: int, like: LayerDensity | None = None):
        """`like`: a LayerDensity of the same weights (another part of the map) to take g from."""
        kh, kw, _, n_o = weights.shape
        sup = supports(weights, signed) if like is None else like.sup
        self.g = like.g if like is not None else \
            (exact_channel_unions(sup) if n_o <= EXACT_CHANNELS else channel_union_lb(sup)) * per_element
        self.sup, self.per_element, self.kernel = sup, per_element, (kh, kw)
        rows = line_union_min(out_hw[0], in_hw[0], kh, stride, padding)
        cols = line_union_min(out_hw[1], in_hw[1], kw, stride, padding)
        self.phi = footprint_lb(out_hw[0] * out_hw[1], out_hw, in_hw, (kh, kw), stride, padding, (rows, cols))
        self.window = int(rows[1] * cols[1])  # the smallest window: fewest rows times fewest columns
        self.psi_cost = None  # computed when first needed

    def _offset_cost(self) -> np.ndarray | None:
        """Per count of positions a, the psi part's least total (None: psi gives nothing). Asked
        only where _with_psi holds."""
        if self.psi_cost is None:
            psi = np.array(offset_unions(self.sup), dtype=np.int64) * self.per_element
            psi[1] = self.g[1]  # one offset, one channel: the same quantity
            m_most = self.kernel[0] * self.kernel[1]
            if len(psi) <= 2 or m_most < 2:
                self.psi_cost = np.zeros(0)
            else:
                psi = np.concatenate([psi, np.full(max(m_most + 1 - len(psi), 0), psi[-1])])
                r = min((psi[k] - psi[1]) / (k - 1) for k in range(2, m_most + 1))
                a = np.arange(len(self.phi))
                far = np.maximum(self.window * a, self.phi)
                self.psi_cost = np.minimum(psi[1] * self.phi + r * (far - self.phi), psi[1] * far).astype(np.float64)
        return self.psi_cost if len(self.psi_cost) else None

    def _with_psi(self) -> bool:
        """psi is computed for layers whose channel unions are exact (few channels) and whose
        (offset, channel) supports are few: elsewhere the plain layer cake binds no better."""
        n_d, n_o, _ = self.sup.shape
        return n_o <= EXACT_CHANNELS and n_d * n_o <= OFFSET_ITEMS

    def cap(self, axons: int, enough: int = 0, limit: int | None = None) -> int | None:
        """Most distinct ANN neurons one core with `axons` axons can hold, or None (no claim).
        With `enough`, it may stop at the first multiplier whose cap is at most that; with
        `limit` (what the core's neurons allow), it returns `limit` where, for every multiplier,
        a uniform chain (k channels at a positions) within the axons shows the cap is no lower."""
        g = self.g
        if g[1] <= 0:
            return None
        thetas = self.THETAS if self._with_psi() and self._offset_cost() is not None else (1.0,)
        mixes = [(theta, theta * g[1] * self.phi + ((1 - theta) * self.psi_cost if theta < 1 else 0))
                 for theta in thetas]
        if limit is not None:
            k = np.arange(1, len(g))[:, None]
            a = np.arange(len(self.phi))[None, :]
            if all(int((k * a * (theta * (g[1:, None] - g[1]) * self.phi[None, :] + first[None, :] <= axons))
                       .max(initial=0)) >= limit for theta, first in mixes):
                return limit
        best = None
        for theta, first in mixes:
            amax = int(np.flatnonzero(first <= axons).max())  # the positions a core's neurons sit at
            cost = np.vstack([first[None, :amax + 1], theta * np.diff(g)[1:, None] * self.phi[None, :amax + 1]])
            d = _chain_max(cost, axons)
            best = d if best is None else min(best, d)
            if best <= enough:
                break
        return max(best, 1)


def max_neurons(weights: np.ndarray, signed: bool, per_element: int, axons: int,
                out_hw: tuple[int, int], in_hw: tuple[int, int], stride: int, padding: int) -> int | None:
    """An upper bound on the distinct ANN neurons of the layer one core with `axons` axons holds
    (each support element costs per_element axons), or None where the argument gives none."""
    return LayerDensity(weights, signed, per_element, out_hw, in_hw, stride, padding).cap(axons)

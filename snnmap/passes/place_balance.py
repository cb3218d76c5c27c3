"""The second objective: the most loaded link, with spike-hops held within a tolerance.

Lexicographic in two stages: the CP-SAT passes minimize spike-hops; this pass then lowers the
maximum link load while spike-hops stay within BALANCE_TOLERANCE of what those passes reached.
A CP-SAT model of link loads needs a boolean per (edge, link) and does not fit the small-solve
scheme, so the second stage is a deterministic local search on the exact float64 figures: take
the most loaded link, the tiles (or multicast units) whose traffic crosses it, heaviest first,
and try moving each to a nearby free place or swapping it with a neighbour; keep the move that
lowers the maximum load most without breaking the spike-hops cap; repeat until no move helps or
the evaluation budget is spent (eval_work). Works on both presets through two small adapters.
"""

from __future__ import annotations

import time

import numpy as np

from snnmap.deadline import Deadline
from snnmap.links import grid_link_loads

BALANCE_TOLERANCE = 0.02  # spike-hops may grow by at most this fraction to lower the max link load
HOT_OBJECTS = 4  # movers tried per step: those sending the most over the hottest link
# Budget units charged per evaluated placement: 0.5 units/s (pipeline.WORK_PER_SECOND) x the
# time spike-hops and link loads take, modelled as 0.2 ms plus 3 us per edge or tree segment
# (measured on the published LeNet's 188 tile edges and 520 words); deterministic, not the clock.
def eval_work(items: int) -> float:
    return 0.5 * (2e-4 + 3e-6 * items)


def _hot(H: np.ndarray, V: np.ndarray):
    """(is_horizontal, x, y, load) of the most loaded link (ties: the first in H, then V)."""
    hm, vm = H.max(initial=0.0), V.max(initial=0.0)
    if hm >= vm and H.size:
        y, x = np.unravel_index(int(np.argmax(H)), H.shape)
        return True, int(x), int(y), float(hm)
    y, x = np.unravel_index(int(np.argmax(V)), V.shape) if V.size else (0, 0)
    return False, int(x), int(y), float(vm)


def _crossing(horizontal: bool, x: int, y: int, lo, hi, fixed) -> np.ndarray:
    """Segments (lo..hi along the axis, at `fixed` across it) that use the link."""
    if horizontal:
        return (fixed == y) & (lo <= x) & (hi > x)
    return (fixed == x) & (lo <= y) & (hi > y)


class TileMoves:
    """Tiles on slots (chips without multicast): pos is a slot per tile."""

    def __init__(self, cost, radius: int = 2):
        self.cost, self.board, self.radius = cost, cost.board, radius
        self.work = eval_work(len(cost.traffic.src))

    def hops(self, pos):
        return self.cost.spike_hops(pos)

    def segments(self, pos):
        t, bd = self.cost.traffic, self.board
        sy, sx = np.divmod(pos[t.src], bd.width)
        dy, dx = np.divmod(pos[t.dst], bd.width)
        return sx, sy, dx, dy

    def loads(self, pos):
        sx, sy, dx, dy = self.segments(pos)
        return grid_link_loads(self.board.width, self.board.height, sx, sy, dx, dy, self.cost.traffic.packets)

    def movers(self, pos, hot) -> np.ndarray:
        horizontal, x, y, _ = hot
        t = self.cost.traffic
        sx, sy, dx, dy = self.segments(pos)
        on = _crossing(True, x, y, np.minimum(sx, dx), np.maximum(sx, dx), sy) if horizontal else \
            _crossing(False, x, y, np.minimum(sy, dy), np.maximum(sy, dy), dx)
        share = np.bincount(np.r_[t.src[on], t.dst[on]], weights=np.r_[t.packets[on], t.packets[on]],
                            minlength=len(pos))
        order = np.lexsort((np.arange(len(pos)), -share))
        return order[share[order] > 0][:HOT_OBJECTS]

    def moves(self, pos, obj):
        bd = self.board
        every = np.arange(bd.slots)
        near = every[bd.hops(np.full(bd.slots, pos[obj]), every) <= self.radius]
        occupant = np.full(bd.slots, -1, np.int64)
        occupant[pos] = np.arange(len(pos))
        for s in near:
            if s == pos[obj]:
                continue
            new = pos.copy()
            other = occupant[s]
            if other >= 0:
                new[other] = pos[obj]
            new[obj] = s
            yield new


class UnitMoves:
    """Units of aligned tiles at base codes (multicast chips, place_mcast.py)."""

    def __init__(self, placer, count: int = 12):
        self.placer, self.cost, self.count = placer, placer.cost, count
        self.work = eval_work(len(self.cost.w) + int(self.cost.nx.sum()))

    def hops(self, base):
        return self.cost.spike_hops(base)

    def loads(self, base):
        return self.cost.link_loads(base)

    def movers(self, base, hot) -> np.ndarray:
        horizontal, x, y, _ = hot
        c = self.cost
        (hw, hrow, hlo, hhi), (vw, vcol, vlo, vhi) = c.segments(base)
        on_h = _crossing(True, x, y, hlo, hhi, hrow) if horizontal else np.zeros(len(hw), bool)
        on_v = np.zeros(len(vw), bool) if horizontal else _crossing(False, x, y, vlo, vhi, vcol)
        words = np.r_[hw[on_h], vw[on_v]]
        share = np.bincount(np.r_[c.su[words], c.dv[words]], weights=np.r_[c.w[words], c.w[words]], minlength=c.U)
        order = np.lexsort((np.arange(c.U), -share))
        return order[share[order] > 0][:HOT_OBJECTS]

    def moves(self, base, u):
        units = self.cost.units
        for b in self.placer.candidates(base, np.array([u]))[0][:self.count]:
            if b != base[u]:
                new = base.copy()
                new[u] = b
                yield new
        same = np.flatnonzero((units.size == units.size[u]) & (units.length == units.length[u]))
        same = same[same != u]
        d = np.abs(self.placer.gx[base[same]] - self.placer.gx[base[u]]) + \
            np.abs(self.placer.gy[base[same]] - self.placer.gy[base[u]])
        for v in same[np.lexsort((same, d))][:self.count]:
            new = base.copy()
            new[u], new[v] = base[v], base[u]
            yield new


def balance_pass(adapter, pos: np.ndarray, budget: float, rep, deadline: Deadline | None = None) -> np.ndarray:
    """Lower the max link load of `pos` (updated in place) with spike-hops capped at
    (1 + BALANCE_TOLERANCE) x their value on entry. rep: a place_cpsat.PassReport (its work: the
    evaluations, each charged adapter.work; solves: the moves taken)."""
    t0 = time.perf_counter()
    cap = adapter.hops(pos) * (1 + BALANCE_TOLERANCE) + 1e-9
    max_evals = int(budget / adapter.work)
    evals = 0
    H, V = adapter.loads(pos)
    hot = _hot(H, V)
    while evals < max_evals and hot[3] > 0:
        if deadline is not None and deadline.remaining() is not None and deadline.remaining() <= 0.01:
            break
        best = None
        for obj in adapter.movers(pos, hot):
            for new in adapter.moves(pos, obj):
                evals += 1
                h = adapter.hops(new)
                if h <= cap:
                    load = _hot(*adapter.loads(new))[3]
                    if load < hot[3] - 1e-9 and (best is None or (load, h) < best[:2]):
                        best = (load, h, new)
                if evals >= max_evals:
                    break
            if evals >= max_evals:
                break
        if best is None:
            break
        pos[:] = best[2]
        rep.solves += 1  # improving moves taken
        H, V = adapter.loads(pos)
        hot = _hot(H, V)
    rep.work += evals * adapter.work
    rep.seconds = time.perf_counter() - t0
    return pos

"""Placement by CP-SAT in incremental passes: windows of consecutive layers, then large-neighbourhood
refinement, each pass reporting its objective, its best bound and the gap between them.

One whole-board model (a boolean per tile and core) is far too big for VGG's 1,813 tiles, so every
solve is a small model over a few dozen free tiles while the rest stay where they are:

* a free tile's slot is an integer variable over its candidate slots; one table ties the slot to
  the tile's coordinates and to the cost of its traffic with the fixed tiles (computed exactly
  with the chip's hop count, so any topology plugs in there); the free tiles' slots differ;
* traffic between two free tiles costs packets x (|dx| + |dy| + (chip_link_hops - 1) x chip
  crossings), the X-then-Y mesh route (address.route_hops), with at least one hop;
* the current placement is the solution hint, so a solve never ends worse than it started.

Packets are scaled to integers per solve; every figure reported is recomputed in float64 from the
placement. Determinism: one worker, a fixed seed and deterministic-time limits (CP-SAT's own work
count), so the same model, chip, seed and time limit give the same placement; the wall-clock
deadline only guards --time-limit, and `cut_by_clock` says when it had to stop a pass early.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from snnmap.deadline import Deadline
from snnmap.links import grid_link_loads
from snnmap.passes.place import Board
from snnmap.passes.place_curve import curve_slots
from snnmap.passes.traffic import Traffic

# Small solves that CP-SAT mostly proves optimal beat big ones it cannot finish (measured on the
# published LeNet: 8 tiles per window and 8 slots per refinement step gave the lowest spike-hops
# for the same time among 8..24 tiles and 8..20 slots).
WINDOW_TILES = 8  # free tiles per window solve
WINDOW_RADIUS = 2  # a window tile may move this many hops
LNS_SLOTS = 8  # slots freed per refinement step
EXACT_TILES = 40  # at most this many tiles: one whole-board solve proves (or bounds) the optimum
BALANCE_SHARE = 0.15  # of the placement budget kept for the second objective (place_balance.py)
SOLVE_OVERHEAD = 0.01  # budget units charged per solve for setting it up (deterministic, unlike the clock)


@dataclass
class PassReport:
    name: str
    seconds: float = 0.0
    spike_hops: float = 0.0  # whole placement after the pass
    max_link_load: float = 0.0
    objective: float = 0.0  # sum over its solves: spike-hops of the traffic the solve could move
    bound: float = 0.0  # sum over its solves: CP-SAT's best bound on that
    solves: int = 0
    proven: int = 0  # solves proven optimal
    faults: int = 0  # solves the solver itself failed (the placement kept)
    work: float = 0.0  # budget units used (CP-SAT deterministic time plus SOLVE_OVERHEAD per solve)
    cpsat: bool = True  # False: a pass without CP-SAT (greedy start, link balance): no objective or bound

    @property
    def gap(self) -> float | None:
        return (self.objective - self.bound) / self.objective if self.objective > 0 else None

    def to_dict(self) -> dict:
        solved = self.cpsat
        return {"pass": self.name, "seconds": self.seconds, "spike_hops": self.spike_hops,
                "max_link_load": self.max_link_load, "objective": self.objective if solved else None,
                "bound": self.bound if solved else None, "gap": self.gap if solved else None,
                "solves": self.solves, "proven_optimal": self.proven, "faults": self.faults, "work": self.work}


class Cost:
    """Spike-hops and link loads of a placement (slot per tile) under a traffic matrix."""

    def __init__(self, board: Board, traffic: Traffic, n_tiles: int):
        self.board, self.traffic, self.n = board, traffic, n_tiles
        a = np.concatenate([traffic.src, traffic.dst])
        b = np.concatenate([traffic.dst, traffic.src])
        w = np.concatenate([traffic.packets, traffic.packets])
        order = np.lexsort((-w, a))
        self.nbr, self.w = b[order], w[order]  # incident edges per tile, heaviest first
        self.ptr = np.zeros(n_tiles + 1, dtype=np.int64)
        np.cumsum(np.bincount(a, minlength=n_tiles), out=self.ptr[1:])

    def spike_hops(self, pos: np.ndarray) -> float:
        t = self.traffic
        return float((self.board.hops(pos[t.src], pos[t.dst]) * t.packets).sum())

    def max_link_load(self, pos: np.ndarray) -> float:
        t, bd = self.traffic, self.board
        if len(t.src) == 0:
            return 0.0
        sy, sx = np.divmod(pos[t.src], bd.width)
        dy, dx = np.divmod(pos[t.dst], bd.width)
        h, v = grid_link_loads(bd.width, bd.height, sx, sy, dx, dy, t.packets)
        return float(max(h.max(initial=0.0), v.max(initial=0.0)))

    def local(self, pos: np.ndarray, tiles: np.ndarray) -> float:
        """Spike-hops of the edges touching `tiles` (each edge once)."""
        mask = np.zeros(self.n, dtype=bool)
        mask[tiles] = True
        t = self.traffic
        e = mask[t.src] | mask[t.dst]
        return float((self.board.hops(pos[t.src[e]], pos[t.dst[e]]) * t.packets[e]).sum())

    def tile_bounds(self, scale: float = 1.0) -> np.ndarray:
        """Per tile: the least its edges can cost, heaviest first at the nearest distances a grid
        offers (at most min(4d, 4 x the board's short side) slots at distance d), packets scaled
        and rounded as a CP-SAT solve scales them."""
        deg = np.diff(self.ptr)
        out = np.zeros(self.n)
        if len(deg) == 0 or deg.max() == 0:
            return out
        side = min(self.board.width, self.board.height)
        d = np.arange(1, deg.max() + 2)
        dist = np.repeat(d, np.minimum(4 * d, 4 * side))[:deg.max()]
        rank = np.arange(len(self.nbr)) - np.repeat(self.ptr[:-1], deg)
        w = self.w if scale == 1.0 else np.maximum(1, np.rint(self.w * scale))
        np.add.at(out, np.repeat(np.arange(self.n), deg), w * dist[rank])
        return out

    def lower_bound(self) -> float:
        """A bound no placement beats: every edge is counted from both ends, so half the sum of
        the tiles' own bounds (Gilmore-Lawler style)."""
        return float(self.tile_bounds().sum() / 2)


@dataclass
class Placer:
    board: Board
    cost: Cost
    seed: int = 0
    deadline: Deadline | None = None
    cut_by_clock: bool = False
    reports: list[PassReport] = field(default_factory=list)
    pos: np.ndarray | None = None  # the final slot of every tile, once place_cpsat returns

    def _wall_left(self) -> float | None:
        return None if self.deadline is None else self.deadline.remaining()

    def _clock_out(self) -> bool:
        wall = self._wall_left()
        if wall is not None and wall <= 0.01:
            self.cut_by_clock = True
        return self.cut_by_clock

    def solve(self, pos: np.ndarray, free: np.ndarray, cand: list[np.ndarray], work: float,
              rep: PassReport, quick: bool = True) -> bool:
        """Re-place the `free` tiles over their candidate slots (pos holds a feasible start, their
        slots differ and lie in cand); updates pos in place; True when the solve improved it."""
        if self._clock_out():
            return False
        # imported after the clock check: the import alone takes about 0.4 s
        from ortools.sat.python import cp_model

        if self._clock_out():
            return False
        wall = self._wall_left()
        board, cost, spec = self.board, self.cost, self.board.spec
        n_free = len(free)
        local_of = np.full(cost.n, -1, dtype=np.int64)
        local_of[free] = np.arange(n_free)
        chip_cost = spec.chip_link_hops - 1
        use_cx = chip_cost > 0 and board.chips_x > 1
        use_cy = chip_cost > 0 and board.chips_y > 1
        # free-free edges once (i < j), fixed neighbours folded into each tile's cost table
        pairs, pair_w, fixed = [], [], []
        for li, t in enumerate(free):
            nb, w = cost.nbr[cost.ptr[t]:cost.ptr[t + 1]], cost.w[cost.ptr[t]:cost.ptr[t + 1]]
            lj = local_of[nb]
            inner = lj > li
            pairs.append(np.stack([np.full(inner.sum(), li), lj[inner]], axis=1))
            pair_w.append(w[inner])
            fixed.append((nb[lj < 0], w[lj < 0]))
        pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
        pair_w = np.concatenate(pair_w) if pair_w else np.zeros(0)
        top = max([pair_w.max(initial=0.0)] + [w.max(initial=0.0) for _, w in fixed])
        if top <= 0:
            return False
        every = np.concatenate([pair_w] + [w for _, w in fixed])
        # integer packets stay exact; others get four significant digits relative to the heaviest
        scale = 1.0 if top <= 1e6 and np.array_equal(every, np.rint(every)) else 10000.0 / top
        tables = []
        for li in range(n_free):
            nb, w = fixed[li]
            c = cand[li]
            if len(nb):
                h = board.hops(np.repeat(c, len(nb)), np.tile(pos[nb], len(c))).reshape(len(c), len(nb))
                tables.append(np.rint(h @ (w * scale)).astype(np.int64))
            else:
                tables.append(np.zeros(len(c), np.int64))
        m = cp_model.CpModel()
        xy = board.coords(np.concatenate(cand)) if cand else np.zeros((0, 4), np.int64)
        slot_v, cost_v, coord_v = [], [], []
        off = 0
        terms, coefs = [], []
        for li in range(n_free):
            c = cand[li]
            co = xy[off:off + len(c)]
            off += len(c)
            gx = co[:, 0] * spec.mesh_w + co[:, 2]
            gy = co[:, 1] * spec.mesh_h + co[:, 3]
            s = m.NewIntVarFromDomain(cp_model.Domain.FromValues(c.tolist()), f"s{li}")
            k = m.NewIntVar(int(tables[li].min()), int(tables[li].max()), f"k{li}")
            cols = [c, tables[li], gx, gy] + ([co[:, 0]] if use_cx else []) + ([co[:, 1]] if use_cy else [])
            vs = [s, k, m.NewIntVar(0, board.width - 1, f"x{li}"), m.NewIntVar(0, board.height - 1, f"y{li}")]
            if use_cx:
                vs.append(m.NewIntVar(0, board.chips_x - 1, f"cx{li}"))
            if use_cy:
                vs.append(m.NewIntVar(0, board.chips_y - 1, f"cy{li}"))
            m.AddAllowedAssignments(vs, np.stack(cols, axis=1).tolist())
            here = int(np.flatnonzero(c == pos[free[li]])[0])
            for v, col in zip(vs, cols):
                m.AddHint(v, int(col[here]))
            slot_v.append(s)
            cost_v.append(k)
            coord_v.append(vs[2:])
            terms.append(k)
            coefs.append(1)
        m.AddAllDifferent(slot_v)
        axes = [(board.width - 1, 1), (board.height - 1, 1)] + ([(board.chips_x - 1, chip_cost)] if use_cx else []) \
            + ([(board.chips_y - 1, chip_cost)] if use_cy else [])
        incident = [[] for _ in range(n_free)]  # per tile: (distance variables, coefficients) of its edges
        for (i, j), w in zip(pairs.tolist(), pair_w):
            wi = max(1, round(w * scale))
            ds = []
            for a, b, (ub, mult) in zip(coord_v[i], coord_v[j], axes):
                d = m.NewIntVar(0, ub, "")
                m.AddAbsEquality(d, a - b)
                ds.append(d)
                terms.append(d)
                coefs.append(wi * mult)
            m.Add(ds[0] + ds[1] >= 1)
            for end in (i, j):
                incident[end].append((ds, [wi * mult for _, mult in axes]))
        if not quick:
            # each tile's own Gilmore-Lawler bound as a cut (the LP alone sees |dx| + |dy| >= 1 only)
            lb = self.cost.tile_bounds(scale)
            for li, t in enumerate(free):
                if len(fixed[li][0]):
                    continue  # its fixed edges are rounded as one sum: the cut would not match
                vs = [v for group, _ in incident[li] for v in group]
                cs = [c for _, group in incident[li] for c in group]
                m.Add(cp_model.LinearExpr.WeightedSum(vs, cs) >= int(np.floor(lb[t])))
            if n_free == cost.n:  # every edge inside: the objective is half the tiles' sums
                m.Add(cp_model.LinearExpr.WeightedSum(terms, coefs) >= int(np.ceil(lb.sum() / 2)))
            if n_free == cost.n and all(len(c) == board.slots for c in cand):
                # the whole board is free: mirror images are equivalent, keep the heaviest tile in one quadrant
                heavy = int(np.argmax(np.bincount(np.concatenate([cost.traffic.src, cost.traffic.dst]),
                                                  weights=np.concatenate([cost.traffic.packets] * 2),
                                                  minlength=cost.n)[free]))
                m.Add(coord_v[heavy][0] <= (board.width - 1) // 2)
                m.Add(coord_v[heavy][1] <= (board.height - 1) // 2)
        m.Minimize(cp_model.LinearExpr.WeightedSum(terms, coefs))
        return solve_and_keep(self, m, rep, work, wall, SOLVE_OVERHEAD, scale, slot_v, pos, free, cost, quick)

    def run_pass(self, name: str, body, progress) -> PassReport:
        rep = PassReport(name)
        t0 = time.perf_counter()
        body(rep, progress)
        rep.seconds = time.perf_counter() - t0
        self.reports.append(rep)
        return rep


def _candidates(board: Board, pos: np.ndarray, tiles: np.ndarray, allowed: np.ndarray, radius: int) -> list:
    """Per tile: the allowed slots within `radius` hops of where it is (its own slot included)."""
    out = []
    for t in tiles:
        h = board.hops(np.full(len(allowed), pos[t]), allowed)
        out.append(np.union1d(allowed[h <= radius], [pos[t]]))
    return out


def windows_pass(placer: Placer, pos: np.ndarray, layer_tiles: list[np.ndarray], budget: float, rep: PassReport,
                 progress) -> None:
    """Windows of two consecutive layers, cut into chunks of WINDOW_TILES along the curve; each chunk
    re-solved with everything else fixed (earlier windows at their solved slots)."""
    board = placer.board
    rank = np.empty(board.slots, dtype=np.int64)
    rank[curve_slots(board)] = np.arange(board.slots)
    groups = [np.concatenate(layer_tiles[i:i + 2]) for i in range(max(1, len(layer_tiles) - 1))]
    chunks = []
    for g in groups:
        g = g[np.argsort(rank[pos[g]], kind="stable")]
        chunks += [g[i:i + WINDOW_TILES] for i in range(0, len(g), WINDOW_TILES)]
    step = progress("placement: CP-SAT windows", len(chunks)) if progress else (lambda n: None)
    per = budget / max(len(chunks), 1)
    for chunk in chunks:
        used = np.zeros(board.slots, dtype=bool)
        used[pos] = True
        used[pos[chunk]] = False
        allowed = np.flatnonzero(~used)
        placer.solve(pos, chunk, _candidates(board, pos, chunk, allowed, WINDOW_RADIUS), per, rep)
        step(1)
        if placer.cut_by_clock:
            break


def _nearest(board: Board, center: int, count: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """The `count` slots fewest hops from `center` (ties by slot number), leaving out `exclude`."""
    every = np.arange(board.slots)
    order = np.lexsort((every, board.hops(np.full(board.slots, center), every)))
    if exclude is not None:
        order = order[~np.isin(order, exclude)]
    return order[:count]


def lns_pass(placer: Placer, pos: np.ndarray, budget: float, rep: PassReport, progress) -> None:
    """Free a region of LNS_SLOTS slots, re-solve it, keep the result if better; until the budget is
    spent or a long run of steps brings nothing. Steps alternate two regions: the slots nearest a
    random tile, and half of those plus the slots nearest one of its partners (drawn by traffic),
    so that tiles can also move far, to another chip, where their partners are."""
    board, cost, n = placer.board, placer.cost, len(pos)
    rng = np.random.default_rng(placer.seed)
    patience = max(30, 3 * n // LNS_SLOTS)
    idle = 0
    units = max(1, int(budget * 1000))
    step = progress("placement: CP-SAT refinement", units) if progress else (lambda n: None)
    shown = 0
    it = 0
    while rep.work < budget and idle < patience and not placer.cut_by_clock:
        t = int(rng.integers(n))
        lo, hi = cost.ptr[t], cost.ptr[t + 1]
        if it % 2 == 0 or hi == lo:
            region = _nearest(board, pos[t], LNS_SLOTS)
        else:
            w = cost.w[lo:hi]
            partner = cost.nbr[lo + int(rng.choice(hi - lo, p=w / w.sum()))]
            near = _nearest(board, pos[t], LNS_SLOTS // 2)
            region = np.concatenate([near, _nearest(board, pos[partner], LNS_SLOTS - len(near), near)])
        it += 1
        occupant = np.full(board.slots, -1, dtype=np.int64)
        occupant[pos] = np.arange(n)
        free = occupant[region]
        free = free[free >= 0]
        if len(free) < 2 and not (len(free) == 1 and len(region) > 1):
            idle += 1
            continue
        per = min(0.1, budget - rep.work)
        improved = placer.solve(pos, free, [region] * len(free), per, rep)
        idle = 0 if improved else idle + 1
        done = min(units, int(rep.work * 1000))
        step(done - shown)
        shown = done


def exact_pass(placer: Placer, pos: np.ndarray, budget: float, rep: PassReport, progress) -> None:
    """All tiles free over the whole board: CP-SAT proves the optimum or bounds it."""
    step = progress("placement: CP-SAT whole board", 1) if progress else (lambda n: None)
    every = np.arange(len(pos))
    placer.solve(pos, every, [np.arange(placer.board.slots)] * len(pos), budget, rep, quick=False)
    step(1)


def place_cpsat(board: Board, traffic: Traffic, layer_tiles: list[np.ndarray], start: np.ndarray,
                budget: float, seed: int = 0, deadline: Deadline | None = None, progress=None) -> Placer:
    """Improve `start` (a slot per tile) in passes; returns the Placer (final slots in .pos, the
    passes' reports in .reports). budget: work units for all passes (CP-SAT deterministic time
    plus SOLVE_OVERHEAD per solve; pipeline.WORK_PER_SECOND converts seconds)."""
    n = len(start)
    placer = Placer(board, Cost(board, traffic, n), seed, deadline)
    pos = start.copy()
    exact = n <= EXACT_TILES
    shares = (0.3, 0.4, 0.3) if exact else (0.4, 0.6, 0.0)

    def run(name, body):
        rep = placer.run_pass(name, body, progress)
        rep.spike_hops = placer.cost.spike_hops(pos)
        rep.max_link_load = placer.cost.max_link_load(pos)

    def spent():
        return sum(r.work for r in placer.reports)

    hops_budget = budget * (1 - BALANCE_SHARE)
    run("windows", lambda r, p: windows_pass(placer, pos, layer_tiles, hops_budget * shares[0], r, p))
    left = max(0.0, hops_budget * (shares[0] + shares[1]) - spent())
    run("refine", lambda r, p: lns_pass(placer, pos, left, r, p))
    if exact:
        left = max(0.01, hops_budget - spent())
        run("exact", lambda r, p: exact_pass(placer, pos, left, r, p))
    from snnmap.passes.place_balance import TileMoves, balance_pass

    left = max(0.0, budget - spent())
    run("balance", lambda r, p: (setattr(r, "cpsat", False), balance_pass(TileMoves(placer.cost), pos, left, r,
                                                                         deadline)))
    placer.pos = pos
    return placer


def solve_and_keep(owner, m, rep, work: float, wall: float | None, overhead: float, scale: float, values,
                   pos: np.ndarray, free: np.ndarray, cost, quick: bool) -> bool:
    """Solve one window (one worker, owner's seed, a deterministic-time budget), count it in rep,
    and keep its solution in pos[free] only if cost.local says it is better (integer rounding of
    the costs may prefer one that is not, in float64). quick: a small model, where presolve and
    the LP cost more than the search they save. Shared by the mesh and the multicast placers."""
    from ortools.sat.python import cp_model

    solver = cp_model.CpSolver()
    p = solver.parameters
    p.num_workers = 1
    p.catch_sigint_signal = False  # CP-SAT would leave SIGINT at its default (death) after the solve:
    # Ctrl-C must stay Python's, so an interrupted write removes its temp file
    p.random_seed = owner.seed
    p.max_deterministic_time = max(work, 1e-3)
    p.symmetry_level = 0  # CP-SAT 9.15 can fail inside symmetry detection on hinted models
    if quick:
        p.cp_model_presolve = False
        p.linearization_level = 0
    if wall is not None:
        p.max_time_in_seconds = wall
    try:
        status = solver.Solve(m)
    except (IndexError, RuntimeError):  # a solver fault: the current placement stays, counted
        rep.faults += 1
        return False
    rep.solves += 1
    rep.work += solver.deterministic_time + overhead
    if wall is not None and solver.wall_time >= wall * 0.999 and status != cp_model.OPTIMAL:
        owner.cut_by_clock = True
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return False
    rep.objective += solver.ObjectiveValue() / scale
    rep.bound += solver.BestObjectiveBound() / scale
    rep.proven += status == cp_model.OPTIMAL
    new = np.array([solver.Value(v) for v in values], dtype=np.int64)
    before = cost.local(pos, free)
    old = pos[free].copy()
    pos[free] = new
    if cost.local(pos, free) < before - 1e-9:
        return True
    pos[free] = old
    return False

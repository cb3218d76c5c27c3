"""Placement on a multicast chip (paicore2) by CP-SAT: units of aligned tiles, not single tiles.

The fan-out plan (fanout.py) chose each input's blocks as sub-cubes of a layer's tile positions,
all inside aligned runs of `align` positions. So a layer is cut into *units*: the tiles of one
aligned run of `align` positions (the last run, and a run at a chip's reserved corner, may be
shorter). A unit placed at a Morton code that is a multiple of its size keeps its shape (the
base's bits and the offsets' bits are disjoint), hence every block of the plan stays an aligned
block of cores reachable by one masked word. Units move as rigid shapes; the words themselves
never change, only where the blocks are.

Cost: each word (fanout piece, traffic.block_words) travels its delivery tree, the union of the
X-then-Y routes from its source to the cores of its block (links.tree_segments): for a block
of columns X and rows Y, max(sx, max X) - min(sx, min X) hops along the source's row plus |X| x
(max(sy, max Y) - min(sy, min Y)) down the columns, chip-to-chip links costing chip_link_hops.
links.spike_hops on the image computes the same figure from the destination words alone.

Passes, as on chips without multicast (place_cpsat.py): the Morton layout (place_blocks.py, also
the sequential baseline: the PAICORE toolchain's power-of-two packing in quadtree order) or, when
better, *grow* (units placed one by one beside their placed partners) is the start; *windows*
re-solve chunks of units of two consecutive layers in order; *refine* frees the units nearest a
random unit (or half there, half by one of its partners) until the budget or a long run of
fruitless steps; *balance* (place_balance.py) then lowers the most loaded link. One CP-SAT model per solve: a free unit's base code is
an integer variable over its candidate bases, a table gives its exact cost with the fixed units,
a table per pair of free units that exchange words gives their exact cost, and the free units'
footprints do not overlap (NoOverlap over Morton codes). Every objective term is exact (scaled to
integers), so the solve's bound is a bound for its neighbourhood. The current placement is the
hint; a result is kept only if its spike-hops, recomputed in float64, are lower.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from snnmap.chip.spec import ChipSpec
from snnmap.deadline import Deadline
from snnmap.links import grid_link_loads
from snnmap.passes.fanout import slots
from snnmap.passes.place import Placement
from snnmap.passes.place_cpsat import PassReport, solve_and_keep
from snnmap.passes.tiling import demorton
from snnmap.passes.traffic import Words

UNITS_PER_SOLVE = 8  # free units per solve (as WINDOW_TILES and LNS_SLOTS on sg64)
CANDIDATES = 40  # bases per free unit: the nearest to where it is, among those free
# budget units charged per solve beyond CP-SAT's deterministic time: loading the pair tables is
# not in it (measured on the published LeNet: about 0.05 s per solve beyond it, at 0.5 units/s)
MCAST_SOLVE_OVERHEAD = 0.025


@dataclass
class Units:
    size: np.ndarray  # int64 (U,): codes a unit's base is a multiple of (the layer's alignment)
    length: np.ndarray  # int64 (U,): codes it occupies from its base (its tiles sit at offsets 0..length-1)
    layer: np.ndarray  # int64 (U,): layer index in tick order
    unit_of: np.ndarray  # int64 (T,): unit of every tile (all_tiles order)
    offset: np.ndarray  # int64 (T,): the tile's code offset from its unit's base


def make_units(layers: list[tuple[int, int]], spec: ChipSpec) -> Units:
    """layers: per layer in tick order, (tiles, alignment) as place_blocks takes them."""
    size, length, layer, unit_of, offset = [], [], [], [], []
    u0 = 0
    for li, (n, align) in enumerate(layers):
        pos = slots(n, spec)  # the positions fanout.py cut the blocks in
        run, off = np.divmod(pos, align)
        first = np.flatnonzero(np.r_[True, run[1:] != run[:-1]]) if n else np.zeros(0, np.int64)
        ids = np.cumsum(np.r_[False, run[1:] != run[:-1]]) if n else np.zeros(0, np.int64)
        lens = np.diff(np.r_[first, n])
        if n and not np.array_equal(off, np.arange(n) - first[ids]):
            raise AssertionError("a unit's tiles are not at consecutive offsets")
        size.append(np.full(len(first), align))
        length.append(lens)
        layer.append(np.full(len(first), li))
        unit_of.append(u0 + ids)
        offset.append(off)
        u0 += len(first)
    cat = (lambda v: np.concatenate(v).astype(np.int64) if v else np.zeros(0, np.int64))
    return Units(cat(size), cat(length), cat(layer), cat(unit_of), cat(offset))


@dataclass(frozen=True)
class CodeBoard:
    """Chips in rows of 2^chip_x_bits (as place_blocks fills them); a place is a global code
    chip * cores_per_chip + Morton code."""
    spec: ChipSpec
    chips: int

    @property
    def row(self) -> int:
        return min(self.chips, 1 << self.spec.chip_x_bits)

    def xy(self, code: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global grid x, y of codes."""
        chip, c = np.divmod(np.asarray(code, np.int64), self.spec.cores_per_chip)
        x, y = demorton(c, self.spec.core_x_bits)
        cy, cx = np.divmod(chip, 1 << self.spec.chip_x_bits)
        return cx * self.spec.mesh_w + x, cy * self.spec.mesh_h + y

    def coords(self, code: np.ndarray) -> np.ndarray:
        chip, c = np.divmod(np.asarray(code, np.int64), self.spec.cores_per_chip)
        x, y = demorton(c, self.spec.core_x_bits)
        cy, cx = np.divmod(chip, 1 << self.spec.chip_x_bits)
        return np.stack([cx, cy, x, y], axis=1)

    @property
    def grid(self) -> tuple[int, int]:
        rows = -(-self.chips // (1 << self.spec.chip_x_bits))
        return self.row * self.spec.mesh_w, rows * self.spec.mesh_h


def _subsets(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index into mask, value) for every subset of every mask's bits."""
    mask = np.asarray(mask, np.int64)
    pc = np.array([bin(int(m)).count("1") for m in mask], dtype=np.int64)
    idx = np.repeat(np.arange(len(mask)), 1 << pc)
    k = np.arange(len(idx)) - np.repeat(np.cumsum(1 << pc) - (1 << pc), 1 << pc)
    out = np.zeros(len(idx), np.int64)
    m = mask[idx].copy()
    b = 0
    while m.any():
        has = (m & 1) == 1
        out |= np.where(has & (k & 1 == 1), 1 << b, 0)
        k = np.where(has, k >> 1, k)
        m >>= 1
        b += 1
    return idx, out


class MCost:
    """Spike-hops and link loads of unit bases under multicast words (each over its tree)."""

    def __init__(self, board: CodeBoard, units: Units, words: Words):
        spec = board.spec
        self.board, self.units, self.words = board, units, words
        self.su = units.unit_of[words.src]  # sending unit
        self.soff = units.offset[words.src]
        self.dv = units.unit_of[words.dst]  # receiving unit
        sx, sy = demorton(self.soff, spec.core_x_bits)  # offsets within a unit, in cores
        self.sox, self.soy = sx, sy
        bx, by = demorton(units.offset[words.dst], spec.core_x_bits)
        self.bx, self.by = bx, by
        self.mx, self.my = demorton(words.free, spec.core_x_bits)
        self.nx = np.array([1 << bin(int(m)).count("1") for m in self.mx], dtype=np.int64).reshape(-1)
        self.ny = np.array([1 << bin(int(m)).count("1") for m in self.my], dtype=np.int64).reshape(-1)
        self.w = words.packets
        self.U = len(units.size)
        # words per unit (either end), for the tables
        ends = np.concatenate([self.su, self.dv])
        order = np.argsort(ends, kind="stable")
        self.by_unit = order % len(self.su) if len(self.su) else order
        self.ptr = np.zeros(self.U + 1, np.int64)
        np.cumsum(np.bincount(ends, minlength=self.U), out=self.ptr[1:])

    def word_hops(self, idx: np.ndarray, sbase: np.ndarray, dbase: np.ndarray) -> np.ndarray:
        """Hops of words idx with their sending unit at sbase and receiving unit at dbase (codes,
        broadcast)."""
        spec, bd = self.board.spec, self.board
        ux, uy = bd.xy(sbase)
        vx, vy = bd.xy(dbase)
        sx, sy = ux + self.sox[idx], uy + self.soy[idx]
        x0, y0 = vx + self.bx[idx], vy + self.by[idx]
        x1, y1 = x0 + self.mx[idx], y0 + self.my[idx]
        lo, hi = np.minimum(sx, x0), np.maximum(sx, x1)
        extra = spec.chip_link_hops - 1
        hx = hi - lo + (hi // spec.mesh_w - lo // spec.mesh_w) * extra
        lo, hi = np.minimum(sy, y0), np.maximum(sy, y1)
        hy = hi - lo + (hi // spec.mesh_h - lo // spec.mesh_h) * extra
        return hx + self.nx[idx] * hy

    def spike_hops(self, base: np.ndarray) -> float:
        if not len(self.w):
            return 0.0
        idx = np.arange(len(self.w))
        return float((self.word_hops(idx, base[self.su], base[self.dv]) * self.w).sum())

    def local(self, base: np.ndarray, units: np.ndarray) -> float:
        m = np.zeros(self.U, bool)
        m[units] = True
        idx = np.flatnonzero(m[self.su] | m[self.dv])
        return float((self.word_hops(idx, base[self.su[idx]], base[self.dv[idx]]) * self.w[idx]).sum())

    def segments(self, base: np.ndarray):
        """Every word's delivery tree (links.tree_segments, closed form for a block): ((word, row,
        lo, hi) horizontal, (word, column, lo, hi) vertical, one per column of its block)."""
        bd = self.board
        ux, uy = bd.xy(base[self.su])
        vx, vy = bd.xy(base[self.dv])
        sx, sy = ux + self.sox, uy + self.soy
        x0, y0 = vx + self.bx, vy + self.by
        idx = np.arange(len(self.w))
        h = (idx, sy, np.minimum(sx, x0), np.maximum(sx, x0 + self.mx))
        i, xs = _subsets(self.mx)
        v = (i, x0[i] + xs, np.minimum(sy, y0)[i], np.maximum(sy, y0 + self.my)[i])
        return h, v

    def link_loads(self, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        (hw, hrow, hlo, hhi), (vw, vcol, vlo, vhi) = self.segments(base)
        w, h = self.board.grid
        return grid_link_loads(w, h, np.r_[hlo, vcol], np.r_[hrow, vlo], np.r_[hhi, vcol], np.r_[hrow, vhi],
                               np.r_[self.w[hw], self.w[vw]])

    def max_link_load(self, base: np.ndarray) -> float:
        if not len(self.w):
            return 0.0
        hl, vl = self.link_loads(base)
        return float(max(hl.max(initial=0.0), vl.max(initial=0.0)))

    def lower_bound(self) -> float:
        """No placement beats this: a word reaching a block of b cores from outside it takes at
        least b hops (the tree spans the block's b cores and one more to enter)."""
        return float((self.w * self.nx * self.ny).sum())

    def tile_codes(self, base: np.ndarray) -> np.ndarray:
        return base[self.units.unit_of] + self.units.offset


def start_bases(units: Units, codes: np.ndarray) -> np.ndarray:
    """Unit bases of a tile placement given as global codes (the Morton layout)."""
    base = np.zeros(len(units.size), np.int64)
    base[units.unit_of] = codes - units.offset
    return base


def _valid_bases(board: CodeBoard, size: int, length: int, occupied: np.ndarray) -> np.ndarray:
    """Bases (multiples of size) whose footprint avoids the reserved corner and `occupied` codes."""
    spec = board.spec
    b = np.arange(0, board.chips * spec.cores_per_chip, size)
    b = b[b % spec.cores_per_chip + length <= spec.usable_cores]
    if len(b) == 0:
        return b
    occ = np.concatenate([[0], np.cumsum(occupied)])
    return b[occ[b + length] - occ[b] == 0]


def random_bases(board: CodeBoard, units: Units, seed: int, start: np.ndarray) -> np.ndarray:
    """Units at uniformly drawn free aligned bases, largest first: the random
    baseline. Where the board is too full for that to fit (a tight small chip), the units of each
    footprint (size, length) are shuffled over the places such units hold in `start`."""
    rng = np.random.default_rng(seed)
    occupied = np.zeros(board.chips * board.spec.cores_per_chip, bool)
    base = np.zeros(len(units.size), np.int64)
    for u in np.lexsort((np.arange(len(units.size)), -units.size)):
        ok = _valid_bases(board, int(units.size[u]), int(units.length[u]), occupied)
        if len(ok) == 0:
            base = start.copy()
            key = units.size * (int(units.length.max(initial=0)) + 1) + units.length
            for k in np.unique(key):
                same = np.flatnonzero(key == k)
                base[same] = start[same][rng.permutation(len(same))]
            return base
        base[u] = ok[rng.integers(len(ok))]
        occupied[base[u]:base[u] + units.length[u]] = True
    return base


GROW_CANDIDATES = 256  # bases weighed per unit in the greedy start: the nearest to its placed partners


def grow_bases(cost: MCost, deadline: Deadline | None = None) -> np.ndarray | None:
    """Greedy start: units one at a time, next the one exchanging most words with those placed
    (the heaviest first, at the valid base nearest the board's centre), each at the free base
    that costs least with its placed partners (ties: nearest their weighted centre). None when
    the deadline (--time-limit) ran out first, or a unit found no free place (a tight board)."""
    board, units = cost.board, cost.units
    U = cost.U
    gx, gy = board.xy(np.arange(board.chips * board.spec.cores_per_chip))
    occupied = np.zeros(len(gx), bool)
    base = np.full(U, -1, np.int64)
    placed = np.zeros(U, bool)
    pair_w = np.zeros(U)
    total = np.bincount(np.concatenate([cost.su, cost.dv]), weights=np.concatenate([cost.w, cost.w]), minlength=U)
    w, h = board.grid
    for _ in range(U):
        if deadline is not None and deadline.expired():
            return None
        score = np.where(placed, -1.0, pair_w)
        if score.max() <= 0:
            score = np.where(placed, -1.0, total + 1e-9)
        u = int(np.argmax(score))
        ok = _valid_bases(board, int(units.size[u]), int(units.length[u]), occupied)
        if len(ok) == 0:  # a tight board fragmented by the order: the Morton layout stays the start
            return None
        ws = cost.by_unit[cost.ptr[u]:cost.ptr[u + 1]]
        other = np.where(cost.su[ws] == u, cost.dv[ws], cost.su[ws])
        ws, other = ws[placed[other]], other[placed[other]]
        if len(ws):
            cx = np.average(gx[base[other]], weights=cost.w[ws])
            cy = np.average(gy[base[other]], weights=cost.w[ws])
        else:
            cx, cy = (w - 1) / 2, (h - 1) / 2
        d = np.abs(gx[ok] - cx) + np.abs(gy[ok] - cy)
        ok = ok[np.lexsort((ok, d))[:GROW_CANDIDATES]]
        d = np.abs(gx[ok] - cx) + np.abs(gy[ok] - cy)
        if len(ws):
            send = cost.su[ws] == u
            sb = np.where(send[None, :], ok[:, None], base[cost.su[ws]][None, :])
            db = np.where(send[None, :], base[cost.dv[ws]][None, :], ok[:, None])
            c = cost.word_hops(np.broadcast_to(ws, sb.shape), sb, db) @ cost.w[ws]
        else:
            c = np.zeros(len(ok))
        best = ok[np.lexsort((ok, d, c))[0]]
        base[u] = best
        placed[u] = True
        occupied[best:best + units.length[u]] = True
        mine = cost.by_unit[cost.ptr[u]:cost.ptr[u + 1]]
        np.add.at(pair_w, np.where(cost.su[mine] == u, cost.dv[mine], cost.su[mine]), cost.w[mine])
    return base


def _occupied(board: CodeBoard, units: Units, base: np.ndarray, skip: np.ndarray) -> np.ndarray:
    occ = np.zeros(board.chips * board.spec.cores_per_chip, bool)
    keep = np.ones(len(base), bool)
    keep[skip] = False
    for u in np.flatnonzero(keep):
        occ[base[u]:base[u] + units.length[u]] = True
    return occ


class MPlacer:
    def __init__(self, cost: MCost, seed: int, deadline: Deadline | None):
        self.cost, self.seed, self.deadline = cost, seed, deadline
        self.cut_by_clock = False
        self.reports: list[PassReport] = []
        xs, ys = cost.board.xy(np.arange(cost.board.chips * cost.board.spec.cores_per_chip))
        self.gx, self.gy = xs, ys

    def _wall(self) -> float | None:
        return None if self.deadline is None else self.deadline.remaining()

    def candidates(self, base: np.ndarray, free: np.ndarray) -> list[np.ndarray]:
        units = self.cost.units
        occ = _occupied(self.cost.board, units, base, free)
        out = []
        for u in free:
            ok = _valid_bases(self.cost.board, int(units.size[u]), int(units.length[u]), occ)
            d = np.abs(self.gx[ok] - self.gx[base[u]]) + np.abs(self.gy[ok] - self.gy[base[u]])
            near = ok[np.lexsort((ok, d))[:CANDIDATES]]
            out.append(np.union1d(near, [base[u]]))
        return out

    def solve(self, base: np.ndarray, free: np.ndarray, work: float, rep: PassReport) -> bool:
        wall = self._wall()
        if wall is not None and wall <= 0.01:
            self.cut_by_clock = True
        if self.cut_by_clock:
            return False
        from ortools.sat.python import cp_model

        cost, units = self.cost, self.cost.units
        free = np.asarray(free, np.int64)
        cand = self.candidates(base, free)
        local = np.full(cost.U, -1, np.int64)
        local[free] = np.arange(len(free))
        # the words touching free units: with a fixed other end, or between two free units
        touch = np.unique(np.concatenate([cost.by_unit[cost.ptr[u]:cost.ptr[u + 1]] for u in free]))
        if len(touch) == 0:
            return False
        ls, ld = local[cost.su[touch]], local[cost.dv[touch]]
        top = float(cost.w[touch].max())
        scale = 1.0 if top <= 1e6 and np.array_equal(cost.w[touch], np.rint(cost.w[touch])) else 10000.0 / top
        m = cp_model.CpModel()
        bvars, terms = [], []
        for li, u in enumerate(free):
            c = cand[li]
            mine = touch[((ls == li) & (ld < 0)) | ((ld == li) & (ls < 0))]
            if len(mine):
                send = cost.su[mine] == u
                sb = np.where(send[None, :], c[:, None], base[cost.su[mine]][None, :])
                db = np.where(send[None, :], base[cost.dv[mine]][None, :], c[:, None])
                h = cost.word_hops(np.broadcast_to(mine, sb.shape), sb, db)
                tab = np.rint(h @ (cost.w[mine] * scale)).astype(np.int64)
            else:
                tab = np.zeros(len(c), np.int64)
            b = m.NewIntVarFromDomain(cp_model.Domain.FromValues(c.tolist()), f"b{li}")
            k = m.NewIntVar(int(tab.min()), int(tab.max()), f"k{li}")
            m.AddAllowedAssignments([b, k], np.stack([c, tab], axis=1).tolist())
            m.AddHint(b, int(base[u]))
            m.AddHint(k, int(tab[np.flatnonzero(c == base[u])[0]]))
            bvars.append(b)
            terms.append(k)
        ivs = [m.NewFixedSizeIntervalVar(bvars[li], int(units.length[u]), f"i{li}") for li, u in enumerate(free)]
        m.AddNoOverlap(ivs)
        inner = touch[(ls >= 0) & (ld >= 0)]
        if len(inner):
            a, b = local[cost.su[inner]], local[cost.dv[inner]]
            lo, hi = np.minimum(a, b), np.maximum(a, b)
            pair = lo * len(free) + hi
            for key in np.unique(pair):
                i, j = divmod(int(key), len(free))
                ws = inner[pair == key]
                ci, cj = cand[i], cand[j]
                I, J = np.meshgrid(ci, cj, indexing="ij")
                I, J = I.ravel(), J.ravel()
                send_i = local[cost.su[ws]] == i
                sb = np.where(send_i[None, :], I[:, None], J[:, None])
                db = np.where(send_i[None, :], J[:, None], I[:, None])
                h = cost.word_hops(np.broadcast_to(ws, sb.shape), sb, db)
                tab = np.rint(h @ (cost.w[ws] * scale)).astype(np.int64)
                k = m.NewIntVar(int(tab.min()), int(tab.max()), "")
                m.AddAllowedAssignments([bvars[i], bvars[j], k], np.stack([I, J, tab], axis=1).tolist())
                here = np.flatnonzero((I == base[free[i]]) & (J == base[free[j]]))[0]
                m.AddHint(k, int(tab[here]))
                terms.append(k)
        m.Minimize(sum(terms))
        return solve_and_keep(self, m, rep, work, wall, MCAST_SOLVE_OVERHEAD, scale, bvars, base, free, cost, True)


def _nearest_units(placer: MPlacer, base: np.ndarray, center: int, count: int, exclude=()) -> np.ndarray:
    d = np.abs(placer.gx[base] - placer.gx[center]) + np.abs(placer.gy[base] - placer.gy[center])
    order = np.lexsort((np.arange(len(base)), d))
    if len(exclude):
        order = order[~np.isin(order, exclude)]
    return order[:count]


def windows_pass(placer: MPlacer, base: np.ndarray, budget: float, rep: PassReport, progress) -> None:
    """Units of two consecutive layers at a time, in chunks along the Morton order."""
    units = placer.cost.units
    n_layers = int(units.layer.max(initial=-1)) + 1
    chunks = []
    for li in range(max(1, n_layers - 1)):
        g = np.flatnonzero((units.layer == li) | (units.layer == li + 1))
        g = g[np.argsort(base[g], kind="stable")]
        chunks += [g[i:i + UNITS_PER_SOLVE] for i in range(0, len(g), UNITS_PER_SOLVE)]
    step = progress("placement: CP-SAT windows", len(chunks)) if progress else (lambda n: None)
    per = budget / max(len(chunks), 1)
    for chunk in chunks:
        if len(chunk):
            placer.solve(base, chunk, per, rep)
        step(1)
        if placer.cut_by_clock:
            break


def lns_pass(placer: MPlacer, base: np.ndarray, budget: float, rep: PassReport, progress) -> None:
    """Free the units nearest a random unit (every other step half there and half beside one of its
    partners, drawn by traffic), re-solve, keep if better; until the budget or 3U/8 idle steps."""
    cost = placer.cost
    U = cost.U
    rng = np.random.default_rng(placer.seed)
    patience = max(30, 3 * U // UNITS_PER_SOLVE)
    idle = it = shown = 0
    units_ = max(1, int(budget * 1000))
    step = progress("placement: CP-SAT refinement", units_) if progress else (lambda n: None)
    while rep.work < budget and idle < patience and not placer.cut_by_clock and U > 1:
        u = int(rng.integers(U))
        ws = cost.by_unit[cost.ptr[u]:cost.ptr[u + 1]]
        if it % 2 == 0 or len(ws) == 0:
            free = _nearest_units(placer, base, base[u], UNITS_PER_SOLVE)
        else:
            wi = ws[int(rng.choice(len(ws), p=cost.w[ws] / cost.w[ws].sum()))]
            partner = int(cost.dv[wi] if cost.su[wi] == u else cost.su[wi])
            near = _nearest_units(placer, base, base[u], UNITS_PER_SOLVE // 2)
            free = np.concatenate([near, _nearest_units(placer, base, base[partner],
                                                        UNITS_PER_SOLVE - len(near), near)])
        it += 1
        improved = placer.solve(base, free, min(0.1, budget - rep.work), rep)
        idle = 0 if improved else idle + 1
        done = min(units_, int(rep.work * 1000))
        step(done - shown)
        shown = done


def place_mcast(cost: MCost, start: np.ndarray, budget: float, seed: int = 0, deadline: Deadline | None = None,
                progress=None) -> tuple[np.ndarray, MPlacer]:
    """Improve the unit bases `start` in passes (windows 40% of the budget, refinement the rest)."""
    placer = MPlacer(cost, seed, deadline)
    t0 = time.perf_counter()
    grown = grow_bases(cost, deadline)
    rep = PassReport("grow", seconds=time.perf_counter() - t0, cpsat=False)
    placer.cut_by_clock = grown is None and deadline is not None and deadline.expired()
    base = grown if grown is not None and cost.spike_hops(grown) < cost.spike_hops(start) else start.copy()
    rep.spike_hops, rep.max_link_load = cost.spike_hops(base), cost.max_link_load(base)
    placer.reports.append(rep)

    def run(name, body):
        rep = PassReport(name)
        t0 = time.perf_counter()
        body(rep)
        rep.seconds = time.perf_counter() - t0
        rep.spike_hops = cost.spike_hops(base)
        rep.max_link_load = cost.max_link_load(base)
        placer.reports.append(rep)

    from snnmap.passes.place_balance import UnitMoves, balance_pass
    from snnmap.passes.place_cpsat import BALANCE_SHARE

    hops_budget = budget * (1 - BALANCE_SHARE)
    run("windows", lambda r: windows_pass(placer, base, hops_budget * 0.4, r, progress))
    left = max(0.0, hops_budget - placer.reports[1].work)
    run("refine", lambda r: lns_pass(placer, base, left, r, progress))
    left = max(0.0, budget - sum(r.work for r in placer.reports))
    run("balance", lambda r: (setattr(r, "cpsat", False), balance_pass(UnitMoves(placer), base, left, r, deadline)))
    return base, placer


def check_bases(board: CodeBoard, units: Units, base: np.ndarray) -> None:
    """Every unit at a multiple of its size, within usable cores, no two sharing a core."""
    spec = board.spec
    codes = base[units.unit_of] + units.offset
    assert np.all(base % units.size == 0)
    assert np.all(codes % spec.cores_per_chip < spec.usable_cores)
    assert len(np.unique(codes)) == len(codes)
    assert np.all(codes < board.chips * spec.cores_per_chip)


def placement_of(board: CodeBoard, units: Units, base: np.ndarray) -> Placement:
    check_bases(board, units, base)
    return Placement(board.coords(base[units.unit_of] + units.offset))

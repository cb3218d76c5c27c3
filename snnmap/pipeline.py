"""The whole compiler in one function: each pass a plain function, timed and reported."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from snnmap.chip.spec import ChipSpec
from snnmap.convert import convert, float_thresholds
from snnmap.deadline import Deadline
from snnmap.image.format import ChipImage, CoreImage
from snnmap.ir import chip_layers, source_of
from snnmap.model import QuantModel
from snnmap.passes import drc
from snnmap.passes.place import Board, Placement, make_board, random_slots, sequential_slots
from snnmap.passes.place_blocks import place_blocks
from snnmap.passes.route import Routes, route
from snnmap.errors import DesignRuleError, SnnmapError
from snnmap.passes.bounds import LayerBound, layer_bounds
from snnmap.passes.tiling import Tiling, baseline_shape, choose_shapes, cut_tiles


@dataclass
class CompileResult:
    image: ChipImage
    tiling: Tiling
    placement: Placement
    bounds: list[LayerBound]
    timings: dict[str, float] = field(default_factory=dict)
    placement_report: dict = field(default_factory=dict)

    def ann_counts(self, core_spikes: list, n_images: int) -> dict[str, np.ndarray]:
        """Spikes per ANN neuron of each layer, (images, neurons), from the simulator's recorded
        spikes of every core (record=True): replicas summed, and a fan-out copy, which fires with
        its original, not counted again (the simulator's per-layer totals count every neuron on
        the chip, copies included). The tiling only labels the image's cores, in tile order."""
        counts, i = {}, 0
        for name, tiles in self.tiling.layers.items():
            size = int(np.prod(self.image.layers[len(counts)]["shape"]))
            acc = np.zeros((size, n_images), dtype=np.int64)
            for t in tiles:
                first = t.neuron_copy == 0
                np.add.at(acc, t.neuron_src[first], core_spikes[i][first].astype(np.int64))
                i += 1
            counts[name] = acc.T
        return counts

    def layer_table(self) -> list[dict]:
        spec = self.image.spec
        rows = []
        bounds = {b.layer: b for b in self.bounds}
        for name, tiles in self.tiling.layers.items():
            sh = self.tiling.shapes[name]
            b = bounds[name]
            rows.append({
                "bound": b.bound, "neuron_bound": b.neuron_bound, "axon_bound": b.axon_bound,
                "baseline": b.baseline,
                "axons_available": len(tiles) * spec.axons_at(sh.level),
                "neurons_available": len(tiles) * spec.neurons_at(sh.level),
                "layer": name, "tile_shape": f"{sh.th}x{sh.tw}x{sh.cg}", "fanin_level": sh.level,
                "tiles": len(tiles),
                "neurons": sum(t.neurons for t in tiles), "axons": sum(t.axons for t in tiles),
                "copies": sum(int(np.count_nonzero(t.neuron_copy)) for t in tiles),
                "synapses": sum(t.synapses for t in tiles),
                "neuron_util": sum(t.neurons for t in tiles) / (len(tiles) * spec.neurons_at(sh.level)),
                "axon_util": sum(t.axons for t in tiles) / (len(tiles) * spec.axons_at(sh.level)),
            })
        return rows


@contextmanager
def _timer(timings: dict, name: str):
    t0 = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - t0


TILINGS = ("locality", "baseline")
PLACERS = ("cpsat", "sequential", "random")
# CP-SAT budget units (its deterministic time plus a charge per solve) per second of placement,
# measured on the development machine (docs/benchmarks.md): the budget is counted in these units,
# not on the clock, so that the same inputs give the same placement.
WORK_PER_SECOND = 0.5
# a --time-limit beyond this places as if it were this (about 30 years): the passes count their budget
# in integers, and 1e308 seconds overflowed them
MAX_PLACE_SECONDS = 1e9


def default_place_seconds(n_tiles: int) -> float:
    """Placement time when --time-limit is not given: 1 s per 200 tiles, within 0.1..30 s (the
    published LeNet, 111 tiles, then compiles within 3 s on two cores)."""
    return min(30.0, max(0.1, n_tiles / 200))


def compile_model(model: QuantModel, spec: ChipSpec, time_limit: float | None = None,
                  tiling: str = "locality", progress=None, placer: str = "cpsat", seed: int = 0,
                  chips: tuple[int, int] | None = None, calibration: np.ndarray | None = None,
                  calibration_name: str = "", place_seconds: float | None = None,
                  stages: int | None = None) -> CompileResult:
    """time_limit bounds the searching passes (tile shapes, placement) on the clock; placement gets
    half of it as its budget (without one, default_place_seconds). tiling 'baseline' gives every
    core of a layer the layer's whole input map (for comparison). placer: cpsat (the passes),
    sequential or random (the baselines). chips: the board (W, H), default as few as fit in a row.
    calibration: images whose activity weighs the traffic (default: the uniform-activity model).
    place_seconds overrides the placement budget (benchmarks).
    stages: cut the network into stages that each fit the board (chips, default one chip) and run
    one after the other (passes/stages.py); 0 = as few as fit, else that many.
    progress, if given, is called as progress(pass_name, total) when a pass with many steps starts
    and returns a function called with the steps done."""
    if tiling not in TILINGS:
        raise SnnmapError(f"unknown tiling {tiling!r}; choose one of {', '.join(TILINGS)}")
    if placer not in PLACERS:
        raise SnnmapError(f"unknown placer {placer!r}; choose one of {', '.join(PLACERS)}")
    spec.check("chip spec")  # a spec built in Python skipped the loader's checks
    if stages is not None and spec.multicast:
        raise SnnmapError("--stages serves chips without multicast for now (the block placer lays each layer "
                          "over the whole chip)")
    deadline = Deadline(time_limit)
    timings: dict[str, float] = {}
    with _timer(timings, "convert"):
        g = convert(model)
    with _timer(timings, "drc (layers)"):
        drc.check_before_tiling(g, spec, staged=stages is not None)
    with _timer(timings, "bounds"):
        bounds = layer_bounds(g, spec)
    made: dict = {}  # layers the shape search already cut
    with _timer(timings, "tile shapes"):
        if tiling == "baseline":
            shapes = _baseline_shapes(g, bounds, spec)
        else:
            shapes = choose_shapes(g, spec, deadline, made)
    with _timer(timings, "cut tiles"):
        total = sum(-(-p.shape[0] // shapes[n].th) * -(-p.shape[1] // shapes[n].tw) * -(-p.shape[2] // shapes[n].cg)
                    for n, p in ((n, g.nodes[n]["pop"]) for n in shapes))
        step = progress("cutting tiles", total) if progress is not None else None
        tiles_by_layer = cut_tiles(g, shapes, spec, whole_input=tiling == "baseline", progress=step, cuts_made=made)
    with _timer(timings, "drc (tiles)"):
        drc.check_before_placement(g, tiles_by_layer, spec, staged=stages is not None, chips_given=chips is not None)
    order = chip_layers(g)
    tiles = tiles_by_layer.all_tiles(order)
    if stages is not None:
        return _compile_staged(model, g, order, tiles_by_layer, spec, chips, stages, bounds, tiling, timings,
                               placer, calibration, calibration_name)
    seconds = place_seconds if place_seconds is not None else \
        0.5 * min(time_limit, MAX_PLACE_SECONDS) if time_limit is not None else default_place_seconds(len(tiles))
    with _timer(timings, "traffic"):
        from snnmap.passes.traffic import block_words, tile_traffic

        counts, desc = _activity(model, calibration, calibration_name)
        if spec.multicast:  # words to aligned blocks of tiles (the fan-out plan's pieces)
            words = block_words(g, tiles_by_layer, order, counts, desc)
        else:
            traffic = tile_traffic(g, tiles_by_layer, order, counts, desc)
    if spec.multicast:  # units of aligned tiles keep the fan-out plan's blocks (place_mcast.py)
        layers = [(len(tiles_by_layer.layers[n]), tiles_by_layer.fanout[source_of(g, n)].align) for n in order]
        placement, report = _place_mcast(layers, words, spec, placer, seed, seconds, deadline, progress, timings)
    else:
        board = make_board(spec, len(tiles), chips)
        placement, report = _place(tiles, tiles_by_layer, order, traffic, board, placer, seed,
                                   seconds, deadline, progress, timings)
    with _timer(timings, "route"):
        routes = route(g, tiles_by_layer, placement, spec)
    with _timer(timings, "assemble image"):
        image = assemble(model, g, order, tiles_by_layer, placement, routes, spec)
    image.info["bounds"] = {b.layer: {"bound": b.bound, "baseline": b.baseline} for b in bounds}
    image.info["tiling"] = tiling
    from snnmap.incremental import make_record  # what `compile --from` needs to keep unchanged parts

    with _timer(timings, "incremental record"):
        image.info["incremental"] = make_record(g, order, tiles_by_layer, tiling,
                                                None if spec.multicast else (board.chips_x, board.chips_y))
    return CompileResult(image, tiles_by_layer, placement, bounds, timings, report)


def _activity(model: QuantModel, calibration: np.ndarray | None, name: str) -> tuple[dict | None, str | None]:
    """Spikes per ANN neuron for the traffic model, and its description: from the calibration
    images through the reference, or None (the uniform-activity model describes itself)."""
    if calibration is None:
        return None, None
    from snnmap.passes.traffic import calibrated_counts

    return (calibrated_counts(model, calibration),
            f"calibrated: mean activity of {len(calibration)} images{' of ' + name if name else ''}")


def _place(tiles, tiling: Tiling, order: list[str], traffic, board: Board, placer: str, seed: int,
           seconds: float, deadline: Deadline, progress, timings: dict) -> tuple[Placement, dict]:
    """Run the chosen placer (each pass timed) and measure it against both baselines."""
    from snnmap.passes.place_cpsat import Cost, place_cpsat
    from snnmap.passes.place_curve import place_curve

    n = len(tiles)
    cost = Cost(board, traffic, n)
    with _timer(timings, "place: baselines"):
        base = {"sequential": sequential_slots(n, board), "random": random_slots(n, board, seed)}
        baselines = {k: {"spike_hops": cost.spike_hops(v), "max_link_load": cost.max_link_load(v)}
                     for k, v in base.items()}
    passes = []
    cut = False
    if placer == "cpsat":
        with _timer(timings, "place: curve"):
            pos = place_curve(n, board, traffic)
        passes.append({"pass": "curve", "seconds": timings["place: curve"], "spike_hops": cost.spike_hops(pos),
                       "max_link_load": cost.max_link_load(pos), "objective": None, "bound": None, "gap": None})
        first = np.cumsum([0] + [len(tiling.layers[name]) for name in order])
        layer_tiles = [np.arange(first[i], first[i + 1]) for i in range(len(order))]
        result = place_cpsat(board, traffic, layer_tiles, pos, seconds * WORK_PER_SECOND, seed, deadline, progress)
        for rep in result.reports:
            timings[f"place: {rep.name}"] = rep.seconds
            passes.append(rep.to_dict())
        pos, cut = result.pos, result.cut_by_clock
    else:
        pos = base[placer]
    here = cost.spike_hops(pos)
    lower = cost.lower_bound()
    report = {"placer": placer, "seed": seed, "board": [board.chips_x, board.chips_y],
              "traffic_model": traffic.model, "packets_per_image": traffic.total,
              "spike_hops": here, "max_link_load": cost.max_link_load(pos), "lower_bound": lower,
              "gap_to_lower_bound": (here - lower) / here if here > 0 else None,
              "budget_s": seconds if placer == "cpsat" else 0.0, "cut_by_clock": cut,
              "passes": passes, "baselines": baselines}
    return board.placement(pos), report


def _place_mcast(layers: list[tuple[int, int]], words, spec: ChipSpec, placer: str, seed: int, seconds: float,
                 deadline: Deadline, progress, timings: dict) -> tuple[Placement, dict]:
    """Multicast chips: units of aligned tiles from the Morton layout (the sequential baseline)."""
    from snnmap.passes.place_blocks import block_codes
    from snnmap.passes.place_mcast import CodeBoard, MCost, make_units, place_mcast, placement_of, \
        random_bases, start_bases

    with _timer(timings, "place: blocks"):
        units = make_units(layers, spec)
        codes = block_codes(layers, spec)
        place_blocks(layers, spec)  # the board's chip limit, checked on the layout
        board = CodeBoard(spec, int(codes.max()) // spec.cores_per_chip + 1 if len(codes) else 1)
        cost = MCost(board, units, words)
        start = start_bases(units, codes)
    with _timer(timings, "place: baselines"):
        base = {"sequential": start, "random": random_bases(board, units, seed, start)}
        baselines = {k: {"spike_hops": cost.spike_hops(v), "max_link_load": cost.max_link_load(v)}
                     for k, v in base.items()}
    passes = []
    cut = False
    if placer == "cpsat":
        passes.append({"pass": "blocks", "seconds": timings["place: blocks"], "spike_hops": cost.spike_hops(start),
                       "max_link_load": cost.max_link_load(start), "objective": None, "bound": None, "gap": None})
        pos, result = place_mcast(cost, start, seconds * WORK_PER_SECOND, seed, deadline, progress)
        for rep in result.reports:
            timings[f"place: {rep.name}"] = rep.seconds
            passes.append(rep.to_dict())
        cut = result.cut_by_clock
    else:
        pos = base[placer]
    here = cost.spike_hops(pos)
    lower = cost.lower_bound()
    w, h = board.grid
    report = {"placer": placer, "seed": seed, "board": [board.row, -(-board.chips // board.row)],
              "units": len(units.size), "traffic_model": words.model, "packets_per_image": words.total,
              "spike_hops": here, "max_link_load": cost.max_link_load(pos), "lower_bound": lower,
              "gap_to_lower_bound": (here - lower) / here if here > 0 else None,
              "budget_s": seconds if placer == "cpsat" else 0.0, "cut_by_clock": cut,
              "passes": passes, "baselines": baselines}
    return placement_of(board, units, pos), report


def _baseline_shapes(g, bounds: list[LayerBound], spec: ChipSpec) -> dict:
    shapes = {}
    for b in bounds:
        src = g.nodes[source_of(g, b.layer)]["pop"]
        n_axons = b.signed_inputs if spec.axon_accumulates else src.size * src.replicas  # the whole map
        shape = baseline_shape(g.nodes[b.layer]["pop"], n_axons, spec)
        if shape is None:
            raise DesignRuleError(f"layer {b.layer!r}: the whole input map needs {n_axons} axons, over "
                                  f"the limit axons_per_core={spec.axons_per_core} x 2^{spec.fanin_max_level} "
                                  f"(baseline tiling)")
        shapes[b.layer] = shape
    return shapes


def assemble(model: QuantModel, g, order: list[str], tiling: Tiling, placement: Placement,
             routes: Routes, spec: ChipSpec) -> ChipImage:
    tiles = tiling.all_tiles(order)
    depth = {name: i + 1 for i, name in enumerate(order)}
    cores = [CoreImage(coord=tuple(int(v) for v in placement.coords[i]), level=t.level, tick=depth[t.layer],
                       layer=depth[t.layer] - 1, tile=t.index, axon_sign=t.axon_sign,
                       thresholds=t.thresholds.astype(np.int32), xbar=t.xbar, xcol=t.xcol,
                       dest_ptr=routes.tile_ptr[i], dest=routes.tile_dest[i])
             for i, t in enumerate(tiles)]
    enc = model.encoder
    theta, sign = float_thresholds(enc.bn, model.k, model.B)
    layers = [{"name": n, "tick": depth[n], "shape": list(g.nodes[n]["pop"].shape),
               "tiles": len(tiling.layers[n])} for n in order]
    return ChipImage(
        spec=spec, k=model.k, B=model.B, input_shape=model.input_shape, input_scale=model.input_scale,
        ticks=len(order), layers=layers,
        encoder={"weights": enc.weights.astype(np.float64), "stride": enc.stride, "padding": enc.padding,
                 "theta": theta, "sign": sign},
        classifier_w=model.classifier.weights, classifier_b=model.classifier.bias,
        host_ptr=routes.host_ptr, host_dest=routes.host_dest, cores=cores,
        info={"model": model.name, "chips": placement.chips, "cores": len(tiles)})


def _compile_staged(model, g, order, tiling_: Tiling, spec: ChipSpec, chips, want: int, bounds, tiling: str,
                    timings: dict, placer: str, calibration, calibration_name: str) -> CompileResult:
    """Tiles cut into stages of one board each (passes/stages.py), placed and routed per stage:
    along the curve by their traffic (placer cpsat: its first pass; CP-SAT itself is not run per
    stage), or in tile order (placer sequential or random)."""
    from snnmap.passes import stages as st

    n = sum(len(tiling_.layers[name]) for name in order)
    board = make_board(spec, 0, chips or (1, 1))
    with _timer(timings, "traffic"):
        from snnmap.passes.traffic import tile_traffic

        counts, desc = _activity(model, calibration, calibration_name)
        traffic = tile_traffic(g, tiling_, order, counts, desc)
    with _timer(timings, "stages"):
        stage = st.cut(n, board.slots, want, st.cut_costs(traffic, n))
    with _timer(timings, "place: stages"):
        placement = st.place(stage, board, traffic if placer == "cpsat" else None)
    with _timer(timings, "route"):
        routes = st.route_staged(g, tiling_, order, stage, placement, spec)
    with _timer(timings, "assemble image"):
        image = assemble(model, g, order, tiling_, placement, routes, spec)
        st.attach(image, stage, routes)
    image.info["bounds"] = {b.layer: {"bound": b.bound, "baseline": b.baseline} for b in bounds}
    image.info["tiling"] = tiling
    image.info["chips"] = board.chips_x * board.chips_y
    cross = float(traffic.packets[stage[traffic.src] != stage[traffic.dst]].sum())
    report = {"placer": "stages", "stage_placer": "curve" if placer == "cpsat" else "sequential",
              "packets_per_image": traffic.total, "packets_through_host_per_image": cross,
              "traffic_model": traffic.model,
              "seed": 0, "board": [board.chips_x, board.chips_y],
              **st.summary(image, board)}
    return CompileResult(image, tiling_, placement, bounds, timings, report)

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
from snnmap.passes.place import Placement, place_sequential
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


def compile_model(model: QuantModel, spec: ChipSpec, time_limit: float | None = None,
                  tiling: str = "locality", progress=None) -> CompileResult:
    """time_limit bounds the searching passes (tile shapes); the fixed passes always complete.
    tiling 'baseline' gives every core of a layer the layer's whole input map (for comparison).
    progress, if given, is called as progress(pass_name, total) when a pass with many steps starts
    and returns a function called with the steps done."""
    if tiling not in TILINGS:
        raise SnnmapError(f"unknown tiling {tiling!r}; choose one of {', '.join(TILINGS)}")
    deadline = Deadline(time_limit)
    timings: dict[str, float] = {}
    with _timer(timings, "convert"):
        g = convert(model)
    with _timer(timings, "drc (layers)"):
        drc.check_before_tiling(g, spec)
    with _timer(timings, "bounds"):
        bounds = layer_bounds(g, spec)
    with _timer(timings, "tile shapes"):
        if tiling == "baseline":
            shapes = _baseline_shapes(g, bounds, spec)
        else:
            shapes = choose_shapes(g, spec, deadline)
    with _timer(timings, "cut tiles"):
        total = sum(-(-p.shape[0] // shapes[n].th) * -(-p.shape[1] // shapes[n].tw) * -(-p.shape[2] // shapes[n].cg)
                    for n, p in ((n, g.nodes[n]["pop"]) for n in shapes))
        step = progress("cutting tiles", total) if progress is not None else None
        tiles_by_layer = cut_tiles(g, shapes, spec, whole_input=tiling == "baseline", progress=step)
    with _timer(timings, "drc (tiles)"):
        drc.check_before_placement(g, tiles_by_layer, spec)
    order = chip_layers(g)
    tiles = tiles_by_layer.all_tiles(order)
    with _timer(timings, "place"):
        if spec.multicast:
            placement = place_blocks([(len(tiles_by_layer.layers[n]), tiles_by_layer.fanout[source_of(g, n)].align)
                                      for n in order], spec)
        else:
            placement = place_sequential(tiles, spec)
    with _timer(timings, "route"):
        routes = route(g, tiles_by_layer, placement, spec)
    with _timer(timings, "assemble image"):
        image = assemble(model, g, order, tiles_by_layer, placement, routes, spec)
    image.info["bounds"] = {b.layer: {"bound": b.bound, "baseline": b.baseline} for b in bounds}
    image.info["tiling"] = tiling
    return CompileResult(image, tiles_by_layer, placement, bounds, timings)


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
                       thresholds=t.thresholds.astype(np.int32), crossbar=t.crossbar,
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

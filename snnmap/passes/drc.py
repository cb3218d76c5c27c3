"""Design rules, each a small named check; a failure names the layer, the tile, the limit and the value."""

from __future__ import annotations

import networkx as nx
import numpy as np

from snnmap.chip.spec import ChipSpec
from snnmap.errors import DesignRuleError
from snnmap.ir import chip_layers, source_of
from snnmap.passes.tiling import Tiling


def check_fan_in(g: nx.DiGraph, spec: ChipSpec) -> None:
    """One neuron's inputs must fit a core's axons (each nonzero weight needs one signed axon),
    with the chip's fan-in extension (2^L combined columns) at its largest."""
    limit = spec.axons_at(spec.fanin_max_level)
    for name in chip_layers(g):
        proj = g.edges[source_of(g, name), name]["proj"]
        need = np.count_nonzero(proj.weights, axis=(0, 1, 2))
        c = int(np.argmax(need))
        if need[c] > limit:
            raise DesignRuleError(
                f"layer {name!r}, channel {c}: one neuron needs {int(need[c])} axons, over the limit "
                f"axons_per_core={spec.axons_per_core} x 2^fanin_max_level={spec.fanin_max_level} = {limit}")


def check_replicas(g: nx.DiGraph, spec: ChipSpec) -> None:
    for name in chip_layers(g):
        n = g.nodes[name]["pop"].replicas
        if n > spec.neurons_per_core:  # level 0 holds the most neurons
            raise DesignRuleError(f"layer {name!r}: {n} replicas per neuron exceed the limit "
                                  f"neurons_per_core={spec.neurons_per_core}")


def check_thresholds(g: nx.DiGraph, spec: ChipSpec) -> None:
    lo, hi = spec.threshold_range
    for name in chip_layers(g):
        thr = g.nodes[name]["pop"].thresholds
        bad = (thr < lo) | (thr > hi)
        if bad.any():
            c, r = (int(i) for i in np.argwhere(bad)[0])
            raise DesignRuleError(f"layer {name!r}, channel {c}, replica {r}: threshold {thr[c, r]} is "
                                  f"outside the limit threshold_bits={spec.threshold_bits} "
                                  f"({lo}..{hi})")


def check_tiles(tiling: Tiling, spec: ChipSpec) -> None:
    for name, tiles in tiling.layers.items():
        for t in tiles:
            if t.axons > spec.axons_at(t.level):
                raise DesignRuleError(f"layer {name!r}, tile {t.index}: {t.axons} axons over the limit "
                                      f"axons_per_core={spec.axons_per_core} x 2^{t.level}")
            if t.neurons > spec.neurons_at(t.level):
                raise DesignRuleError(f"layer {name!r}, tile {t.index}: {t.neurons} neurons over the "
                                      f"limit neurons_per_core={spec.neurons_per_core} / 2^{t.level}")


def check_fan_out(g: nx.DiGraph, tiling: Tiling, spec: ChipSpec) -> None:
    """Each source neuron sends one packet per (tile, axon) or multicast block that reads it, at
    most max_destinations per neuron: an on-chip neuron's tile must hold enough copies of it.
    The host encoder is not a neuron and sends as many packets as it needs."""
    for name in chip_layers(g):
        src = source_of(g, name)
        pop = g.nodes[src]["pop"]
        fo = tiling.fanout.get(src)
        if fo is None or not pop.on_chip:  # the host encoder has no destination limit
            continue
        counts = np.bincount(fo.src, minlength=pop.size)
        need = -(-counts // spec.max_destinations)
        have = np.ones(pop.size, dtype=np.int64)
        for t in tiling.layers[src]:
            np.maximum.at(have, t.neuron_src, t.neuron_copy + 1)
        bad = np.flatnonzero(need > have)
        if len(bad):
            j = int(bad[0])
            H, W, C = pop.shape
            raise DesignRuleError(
                f"layer {src!r}, neuron (h={j // (W * C)}, w={j // C % W}, c={j % C}): {int(counts[j])} "
                f"destinations in layer {name!r} over the limit max_destinations={spec.max_destinations}"
                f" x {int(have[j])} copies")


def check_board(n_tiles: int, spec: ChipSpec, chips_given: bool = False) -> None:
    """The default board is a row of chips; a board given as WxH is checked where it is made."""
    chips = -(-n_tiles // spec.usable_cores)
    if chips > spec.max_chips and not chips_given:
        raise DesignRuleError(f"network: {n_tiles} tiles need {chips} chips, over the limit of "
                              f"{spec.max_chips} chips in a row (chip_x_bits={spec.chip_x_bits}); "
                              f"give a board (--chips WxH) or run it in stages (--stages auto)")


def check_capacity(g: nx.DiGraph, spec: ChipSpec) -> None:
    """All spiking neurons must fit the largest board the addresses reach, before any tiling work."""
    limit = spec.max_chips * spec.usable_cores * spec.neurons_per_core
    total = 0
    for name in chip_layers(g):
        total += g.nodes[name]["pop"].neurons
        if total > limit:
            raise DesignRuleError(f"layer {name!r}: the network needs at least {total} spiking neurons by this layer, "
                                  f"over the limit of {limit} on {spec.max_chips} chips of {spec.cores_per_chip} "
                                  f"cores x neurons_per_core={spec.neurons_per_core}")


def check_before_tiling(g: nx.DiGraph, spec: ChipSpec, staged: bool = False) -> None:
    """staged: the network runs in stages (passes/stages.py), so no board size limits it."""
    if not staged:
        check_capacity(g, spec)
    check_replicas(g, spec)
    check_fan_in(g, spec)
    check_thresholds(g, spec)


def check_before_placement(g: nx.DiGraph, tiling: Tiling, spec: ChipSpec, staged: bool = False,
                           chips_given: bool = False) -> None:
    check_tiles(tiling, spec)
    check_fan_out(g, tiling, spec)
    # the multicast placer fills a two-dimensional board and checks it itself
    if not spec.multicast and not staged:
        check_board(sum(len(t) for t in tiling.layers.values()), spec, chips_given)

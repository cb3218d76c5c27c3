"""Core-utilization reports computed from the image alone."""

from __future__ import annotations

import numpy as np

from snnmap.errors import SnnmapError
from snnmap.image.format import ChipImage


def core_rows(img: ChipImage) -> list[dict]:
    spec = img.spec
    rows = []
    for c in img.cores:
        syn = int(c.axon_synapses().sum())
        rows.append({
            "chip": [c.coord[0], c.coord[1]], "core": [c.coord[2], c.coord[3]],
            "layer": img.layers[c.layer]["name"], "tile": c.tile, "tick": c.tick,
            "axons": c.axons, "neurons": c.neurons, "synapses": syn,
            "destinations": int(len(c.dest)),
            "level": c.level,
            **({"stage": c.stage} if img.stages > 1 else {}),
            "axon_util": c.axons / spec.axons_at(c.level),
            "neuron_util": c.neurons / spec.neurons_at(c.level),
            "synapse_util": syn / (spec.axons_at(c.level) * spec.neurons_at(c.level)),
        })
    return rows


def layer_rows(img: ChipImage, cores: list[dict] | None = None) -> list[dict]:
    cores = cores if cores is not None else core_rows(img)
    spec = img.spec
    out = []
    for lay in img.layers:
        mine = [r for r in cores if r["layer"] == lay["name"]]
        n = len(mine)
        bound = _bounds(img).get(lay["name"], {})
        out.append({
            "layer": lay["name"], "tick": lay["tick"], "shape": lay["shape"], "cores": n,
            "bound": bound.get("bound"), "baseline": bound.get("baseline"),
            "axons": sum(r["axons"] for r in mine), "neurons": sum(r["neurons"] for r in mine),
            "synapses": sum(r["synapses"] for r in mine),
            "synapse_util": sum(r["synapses"] for r in mine) / sum(spec.axons_at(r["level"]) * spec.neurons_at(r["level"])
                                                                  for r in mine) if n else 0.0,
            "axon_util": sum(r["axons"] for r in mine) / sum(spec.axons_at(r["level"]) for r in mine) if n else 0.0,
            "neuron_util": sum(r["neurons"] for r in mine) / sum(spec.neurons_at(r["level"]) for r in mine)
            if n else 0.0,
        })
    return out


def _bounds(img: ChipImage) -> dict:
    """Per-layer core bounds the compiler stored in the image's info (absent in hand-made images)."""
    b = img.info.get("bounds") if isinstance(img.info, dict) else None
    if not isinstance(b, dict):
        return {}
    return {k: v for k, v in b.items() if isinstance(v, dict) and isinstance(v.get("bound"), int)}


def summary(img: ChipImage) -> dict:
    cores = core_rows(img)
    chips = sorted({tuple(r["chip"]) for r in cores})
    return {"chip": img.spec.name, "chips": len(chips), "cores": len(cores),
            "cores_available": len(chips) * img.spec.usable_cores,
            "neurons": sum(r["neurons"] for r in cores), "axons": sum(r["axons"] for r in cores),
            "synapses": sum(r["synapses"] for r in cores), "ticks": img.ticks, "stages": img.stages,
            "cores_lower_bound": sum(v["bound"] for v in _bounds(img).values()) or None,
            "layers": layer_rows(img, cores), "per_core": cores}


def core_weights(img: ChipImage, sim: dict | None) -> np.ndarray | None:
    """Spikes per image of each core from a `simulate --json` summary of this image, if given;
    a summary of another image (its cores elsewhere) is an error, not a silent fallback."""
    if not sim:
        return None
    rows = sim.get("per_core")
    ok = isinstance(rows, list) and len(rows) == len(img.cores) and all(
        isinstance(r, dict) and r.get("chip") == list(c.coord[:2]) and r.get("core") == list(c.coord[2:])
        for r, c in zip(rows, img.cores))
    if not ok:
        raise SnnmapError("the simulation summary's per_core entries do not match this image's cores "
                          "(was it made by `snnmap simulate --json` on this image?)")
    for i, r in enumerate(rows):  # NaN or 1e308 made NaN / Infinity of the link loads: not JSON
        v = r.get("spikes_per_image")
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1e12):
            raise SnnmapError(f"the simulation summary's per_core[{i}].spikes_per_image is {str(v)[:40]}, not a "
                              f"finite count >= 0")
    return np.array([r["spikes_per_image"] for r in rows], dtype=np.float64)


def quality(img: ChipImage, sim: dict | None = None, seeds: int = 3) -> dict:
    """Cores against the bound, and spike-hops of this placement against random placements of the
    same cores (packets per image with a simulation summary, route counts without), in all and
    per layer (the hops of the spikes each layer sends)."""
    from snnmap.links import spike_hops, spike_hops_per_core

    w = core_weights(img, sim)
    per_core = spike_hops_per_core(img, w)
    here = float(per_core.sum())
    by_layer = {lay["name"]: 0.0 for lay in img.layers}
    for c, h in zip(img.cores, per_core):
        by_layer[img.layers[c.layer]["name"]] += float(h)
    rand = float(np.mean([spike_hops(img, w, seed=s) for s in range(seeds)]))
    bound = sum(v["bound"] for v in _bounds(img).values()) or None
    return {"cores": len(img.cores), "cores_lower_bound": bound,
            "spike_hops_weighting": "packets per image" if w is not None else "routes",
            "spike_hops": here, "spike_hops_by_layer": by_layer, "spike_hops_random_placement": rand,
            "spike_hops_vs_random": here / rand if rand else None}


def format_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """columns: (key, header, format spec)."""
    cells = [[h for _, h, _ in columns]]
    for r in rows:
        cells.append([format(r[k], f) if f else str(r[k]) for k, _, f in columns])
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


LAYER_COLUMNS = [("layer", "layer", ""), ("cores", "cores", "d"), ("bound", "bound", ""),
                 ("neurons", "neurons", "d"), ("axons", "axons", "d"), ("synapses", "synapses", "d"),
                 ("neuron_util", "neuron util", ".1%"), ("axon_util", "axon util", ".1%"),
                 ("synapse_util", "syn util", ".1%"), ("spike_hops", "spike-hops", ",.0f")]
CORE_COLUMNS = [("chip", "chip", ""), ("core", "core", ""), ("layer", "layer", ""), ("tile", "tile", "d"),
                ("axons", "axons", "d"), ("neurons", "neurons", "d"), ("synapses", "synapses", "d"),
                ("synapse_util", "synapse util", ".1%")]

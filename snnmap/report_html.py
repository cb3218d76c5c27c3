"""One self-contained HTML page: chip grid heatmaps (SVG), link loads, per-layer table, figures."""

from __future__ import annotations

import html
import json

import numpy as np

from snnmap.image.format import ChipImage
from snnmap.links import link_loads
from snnmap.report import core_weights, quality, summary

CELL = 36
GAP = 6  # room between cores for the links


def _colour(layer: int, layers: int, util: float) -> str:
    hue = int(360 * layer / max(layers, 1))
    return f"hsl({hue},{55 + 35 * util:.0f}%,{78 - 40 * util:.0f}%)"


def render(img: ChipImage, sim: dict | None = None) -> str:
    s = summary(img)
    spec = img.spec
    weights = core_weights(img, sim)
    q = quality(img, sim)
    H, V = link_loads(img, weights)
    peak = max(float(H.max(initial=0)), float(V.max(initial=0)), 1e-9)
    names = [lay["name"] for lay in img.layers]
    gw, gh = H.shape[1] + 1, V.shape[0] + 1
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{gw * CELL + 20}" height="{gh * CELL + 20}" '
           f'role="img" aria-label="core map">']
    for cy in range(0, gh, spec.mesh_h):
        for cx in range(0, gw, spec.mesh_w):
            svg.append(f'<rect x="{10 + cx * CELL - 3}" y="{10 + cy * CELL - 3}" width="{spec.mesh_w * CELL + 6}" '
                       f'height="{spec.mesh_h * CELL + 6}" fill="none" stroke="#888" stroke-dasharray="4 3"/>')
    for r in s["per_core"]:
        gx = r["chip"][0] * spec.mesh_w + r["core"][0]
        gy = r["chip"][1] * spec.mesh_h + r["core"][1]
        li = names.index(r["layer"])
        tip = (f"chip {tuple(r['chip'])} core {tuple(r['core'])}\nlayer {r['layer']} tile {r['tile']} "
               f"(tick {r['tick']}, fan-in level {r['level']})\nneurons {r['neurons']} ({r['neuron_util']:.0%}), "
               f"axons {r['axons']} ({r['axon_util']:.0%}), synapses {r['synapses']}, destinations {r['destinations']}")
        if weights is not None:
            tip += f"\nspikes per image {weights[s['per_core'].index(r)]:.1f}"
        svg.append(f'<rect class="core" x="{10 + gx * CELL + GAP}" y="{10 + gy * CELL + GAP}" width="{CELL - 2 * GAP}" '
                   f'height="{CELL - 2 * GAP}" rx="3" fill="{_colour(li, len(names), r["neuron_util"])}">'
                   f'<title>{html.escape(tip)}</title></rect>')
    for (y, x), load in np.ndenumerate(H):
        if load > 0:
            svg.append(f'<line x1="{10 + x * CELL + CELL - GAP}" y1="{10 + y * CELL + CELL / 2}" x2="{10 + (x + 1) * CELL + GAP}" '
                       f'y2="{10 + y * CELL + CELL / 2}" stroke="#c0392b" stroke-width="{1 + 7 * load / peak:.2f}">'
                       f'<title>{load:.1f} packets per image</title></line>')
    for (y, x), load in np.ndenumerate(V):
        if load > 0:
            svg.append(f'<line x1="{10 + x * CELL + CELL / 2}" y1="{10 + y * CELL + CELL - GAP}" x2="{10 + x * CELL + CELL / 2}" '
                       f'y2="{10 + (y + 1) * CELL + GAP}" stroke="#c0392b" stroke-width="{1 + 7 * load / peak:.2f}">'
                       f'<title>{load:.1f} packets per image</title></line>')
    svg.append("</svg>")
    legend = "".join(f'<span class="key"><i style="background:{_colour(i, len(names), 1.0)}"></i>{html.escape(n)}</span>'
                     for i, n in enumerate(names))
    rows = "".join(
        f"<tr><td>{html.escape(r['layer'])}</td><td>{r['tick']}</td><td>{'x'.join(map(str, r['shape']))}</td>"
        f"<td>{r['cores']}</td><td>{'' if r['bound'] is None else r['bound']}</td>"
        f"<td>{'-' if r['baseline'] is None else r['baseline']}</td><td>{r['neurons']}</td><td>{r['axons']}</td>"
        f"<td>{r['synapses']}</td><td>{r['neuron_util']:.1%}</td><td>{r['axon_util']:.1%}</td></tr>"
        for r in s["layers"])
    figures = [("cores used", f"{s['cores']} of {s['cores_available']} on {s['chips']} {spec.name} chip(s)")]
    if s.get("cores_lower_bound"):
        figures.append(("lower bound on cores", f"{s['cores_lower_bound']} ({s['cores'] / s['cores_lower_bound']:.2f}x)"))
    unit = "packets per image" if weights is not None else "routes (pass --sim for packets per image)"
    figures.append(("busiest link between cores", f"{peak:.1f} {unit}"))
    figures.append(("spike-hops between cores", f"{q['spike_hops']:,.0f} {q['spike_hops_weighting']}"))
    figures.append(("spike-hops, random placement baseline (3 seeds)",
                    f"{q['spike_hops_random_placement']:,.0f} ({q['spike_hops_vs_random']:.2f}x)"
                    if q["spike_hops_vs_random"] is not None else "-"))
    if sim:
        for key, label, unit in (("accuracy", "accuracy", ""), ("latency_ms_per_image", "latency per image", " ms"),
                                 ("energy_mj_per_image", "energy per image", " mJ"),
                                 ("throughput_images_per_s", "throughput, pipelined", " images/s"),
                                 ("spikes_per_image", "spikes per image", ""),
                                 ("sops_per_image", "synaptic operations per image", "")):
            v = sim.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                figures.append((label, f"{v:.2%}" if key == "accuracy" else f"{v:,.4g}{unit}"))
    figs = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in figures)
    # raw JSON inside <script> (browsers do not decode entities there); <, >, & escaped as \u00XX
    data = json.dumps({k: v for k, v in s.items() if k != "per_core"}).replace("<", "\\u003c") \
        .replace(">", "\\u003e").replace("&", "\\u0026")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>snnmap report: {html.escape(str(img.info.get('model', 'image')))}</title>
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}} h1{{font-size:20px}} h2{{font-size:16px;margin-top:28px}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} th{{text-align:left;background:#f4f4f4}}
.key{{margin-right:14px;white-space:nowrap}} .key i{{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}}
rect.core:hover{{stroke:#000;stroke-width:2}}
</style></head><body>
<h1>snnmap report: {html.escape(str(img.info.get('model', 'image')))} on {html.escape(spec.name)}</h1>
<table>{figs}</table>
<h2>Cores (colour: layer; darker: fuller; hover for figures) and link loads (red, width by load)</h2>
<div>{legend}</div>
{''.join(svg)}
<h2>Layers</h2>
<table><tr><th>layer</th><th>tick</th><th>shape</th><th>cores</th><th>bound</th><th>baseline</th><th>neurons</th>
<th>axons</th><th>synapses</th><th>neuron util</th><th>axon util</th></tr>{rows}</table>
<script type="application/json" id="summary">{data}</script>
</body></html>
"""

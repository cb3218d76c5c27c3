"""Human-readable disassembly of one core of an image."""

from __future__ import annotations

import numpy as np

from snnmap.chip import address
from snnmap.image.format import ChipImage, CoreImage


def _dest_text(img: ChipImage, word, tick: int) -> str:
    is_host, cx, cy, x, y, low = (int(v[0]) for v in address.decode(img.spec, np.array([word], np.uint64)))
    if is_host:
        return f"host feature {low}" if tick == img.ticks else f"host buffer slot {low}"
    return f"chip ({cx},{cy}) core ({x},{y}) axon {low}"


def disassemble(img: ChipImage, c: CoreImage, rows: int = 16, cols: int = 48) -> str:
    spec = img.spec
    lay = img.layers[c.layer]["name"]
    syn = c.axon_synapses()
    out = [f"core chip ({c.coord[0]},{c.coord[1]}) core ({c.coord[2]},{c.coord[3]})"
           + (f" of stage {c.stage}" if img.stages > 1 else "") + f": layer {lay} tile {c.tile}, "
           f"tick {c.tick}, fan-in level {c.level}; {c.axons}/{spec.axons_at(c.level)} axons, "
           f"{c.neurons}/{spec.neurons_at(c.level)} neurons, {int(syn.sum())} synapses, {len(c.dest)} destinations"]
    out.append(f"axons (first {min(rows, c.axons)}): index bank sign synapses")
    for a in range(min(rows, c.axons)):
        out.append(f"  {a:5d} {a // spec.axons_per_core:4d} {'+' if c.axon_sign[a] > 0 else '-':>4} {int(syn[a]):8d}")
    out.append(f"neurons (first {min(rows, c.neurons)}): index threshold destinations")
    for n in range(min(rows, c.neurons)):
        d = c.dest[int(c.dest_ptr[n]):int(c.dest_ptr[n + 1])]
        shown = "; ".join(_dest_text(img, w, c.tick) for w in d[:3]) + (f"; ... ({len(d)} in all)" if len(d) > 3 else "")
        out.append(f"  {n:5d} {int(c.thresholds[n]):9d}  {shown}")
    out.append(f"crossbar (axons 0..{min(rows, c.axons) - 1} x neurons 0..{min(cols, c.neurons) - 1}; "
               f"+/- synapse on a positive/negative axon, . none)")
    shown = c.xbar[:min(rows, c.axons)][:, np.asarray(c.xcol[:min(cols, c.neurons)], dtype=np.int64)]
    for a in range(shown.shape[0]):
        mark = "+" if c.axon_sign[a] > 0 else "-"
        out.append("  " + "".join(mark if v else "." for v in shown[a]))
    return "\n".join(out)

"""The `snnmap` command. Heavy modules load inside each command so that `snnmap --help` starts fast."""

from __future__ import annotations

import json
import sys

import click

from snnmap.errors import SnnmapError

LENET_ARCH = "16C5p2-16C5-16C2s2-32C5-32C2s2-256C4-10"


def _fail(msg: str, code: int = 2) -> None:
    click.echo(f"snnmap: error: {msg}", err=True)
    sys.exit(code)


_SIGNALLED: list[int] = []


class _Signalled(KeyboardInterrupt):
    """A subclass, not KeyboardInterrupt itself: CPython notes an exact KeyboardInterrupt that passes
    through code run by PyRun_* (as extension modules do) and, even once it is caught, ends the
    process by SIGINT at exit instead of with our status (seen under load: 143 came out as -2)."""


def _on_signal(signum, frame) -> None:
    """SIGINT and SIGTERM unwind like Ctrl-C, so temp files go and outputs stay whole or absent.
    Remembered, since an extension module being imported (ortools' pybind11 init, say) can turn
    the KeyboardInterrupt into an ImportError, which must still read as the signal."""
    _SIGNALLED.append(signum)
    raise _Signalled


def main() -> None:
    import signal

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        _run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _stopped() -> None:
    import signal

    signum = _SIGNALLED[0] if _SIGNALLED else signal.SIGINT
    what = "terminated" if signum == signal.SIGTERM else "interrupted"
    _fail(f"{what} (output files are written whole or not at all)", 128 + signum)


def _run() -> None:
    _SIGNALLED.clear()
    try:
        cli.main(standalone_mode=False, prog_name="snnmap")
    except (KeyboardInterrupt, click.exceptions.Abort):
        _stopped()
    except Exception as e:  # noqa: BLE001
        if _SIGNALLED:  # whatever the signal became on its way up
            _stopped()
        if isinstance(e, getattr(click.exceptions, "NoArgsIsHelpError", ())):  # bare `snnmap`: the help
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.ClickException):  # one line, as every other bad input (click's usage block was 3)
            ctx = getattr(e, "ctx", None)
            where = f"{ctx.command_path}: " if ctx is not None and ctx.command_path else ""
            hint = f" (see {ctx.command_path} --help)" if isinstance(e, click.UsageError) and ctx is not None else ""
            _fail(where + " ".join(e.format_message().split()) + hint, e.exit_code if e.exit_code else 2)
        if isinstance(e, SnnmapError):
            _fail(str(e))
        if isinstance(e, MemoryError):
            _fail("out of memory")
        _fail(f"internal error ({type(e).__name__}: {e}); please report it with the command you ran", 1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="snnmap")
def cli() -> None:
    """Compile quantized CNNs into lossless scatter-and-gather spiking networks for crossbar chips.

    \b
    Example:
      snnmap compile examples/lenet_mnist/lenet_k1_B2.snnm -o lenet.snnimg
      snnmap simulate lenet.snnimg --input examples/lenet_mnist/test_images.npz --json
      snnmap report lenet.snnimg
    """


def _writable(*paths: str | None, inputs: dict[str, str | None] | None = None) -> None:
    """Fail before any work when an output's folder does not exist, or when an output is one of
    the command's input files or another output (it would be overwritten, the input lost)."""
    import os

    seen: dict[str, str] = {}
    for p in paths:
        if p is None:
            continue
        folder = os.path.dirname(os.path.abspath(p))
        if not os.path.isdir(folder):
            raise SnnmapError(f"output folder {folder} does not exist", where=p)
        if os.path.isdir(p):
            raise SnnmapError("output path is a folder", where=p)
        real = os.path.realpath(p)
        if real in seen:
            raise SnnmapError(f"is named for two outputs (also as {seen[real]}): give each its own file", where=p)
        seen[real] = p
        for label, q in (inputs or {}).items():
            if q is not None and os.path.isfile(p) and os.path.isfile(q) and os.path.samefile(p, q):
                raise SnnmapError(f"is also the input {label}: writing it would destroy that input; write "
                                  f"the output elsewhere", where=p)


class _Bars:
    """Progress bars on stderr, only for a person watching: never with --quiet or when stderr is
    not a terminal (pipes, CI, tests)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.bars = []

    def __call__(self, label: str, total: int):
        if not self.enabled or total < 1:
            return lambda n: None
        bar = click.progressbar(length=total, label=label, file=sys.stderr)
        bar.__enter__()
        self.bars.append(bar)
        return bar.update

    def close(self) -> None:
        for bar in self.bars:
            bar.__exit__(None, None, None)
        self.bars.clear()


def _pair(text: str | None, option: str, form: str, example: str) -> tuple[int, int] | None:
    """'AxB' with positive integers, for --input-shape (HxW) and --chips (WxH)."""
    if text is None:
        return None
    try:
        a, b = (int(v) for v in text.lower().split("x"))
        if a < 1 or b < 1:
            raise ValueError
    except ValueError:
        raise SnnmapError(f"{option} {text!r} is not {form} with positive integers, e.g. {example}") from None
    return a, b


def _shape(text: str | None) -> tuple[int, int] | None:
    return _pair(text, "--input-shape", "HxW", "28x28")


@cli.command("import-tl")
@click.argument("params", type=click.Path(dir_okay=False))
@click.option("--arch", required=True, help=f"Layer string, e.g. {LENET_ARCH}.")
@click.option("--k", "k", type=click.IntRange(0, 8), required=True, help="Quantization level k.")
@click.option("--B", "B", type=click.IntRange(1, 256), required=True, help="Activation upper bound B.")
@click.option("--input-scale", required=True, help="Pixel scale, e.g. 1/256.")
@click.option("--input-shape", default=None, help="HxW of the input (default: smallest square that fits).")
@click.option("--name", default=None, help="Model name stored in the file.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Model file to write.")
def import_tl_cmd(params, arch, k, B, input_scale, input_shape, name, output):
    """Import a TensorLayer parameter dump (the scatter-and-gather authors' format).

    \b
    Example:
      snnmap import-tl model_mnist.npz --arch 16C5p2-16C5-16C2s2-32C5-32C2s2-256C4-10 \\
          --k 1 --B 2 --input-scale 1/256 -o lenet.snnm
    """
    from snnmap.importers.tl import import_tl, parse_scale
    from snnmap.modelfile import save_model

    _writable(output, inputs={"PARAMS": params})
    model = import_tl(params, arch, k, B, parse_scale(input_scale), _shape(input_shape), name=name)
    save_model(model, output)
    shapes = " -> ".join("x".join(map(str, s)) for s in [model.input_shape, *model.shapes()])
    click.echo(f"imported {model.name}: k={k} B={B} N={model.replicas}, {len(model.layers)} on-chip layers, "
               f"{shapes} -> {model.classifier.classes} classes; wrote {output}")


# --- issue 6: import-onnx, export-nir ------------------------------------------------------------
@cli.command("import-onnx")
@click.argument("onnx_file", type=click.Path(dir_okay=False))
@click.option("--input-scale", default="1", show_default=True,
              help="Extra scale on raw pixels before the graph's input, e.g. 1/256 (a leading Mul/Div in "
                   "the graph is read as well).")
@click.option("--name", default=None, help="Model name stored in the file (default: the graph's name).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Model file to write.")
def import_onnx_cmd(onnx_file, input_scale, name, output):
    """Import an ONNX / QONNX graph of Conv, Gemm/MatMul, BatchNormalization, Relu, Clip and
    Quant or QuantizeLinear/DequantizeLinear nodes (needs the optional `onnx` package).

    \b
    Example:
      snnmap import-onnx lenet.onnx -o lenet.snnm
    """
    from snnmap.importers.onnx_graph import import_onnx
    from snnmap.importers.tl import parse_scale
    from snnmap.modelfile import save_model

    _writable(output, inputs={"ONNX_FILE": onnx_file})
    model = import_onnx(onnx_file, name=name, input_scale=parse_scale(input_scale))
    save_model(model, output)
    shapes = " -> ".join("x".join(map(str, s)) for s in [model.input_shape, *model.shapes()])
    click.echo(f"imported {model.name}: k={model.k} B={model.B} N={model.replicas}, {len(model.layers)} on-chip "
               f"layers, {shapes} -> {model.classifier.classes} classes; wrote {output}")
    for note in model.meta.get("notes", []):
        click.echo(f"note: {note}")


@cli.command("export-nir")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="NIR file to write (HDF5).")
def export_nir_cmd(model, output):
    """Write the converted spiking network as a NIR graph (needs the optional `nir` package).

    \b
    Example:
      snnmap export-nir lenet.snnm -o lenet.nir
    """
    from snnmap.modelfile import load_model
    from snnmap.nir_export import save_nir

    _writable(output, inputs={"MODEL": model})
    m = load_model(model)
    save_nir(m, output)
    click.echo(f"wrote {output}: {m.name}, {len(m.layers) + 1} spiking layers of Threshold neurons, "
               f"N={m.replicas} replicas per ANN neuron")


@cli.command("compile")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Image file to write.")
@click.option("--chip", default="sg64", show_default=True, help="Chip preset name or a TOML file.")
@click.option("--quiet", is_flag=True, help="Print nothing on success.")
@click.option("--verbose", is_flag=True, help="Also print the time each pass took.")
@click.option("--json", "as_json", is_flag=True, help="Print the compile summary as JSON.")
@click.option("--time-limit", type=float, default=None,
              help="Seconds the searching passes may take; placement gets half as its budget "
                   "(default: no limit on tiling, placement 1 s per 200 tiles within 0.1..30 s).")
@click.option("--tiling", type=click.Choice(["locality", "baseline"]), default="locality", show_default=True,
              help="locality: tiles cut to their receptive fields; baseline: every core takes the whole input map.")
@click.option("--placer", type=click.Choice(["cpsat", "sequential", "random"]), default="cpsat", show_default=True,
              help="cpsat: curve, CP-SAT windows and refinement; sequential and random: the baselines.")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=0, show_default=True,
              help="Seed of the random baseline and of the refinement (same seed, same image).")
@click.option("--chips", "chips", default=None, help="Board of WxH chips (default: as few as fit, in a row).")
@click.option("--calibrate", type=click.Path(dir_okay=False), default=None,
              help="npz with x images: traffic from their activity (default: uniform activity).")
@click.option("--stages", default=None,
              help="Cut the network into stages that each fit one chip (or the --chips board), run one after "
                   "the other with the chip reconfigured between them: 'auto' (as few as fit) or a count.")
@click.option("--batch", type=click.IntRange(1, 1 << 30), default=1000, show_default=True,
              help="With --stages: images run per stage between reconfigurations (the summary's amortization).")
@click.option("--from", "from_image", type=click.Path(dir_okay=False), default=None,
              help="Previous image of this model: keep its unchanged cores, recompile only what changed.")
@click.option("--max-moves", type=click.IntRange(0, 1 << 30), default=0, show_default=True,
              help="With --from: old tiles the placement refinement may move (each for a real spike-hop gain).")
def compile_cmd(model, output, chip, quiet, verbose, as_json, time_limit, tiling, placer, seed, chips, calibrate,
                stages, batch, from_image, max_moves):
    """Compile a model file into a binary configuration image.

    \b
    Example:
      snnmap compile examples/lenet_mnist/lenet_k1_B2.snnm -o lenet.snnimg --chip sg64
      snnmap compile lenet_v2.snnm --from lenet.snnimg -o lenet_v2.snnimg   # rewrite what changed
    """
    from snnmap.chip.spec import load_chip
    from snnmap.deadline import check_seconds
    from snnmap.image.format import write_image
    from snnmap.modelfile import load_model
    from snnmap.pipeline import compile_model
    from snnmap.report import format_table

    _writable(output, inputs={"MODEL": model, "--calibrate": calibrate, "--chip": chip})
    check_seconds(time_limit)
    board = _board(chips)
    from snnmap.passes.stages import parse_stages

    n_stages = parse_stages(stages)
    spec = load_chip(chip)
    qmodel = load_model(model)
    calibration = None
    if calibrate is not None:
        from snnmap.io.inputs import load_inputs

        calibration, _ = load_inputs(calibrate, qmodel.input_shape)
        if len(calibration) == 0:
            raise SnnmapError("the calibration file has no images", where=calibrate)
    if from_image is not None:
        if n_stages is not None:
            raise SnnmapError("--from recompiles single-stage images; compile staged images in full (no --from)")
        if placer != "cpsat":
            raise SnnmapError("--placer applies to full compiles; --from places new tiles by CP-SAT around the kept ones")
        _compile_from(qmodel, spec, from_image, output, quiet, verbose, as_json, time_limit, tiling, seed, board,
                      calibration, calibrate, max_moves)
        return
    if max_moves:
        raise SnnmapError("--max-moves needs --from OLD_IMAGE")
    bars = _Bars(not quiet)
    try:
        result = compile_model(qmodel, spec, time_limit=time_limit, tiling=tiling, progress=bars, placer=placer,
                               seed=seed, chips=board, calibration=calibration, calibration_name=calibrate or "",
                               stages=n_stages)
    finally:
        bars.close()
    write_image(result.image, output)
    img = result.image
    chips = result.placement.chips
    layers = result.layer_table()
    bound = sum(r["bound"] for r in layers)
    baseline = None if any(r["baseline"] is None for r in layers) else sum(r["baseline"] for r in layers)
    summary = {"image": output, "chip": spec.name, "tiling": tiling, "chips": chips, "cores": len(img.cores),
               "cores_available": chips * spec.usable_cores, "cores_lower_bound": bound,
               "cores_baseline": baseline, "layers": layers, "placement": result.placement_report,
               "timings_s": result.timings}
    if n_stages is not None:
        rep = result.placement_report
        rep["batch"] = batch
        rep["reconfiguration_ms_per_image"] = rep["reconfiguration_ms_per_batch"] / batch
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    elif not quiet:
        for r in layers:
            r["neurons_of"] = f"{r['neurons']}/{r['neurons_available']}"
            r["axons_of"] = f"{r['axons']}/{r['axons_available']}"
            r["baseline_s"] = "-" if r["baseline"] is None else str(r["baseline"])
        click.echo(format_table(layers, [
            ("layer", "layer", ""), ("tile_shape", "tile", ""), ("fanin_level", "L", "d"), ("tiles", "cores", "d"),
            ("bound", "bound", "d"), ("baseline_s", "baseline", ""), ("neurons_of", "neurons used/avail", ""),
            ("axons_of", "axons used/avail", ""), ("copies", "copies", "d"), ("neuron_util", "neuron util", ".1%"),
            ("axon_util", "axon util", ".1%")]))
        bw, bh = result.placement_report["board"]
        where = f"one {spec.name} chip" if bw * bh == 1 else f"a board of {bw}x{bh} {spec.name} chips"
        if n_stages is not None:
            where = f"{img.stages} stage{'s' if img.stages > 1 else ''} of " + where
        base = "cannot map every layer" if baseline is None else f"{baseline} cores"
        click.echo(f"\n{len(img.cores)} cores on {where} ({chips} used, {bw * bh * spec.usable_cores} cores "
                   f"available); lower bound {bound} ({len(img.cores) / bound:.2f}x); whole-input-map baseline: "
                   f"{base}; {img.ticks} ticks per image")
        click.echo(_placement_text(result.placement_report))
        if verbose:
            click.echo("passes: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in result.timings.items()))
        click.echo(f"wrote {output}")


def _compile_from(qmodel, spec, from_image, output, quiet, verbose, as_json, time_limit, tiling, seed, board,
                  calibration, calibrate, max_moves) -> None:
    """compile --from: the incremental recompile (snnmap/incremental.py)."""
    from snnmap.incremental import compile_from, read_old
    from snnmap.io.atomic import write_bytes_atomic
    from snnmap.report import format_table

    old = read_old(from_image)
    res = compile_from(qmodel, spec, old, tiling=tiling, max_moves=max_moves, seed=seed, chips=board,
                       calibration=calibration, calibration_name=calibrate or "", time_limit=time_limit)
    write_bytes_atomic(output, res.data)
    summary = {"image": output, "from": from_image, "chip": spec.name, **res.summary}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    if quiet:
        return
    click.echo(format_table(res.summary["layers"], [
        ("layer", "layer", ""), ("status", "status", ""), ("tiles", "cores", "d"), ("reused", "reused", "d"),
        ("rewritten", "rewritten", "d"), ("new", "new", "d")]))
    for r in res.summary["layers"]:
        for note in r["notes"]:
            click.echo(f"note: layer {r['layer']}: {note}")
    s = res.summary
    click.echo(f"\n{s['cores']} cores: {s['cores_reused']} reused byte for byte, {s['cores_rewritten']} rewritten "
               f"in place, {s['cores_new']} new; {s['old_cores_dropped']} old cores no longer used")
    p = s["placement"]
    if "spike_hops" in p:
        click.echo(f"placement of new tiles ({p['traffic']}): {p['spike_hops_before']:,.0f} -> {p['spike_hops']:,.0f} "
                   f"spike-hops per image; {p['old_tiles_moved']} old tiles moved (--max-moves {p['max_moves']})")
    if verbose:
        click.echo("passes: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in res.timings.items()))
    click.echo(f"wrote {output}")


def _board(text: str | None) -> tuple[int, int] | None:
    return _pair(text, "--chips", "WxH", "4x2")


def _placement_text(rep: dict) -> str:
    """The placement figures: the result, each pass with its CP-SAT objective, bound and gap, the baselines."""
    def gap(v):
        return "-" if v is None else f"{v:.1%}"

    if rep["placer"] == "stages":
        alt = rep["board_alternative"]
        board = (f"a board of {alt['board'][0]}x{alt['board'][1]} chips" if alt["addressable"]
                 else "more chips than the chip address holds")
        return (f"stages: {rep['stages']} configurations of {min(rep['cores_per_stage'])}..{max(rep['cores_per_stage'])} "
                f"cores, each placed {'along the curve by its traffic' if rep['stage_placer'] == 'curve' else 'in tile order'}; cut where least traffic crosses: "
                f"{rep['packets_through_host_per_image']:,.0f} of {rep['packets_per_image']:,.0f} packets per image "
                f"through {rep['host_buffer_slots']:,} host buffer slots ({rep['traffic_model']}); reconfiguration {rep['reconfiguration_ms_per_batch']:.3f} ms per batch "
                f"({rep['reconfiguration_ms_per_image']:.4f} ms per image at --batch {rep['batch']}, "
                f"config_bits_per_s {rep['config_bits_per_s']:.3g})\n"
                f"  instead of stages: {alt['chips']} chips of {rep['usable_cores']} cores on {board}, configured once "
                f"(`snnmap simulate --json` models latency and energy of either; docs/benchmarks.md compares them)")
    if rep["placer"] == "blocks":  # compile --from on a multicast chip: new layers after the kept ones
        return ("placement (blocks): new layers along each chip's Morton order after the kept cores, each at a "
                "multiple of its largest multicast block")
    seq = rep["baselines"]["sequential"]["spike_hops"]
    lines = [f"placement ({rep['placer']}, seed {rep['seed']}): {rep['spike_hops']:,.0f} spike-hops per image "
             f"({rep['spike_hops'] / seq:.2f}x sequential), max link load {rep['max_link_load']:,.0f} packets per image, "
             f"lower bound {rep['lower_bound']:,.0f} (gap {gap(rep['gap_to_lower_bound'])})",
             f"  traffic: {rep['packets_per_image']:,.0f} packets per image between cores, {rep['traffic_model']}"]
    for p in rep["passes"]:
        solved = "" if p["objective"] is None else (
            f"; CP-SAT objective {p['objective']:,.0f}, bound {p['bound']:,.0f}, gap {gap(p['gap'])} over "
            f"{p['solves']} solves ({p['proven_optimal']} proven optimal)")
        lines.append(f"  pass {p['pass']}: {p['spike_hops']:,.0f} spike-hops, max link load "
                     f"{p['max_link_load']:,.0f}, {p['seconds']:.2f} s{solved}")
    for name, b in rep["baselines"].items():
        lines.append(f"  baseline {name}: {b['spike_hops']:,.0f} spike-hops, max link load {b['max_link_load']:,.0f}")
    if rep["cut_by_clock"]:
        lines.append("  the time limit stopped a placement pass early: another run may place differently")
    return "\n".join(lines)


@cli.command("simulate")
@click.argument("image", type=click.Path())
@click.option("--input", "inputs", required=True, type=click.Path(dir_okay=False),
              help="npz with x (N,H,W[,C]) and optional y labels.")
@click.option("--output", default=None, type=click.Path(dir_okay=False),
              help="npz to write: pred (N,) int64, logits (N, classes) float64.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the results.")
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(1, 1 << 20),
              help="Images simulated at once; on a staged image also the images each stage runs between "
                   "reconfigurations (the model amortizes reconfiguration over them).")
@click.option("--drop", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Lose each spike of --drop-layer's output with this probability.")
@click.option("--drop-layer", default="encoder", show_default=True, help="Layer whose output spikes --drop loses.")
@click.option("--seed", type=click.IntRange(0, None), default=0, show_default=True, help="Seed of the spike losses.")
@click.option("--trace", type=click.Path(dir_okay=False), default=None,
              help="npz to write: spikes per core per image (trace), each core's tick and coordinates.")
def simulate_cmd(image, inputs, output, as_json, batch, drop, drop_layer, seed, trace):
    """Run a configuration image (or a PAICORE frames directory from `snnmap export`) on a batch of
    inputs, bit-exactly.

    \b
    Example:
      snnmap simulate lenet.snnimg --input examples/lenet_mnist/test_images.npz --json
    """
    import io

    import numpy as np

    from snnmap.io.atomic import write_bytes_atomic
    from snnmap.io.inputs import load_inputs
    from snnmap.sim.simulator import Simulator

    _writable(output, trace, inputs={"IMAGE": image, "--input": inputs})
    img = _read_image_or_frames(image)
    ticks = {"encoder": 0, **{lay["name"]: lay["tick"] for lay in img.layers}}
    if drop_layer not in ticks:
        raise SnnmapError(f"--drop-layer {drop_layer!r} is not a layer of the image ({', '.join(ticks)})")
    x, y = load_inputs(inputs, img.input_shape)
    bars = _Bars(not as_json)
    try:
        out = Simulator(img).run(x, batch=batch, drop={ticks[drop_layer]: drop}, seed=seed, trace=trace is not None,
                                 progress=bars("simulating", len(x)) if len(x) > batch else None)
    finally:
        bars.close()
    n = len(x)
    res = {"images": n,
           "spikes_per_image": float(out["spikes"].mean()) if n else 0.0,
           "sops_per_image": float(out["sops"].mean()) if n else 0.0,
           "spikes_per_layer_per_image": {lay["name"]: float(out["layer_spikes"][i].mean()) if n else 0.0
                                          for i, lay in enumerate(img.layers)},
           "ticks": img.ticks, "cores": len(img.cores)}
    if n:
        res.update({
            "latency_ms_per_image": float(out["latency_s"].mean() * 1e3),
            "energy_mj_per_image": float(out["energy_j"].mean() * 1e3),
            "throughput_images_per_s": float(1.0 / out["period_s"].mean()),
            "energy_breakdown_mj_per_image": {
                "synaptic_operations": float(out["energy_sop_j"].mean() * 1e3),
                "packet_hops": float(out["energy_hop_j"].mean() * 1e3),
                "static": float((out["energy_j"] - out["energy_sop_j"] - out["energy_hop_j"]).mean() * 1e3)},
            "tick_ms": [float(v) for v in out["tick_s"].mean(axis=1) * 1e3],
            "per_core": [{"chip": list(c.coord[:2]), "core": list(c.coord[2:]), "layer": img.layers[c.layer]["name"],
                          **({"stage": c.stage} if img.stages > 1 else {}),
                          "spikes_per_image": float(v)} for c, v in zip(img.cores, out["core_spikes_per_image"])],
        })
    if n and "stages" in out:
        stg = out["stages"]
        res["stages"] = {
            "count": stg["count"], "batch": stg["batch"], "batch_latency_ms": float(stg["batch_s"] * 1e3),
            "stage_ms_per_image": [float(v) for v in stg["stage_s"].mean(axis=1) * 1e3],
            "reconfiguration_ms_per_batch": [float(v) for v in stg["reconfiguration_s_per_batch"] * 1e3],
            "reconfiguration_share": stg["reconfiguration_share"],
            "config_bits": [int(v) for v in stg["config_bits"]],
            "host_packets_in_per_image": [float(v) for v in stg["host_in_packets"].mean(axis=1)],
            "host_packets_out_per_image": [float(v) for v in stg["host_out_packets"].mean(axis=1)]}
    if y is not None:
        res["accuracy"] = float((out["pred"] == y).mean()) if n else None
        res["correct"] = int((out["pred"] == y).sum())
    if drop > 0:
        res["drop"] = {"p": drop, "layer": drop_layer, "seed": seed}
    if trace:
        buf = io.BytesIO()
        np.savez(buf, trace=out["trace"], core_tick=np.array([c.tick for c in img.cores], np.int64),
                 core_coord=np.array([c.coord for c in img.cores], np.int64).reshape(-1, 4),
                 core_stage=np.array([c.stage for c in img.cores], np.int64))
        write_bytes_atomic(trace, buf.getvalue())
    if output:
        buf = io.BytesIO()
        np.savez(buf, pred=out["pred"].astype(np.int64), logits=out["logits"].astype(np.float64))
        write_bytes_atomic(output, buf.getvalue())
    if as_json:
        click.echo(json.dumps(res))
    else:
        acc = f", accuracy {res['accuracy']:.4f} ({res['correct']}/{n})" if y is not None and n else ""
        click.echo(f"{n} images{acc}; {res['spikes_per_image']:.1f} spikes and "
                   f"{res['sops_per_image']:.0f} synaptic operations per image")
        if n:
            click.echo(f"modeled on {img.spec.name}: {res['latency_ms_per_image']:.3f} ms and "
                       f"{res['energy_mj_per_image']:.3f} mJ per image, {res['throughput_images_per_s']:.0f} "
                       f"images/s pipelined (docs/chips.md: the model and its constants)")
            if "stages" in res:
                click.echo(f"  {res['stages']['count']} stages run one after the other in batches of {batch} images; "
                           f"reconfiguration takes {res['stages']['reconfiguration_share']:.1%} of the time")


def _read_image_or_frames(path: str):
    """An .snnimg file, or a directory of PAICORE frames decoded back into the image it configures."""
    import os

    if os.path.isdir(path):
        from snnmap.paicore.export import read_frames

        return read_frames(path)
    from snnmap.image.format import read_image

    return read_image(path)


@cli.command("export")
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["paicore"]), required=True,
              help="paicore: PAICORE 2.0 configuration frames (docs/paicore.md).")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Directory to write (replaced whole if it holds an earlier export).")
@click.option("--no-text", is_flag=True, help="Write only the .bin frames, not their .txt twins.")
def export_cmd(image, fmt, output, no_text):
    """Write an image as chip configuration frames: per core its frames, the input-spike frame
    templates, and a manifest tying layers and neurons to frame addresses.

    \b
    Example:
      snnmap compile lenet.snnm --chip paicore2 -o lenet.snnimg
      snnmap export lenet.snnimg --format paicore -o lenet_frames
      snnmap simulate lenet_frames --input test_images.npz --json
    """
    from snnmap.image.format import read_image
    from snnmap.paicore.export import export_paicore

    img = read_image(image)
    man = export_paicore(img, output, text=not no_text, where=image)
    n_words = sum(c["frames"]["config4"][1] for c in man["cores"])
    click.echo(f"wrote {output}: {len(man['cores'])} cores, {n_words} configuration frames, "
               f"{man['input']['frames']} input-spike frame templates")


@cli.command("report")
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]), default="text", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--cores", is_flag=True, help="One row per core as well (text and json).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="File to write (required for html; default: standard output).")
@click.option("--sim", "sim_path", type=click.Path(dir_okay=False), default=None,
              help="JSON summary from `snnmap simulate --json`: adds accuracy, latency, energy and link loads.")
def report_cmd(image, fmt, as_json, cores, output, sim_path):
    """Core utilization of an image: per layer, per core with --cores, or an HTML page.

    \b
    Example:
      snnmap report lenet.snnimg --cores
      snnmap simulate lenet.snnimg --input images.npz --json > sim.json
      snnmap report lenet.snnimg --format html --sim sim.json -o report.html
    """
    from snnmap.image.format import read_image
    from snnmap.io.atomic import write_bytes_atomic
    from snnmap.report import CORE_COLUMNS, LAYER_COLUMNS, format_table, quality, summary

    fmt = "json" if as_json else fmt
    _writable(output, inputs={"IMAGE": image, "--sim": sim_path})
    if fmt == "html" and not output:
        raise SnnmapError("--format html needs -o FILE.html")
    img = read_image(image)
    sim = None
    if sim_path:
        from snnmap.io.files import require_regular

        require_regular(sim_path, "simulation summary")
        try:
            with open(sim_path, encoding="utf-8") as f:
                sim = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as e:
            raise SnnmapError(f"cannot read simulation summary: {str(e)[:200]}", where=sim_path) from None
        if not isinstance(sim, dict):
            raise SnnmapError("simulation summary is not a JSON object", where=sim_path)
    if fmt == "html":
        from snnmap.report_html import render

        text = render(img, sim)
    elif fmt == "json":
        s = summary(img)
        s["quality"] = quality(img, sim)
        if not cores:
            s.pop("per_core")
        text = json.dumps(s, indent=2)
    else:
        s = summary(img)
        q = quality(img, sim)
        for r in s["layers"]:
            r["spike_hops"] = q["spike_hops_by_layer"][r["layer"]]
        bound = f"; lower bound {s['cores_lower_bound']}" if s.get("cores_lower_bound") else ""
        staged = f" in each of {s['stages']} stages (reconfigured in turn)" if s["stages"] > 1 else ""
        lines = [f"{s['cores']} cores used of {s['cores_available']} on {s['chips']} {s['chip']} chip(s){staged}{bound}; "
                 f"{s['ticks']} ticks",
                 f"{s['neurons']} neurons, {s['axons']} axons, {s['synapses']} synapses",
                 format_table([{**r, "bound": "" if r["bound"] is None else r["bound"]} for r in s["layers"]],
                              LAYER_COLUMNS)]
        if q["spike_hops_vs_random"] is not None:
            lines.append(f"spike-hops: {q['spike_hops']:,.0f} {q['spike_hops_weighting']}, "
                         f"{q['spike_hops_vs_random']:.2f}x a random placement")
        if cores:
            lines += ["", format_table(s["per_core"], CORE_COLUMNS)]
        text = "\n".join(lines)
    if output:
        write_bytes_atomic(output, (text if text.endswith("\n") else text + "\n").encode("utf-8"))
        click.echo(f"wrote {output}")
    else:
        click.echo(text)


@cli.command("diff")
@click.argument("old", type=click.Path(dir_okay=False))
@click.argument("new", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the differences as JSON (every changed core).")
@click.option("--cores", "show_cores", is_flag=True, help="Also list every changed core.")
def diff_cmd(old, new, as_json, show_cores):
    """Which cores differ between two images (contents, destinations, placement), the bytes that
    changed, and both images' quality figures.

    \b
    Example:
      snnmap diff lenet.snnimg lenet_v2.snnimg
    """
    from snnmap.incremental import diff_images
    from snnmap.report import format_table

    d = diff_images(old, new)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    if d["note"]:
        click.echo(f"note: {d['note']}")
    click.echo(format_table(d["layers"], [
        ("layer", "layer", ""), ("unchanged", "unchanged", "d"), ("contents", "contents", "d"),
        ("destinations", "destinations only", "d"), ("moved", "moved", "d"), ("added", "added", "d"),
        ("removed", "removed", "d")]))
    changed = sum(d[f"cores_{k}"] for k in ("contents", "destinations", "moved", "added", "removed"))
    extra = f"; sections {', '.join(d['sections_changed'])} differ" if d["sections_changed"] else ""
    click.echo(f"\n{changed} cores changed ({d['cores_contents']} contents, {d['cores_destinations']} destinations "
               f"only, {d['cores_moved']} moved, {d['cores_added']} added, {d['cores_removed']} removed), "
               f"{d['cores_unchanged']} unchanged; {d['bytes_changed']:,} of {d['bytes']['new']:,} bytes in "
               f"changed sections{extra}")
    for side in ("old", "new"):
        q = d["quality"][side]
        click.echo(f"{side}: {q['cores']} cores on {q['chips']} chips, {q['spike_hops']:,.0f} spike-hops "
                   f"(every destination routed once), max link load {q['max_link_load']:,.0f} routes")
    if show_cores:
        for r in d["changed_cores"]:
            fro = f" (from chip {r['from']['chip']} core {r['from']['core']})" if "from" in r else ""
            click.echo(f"  chip {r['chip']} core {r['core']}: {r['layer']} tile {r['tile']}: {r['change']}{fro}")


@cli.command("inspect")
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--core", "core", default=None, help="Core to disassemble: X,Y on chip (0,0), or CX,CY,X,Y.")
@click.option("--stage", type=click.IntRange(0, None), default=0, show_default=True,
              help="On a staged image: the stage whose core --core names.")
def inspect_cmd(image, core, stage):
    """The image's sections, sizes and checksum, and one core disassembled.

    \b
    Example:
      snnmap inspect lenet.snnimg --core 0,0
    """
    import hashlib
    from pathlib import Path

    from snnmap.image.format import MAGIC, VERSION, read_image
    from snnmap.inspect import disassemble
    from snnmap.io.container import parse_container

    img = read_image(image)  # first: it refuses what is no image before the whole file is read
    raw = Path(image).read_bytes()
    _, sections = parse_container(raw, MAGIC, {VERSION}, "snnmap image", image)
    counts: dict[str, list[int]] = {}
    for tag, payload in sections:
        counts.setdefault(tag, []).append(len(payload))
    click.echo(f"{image}: snnmap image v{VERSION}, {len(raw)} bytes, sha256 {hashlib.sha256(raw[:-32]).hexdigest()}")
    click.echo(f"chip {img.spec.name}; {len(img.cores)} cores; k={img.k} B={img.B}; input {img.input_shape}; "
               f"{img.ticks} ticks" + (f"; {img.stages} stages" if img.stages > 1 else ""))
    for tag, sizes in counts.items():
        click.echo(f"  {tag}: {len(sizes)} section(s), {sum(sizes)} bytes")
    if core is not None:
        try:
            parts = [int(v) for v in core.split(",")]
        except ValueError:
            parts = []
        if len(parts) not in (2, 4):
            raise SnnmapError(f"--core {core!r} is not X,Y or CX,CY,X,Y")
        coord = tuple(parts) if len(parts) == 4 else (0, 0, *parts)
        match = [c for c in img.cores if c.coord == coord and c.stage == stage]
        if not match:
            raise SnnmapError(f"core {coord} is not configured in this image"
                              + (f" in stage {stage}" if img.stages > 1 or stage else ""))
        click.echo(disassemble(img, match[0]))


if __name__ == "__main__":
    main()

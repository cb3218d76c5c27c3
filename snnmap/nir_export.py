"""Export the converted spiking network to NIR (the `nir` package, optional extra `snnmap[nir]`).

Each ANN neuron's N = 2^k*B replicas become N channels (channel c*N + i is replica i of channel
c), each one NIR `Threshold` neuron: stateless, one time step, exactly the McCulloch-Pitts neuron
of scatter-and-gather. Every replica of a layer sees every replica of its inputs through the same
weight (the "gather"), so a layer is a `Conv2d` (a dense layer: one over its whole input) whose weights are
the ternary kernel repeated N x N times, then a `Threshold`. On-chip thresholds are the chip's
integers minus 1/2, so that V >= theta reads the same whichever value a simulator gives the
Heaviside step at 0; weights of a channel with gamma < 0 are negated, as on the chip. The host
encoder is a `Scale` (pixels x input_scale x 2^k), a float `Conv2d` and float thresholds; the
classifier an `Affine` on the flattened spikes divided by 2^k. Limits: docs/pytorch-onnx.md.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from snnmap.convert import chip_thresholds, float_thresholds
from snnmap.errors import SnnmapError
from snnmap.io.atomic import write_bytes_atomic
from snnmap.model import QuantModel

MAX_WEIGHTS = 1 << 28  # the repeated kernels grow as N^2; refuse what would not fit in memory


def _nir():
    try:
        import nir
    except ImportError:
        raise SnnmapError("NIR export needs the optional `nir` package: pip install 'snnmap[nir]'") from None
    return nir


def _repeat(w_oi: np.ndarray, n: int) -> np.ndarray:
    """(out, in, ...) -> (out*n, in*n, ...): every replica of an output sees every replica of an input."""
    return np.repeat(np.repeat(w_oi, n, axis=0), n, axis=1)


def _chw(a: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """(C, N) thresholds -> (C*N, H, W) for an (H, W, C) output."""
    return np.ascontiguousarray(np.broadcast_to(a.reshape(-1)[:, None, None], (a.size, shape[0], shape[1])),
                                dtype=np.float64)


def to_nir(model: QuantModel):
    """The spiking network as a nir.NIRGraph (input: raw pixels C x H x W; output: logits)."""
    nir = _nir()
    model.validate()
    n, k = model.replicas, model.k
    shapes = model.shapes()
    total = sum(int(np.prod(lay.conv_weights(s).shape)) for lay, s in zip(model.layers, shapes[:-1])) * n * n
    if total > MAX_WEIGHTS:
        raise SnnmapError(f"the NIR graph would hold {total:,} weights (N^2 = {n * n} copies of each); "
                          f"the limit is {MAX_WEIGHTS:,}", where=f"model {model.name!r}")
    h, w, c = model.input_shape
    nodes = {"input": nir.Input(input_type={"input": np.array([c, h, w])}),
             "scale": nir.Scale(scale=np.full((c, h, w), model.input_scale * float(1 << k)))}
    edges = [("input", "scale")]
    prev = "scale"

    enc = model.encoder
    theta, sign = float_thresholds(enc.bn, k, model.B)
    const = enc.bn.gamma == 0
    ew = enc.conv_weights(model.input_shape).transpose(3, 2, 0, 1) * np.where(const, 0, sign)[:, None, None, None]
    thr = np.where(const[:, None], np.where(np.isneginf(theta), -0.5, 0.5), theta * sign[:, None])
    kh, kw, s, p = enc.geometry(model.input_shape)
    nodes[enc.name] = nir.Conv2d(input_shape=(h, w), weight=np.repeat(ew, n, axis=0), stride=(s, s),
                                 padding=(p, p), dilation=(1, 1), groups=1, bias=np.zeros(ew.shape[0] * n))
    nodes[f"{enc.name}.spike"] = nir.Threshold(threshold=_chw(thr, shapes[0]))
    edges += [(prev, enc.name), (enc.name, f"{enc.name}.spike")]
    prev = f"{enc.name}.spike"

    for layer, in_shape, out_shape in zip(model.layers, shapes[:-1], shapes[1:]):
        wk = layer.conv_weights(in_shape).astype(np.int64)  # (kh, kw, cin, cout)
        vmax = n * np.count_nonzero(wk, axis=(0, 1, 2))
        thr, sgn = chip_thresholds(layer.bn, k, model.B, vmax)
        w_eff = (wk * sgn[None, None, None, :]).transpose(3, 2, 0, 1)  # (cout, cin, kh, kw)
        t = _chw(thr.astype(np.float64) - 0.5, out_shape)
        kh, kw, st, p = layer.geometry(in_shape)  # a dense layer is a convolution over its whole input
        nodes[layer.name] = nir.Conv2d(input_shape=in_shape[:2], weight=_repeat(w_eff, n).astype(np.float32),
                                       stride=(st, st), padding=(p, p), dilation=(1, 1), groups=1,
                                       bias=np.zeros(w_eff.shape[0] * n))
        edges.append((prev, layer.name))
        nodes[f"{layer.name}.spike"] = nir.Threshold(threshold=t)
        edges.append((layer.name, f"{layer.name}.spike"))
        prev = f"{layer.name}.spike"

    last = shapes[-1]
    nodes["classifier.flatten"] = nir.Flatten(input_type={"input": np.array([last[2] * n, last[0], last[1]])},
                                              start_dim=0, end_dim=-1)
    cw = model.classifier.weights.reshape(*last, -1)  # (h, w, c, classes)
    cw = np.repeat(cw.transpose(3, 2, 0, 1), n, axis=1) / float(1 << k)  # (classes, c*n, h, w)
    nodes["classifier"] = nir.Affine(weight=cw.reshape(cw.shape[0], -1), bias=model.classifier.bias.copy())
    nodes["output"] = nir.Output(output_type={"output": np.array([model.classifier.classes])})
    edges += [(prev, "classifier.flatten"), ("classifier.flatten", "classifier"), ("classifier", "output")]
    # NIR 1.0 infers a Conv2d's output from a square kernel; a non-square one (a dense layer over a
    # non-square input) is written as it is, with NIR's graph-level type check left off
    square = all(nd.weight.shape[2] == nd.weight.shape[3] for nd in nodes.values() if isinstance(nd, nir.Conv2d))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"source": "snnmap", "model": model.name,
                                                             "k": k, "B": model.B, "replicas": n},
                        type_check=square)


def save_nir(model: QuantModel, path: str | Path) -> None:
    nir = _nir()
    graph = to_nir(model)
    buf = io.BytesIO()
    nir.write(buf, graph)
    write_bytes_atomic(path, buf.getvalue())

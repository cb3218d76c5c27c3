"""The layer-level graph IR: populations (nodes) and projections (edges) in a networkx DiGraph.

One node per population, never per neuron: a population holds an (H, W, C) map of ANN neurons,
each scattered into N replicas with integer thresholds per (channel, replica). Edges carry the
convolution geometry and the effective ternary weights (already sign-flipped for gamma < 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np



@dataclass(frozen=True)
class Population:
    name: str
    shape: tuple[int, int, int]
    replicas: int
    on_chip: bool
    thresholds: np.ndarray | None = None  # int64 (C, N): replica i fires iff V >= thresholds[c, i]
    depth: int = 0  # tick at which it fires: host encoder 0, first on-chip layer 1, ...

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def neurons(self) -> int:
        return self.size * self.replicas


@dataclass(frozen=True)
class Projection:
    kh: int
    kw: int
    stride: int
    padding: int
    weights: np.ndarray  # int8 (kh, kw, c_in, c_out), effective chip weights


def chip_layers(g: nx.DiGraph) -> list[str]:
    """On-chip populations in tick order."""
    return sorted((n for n, d in g.nodes(data=True) if d["pop"].on_chip),
                  key=lambda n: g.nodes[n]["pop"].depth)


def source_of(g: nx.DiGraph, name: str) -> str:
    (src,) = list(g.predecessors(name))
    return src

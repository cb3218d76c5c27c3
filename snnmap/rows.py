"""Exact grouping of equal rows and equal variable-length lists, vectorized (no object per row)."""

from __future__ import annotations

import numpy as np


def row_ids(rows: np.ndarray) -> np.ndarray:
    """Ids of equal rows (numbered by first appearance), exact: a multiplicative hash groups the
    rows, a comparison with each group's first row confirms it, np.unique settles any collision."""
    n = rows.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    raw = np.ascontiguousarray(rows).view(np.uint8).reshape(n, -1)
    pad = -raw.shape[1] % 8
    words = np.concatenate([raw, np.zeros((n, pad), np.uint8)], axis=1).view(np.uint64) if pad else raw.view(np.uint64)
    mult = np.random.default_rng(0x5EED).integers(1, 2**63, size=words.shape[1], dtype=np.uint64) | np.uint64(1)
    h = (words * mult[None, :]).sum(axis=1, dtype=np.uint64)
    _, first, inv = np.unique(h, return_index=True, return_inverse=True)
    if not (raw == raw[first[inv]]).all():
        _, first, inv = np.unique(raw, axis=0, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inv.ravel()]


def csr_ids(ptr: np.ndarray, words: np.ndarray, prefix: np.ndarray | None = None) -> np.ndarray:
    """Ids of equal lists in a CSR (ptr, words), optionally keyed also by a per-list prefix value."""
    ptr = ptr.astype(np.int64)
    n = len(ptr) - 1
    counts = np.diff(ptr)
    width = int(counts.max()) if n else 0
    padded = np.zeros((n, width + 2), dtype=np.uint64)  # prefix, count, words...
    if prefix is not None:
        padded[:, 0] = prefix
    padded[:, 1] = counts
    pos = np.arange(len(words)) - np.repeat(ptr[:-1], counts)
    padded[np.repeat(np.arange(n), counts), pos + 2] = words
    return row_ids(padded)

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


def first_index(ids: np.ndarray) -> np.ndarray:
    """For dense ids 0..m-1, the position of each id's first occurrence."""
    first = np.zeros(int(ids.max()) + 1 if len(ids) else 0, dtype=np.int64)
    first[ids[::-1]] = np.arange(len(ids))[::-1]
    return first


def csr_ids(ptr: np.ndarray, words: np.ndarray, prefix: np.ndarray | None = None) -> np.ndarray:
    """Ids of equal lists in a CSR (ptr, words), optionally keyed also by a per-list prefix value.

    Memory stays proportional to the words: each list is hashed by a running sum, grouped,
    and verified word by word; on a hash collision every list simply gets its own id (grouping
    is an optimization, never needed for correctness).
    """
    ptr = ptr.astype(np.int64)
    n = len(ptr) - 1
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    counts = np.diff(ptr)
    words = np.asarray(words, dtype=np.uint64)
    pos = np.arange(len(words)) - np.repeat(ptr[:-1], counts)
    mult = np.random.default_rng(0xC5A).integers(1, 2**63, size=int(counts.max(initial=0)) + 1,
                                                 dtype=np.uint64) | np.uint64(1)
    cs = np.concatenate([np.zeros(1, np.uint64), np.cumsum(words * mult[pos], dtype=np.uint64)])
    h = cs[ptr[1:]] - cs[ptr[:-1]]  # wraps modulo 2^64 like the sum
    key = np.stack([np.zeros(n, np.uint64) if prefix is None else np.asarray(prefix, np.uint64),
                    counts.astype(np.uint64), h], axis=1)
    ids = row_ids(key)
    rep = first_index(ids)[ids]
    owner = np.repeat(np.arange(n), counts)
    if not np.array_equal(words, words[ptr[rep][owner] + pos]):
        return np.arange(n, dtype=np.int64)
    return ids

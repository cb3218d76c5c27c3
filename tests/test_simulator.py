"""Simulator internals that the end-to-end tests exercise only indirectly."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from snnmap.sim.simulator import _row_ids


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.uint8, st.tuples(st.integers(0, 40), st.integers(1, 20)),
                  elements=st.integers(0, 3)))
def test_row_ids_match_exact_grouping(rows):
    ids = _row_ids(rows)
    assert ids.shape == (rows.shape[0],)
    for i in range(len(rows)):
        for j in range(len(rows)):
            assert (ids[i] == ids[j]) == bool((rows[i] == rows[j]).all())
    if len(rows):  # numbered by first appearance
        firsts = [ids[i] for i in range(len(rows)) if ids[i] not in ids[:i]]
        assert firsts == list(range(len(firsts)))

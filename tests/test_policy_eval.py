"""hwq.evaluate agrees with the cost table row by row, and rejects pairs the table lacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hwq
from hwq.errors import UserError
from tests.small_models import GroupedDepthwise

PAIRS = [(2, 2), (2, 8), (4, 4), (8, 2), (8, 8)]


@pytest.fixture(scope="module")
def table():
    g = hwq.trace(GroupedDepthwise(), torch.zeros(2, 3, 16, 16))
    return hwq.cost_table(g, hwq.load_profile("bitfusion"), bits=PAIRS)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.sampled_from(PAIRS), min_size=6, max_size=6), min_size=1,
                max_size=8))
def test_evaluate_equals_table_sums(table, policies):
    arr = np.asarray(policies, dtype=np.int64)
    out = hwq.evaluate(table, arr)
    df = table.to_pandas().set_index(["layer", "w_bits", "a_bits"])
    names = table.graph.names
    for p, pol in enumerate(policies):
        rows = df.loc[[(n, w, a) for n, (w, a) in zip(names, pol)]]
        for col in ("macs", "bops", "weight_bytes", "cycles", "latency_s", "energy_pj"):
            assert out[col][p] == pytest.approx(rows[col].sum(), rel=1e-12)
        a_bits = np.array([[a for _, a in pol]])
        assert out["peak_activation_bytes"][p] == table.activation_plan.peak_bytes(a_bits)[0]
    same = hwq.evaluate(table, [hwq.Policy.from_array(table.graph, arr[0])])
    assert same.iloc[0]["energy_pj"] == out.iloc[0]["energy_pj"]


def test_pair_missing_from_table_names_the_layer(table):
    arr = np.full((1, len(table.graph), 2), 8)
    arr[0, 2] = (4, 8)
    with pytest.raises(UserError, match=table.graph.names[2]):
        hwq.evaluate(table, arr)

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


def _token_graph():
    """2 samples of 4 tokens: an embedding (32 x 8), q/k/v, scores and context (2 heads of 4),
    o and an LM head (8 -> 32)."""

    from hwq.graph import LayerGraph
    from tests.token_graphs import token_frame

    df = token_frame(batch=2)
    return LayerGraph.from_frame(df)


def test_matmul_and_embedding_rows_in_a_policy():
    g = _token_graph()
    pairs = [(4, 8), (8, 8), (2, 4), (4, 4), (8, 2), (2, 8), (4, 2), (8, 4)]  # layer order
    table = hwq.cost_table(g, hwq.load_profile("bitfusion"), bits=sorted(set(pairs)))
    policy = hwq.Policy.from_array(g, np.array(pairs))
    assert hwq.Policy.from_json(policy.to_json()).to_array(g).tolist() == [list(p) for p in pairs]
    out = hwq.evaluate(table, [policy]).iloc[0]
    linear_macs = 2 * 4 * 8 * 8  # batch x tokens x K x N
    matmul_macs = 2 * 2 * 4 * 4 * 4  # batch x heads x M x K x N
    head_macs = 2 * 4 * 8 * 32
    assert out["macs"] == 4 * linear_macs + 2 * matmul_macs + head_macs
    # BOPs: MACs x w x a; a matmul's w is its second operand's bits, an embedding has no MACs
    assert out["bops"] == (linear_macs * (8 * 8 + 2 * 4 + 4 * 4 + 4 * 2) + head_macs * 8 * 4
                           + matmul_macs * (8 * 2 + 2 * 8))
    # weight bytes: the embedding's table at its w_bits, none for a matmul whatever its w_bits
    assert out["weight_bytes"] == (32 * 8 * 4 + 64 * (8 + 2 + 4 + 4) + 8 * 32 * 8) / 8

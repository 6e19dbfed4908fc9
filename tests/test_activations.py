"""Peak activation memory (DESIGN.md §2) against hand-computed layers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hwq
from hwq.activations import plan_activations
from hwq.graph import LayerGraph
from hwq.tracing import trace
from tests.small_models import Residual


def test_residual_peak_by_hand():
    g = trace(Residual(), torch.zeros(1, 3, 8, 8))
    plan = plan_activations(g)
    a_bits = np.array([[8, 4, 2, 8]])  # c1, c2, c3, fc
    # c1: input 192 el x 8 b + out 512 x 4 b (read by c2 at 4 and, after the add, c3 at 2)
    at_c1 = 192 * 8 + 512 * 4
    # c2: input 512 x 4 (also held for the add) + out 512 x 2
    at_c2 = 512 * 4 + 512 * 2
    # c3: input (the add) 512 x 2 + out 512 x 8 (fc reads it at 8)
    at_c3 = 512 * 2 + 512 * 8
    # fc: input 512 x 8 + logits 10 x 8 (read by nothing: 8 bits)
    at_fc = 512 * 8 + 10 * 8
    expected = max(at_c1, at_c2, at_c3, at_fc) / 8
    assert plan.peak_bytes(a_bits)[0] == expected == 640


def downsample_block() -> LayerGraph:
    """A ResNet block with a downsampling shortcut, then an identity block (given as a table)."""
    rows = [
        ("stem", [], 3, 8, 16),           # reads the input
        ("b1.conv1", ["stem"], 8, 16, 8),
        ("b1.conv2", ["b1.conv1"], 16, 16, 8),
        ("b1.down", ["stem"], 8, 16, 8),
        ("b2.conv1", ["b1.conv2", "b1.down"], 16, 16, 8),
        ("b2.conv2", ["b2.conv1"], 16, 16, 8),
        ("fc", ["b2.conv2", "b1.conv2", "b1.down"], 16, 10, 1),
    ]
    df = pd.DataFrame({
        "name": [r[0] for r in rows], "inputs": [r[1] for r in rows],
        "op": ["conv"] * 6 + ["linear"], "in_channels": [r[2] for r in rows],
        "out_channels": [r[3] for r in rows], "out_h": [r[4] for r in rows],
        "kernel_h": [3, 3, 3, 1, 3, 3, 1], "pad_h": [1, 1, 1, 0, 1, 1, 0],
    })
    df["in_h"] = df["in_w"] = [16, 16, 8, 16, 8, 8, 1]
    df["stride_h"] = [1, 2, 1, 2, 1, 1, 1]
    return LayerGraph.from_frame(df)


def test_downsample_block_by_hand():
    g = downsample_block()
    plan = plan_activations(g)
    a = np.array([[8, 8, 8, 8, 8, 8, 8]])
    e16, e8 = 8 * 16 * 16, 16 * 8 * 8  # stem out, block tensors
    at = {
        "stem": 3 * 256 + e16,
        "b1.conv1": e16 + e8,                 # input x also held for b1.down: counted once
        "b1.conv2": e8 + e8 + e16,            # x held for b1.down
        "b1.down": e16 + e8 + e8,             # conv2's raw output waits for the add
        "b2.conv1": e8 + e8,                  # input: the add; held for the next add
        "b2.conv2": e8 + e8 + e8,             # b2's input held for the add
        "fc": 16 + 10,
    }
    assert plan.peak_bytes(a)[0] == max(at.values())


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([1, 2, 4, 8, 16, 32]), min_size=4, max_size=4))
def test_peak_monotone_in_bits(bits):
    g = trace(Residual(), torch.zeros(1, 3, 8, 8))
    plan = plan_activations(g)
    low = np.array([bits])
    high = np.maximum(low, 8)
    lo, hi = plan.peak_bytes(low)[0], plan.peak_bytes(high)[0]
    assert 0 < lo and (lo <= hi or (low > 8).any())


def _peak_reference(plan, a_bits: np.ndarray, w_bits: np.ndarray | None = None) -> float:
    """The plan read literally, one policy: each tensor at the widest bits its readers ask for
    (8 if none), the largest sum of live tensor bytes over layers."""
    pair = np.stack([np.zeros_like(a_bits) if w_bits is None else w_bits, a_bits], axis=-1)
    asks = pair[plan.ask_layer, plan.ask_side]
    bits = []
    for t in range(len(plan.tensor_elems)):
        readers = plan.reader_idx[plan.reader_ptr[t]:plan.reader_ptr[t + 1]]
        bits.append(max((int(asks[r]) for r in readers), default=0) or 8)
    return max(
        sum(int(plan.tensor_elems[t]) * bits[t]
            for t in plan.live_idx[plan.live_ptr[i]:plan.live_ptr[i + 1]])
        for i in range(len(plan.live_ptr) - 1)
    ) / 8


def test_batch_peak_matches_reference_across_blocks():
    # more policies than one block of the batch kernel (512), random widths incl. 16 and 32
    g = trace(Residual(), torch.zeros(1, 3, 8, 8))
    plan = plan_activations(g)
    rng = np.random.default_rng(0)
    a_bits = rng.choice([1, 2, 4, 8, 16, 32], size=(1100, len(g)))
    got = plan.peak_bytes(a_bits)
    assert [float(v) for v in got] == [_peak_reference(plan, row) for row in a_bits]


# -- attention: both operands of a matmul are activations (issue 12) ---------------------------
ATTENTION = ["inp", "q", "k", "v", "attn.matmul0", "attn.matmul1", "out", "fc"]


def attention_block() -> LayerGraph:
    """1 sample of 6 tokens: inp (5 -> 8 features), q/k/v projections, 2 heads of 4: scores
    q.k^T [2, 6, 6] and context p.v [2, 6, 4], the out projection, then fc on out + inp."""
    rows = [
        {"name": "inp", "op": "linear", "in_channels": 5, "out_channels": 8, "inputs": ""},
        *({"name": n, "op": "linear", "in_channels": 8, "out_channels": 8, "inputs": "inp"}
          for n in ("q", "k", "v")),
        {"name": "attn.matmul0", "op": "matmul", "groups": 2, "in_channels": 4,
         "out_channels": 6, "inputs": "q", "second_inputs": "k"},
        {"name": "attn.matmul1", "op": "matmul", "groups": 2, "in_channels": 6,
         "out_channels": 4, "inputs": "attn.matmul0", "second_inputs": "v"},
        {"name": "out", "op": "linear", "in_channels": 8, "out_channels": 8,
         "inputs": "attn.matmul1"},
        {"name": "fc", "op": "linear", "in_channels": 8, "out_channels": 3, "inputs": "out;inp"},
    ]
    df = pd.DataFrame(rows)
    df["out_h"] = 6
    return LayerGraph.from_frame(df)


def _attention_bits(pairs: dict[str, tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    arr = np.array([[pairs.get(n, (4, 4)) for n in ATTENTION]])
    return arr[..., 1], arr[..., 0]


def _attention_live_bits(w: dict[str, int], a: dict[str, int]) -> dict[str, int]:
    """Bits live at each layer, by hand. Elements: inp's input 30; inp, q, k, v, context, out
    48 each; scores 72; fc 18. k is stored at the scores' w_bits, v at the context's."""
    x = max(a["q"], a["k"], a["v"], a["fc"])  # inp's output, held for the residual add
    q, k, v = 48 * a["attn.matmul0"], 48 * w["attn.matmul0"], 48 * w["attn.matmul1"]
    scores = 72 * a["attn.matmul1"]
    return {
        "inp": 30 * a["inp"] + 48 * x,
        "q": 48 * x + q,
        "k": 48 * x + q + k,
        "v": 48 * x + q + k + v,
        "attn.matmul0": 48 * x + q + k + v + scores,  # both operands, the map, v and x
        "attn.matmul1": 48 * x + v + scores + 48 * a["out"],
        "out": 48 * x + 48 * a["out"] + 48 * a["fc"],
        "fc": 48 * a["fc"] + 18 * 8,  # the logits reach no layer: 8 bits
    }


@pytest.mark.parametrize("pairs", [
    {},  # W4A4 everywhere: the scores step holds 264 elements at 4 bits
    {"attn.matmul0": (8, 4), "attn.matmul1": (2, 4)},  # k stored at 8 bits, v at 2
    {"attn.matmul0": (2, 8), "attn.matmul1": (8, 2), "q": (8, 2), "fc": (2, 8)},
])
def test_attention_peak_by_hand(pairs):
    g = attention_block()
    plan = plan_activations(g)
    a_bits, w_bits = _attention_bits(pairs)
    w = dict(zip(ATTENTION, w_bits[0].tolist()))
    a = dict(zip(ATTENTION, a_bits[0].tolist()))
    live = _attention_live_bits(w, a)
    assert plan.peak_bytes(a_bits, w_bits)[0] == max(live.values()) / 8
    assert _peak_reference(plan, a_bits[0], w_bits[0]) == max(live.values()) / 8


def test_matmul_w_bits_decide_k_and_v():
    plan = plan_activations(attention_block())
    base = plan.peak_bytes(*_attention_bits({}))[0]
    assert base == 264 * 4 / 8
    wide_k = plan.peak_bytes(*_attention_bits({"attn.matmul0": (8, 4)}))[0]
    wide_kv = plan.peak_bytes(*_attention_bits({"attn.matmul0": (8, 4),
                                                 "attn.matmul1": (8, 4)}))[0]
    assert (wide_k, wide_kv) == (base + 48 * 4 / 8, base + 2 * 48 * 4 / 8)
    # the w_bits of a linear layer are its weights: no activation changes
    assert plan.peak_bytes(*_attention_bits({"k": (8, 4), "v": (2, 4)}))[0] == base
    with pytest.raises(ValueError, match="w_bits"):
        plan.peak_bytes(_attention_bits({})[0])


def test_evaluate_counts_the_attention_maps():
    g = attention_block()
    table = hwq.cost_table(g, hwq.load_profile("bitfusion"), bits=[(2, 4), (4, 4), (8, 4)])
    arr = np.full((2, len(g), 2), 4)
    arr[1, 4] = (8, 4)  # scores: k stored at 8 bits
    arr[1, 5] = (2, 4)  # context: v at 2 bits
    out = hwq.evaluate(table, arr)
    assert list(out["peak_activation_bytes"]) == [
        max(_attention_live_bits(dict(zip(ATTENTION, p[:, 0].tolist())),
                                 dict(zip(ATTENTION, p[:, 1].tolist()))).values()) / 8
        for p in arr
    ] == [132.0, 144.0]
    assert list(out["weight_bytes"]) == [4 * (5 * 8 + 4 * 64 + 24) / 8] * 2  # matmuls: none
    macs = 6 * (5 * 8 + 4 * 64 + 24) + 2 * (2 * 6 * 4 * 6)
    assert list(out["macs"]) == [macs] * 2
    assert out["bops"][1] - out["bops"][0] == 2 * 6 * 4 * 6 * 4 * (8 - 4 + 2 - 4)


def test_embedding_ids_are_the_model_input_at_its_a_bits():
    df = pd.DataFrame([
        {"name": "emb", "op": "embedding", "batch": 2, "in_channels": 50, "out_channels": 8,
         "out_h": 5, "inputs": ""},
        {"name": "head", "op": "linear", "batch": 2, "in_channels": 8, "out_channels": 50,
         "out_h": 5, "inputs": "emb"},
    ])
    plan = plan_activations(LayerGraph.from_frame(df))
    # emb: 2 x 5 ids at its a_bits (2) + its 2 x 5 x 8 output at head's a_bits (4)
    at_emb = 10 * 2 + 80 * 4
    at_head = 80 * 4 + 2 * 5 * 50 * 8
    assert plan.peak_bytes(np.array([[2, 4]]))[0] == max(at_emb, at_head) / 8


def test_batch_peak_with_matmuls_matches_reference_across_blocks():
    g = attention_block()
    plan = plan_activations(g)
    rng = np.random.default_rng(1)
    a_bits = rng.choice([1, 2, 4, 8, 16, 32], size=(700, len(g)))
    w_bits = rng.choice([1, 2, 4, 8, 16, 32], size=(700, len(g)))
    got = plan.peak_bytes(a_bits, w_bits)
    assert [float(v) for v in got] == [_peak_reference(plan, a, w)
                                       for a, w in zip(a_bits, w_bits)]

"""The gpu kind prices LLM phases per format (issue 19): a decode step is memory-bound (weight
bytes + KV-cache bytes over the format's effective bandwidth, plus the per-row floor), a
prefill compute-bound; memory fit refuses what does not fit the GPU, naming the overflow."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hwq
from hwq.llm_phases import tokens_per_s
from tests.llm.llm_configs import HEAD_DIM, KV_HEADS, LAYERS, LLAMA_2_70B, write_config

N = 256


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> torch.nn.Module:
    return hwq.load_model(f"hf-config:{write_config(tmp_path_factory.mktemp('t') / 'l')}")


def test_decode_row_is_bytes_over_the_formats_bandwidth(tiny: torch.nn.Module) -> None:
    g = hwq.llm_graph(tiny, "decode", context=N)
    p = hwq.load_profile("a100-torchao")
    t = hwq.cost_table(g, p, [(16, 16), (4, 16)])
    i = g.index_of("model.layers.0.mlp.down_proj")
    f = g.frame.iloc[i]
    bw, launch = p.get("memory.dram_bytes_per_s"), p.get("launch_overhead_s")
    for j, (w, bpw) in enumerate(((16, 16.0), (4, 4.5))):
        e_m = p.get(f"formats.{w}x16.memory")
        bits = f["weight_params"] * bpw + (f["in_elems"] + f["out_elems"]) * 16
        assert t.values["latency_s"][i, j] == pytest.approx(bits / 8 / (bw * e_m) + launch,
                                                            rel=1e-12)
    # an attention row reads its K cache at the runtime's 16 bits with 16x16's efficiency,
    # whatever the weight format
    k = g.index_of("model.layers.0.self_attn.matmul0")
    kv_bits = (KV_HEADS * HEAD_DIM * N + g.frame.iloc[k]["in_elems"]
               + g.frame.iloc[k]["out_elems"]) * 16
    expect = kv_bits / 8 / (bw * p.get("formats.16x16.memory")) + launch
    assert t.values["latency_s"][k] == pytest.approx([expect, expect], rel=1e-12)


@pytest.mark.parametrize("device", ["a100-torchao", "h100-torchao", "rtx4090-llamacpp"])
def test_int4_decode_gains_less_than_its_bytes_and_prefill_barely_moves(
        tiny: torch.nn.Module, device: str) -> None:
    p = hwq.load_profile(device)
    assert p.get("formats.4x16.memory") < p.get("formats.16x16.memory")
    decode = hwq.cost_table(hwq.llm_graph(tiny, "decode", context=N), p, [(16, 16), (4, 16)])
    t16, t4 = decode.values["latency_s"].sum(axis=0)
    w16, w4 = decode.values["weight_bytes"].sum(axis=0)
    assert 1.0 < t16 / t4 < w16 / w4
    if device == "rtx4090-llamacpp":
        return  # llama.cpp's Q4_0 prefill is measured 25 % slower than F16 (its fitted rows)
    prefill = hwq.cost_table(hwq.llm_graph(tiny, "prefill", context=N), p, [(16, 16), (4, 16)])
    p16, p4 = prefill.values["latency_s"].sum(axis=0)
    assert abs(p4 / p16 - 1) < 0.10


def test_7b_int4_speedup_below_byte_ratio_and_prefill_flat() -> None:
    """Llama-2-7B on a100-torchao (4-bit efficiency below 16-bit): decode at 4x16 is faster
    than at 16x16 by less than the byte ratio; prefill changes by less than 10 %."""
    from tests.llm.llm_configs import LLAMA_2_7B

    model = hwq.load_model(f"hf-config:{LLAMA_2_7B}")
    p = hwq.load_profile("a100-torchao")
    decode = hwq.cost_table(hwq.llm_graph(model, "decode", 128), p, [(16, 16), (4, 16)])
    t16, t4 = decode.values["latency_s"].sum(axis=0)
    w16, w4 = decode.values["weight_bytes"].sum(axis=0)
    assert 1.5 < t16 / t4 < w16 / w4 - 1.0  # torchao measured 1.87x for 3.53x fewer bytes
    prefill = hwq.cost_table(hwq.llm_graph(model, "prefill", 512), p, [(16, 16), (4, 16)])
    p16, p4 = prefill.values["latency_s"].sum(axis=0)
    assert abs(p4 / p16 - 1) < 0.10


def test_70b_at_16_bits_and_long_context_overflows_a_24gb_gpu() -> None:
    model = hwq.load_model(f"hf-config:{LLAMA_2_70B}")
    g = hwq.llm_graph(model, "decode", context=4096)
    p = hwq.load_profile("rtx4090-llamacpp")
    t = hwq.cost_table(g, p, [(16, 16), (2, 16)])
    res = hwq.evaluate(t, [hwq.Policy(default=(16, 16)), hwq.Policy(default=(2, 16))])
    params = int(g.frame["weight_params"].sum())
    kv = 2 * 80 * 8 * 128 * 4096 * 2  # K and V, 80 layers, 8 kv heads x 128, 4096 tokens, fp16
    over = params * 2 + kv - p.get("memory.capacity_bytes")
    row = res.iloc[0]
    assert not row["feasible"]
    assert row["overflow_bytes"] == pytest.approx(over, rel=1e-12)
    assert f"memory overflow {int(np.ceil(over))} B" in row["infeasible_reason"]
    assert "KV cache 1342177280 B" in row["infeasible_reason"]
    # at Q2_K (2.625 bits per weight, scales included) it fits: 22.6 GB + 1.3 GB of cache
    assert params * 2.625 / 8 + kv < p.get("memory.capacity_bytes")
    assert res.iloc[1]["feasible"] and res.iloc[1]["overflow_bytes"] == 0
    # on an 80 GB A100, 16x16 overflows too (138 GB of weights), 4x16 fits
    a100 = hwq.load_profile("a100-torchao")
    fit = hwq.evaluate(hwq.cost_table(g, a100, [(16, 16), (4, 16)]),
                       [hwq.Policy(default=(16, 16)), hwq.Policy(default=(4, 16))])
    assert list(fit["feasible"]) == [False, True]


def test_decode_tokens_per_s_scale_with_batch_until_compute_binds(tiny: torch.nn.Module) -> None:
    g = hwq.llm_graph(tiny, "decode", context=N)
    p = hwq.load_profile("a100-torchao")
    one = hwq.cost_table(g, p, [(16, 16)]).values["latency_s"].sum()
    eight = hwq.cost_table(g, p, [(16, 16)], batch=8).values["latency_s"].sum()
    # weights are read once per step for the whole batch: 8 sequences cost less than 8 steps
    assert tokens_per_s("decode", 8, N, eight) > 2 * tokens_per_s("decode", 1, N, one)
    assert LAYERS == 2


def test_decode_bytes_per_token_against_hand_formulas(tiny: torch.nn.Module) -> None:
    """DRAM reads of one decode step at bf16 (batch 1): every linear's whole weight and its
    input vector, the K/V cache of the context, the queries and attention probabilities, and
    one embedding row (not the table)."""
    from tests.llm.llm_configs import FFN, HEADS, HIDDEN, VOCAB

    g = hwq.llm_graph(tiny, "decode", context=N)
    t = hwq.cost_table(g, hwq.load_profile("a100-torchao"), [(16, 16)])
    kv = KV_HEADS * HEAD_DIM
    weights = LAYERS * (2 * HIDDEN * HIDDEN + 2 * HIDDEN * kv + 3 * HIDDEN * FFN) + HIDDEN * VOCAB
    inputs = LAYERS * (3 * HIDDEN + HIDDEN + 2 * HIDDEN + FFN) + HIDDEN  # q,k,v; o; gate,up; down
    cache = LAYERS * 2 * kv * N
    attention = LAYERS * (HEADS * HEAD_DIM + HEADS * N)  # queries; probabilities over N keys
    embedding_row = HIDDEN
    expect = 16 * (weights + inputs + cache + attention + embedding_row)
    assert t.values["dram_read_bits"].sum() == pytest.approx(expect, rel=1e-12)
    assert t.values["weight_bytes"].sum() == (weights + VOCAB * HIDDEN) * 2  # table stored

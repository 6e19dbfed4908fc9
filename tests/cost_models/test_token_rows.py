"""Issue 12: every kind prices matmul rows (two activations) and embedding rows (lookups).

A token model (an embedding, q/k/v/out projections over T tokens, the two attention products with
the heads in `groups`, an MLP) built with `LayerGraph.from_frame`; per kind a hand-computed
attention product and lookup from the kind's documented formulas; every shipped profile prices it
at every allowed pair; `batch=4` is 4x the MACs of batch 1 with costs scaling as each law says.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

import hwq
from hwq.cost_models import bit_serial, bitfusion, gpu, mcu, operands
from hwq.errors import CostModelError
from hwq.graph import OPS, LayerGraph
from hwq.profile import list_profiles, load_profile

T, D, H, VOCAB = 16, 64, 4, 1000  # tokens, model width, heads, embeddings
DH = D // H
ROWS = [
    dict(name="emb", op="embedding", in_channels=VOCAB, out_channels=D, out_h=T, inputs=""),
    *(dict(name=n, op="linear", in_channels=D, out_channels=D, out_h=T, inputs="emb")
      for n in ("q", "k", "v")),
    # scores q.k^T: per head [T, DH] x [DH, T]; context p.v: per head [T, T] x [T, DH]
    dict(name="attn.matmul0", op="matmul", groups=H, out_h=T, in_channels=DH, out_channels=T,
         inputs="q", second_inputs="k"),
    dict(name="attn.matmul1", op="matmul", groups=H, out_h=T, in_channels=T, out_channels=DH,
         inputs="attn.matmul0", second_inputs="v"),
    dict(name="out", op="linear", in_channels=D, out_channels=D, out_h=T,
         inputs="attn.matmul1"),
    dict(name="fc1", op="linear", in_channels=D, out_channels=4 * D, out_h=T, inputs="out"),
    dict(name="fc2", op="linear", in_channels=4 * D, out_channels=D, out_h=T, inputs="fc1"),
]
EMB, Q, MM0, MM1 = 0, 1, 4, 5
MM_MACS = H * T * DH * T         # per sample, either product
MM_IN = MM_SECOND = MM_OUT = H * T * DH  # per sample: first operand, second operand, output
LOOKED_UP = T * D                # per sample: values an embedding lookup reads and writes


def token_graph(batch: int = 1) -> LayerGraph:
    return LayerGraph.from_frame(pd.DataFrame([{**r, "batch": batch} for r in ROWS]))


def alone(*rows: int) -> LayerGraph:
    """A graph of some of the rows, without their data flow."""
    kept = [{k: v for k, v in ROWS[i].items() if k not in ("inputs", "second_inputs")}
            for i in rows]
    return LayerGraph.from_frame(pd.DataFrame(kept))


def values(kind, device, pairs, batch=1):
    """A kind's priced columns (values and details) of the token graph at `pairs`."""
    graph = token_graph(batch)
    w = np.array([p[0] for p in pairs], np.int64)
    a = np.array([p[1] for p in pairs], np.int64)
    out = kind.price(graph, load_profile(device), w, a)
    return {**out.values, **out.details}


def test_graph_rows_as_the_row_contract_says():
    g = token_graph(2)
    assert g.column("macs")[MM0] == g.column("macs")[MM1] == 2 * MM_MACS
    assert g.column("weight_params")[MM0] == 0 and g.column("macs")[EMB] == 0
    assert g.column("weight_params")[EMB] == VOCAB * D
    assert operands.op_codes(g).tolist() == [3, 1, 1, 1, 2, 2, 1, 1, 1]
    assert OPS[:4] == ("conv", "linear", "matmul", "embedding")  # the op codes' order
    assert operands.weight_operand_elems(g)[[EMB, Q, MM0]].tolist() == [
        2 * LOOKED_UP, D * D, 2 * MM_SECOND]
    assert operands.first_operand_elems(g)[[EMB, MM0]].tolist() == [0, 2 * MM_IN]
    assert operands.gemms(g)[[EMB, Q, MM0]].tolist() == [1, 1, 2 * H]


# ------------------------------------------------------------------------------ bitfusion


def bitfusion_resident(batch, oh, ic, oc, w, a, p):
    """The optimum of reference/bitfusion_model.md §5-6 for a 1x1 layer (K = S = 1, OW = 1)
    whose whole tensors fit half of their buffers: every tiling keeps all three resident, so the
    whole-tensor tile (least compute, no overhang) wins: compute + fill + drain cycles.
    Returns (cycles, compute, dram read bits, dram write bits, weight bits)."""
    rows, cols = p.get("array.rows"), p.get("array.cols")
    pmax, pmin, psum = p.get("array.max_bits"), p.get("array.min_bits"), p.get(
        "array.partial_sum_bits")
    bw = p.get("offchip.bandwidth_bits_per_cycle")
    npf = rows * (pmax // max(a, pmin)) * (pmax // max(w, pmin))
    compute = batch * math.ceil(oc / cols) * oh * math.ceil(ic / npf)
    act = oh * ic * batch * a
    wgt = math.ceil(ic / npf) * npf * oc * w  # the reduction padded to rows x pf
    out = oh * math.ceil(oc / cols) * cols * batch * psum  # 32-bit partial sums, padded columns
    assert act <= p.get("buffers.ibuf.size_bytes") * 4 and wgt <= p.get(
        "buffers.wbuf.size_bytes") * 4 and out <= p.get("buffers.obuf.size_bytes") * 4
    cycles = compute + math.ceil((act + wgt + out) / bw) + math.ceil(out / bw)
    return cycles, compute, act + wgt + out, out, wgt


@pytest.mark.parametrize("pair", [(8, 8), (2, 2), (4, 8)])
def test_bitfusion_matmul_is_batch_x_groups_gemms_with_the_second_operand_as_weights(pair):
    p = load_profile("bitfusion")
    batch = 2
    r = values(bitfusion, "bitfusion", [pair], batch=batch)
    # per sample and head one GEMM of T rows, reducing DH into T (scores); no second operand is
    # shared across samples or heads, so the row is batch x heads of them
    cyc, comp, rd, wr, wgt = bitfusion_resident(1, T, DH, T, *pair, p)
    n = batch * H
    assert r["cycles"][MM0, 0] == n * cyc
    assert r["compute_cycles"][MM0, 0] == n * comp
    assert r["dram_read_bits"][MM0, 0] == n * rd
    assert r["dram_write_bits"][MM0, 0] == n * wr
    assert r["wbuf_write_bits"][MM0, 0] == n * wgt  # the second operand moves as weights do
    assert r["energy_dram_pj"][MM0, 0] == pytest.approx(15.0 * n * (rd + wr))
    assert r["energy_core_pj"][MM0, 0] == pytest.approx(235.104 * n * comp)


def test_bitfusion_linear_prices_its_tokens():
    p = load_profile("bitfusion")
    r = values(bitfusion, "bitfusion", [(8, 8)])
    cyc, comp, rd, wr, _ = bitfusion_resident(1, T, D, D, 8, 8, p)  # OH = tokens
    assert (r["cycles"][Q, 0], r["compute_cycles"][Q, 0]) == (cyc, comp) == (683, 128)
    assert (r["dram_read_bits"][Q, 0], r["dram_write_bits"][Q, 0]) == (rd, wr)


def test_bitfusion_lookup_reads_the_rows_not_the_table():
    r = values(bitfusion, "bitfusion", [(8, 8), (4, 2)], batch=3)
    for j, (w, a) in enumerate([(8, 8), (4, 2)]):
        rd, wr = 3 * LOOKED_UP * w, 3 * LOOKED_UP * a
        assert (r["dram_read_bits"][EMB, j], r["dram_write_bits"][EMB, j]) == (rd, wr)
        assert r["cycles"][EMB, j] == r["stall_cycles"][EMB, j] == math.ceil((rd + wr) / 192)
        assert r["compute_cycles"][EMB, j] == r["energy_core_pj"][EMB, j] == 0
        assert r["energy_pj"][EMB, j] == pytest.approx(15.0 * (rd + wr))
    table = hwq.cost_table(token_graph(), load_profile("bitfusion"), bits=[(8, 8)]).to_pandas()
    assert table.loc[EMB, "loop_order"] == table.loc[EMB, "dataflow"] == "lookup"
    assert table.loc[Q, "dataflow"] != "lookup"


# ------------------------------------------------------------------------------ bit_serial


def test_loom_matmul_uses_fc_law_with_the_second_operand_as_weights():
    # loom: fc_law serial_weights, 128 lanes, P = 16; 2048 bits/cycle, 3.9 pJ/bit, 0.2 pJ/bit
    # buffers (outputs in the activation buffer), 235.1 pJ per compute cycle
    r = values(bit_serial, "loom", [(4, 8)])
    comp = math.ceil(MM_MACS / 128 * 4 / 16)  # serial_both would be MACs/128 x 4 x 8 / 256
    rd = MM_SECOND * 4 + MM_IN * 8
    wr = MM_OUT * 8
    assert r["compute_cycles"][MM0, 0] == comp == 32
    assert r["dram_read_bits"][MM0, 0] == rd and r["dram_write_bits"][MM0, 0] == wr
    assert r["cycles"][MM0, 0] == max(comp, math.ceil((rd + wr) / 2048))
    assert r["energy_core_pj"][MM0, 0] == pytest.approx(235.1 * comp)
    assert r["energy_sram_pj"][MM0, 0] == pytest.approx(0.4 * (rd + wr))
    assert r["energy_dram_pj"][MM0, 0] == pytest.approx(3.9 * (rd + wr))


def test_bit_serial_lookup_moves_the_rows_only():
    r = values(bit_serial, "stripes", [(8, 8), (2, 4)], batch=2)
    for j, (w, a) in enumerate([(8, 8), (2, 4)]):
        rd, wr = 2 * LOOKED_UP * w, 2 * LOOKED_UP * a
        assert r["compute_cycles"][EMB, j] == 0
        assert (r["dram_read_bits"][EMB, j], r["dram_write_bits"][EMB, j]) == (rd, wr)
        assert r["cycles"][EMB, j] == r["stall_cycles"][EMB, j] == math.ceil((rd + wr) / 256)
        assert r["energy_sram_pj"][EMB, j] == pytest.approx(0.4 * (rd + wr))
        assert r["energy_dram_pj"][EMB, j] == pytest.approx(8.0 * (rd + wr))
        assert r["energy_core_pj"][EMB, j] == 0


@pytest.mark.parametrize(("size_bytes", "rereads"), [(1024, 1), (128, 2)])
def test_bit_serial_rereads_a_matmul_input_per_gemm(tmp_path, size_bytes, rereads):
    # batch 4: 16 GEMMs, each with a 2048-bit second operand and a 2048-bit first operand at
    # W8A8. With 1 KiB buffers each GEMM's operands fit (all 16 together would not): no re-read;
    # with 128-byte ones neither does, and the input is read once per half of its operand.
    f = tmp_path / "loom-small.yaml"
    f.write_text(f"extends: loom\nname: loom-small\nbuffers:\n  weights: {{size_bytes: "
                 f"{size_bytes}}}\n  activations: {{size_bytes: {size_bytes}}}\n")
    graph = token_graph(4)
    out = bit_serial.price(graph, load_profile(f), np.array([8]), np.array([8])).values
    assert out["dram_read_bits"][MM0, 0] == 4 * MM_SECOND * 8 + rereads * 4 * MM_IN * 8


# ------------------------------------------------------------------------------ gpu


@pytest.mark.parametrize(("pair", "peak", "tk"), [((8, 8), 130e12, 64), ((4, 4), 260e12, 128)])
def test_t4_matmul_is_a_batched_gemm(pair, peak, tk):
    eff = load_profile("t4").get("efficiency")
    batch = 2
    r = values(gpu, "t4", [pair], batch=batch)
    w, a = pair
    g = batch * H  # GEMMs of M = T rows, K = DH, N = T, one kernel
    tiles = math.ceil(T / 32) * math.ceil(T / 16) * g
    waves = math.ceil(tiles / 40)
    tc = waves * 2 * 32 * 16 * math.ceil(DH / tk) * tk / (peak / 40) / eff["compute"]
    rd = batch * (MM_SECOND * w + MM_IN * a)
    wr = batch * MM_OUT * a
    tm = (rd + wr) / 8 / (320e9 * eff["memory"])
    t = max(tc, tm) + (1 - eff["overlap"]) * min(tc, tm) + 5e-6
    assert r["latency_s"][MM0, 0] == pytest.approx(t, rel=1e-12)
    assert r["dram_read_bits"][MM0, 0] == rd and r["dram_write_bits"][MM0, 0] == wr
    assert r["compute_cycles"][MM0, 0] == pytest.approx(min(tc, t) * 1.59e9, rel=1e-12)
    util = 2 * batch * MM_MACS / (peak * t)
    assert r["energy_core_pj"][MM0, 0] == pytest.approx((10 + 60 * util) * t * 1e12)
    assert r["energy_dram_pj"][MM0, 0] == pytest.approx(7.5 * (rd + wr))


def test_gpu_lookup_is_a_gather_without_compute():
    eff = load_profile("t4").get("efficiency")
    r = values(gpu, "t4", [(8, 8), (4, 16)], batch=2)
    for j, (w, a) in enumerate([(8, 8), (4, 16)]):
        rd, wr = 2 * LOOKED_UP * w, 2 * LOOKED_UP * a
        t = (rd + wr) / 8 / (320e9 * eff["memory"]) + 5e-6
        assert r["compute_cycles"][EMB, j] == 0
        assert (r["dram_read_bits"][EMB, j], r["dram_write_bits"][EMB, j]) == (rd, wr)
        assert r["latency_s"][EMB, j] == pytest.approx(t, rel=1e-12)
        assert r["energy_core_pj"][EMB, j] == pytest.approx(10.0 * t * 1e12)  # idle power


# ------------------------------------------------------------------------------ mcu


def test_stm32h743_matmul_on_the_fc_kernel_and_lookup_as_a_copy():
    r = values(mcu, "stm32h743", [(8, 8), (4, 8)], batch=2)
    assert r["cycles"][MM0, 0] == math.ceil(2 * MM_MACS * 4.8)
    assert r["cycles"][MM0, 1] == math.ceil(2 * MM_MACS * (4.8 * 1.7))  # implied w4a8
    # the lookup copies 2 x T x D values, read at w and written at a bits, 4 bytes per cycle
    assert r["cycles"][EMB, 0] == math.ceil(2 * LOOKED_UP * 16 / 8 / 4) == 1024
    assert r["cycles"][EMB, 1] == math.ceil(2 * LOOKED_UP * 12 / 8 / 4) == 768
    assert r["latency_s"][EMB, 0] == pytest.approx(1024 / 480e6)
    assert r["energy_pj"][EMB, 0] == pytest.approx(0.5 * 1024 / 480e6 * 1e12)
    # a matmul whose heads equal its K is still the fc kernel, never "depthwise"
    row = dict(name="m", op="matmul", groups=16, in_channels=16, out_channels=8, out_h=4)
    assert mcu.layer_types(LayerGraph.from_frame(pd.DataFrame([row]))).tolist() == [3]


def test_mcu_copy_rate_is_a_profile_key(tmp_path):
    f = tmp_path / "fast-copy.yaml"
    f.write_text("extends: stm32h743\nname: fast-copy\ncopy_bytes_per_cycle: 8\n")
    out = mcu.price(token_graph(), load_profile(f), np.array([8]), np.array([8])).values
    assert out["cycles"][EMB, 0] == LOOKED_UP * 16 / 8 / 8


def test_mcu_flash_holds_the_whole_table(tmp_path):
    # W8 everywhere: the table (VOCAB x D) plus the projections and the MLP, matmuls none
    weights = VOCAB * D + 4 * D * D + 2 * 4 * D * D
    f = tmp_path / "small-flash.yaml"
    f.write_text("extends: stm32h743\nname: small-flash\nmemory: {flash_bytes: 150000}\n")
    profile = load_profile(f)
    table = hwq.cost_table(token_graph(), profile, bits=[(8, 8)])
    fit = mcu.network_terms(table, np.full((1, len(ROWS), 2), 8), np.zeros(1))
    over = weights + 65536 - 150000
    assert over > 0 and weights - VOCAB * D + 65536 < 150000  # the table tips it over
    assert not fit.feasible[0] and fit.reasons[0] == f"flash overflow {over} B"
    assert fit.columns["overflow_bytes"][0] == over


# ------------------------------------------------------------------------------ lut

LUT_COLUMNS = ("layer,op,in_channels,out_channels,in_h,in_w,kernel_h,kernel_w,stride_h,stride_w,"
               "groups,batch,w_bits,a_bits,latency_s,energy_pj\n")


def lut_profile(tmp_path, rows: str):
    (tmp_path / "m.csv").write_text(LUT_COLUMNS + rows)
    f = tmp_path / "m.yaml"
    f.write_text("schema_version: 1\nname: measured\nkind: lut\ntable: m.csv\n")
    return load_profile(f)


def test_lut_looks_up_measured_matmul_and_embedding_rows(tmp_path):
    profile = lut_profile(tmp_path, (
        # both products have one shape here (T = DH): measured by layer name
        f"attn.matmul0,matmul,{DH},{T},{T},1,1,1,1,1,{H},1,8,8,2.5e-06,40\n"
        f"attn.matmul1,matmul,{T},{DH},{T},1,1,1,1,1,{H},1,8,8,3.5e-06,50\n"
        f",embedding,{VOCAB},{D},{T},1,1,1,1,1,1,1,8,8,1e-06,7\n"))
    table = hwq.cost_table(alone(EMB, MM0, MM1), profile, bits=[(8, 8)])
    assert table.values["latency_s"][:, 0].tolist() == [1e-06, 2.5e-06, 3.5e-06]
    assert table.values["energy_pj"][:, 0].tolist() == [7, 40, 50]


@pytest.mark.parametrize(("row", "op"), [(MM0, "matmul"), (EMB, "embedding")])
def test_lut_without_measurements_of_an_op_names_the_layer(tmp_path, row, op):
    profile = lut_profile(tmp_path, "c,conv,16,16,8,8,3,3,1,1,1,1,8,8,1e-06,1\n")
    name = ROWS[row]["name"]
    with pytest.raises(CostModelError, match=rf"^layer {name}: the table of profile measured "
                                             rf"has no {op} measurements \(it measures conv\)"):
        hwq.cost_table(alone(row), profile, bits=[(8, 8)])


# ------------------------------------------------------------------------------ every profile


@pytest.mark.parametrize("name", list_profiles())
def test_every_shipped_profile_prices_matmul_and_embedding_rows(name):
    profile = load_profile(name)
    pairs = (list(profile.bits.pairs) if profile.bits.pairs is not None  # LLM formats
             else list(itertools.product(profile.get("bits.weights"),
                                         profile.get("bits.activations"))))
    table = hwq.cost_table(token_graph(2), profile, bits=pairs)
    v = table.values
    w = np.array([p[0] for p in pairs], dtype=float)
    for col in ("cycles", "compute_cycles", "stall_cycles", "latency_s", "energy_pj",
                "dram_read_bits", "dram_write_bits"):
        assert np.all(np.isfinite(v[col])) and np.all(v[col] >= 0), col
    for col in ("cycles", "latency_s", "energy_pj"):
        assert np.all(v[col] > 0), col
    assert np.all(v["compute_cycles"][1:] > 0)
    if profile.kind == "mcu":  # the core itself copies the looked-up rows
        assert np.array_equal(v["compute_cycles"][EMB], v["cycles"][EMB])
    else:  # a gather moves data and computes nothing
        assert np.all(v["compute_cycles"][EMB] == 0)
    assert np.all(v["macs"][EMB] == 0) and np.all(v["bops"][EMB] == 0)
    # the whole table, at the stored bits (an LLM runtime's formats include their scales)
    stored = table.details["bits_per_weight"][EMB] if "bits_per_weight" in table.details else w
    assert np.allclose(v["weight_bytes"][EMB], VOCAB * D * stored / 8, rtol=1e-12, atol=0)
    assert np.all(v["weight_bytes"][[MM0, MM1]] == 0)
    a = np.array([p[1] for p in pairs], dtype=float)
    assert np.array_equal(v["bops"][MM0], 2 * MM_MACS * w * a)
    if profile.kind != "mcu":  # the mcu kind has no DRAM model (its traffic columns are 0)
        assert np.all(v["dram_read_bits"] > 0)
        assert np.allclose(v["dram_read_bits"][EMB], 2 * LOOKED_UP * stored, rtol=1e-12, atol=0)
    assert np.allclose(v["cycles"], v["compute_cycles"] + v["stall_cycles"])


@pytest.mark.parametrize("name", list_profiles())
def test_batch_4_is_4x_the_macs_and_costs_follow_the_law(name):
    profile = load_profile(name)
    pairs = profile.default_pairs()
    one = hwq.cost_table(token_graph(), profile, bits=pairs).values
    four = hwq.cost_table(token_graph(), profile, bits=pairs, batch=4).values
    assert np.array_equal(four["macs"], 4 * one["macs"])
    assert np.array_equal(four["bops"], 4 * one["bops"])
    assert np.array_equal(four["weight_bytes"], one["weight_bytes"])
    tokens = [EMB, MM0, MM1]  # every value they move belongs to one sample
    for col in ("dram_read_bits", "dram_write_bits"):
        assert np.array_equal(four[col][tokens], 4 * one[col][tokens]), col
    # a layer never costs more than four separate passes, and never less than one
    assert np.all(four["cycles"] <= 4 * one["cycles"] * (1 + 1e-12))
    assert np.all(four["cycles"] >= one["cycles"])
    if profile.kind == "gpu":  # launch overhead and wave quantization: sub-linear
        assert four["latency_s"].sum() < 2 * one["latency_s"].sum()
    else:  # compute cycles scale with the work, up to whole cycles per layer
        gap = four["compute_cycles"][tokens] - 4 * one["compute_cycles"][tokens]
        assert np.all(np.abs(gap) < 4)
        if profile.kind == "bitfusion":  # batch x heads independent GEMMs, costs that add
            assert np.array_equal(four["cycles"][[MM0, MM1]], 4 * one["cycles"][[MM0, MM1]])

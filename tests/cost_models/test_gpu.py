"""gpu kind: hand-computed GEMM layer, H100 int4 fallback, finite non-negative outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwq.cost_models import gpu
from hwq.graph import LayerGraph
from hwq.profile import load_profile

CONV = dict(name="c", op="conv", batch=8, in_channels=64, out_channels=64, out_h=56, in_h=56,
            kernel_h=3, pad_h=1)


def priced(device, w, a, *rows):
    g = LayerGraph.from_frame(pd.DataFrame(list(rows or (CONV,))))
    return gpu.price(g, load_profile(device), np.array(w, np.int64), np.array(a, np.int64))


def price(device, w, a, *rows):
    """The priced columns (CostTable values and the kind's details) by name."""
    out = priced(device, w, a, *rows)
    return {**out.values, **out.details}


def test_t4_hand_computed_int8():
    p = load_profile("t4")
    eff = p.get("efficiency")
    r = price("t4", [8], [8])
    m, n, k = 8 * 56 * 56, 64, 64 * 9
    tm, tn, tk = p.get("gemm_tile.m"), p.get("gemm_tile.n"), p.get("gemm_tile.k")["int8"]
    tiles = np.ceil(m / tm) * np.ceil(n / tn)
    waves = np.ceil(tiles / 40)
    tc = waves * 2 * tm * tn * np.ceil(k / tk) * tk / (130e12 / 40) / eff["compute"]
    rd = (36864 + 8 * 64 * 56 * 56) * 8
    wr = 8 * 64 * 56 * 56 * 8
    tm = (rd + wr) / 8 / (320e9 * eff["memory"])
    t = max(tc, tm) + (1 - eff["overlap"]) * min(tc, tm) + 5e-6
    assert r["latency_s"][0, 0] == pytest.approx(t)
    assert r["cycles"][0, 0] == pytest.approx(t * 1.59e9)
    assert r["compute_cycles"][0, 0] == pytest.approx(min(tc, t) * 1.59e9)
    assert r["dram_read_bits"][0, 0] == rd
    util = 2 * m * n * k / (130e12 * t)
    assert r["energy_core_pj"][0, 0] == pytest.approx((10 + 60 * util) * t * 1e12)
    assert r["energy_dram_pj"][0, 0] == pytest.approx(7.5 * (rd + wr))


def test_h100_int4_computes_as_int8_moves_int4_bytes():
    r = price("h100", [4, 8], [4, 8])
    assert r["precision"][0, 0] == r["precision"][0, 1] == 1
    assert r["compute_cycles"][0, 0] == pytest.approx(r["compute_cycles"][0, 1])
    assert r["latency_s"][0, 0] <= r["latency_s"][0, 1]
    assert r["dram_read_bits"][0, 0] == pytest.approx(r["dram_read_bits"][0, 1] / 2)
    assert r["dram_write_bits"][0, 0] == pytest.approx(r["dram_write_bits"][0, 1] / 2)


def test_t4_int4_faster_and_precision_mapping():
    r = price("t4", [4, 8, 16, 2, 4], [4, 8, 16, 2, 8])
    assert list(r["precision"][0]) == [0, 1, 2, 0, 1]
    # K = 576 pads to 640 at the int4 tile depth 128 and not at int8's 64: 2x the rate, 10/9 work
    assert r["compute_cycles"][0, 0] == pytest.approx(r["compute_cycles"][0, 1] / 2 * 640 / 576)


def test_tile_depth_per_precision_or_one_number(tmp_path):
    path = tmp_path / "t4_flat_k.yaml"
    path.write_text("extends: t4\nname: t4_flat_k\ngemm_tile: {m: 32, n: 16, k: 64}\n")
    one = load_profile(path)
    g = LayerGraph.from_frame(pd.DataFrame([CONV]))
    r = gpu.price(g, one, np.array([4, 8]), np.array([4, 8])).values
    assert r["compute_cycles"][0, 0] == pytest.approx(r["compute_cycles"][0, 1] / 2)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["t4", "a100", "h100", "jetson-orin", "t4-tensorrt", "h100-tensorrt"]),
       st.integers(1, 16),
       st.integers(1, 512), st.integers(1, 512), st.integers(1, 64), st.sampled_from([1, 3]),
       st.sampled_from([4, 8, 16, 32]), st.sampled_from([4, 8, 16, 32]))
def test_finite_non_negative(device, batch, ic, oc, oh, k, w, a):
    row = dict(name="x", op="conv", batch=batch, in_channels=ic, out_channels=oc, out_h=oh,
               in_h=oh + k - 1, kernel_h=k)
    fc = dict(name="fc", op="linear", batch=batch, in_channels=ic, out_channels=oc)
    r = price(device, [w], [a], row, fc)
    for col, v in r.items():
        assert np.all(np.isfinite(v)) and np.all(v >= 0), col
    assert np.all(r["cycles"] >= r["compute_cycles"])


def test_32_bit_runs_as_fp32_on_cuda_cores():
    r = price("t4", [16, 32], [16, 32])
    assert list(r["precision"][0]) == [2, 3]
    assert priced("t4", [16, 32], [16, 32]).detail_labels["precision"][3] == "fp32"
    # 65 TFLOPS fp16 tensor cores vs 8.14 TFLOPS fp32 CUDA cores, same tile
    assert r["compute_cycles"][0, 1] == pytest.approx(r["compute_cycles"][0, 0] * 65e12 / 8.1408e12)
    assert r["dram_write_bits"][0, 1] == pytest.approx(2 * r["dram_write_bits"][0, 0])

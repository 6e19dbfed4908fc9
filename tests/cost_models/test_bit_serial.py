"""bit_serial kind: hand-computed layers, laws, monotonicity, finite non-negative outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwq.cost_models import bit_serial
from hwq.graph import LayerGraph
from hwq.profile import load_profile

CONV = dict(name="c", op="conv", in_channels=64, out_channels=64, out_h=56, in_h=58, kernel_h=3)
FC = dict(name="fc", op="linear", in_channels=512, out_channels=1000)
MACS = 64 * 64 * 56 * 56 * 9


def graph(*rows):
    return LayerGraph.from_frame(pd.DataFrame(list(rows)))


def price(device, w, a, *rows):
    """The priced columns by name."""
    out = bit_serial.price(graph(*(rows or (CONV, FC))), load_profile(device),
                           np.array(w, dtype=np.int64), np.array(a, dtype=np.int64))
    return {**out.values, **out.details}


def test_stripes_hand_computed_conv():
    r = price("stripes", [8], [8])
    # 4096 16-bit lanes, activations serial: MACs / 4096 x 8 / 16
    assert r["compute_cycles"][0, 0] == np.ceil(MACS / 4096 * 8 / 16)
    rd = 36864 * 8 + 58 * 58 * 64 * 8
    wr = 56 * 56 * 64 * 8
    assert r["dram_read_bits"][0, 0] == rd
    assert r["dram_write_bits"][0, 0] == wr
    mem = np.ceil((rd + wr) / 256)
    assert r["cycles"][0, 0] == max(mem, r["compute_cycles"][0, 0])
    assert r["stall_cycles"][0, 0] == r["cycles"][0, 0] - r["compute_cycles"][0, 0]
    assert r["energy_core_pj"][0, 0] == pytest.approx(7523.3 * r["compute_cycles"][0, 0])
    assert r["energy_dram_pj"][0, 0] == pytest.approx(8.0 * (rd + wr))
    assert r["energy_sram_pj"][0, 0] == pytest.approx(0.4 * (rd + wr))
    assert r["latency_s"][0, 0] == pytest.approx(r["cycles"][0, 0] / 980e6)


def test_half_bits_half_compute_cycles():
    for dev in ("stripes", "loom", "unpu"):
        r = price(dev, [8, 4], [8, 8] if dev == "unpu" else [8, 4])
        c8, c4 = r["compute_cycles"][0]
        ratio = 0.25 if dev == "loom" else 0.5
        assert c4 == pytest.approx(c8 * ratio, rel=1e-4), dev


def test_laws():
    r = price("loom", [4], [8])
    assert r["compute_cycles"][0, 0] == np.ceil(MACS / 128 * 4 * 8 / 256)
    assert r["compute_cycles"][1, 0] == np.ceil(512000 / 128 * 4 / 16)  # FC serial in weights
    r = price("bismo", [3], [5])
    assert r["compute_cycles"][0, 0] == MACS * 15 / 256
    r = price("stripes", [4, 8, 16], [4, 8, 16])
    assert np.all(r["compute_cycles"][1] == 125)  # fc_law parallel: no speed-up
    r = price("stripes", [8, 8], [16, 32])
    assert r["compute_cycles"][0, 0] == r["compute_cycles"][0, 1]  # clamp above parallel_bits
    r = price("unpu", [8, 8], [4, 8])  # activations are 16-bit on chip
    assert r["compute_cycles"][0, 0] == r["compute_cycles"][0, 1]


@pytest.mark.parametrize("device", ["stripes", "loom", "unpu", "bismo"])
def test_monotone_in_serial_bits(device):
    bits = np.arange(1, 9)
    r = price(device, bits, bits)
    assert np.all(np.diff(r["compute_cycles"], axis=1) >= 0)
    assert np.all(np.diff(r["energy_pj"], axis=1) >= 0)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["stripes", "loom", "unpu", "bismo"]),
       st.integers(1, 512), st.integers(1, 512), st.integers(1, 64), st.sampled_from([1, 3, 5]),
       st.integers(1, 2), st.integers(1, 8), st.integers(1, 8))
def test_finite_non_negative(device, ic, oc, oh, k, s, w, a):
    row = dict(name="x", op="conv", in_channels=ic, out_channels=oc, out_h=oh, kernel_h=k,
               stride_h=s, in_h=(oh - 1) * s + k)
    r = price(device, [w], [a], row, FC)
    for col, v in r.items():
        assert np.all(np.isfinite(v)) and np.all(v >= 0), col
    assert np.all(r["cycles"] >= r["compute_cycles"])

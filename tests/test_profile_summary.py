"""hwq.profile_summary: peak MACs/s and energy per MAC a profile implies, per (w_bits, a_bits)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import hwq
from hwq.profile_summary import SYNTHETIC_LAYER, summarize, summary_pairs, synthetic_graph

LUT_EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "t4_resnet18_lut.yaml"


def by_pair(name_or_path, pairs=None):
    return {(p.w_bits, p.a_bits): p for p in summarize(hwq.load_profile(name_or_path), pairs).pairs}


def test_synthetic_layer_is_one_big_conv():
    g = synthetic_graph()
    assert len(g) == 1 and not g.frame["reads_input"][0]
    b, c_in, c_out = SYNTHETIC_LAYER["batch"], SYNTHETIC_LAYER["in_channels"], 4096
    assert int(g.column("macs")[0]) == b * 128 * 128 * c_out * c_in * 9


def test_pairs_default_to_search_pairs_or_every_supported_pair():
    assert summary_pairs(hwq.load_profile("bitfusion")) == [
        (w, a) for w in (2, 4, 8) for a in (2, 4, 8)]  # 8 x 8 widths: the 9 search pairs
    assert summary_pairs(hwq.load_profile("t4")) == [
        (w, a) for w in (4, 8, 16, 32) for a in (4, 8, 16, 32)]  # 16: all of them


def test_bitfusion_fusion_rule_and_exact_figures():
    s = by_pair("bitfusion")
    w8a8 = 16 * 32 * 500e6  # rows x cols fusion units at 500 MHz, one MAC each at 8 bits
    assert s[(8, 8)].peak_macs_per_s == pytest.approx(w8a8, rel=1e-12)
    assert s[(2, 2)].peak_macs_per_s == pytest.approx(16 * w8a8, rel=1e-12)  # (8/2) x (8/2)
    assert s[(4, 8)].peak_macs_per_s == pytest.approx(2 * w8a8, rel=1e-12)
    assert s[(8, 8)].energy_per_mac_pj == pytest.approx(235.104 / 512, rel=1e-12)
    assert s[(2, 2)].energy_per_mac_pj == pytest.approx(235.104 / 512 / 16, rel=1e-12)
    for p in s.values():  # buffers and DRAM add to the core energy
        assert p.total_energy_per_mac_pj > p.energy_per_mac_pj and p.note is None


def test_stripes_serial_activations():
    s = by_pair("stripes")
    a8 = 4096 * 16 / 8 * 980e6  # lanes x parallel_bits / a_bits per cycle
    for w in (2, 4, 8):
        assert s[(w, 8)].peak_macs_per_s == pytest.approx(a8, rel=1e-12)
        assert s[(w, 4)].peak_macs_per_s == pytest.approx(2 * a8, rel=1e-12)
        assert s[(w, 8)].energy_per_mac_pj == pytest.approx(7523.3 / (4096 * 2), rel=1e-12)


def test_loom_and_bismo_scale_with_both_widths():
    loom = by_pair("loom")
    assert loom[(4, 4)].peak_macs_per_s == pytest.approx(4 * loom[(8, 8)].peak_macs_per_s)
    assert loom[(8, 8)].peak_macs_per_s == pytest.approx(128 * 4 * 980e6, rel=1e-12)
    bismo = by_pair("bismo")
    assert bismo[(1, 1)].peak_macs_per_s == pytest.approx(2 * 64 * 2 * 200e6, rel=1e-12)
    assert bismo[(8, 8)].peak_macs_per_s == pytest.approx(bismo[(1, 1)].peak_macs_per_s / 64)


def test_mcu_cycles_per_mac_and_active_power():
    s = by_pair("stm32h743")
    assert s[(8, 8)].peak_macs_per_s == pytest.approx(480e6 / 4.3, rel=1e-9)  # conv kernel
    assert s[(4, 8)].peak_macs_per_s == pytest.approx(480e6 / (4.3 * 1.7), rel=1e-9)
    assert s[(8, 8)].energy_per_mac_pj == pytest.approx(0.5 * 4.3 / 480e6 * 1e12, rel=1e-9)
    assert s[(8, 8)].total_energy_per_mac_pj == s[(8, 8)].energy_per_mac_pj  # no DRAM model


def test_gpu_precisions_and_fallback():
    a100 = by_pair("a100")
    assert a100[(4, 4)].peak_macs_per_s == pytest.approx(2 * a100[(8, 8)].peak_macs_per_s)
    assert a100[(8, 8)].peak_macs_per_s == pytest.approx(624e12 / 2 * 0.5, rel=1e-2)
    h100 = by_pair("h100")  # no int4 tensor cores: int4 computes as int8
    assert h100[(4, 4)].peak_macs_per_s == pytest.approx(h100[(8, 8)].peak_macs_per_s)
    assert len(h100) == 16
    for p in h100.values():
        assert p.peak_macs_per_s > 0 and p.energy_per_mac_pj > 0


def test_refused_pair_gets_a_note_and_the_others_their_numbers():
    s = by_pair("bitfusion", [(8, 8), (16, 16)])
    assert s[(8, 8)].peak_macs_per_s == pytest.approx(16 * 32 * 500e6)
    assert s[(16, 16)].peak_macs_per_s is None
    assert s[(16, 16)].note.startswith("bitfusion cannot price W16A16")  # no synthetic name


def test_nothing_fits_gets_a_note(tmp_path):
    f = tmp_path / "tiny.yaml"
    f.write_text("extends: bitfusion\nname: tiny\nbuffers:\n  wbuf: {size_bytes: 8}\n")
    s = by_pair(f, [(8, 8)])
    assert s[(8, 8)].peak_macs_per_s is None and "buffers.wbuf" in s[(8, 8)].note


def lut_expected(csv: Path) -> dict[tuple[int, int], pd.DataFrame]:
    """Per pair, the table's shapes with their median latency (repeats of a shape count once)."""
    df = pd.read_csv(csv).drop(columns="layer")
    df = df.groupby([c for c in df.columns if c != "latency_s"], as_index=False).median()
    pad = (df["kernel_h"] - 1) // 2
    out = (df["in_h"] + 2 * pad - df["kernel_h"]) // df["stride_h"] + 1
    macs = df["batch"] * out * out * df["out_channels"] * df["in_channels"] * df["kernel_h"] ** 2
    df["rate"] = macs / df["latency_s"]
    return {(int(w), int(a)): g for (w, a), g in df.groupby(["w_bits", "a_bits"])}


def test_lut_uses_the_fastest_measured_row_per_pair():
    s = by_pair(LUT_EXAMPLE)
    expected = lut_expected(LUT_EXAMPLE.with_name("t4_resnet18_measured.csv"))
    assert set(s) == {(4, 4), (4, 8), (8, 4), (8, 8)}
    for pair in ((4, 4), (8, 8)):
        assert s[pair].peak_macs_per_s == pytest.approx(expected[pair]["rate"].max(), rel=1e-12)
        assert s[pair].total_energy_per_mac_pj is None  # the table measured latency only
    for pair in ((4, 8), (8, 4)):
        assert s[pair].peak_macs_per_s is None
        assert s[pair].note.startswith("not measured")


def test_lut_energy_column(tmp_path):
    rows = [
        {"op": "conv", "in_channels": 64, "out_channels": 64, "in_h": 56, "in_w": 56,
         "kernel_h": 3, "kernel_w": 3, "stride_h": 1, "stride_w": 1, "groups": 1, "batch": 1,
         "w_bits": 8, "a_bits": 8, "latency_s": 1e-3, "energy_pj": 2e9},
        {"op": "linear", "in_channels": 512, "out_channels": 1000, "in_h": 1, "in_w": 1,
         "kernel_h": 1, "kernel_w": 1, "stride_h": 1, "stride_w": 1, "groups": 1, "batch": 1,
         "w_bits": 8, "a_bits": 8, "latency_s": 1e-5, "energy_pj": 1e6},
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    (tmp_path / "dev.yaml").write_text(
        "schema_version: 1\nname: dev\nkind: lut\ntable: m.csv\n")
    s = by_pair(tmp_path / "dev.yaml")
    conv_macs = 56 * 56 * 64 * 64 * 9  # 115.6 M MACs in 1 ms beats 0.512 M in 10 us
    assert list(s) == [(8, 8)]
    assert s[(8, 8)].peak_macs_per_s == pytest.approx(conv_macs / 1e-3)
    assert s[(8, 8)].total_energy_per_mac_pj == pytest.approx(2e9 / conv_macs)
    assert s[(8, 8)].note is None

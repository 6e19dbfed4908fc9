"""The `bitfusion` cost model against the public BitFusion simulator's outputs.

Every `status == ok` row of tests/data/bitfusion_reference_visible.csv (a copy of
reference/bitfusion_reference_visible.csv) must match exactly in cycles, DRAM and buffer traffic
and within 0.1 % in energy (the CSV is in nJ, the model in pJ).  The reported tiling and loop
order are not compared: the reference breaks exact ties by set-iteration order and its tiling
representation is not unique (bitfusion_model.md §5); only the statistics are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hwq.cost_models.bitfusion_kernel as bf
from hwq.cost_models.bitfusion import OUT_COLUMNS, params_from_profile, reference_params

CSV = Path(__file__).resolve().parents[1] / "data" / "bitfusion_reference_visible.csv"

EXACT = [
    ("cycles", "total_cycles"),
    ("compute_cycles", "compute_cycles"),
    ("stall_cycles", "mem_stall_cycles"),
    ("dram_read_bits", "dram_read_bits"),
    ("dram_write_bits", "dram_write_bits"),
    ("ibuf_read_bits", "ibuf_read_bits"),
    ("ibuf_write_bits", "ibuf_write_bits"),
    ("wbuf_read_bits", "wbuf_read_bits"),
    ("wbuf_write_bits", "wbuf_write_bits"),
    ("obuf_read_bits", "obuf_read_bits"),
    ("obuf_write_bits", "obuf_write_bits"),
]
ENERGY = [
    ("energy_pj", "energy_total_nJ"),
    ("energy_core_pj", "energy_core_nJ"),
    ("energy_sram_pj", "energy_buffers_total_nJ"),
    ("energy_dram_pj", "energy_dram_nJ"),
    ("energy_ibuf_pj", "energy_ibuf_nJ"),
    ("energy_wbuf_pj", "energy_wbuf_nJ"),
    ("energy_obuf_pj", "energy_obuf_nJ"),
]


def layer_rows(frame: pd.DataFrame) -> np.ndarray:
    """Simulator rows from the CSV's shape columns (conv: K, O, S; fc: K = O = S = 1, IC/OC from
    fc_in_features/fc_out_features)."""
    fc = (frame["layer_type"] == "fc").to_numpy()
    one = np.ones(len(frame), dtype=np.int64)

    def pick(conv_col: str, fc_values: np.ndarray) -> np.ndarray:
        conv = frame[conv_col].to_numpy()
        return np.where(fc, fc_values, conv).astype(np.int64)

    k = pick("kernel_h", one)
    o = pick("out_h", one)
    s = pick("stride", one)
    ic = pick("in_channels", frame["fc_in_features"].fillna(0).to_numpy())
    oc = pick("out_channels", frame["fc_out_features"].fillna(0).to_numpy())
    batch = frame["batch"].to_numpy(dtype=np.int64)
    # The simulator prices a MatMul through get_FC_cycles, which never uses im2col.
    im2col = np.where(fc, 0, frame["im2col_first_layer"].to_numpy(dtype=np.int64))
    return np.stack([k, k, o, o, s, s, ic, oc, batch, one, im2col], axis=1)


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return pd.read_csv(CSV)


@pytest.fixture(scope="module")
def computed(reference):
    """Every ok row, from ONE simulate call: the distinct layer rows x the distinct bit pairs."""
    ok = reference[reference["status"] == "ok"].reset_index(drop=True)
    rows = layer_rows(ok)
    u_rows, inv_rows = np.unique(rows, axis=0, return_inverse=True)
    pairs = ok[["wbits", "abits"]].to_numpy(dtype=np.int64)
    u_pairs, inv_pairs = np.unique(pairs, axis=0, return_inverse=True)
    table = bf.simulate(u_rows, u_pairs[:, 0], u_pairs[:, 1], reference_params(),
                        use_cache=False)
    assert table.shape == (len(u_rows), len(u_pairs), len(OUT_COLUMNS))
    return ok, table[inv_rows.ravel(), inv_pairs.ravel()]


def test_csv_is_the_shared_reference(reference):
    assert len(reference) > 500
    assert {"ok"} <= set(reference["status"])


def test_params_from_profile_matches_reference_constants():
    from hwq.profile import load_profile  # noqa: PLC0415

    try:
        profile = load_profile("bitfusion")
    except Exception as exc:  # pragma: no cover - the profile loader is someone else's module
        pytest.skip(f"bitfusion profile not loadable here: {exc}")
    np.testing.assert_array_equal(params_from_profile(profile), reference_params())


@pytest.mark.parametrize("mine,ref", EXACT, ids=[m for m, _ in EXACT])
def test_exact_statistics(computed, mine, ref):
    ok, out = computed
    got = out[:, OUT_COLUMNS.index(mine)]
    want = ok[ref].to_numpy(dtype=np.float64)
    bad = np.flatnonzero(got != want)
    cols = ["network", "layer", "batch", "wbits", "abits", ref]
    detail = ok.loc[bad[:10], cols].assign(got=got[bad[:10]])
    assert bad.size == 0, f"{bad.size} rows differ in {mine}:\n{detail}"


@pytest.mark.parametrize("mine,ref", ENERGY, ids=[m for m, _ in ENERGY])
def test_energy_within_0p1_percent(computed, mine, ref):
    ok, out = computed
    got_nj = out[:, OUT_COLUMNS.index(mine)] / 1000.0
    want = ok[ref].to_numpy(dtype=np.float64)
    rel = np.abs(got_nj - want) / np.maximum(np.abs(want), 1e-12)
    assert rel.max() <= 1e-3, f"worst {mine} rel error {rel.max():.3g} at row {rel.argmax()}"


def test_cycles_split(computed):
    _, out = computed
    c = {n: out[:, i] for i, n in enumerate(OUT_COLUMNS)}
    np.testing.assert_array_equal(c["cycles"], c["compute_cycles"] + c["stall_cycles"])


def test_dataflow_is_output_stationary_like_the_reference(computed):
    ok, out = computed
    assert (ok["inner_dataflow"] == "Output Stationary").all()
    assert (out[:, OUT_COLUMNS.index("dataflow")] == 1).all()


def test_perf_factor_column(computed):
    ok, out = computed
    np.testing.assert_array_equal(out[:, OUT_COLUMNS.index("perf_factor")], ok["perf_factor"])


def test_worked_example_conv4_b():
    """bitfusion_model.md §6: AlexNet-WRPN conv4_b at w4a4, batch 16."""
    row = np.array([[3, 3, 13, 13, 1, 1, 384, 384, 16, 1, 0]])
    out = bf.simulate(row, np.array([4]), np.array([4]), reference_params(), use_cache=False)
    c = dict(zip(OUT_COLUMNS, out[0, 0]))
    assert c["compute_cycles"] == 2_032_128
    assert c["stall_cycles"] == 403_969
    assert c["cycles"] == 2_436_097


def test_unsupported_rows_raise(reference):
    unsupported = reference[reference["status"] != "ok"]
    conv4_b = np.array([[3, 3, 13, 13, 1, 1, 384, 384, 16, 1, 0]])
    rows = layer_rows(unsupported) if len(unsupported) else conv4_b
    pairs = (list(zip(unsupported["wbits"], unsupported["abits"])) if len(unsupported)
             else [(16, 16), (16, 8), (8, 16)])
    for w, a in pairs:
        with pytest.raises(ValueError, match=rf"W{w}A{a}"):
            bf.simulate(rows[:1], np.array([w]), np.array([a]), reference_params(),
                        use_cache=False)


@pytest.mark.parametrize("w,a", [(0, 4), (4, 0), (9, 8), (8, 9), (16, 16)])
def test_out_of_range_bits_name_the_pair(w, a):
    row = np.array([[1, 1, 1, 1, 1, 1, 64, 64, 1, 1, 0]])
    with pytest.raises(ValueError, match=rf"row 1: W{w}A{a}"):
        bf.simulate(row, np.array([8, w]), np.array([8, a]), reference_params(),
                    use_cache=False)


def test_table_equals_rowwise(computed):
    """The whole table in one call equals one call per (layer, pair), duplicates included."""
    ok, out = computed
    sub = ok[(ok["batch"] == 16) & (ok["network"] == "LeNet-5")]
    rows = layer_rows(sub)
    for i, idx in enumerate(sub.index):
        w, a = sub.loc[idx, "wbits"], sub.loc[idx, "abits"]
        single = bf.simulate(rows[i:i + 1], np.array([w]), np.array([a]), reference_params(),
                             use_cache=False)
        np.testing.assert_array_equal(single[0, 0], out[idx])
    twice = bf.simulate(np.concatenate([rows, rows]), sub["wbits"].to_numpy(),
                        sub["abits"].to_numpy(), reference_params(), use_cache=False)
    np.testing.assert_array_equal(twice[:len(sub)], twice[len(sub):])


def test_persistent_cache_roundtrip(tmp_cache, monkeypatch):
    monkeypatch.delenv("HWQ_NO_CACHE", raising=False)
    rows = np.array([[3, 3, 13, 13, 1, 1, 384, 384, 16, 1, 0], [5, 5, 8, 8, 1, 1, 20, 50, 1, 1, 0]])
    w, a = np.array([4, 8]), np.array([4, 2])
    params = reference_params()
    fresh = bf.simulate(rows, w, a, params, use_cache=False)
    first = bf.simulate(rows, w, a, params)
    files = list(tmp_cache.rglob("*.npy"))
    assert len(files) == 2
    assert not list(tmp_cache.rglob("*.tmp"))
    np.testing.assert_array_equal(first, fresh)
    # Served from the cache: the solver is not called again.
    monkeypatch.setattr(bf, "solve_table", lambda *args: pytest.fail("cache miss"))
    np.testing.assert_array_equal(bf.simulate(rows, w, a, params), fresh)
    # Other params are another key.
    other = params.copy()
    other[15] = 6.0
    monkeypatch.undo()
    monkeypatch.setenv("HWQ_CACHE_DIR", str(tmp_cache))
    bf.simulate(rows, w, a, other)
    assert len(list(tmp_cache.rglob("*.npy"))) == 4


def test_no_cache_env_disables_cache(tmp_cache, monkeypatch):
    monkeypatch.setenv("HWQ_NO_CACHE", "1")
    rows = np.array([[1, 1, 1, 1, 1, 1, 64, 64, 2, 1, 0]])
    bf.simulate(rows, np.array([8]), np.array([8]), reference_params())
    assert not tmp_cache.exists() or not list(tmp_cache.rglob("*.npy"))

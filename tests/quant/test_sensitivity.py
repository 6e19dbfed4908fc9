"""Sensitivity measured on the trained digits model (loss increase, HAWQ Hessian), its proxy,
its long-table round trip, and the sensitivity objective reading a file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hwq.errors import UserError
from hwq.quant.sensitivity import measure_sensitivity, sensitivity_objective
from hwq.sensitivity_files import SensitivityTable


@pytest.fixture(scope="module")
def measured(evaluator):
    return measure_sensitivity(evaluator, [(w, a) for w in (2, 4, 8) for a in (2, 4, 8)])


def test_measured_sensitivity_and_proxy(measured, evaluator):
    names = evaluator.names
    assert set(measured.layers) == set(names) and len(measured) == 7 * 9
    f = measured.frame
    s2 = f[(f.w_bits == 2) & (f.a_bits == 2)].sensitivity.sum()
    s8 = f[(f.w_bits == 8) & (f.a_bits == 8)].sensitivity.sum()
    assert s2 > s8
    pairs = [(2, 4), (4, 4), (8, 2), (8, 8), (4, 8), (2, 2), (8, 4)]
    expected = sum(
        float(f[(f.layer == n) & (f.w_bits == w) & (f.a_bits == a)].sensitivity.iloc[0])
        for n, (w, a) in zip(names, pairs)
    )
    assert measured.proxy(pairs, names) == pytest.approx(expected)
    arr = np.array([pairs, [(8, 8)] * 7])
    np.testing.assert_allclose(
        measured.proxy_many(arr, names), [expected, s8], rtol=1e-9, atol=1e-12
    )
    assert measured.proxy([(32, 32)] * 7, names) == 0.0
    with pytest.raises(UserError, match="layer1.0.conv1 at w_bits=3, a_bits=4"):
        measured.proxy([(8, 8), (3, 4)] + [(8, 8)] * 5, names)


def test_long_table_round_trip_and_weight_only_rows(measured, evaluator, tmp_path):
    path = tmp_path / "sens.csv"
    measured.save(path)
    again = SensitivityTable.read(path)
    pd.testing.assert_frame_equal(again.frame, measured.frame)
    names = evaluator.names
    weight_only = pd.DataFrame(
        {
            "layer": names * 2,
            "w_bits": [4] * 7 + [8] * 7,
            "a_bits": [None] * 14,
            "sensitivity": [1.0] * 7 + [0.5] * 7,
        }
    )
    wpath = tmp_path / "w.csv"
    weight_only.to_csv(wpath, index=False)
    table = SensitivityTable.read(wpath)
    assert table.proxy([(4, 2)] * 7, names) == pytest.approx(7.0)  # any a_bits
    assert table.proxy([(8, 8)] * 3 + [(32, 4)] * 4, names) == pytest.approx(1.5)


def test_model_layers_missing_only_when_pinned_and_file_layers_must_exist(measured, evaluator):
    names = evaluator.names
    partial = SensitivityTable(measured.frame[measured.frame.layer != "fc"])
    with pytest.raises(UserError, match="no sensitivity for layer.*fc.*pinned"):
        partial.proxy([(8, 8)] * 7, names)
    full = measured.proxy([(8, 8)] * 7, names)
    fc = float(
        measured.frame.query("layer == 'fc' and w_bits == 8 and a_bits == 8").sensitivity.iloc[0]
    )
    assert partial.proxy([(8, 8)] * 7, names, pinned=["fc"]) == pytest.approx(full - fc)
    with pytest.raises(UserError, match="does not have: conv1"):
        measured.proxy([(8, 8)] * 6, names[1:])


def test_hessian_sensitivity_is_weight_only(evaluator):
    table = measure_sensitivity(
        evaluator, [(2, 8), (4, 8), (8, 8)], method="hessian", hessian_iters=4
    )
    assert table.frame.a_bits.isna().all()
    per_bits = table.frame.groupby("w_bits").sensitivity.sum()
    assert per_bits[2] > per_bits[4] > per_bits[8] > 0


def test_sensitivity_objective_reads_a_file_without_weights(hawq_csv):
    table = sensitivity_objective("resnet18", sensitivity_file=str(hawq_csv))
    assert len(table) == 4

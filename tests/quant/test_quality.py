"""Quality for search: PTQ accuracy (fast path == generic path, cached), sensitivity tables
(measured, long format, HAWQ-V3 format), and the refusal to score untrained weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hwq.errors import UserError
from hwq.policy import Policy
from hwq.quant.apply import apply_policy, calibrate, quantizable_layers
from hwq.quant.finetune import accuracy
from hwq.quant.quality import (
    PTQAccuracy,
    SensitivityTable,
    accuracy_objective,
    measure_sensitivity,
    sensitivity_objective,
)

# copies of ../shared/reference/hawq_v3_sensitivity_*.csv, kept in the repository so CI runs them
REFERENCE = Path(__file__).resolve().parents[1] / "search" / "data"


@pytest.fixture(scope="module")
def evaluator(trained, calib, digits):
    return PTQAccuracy(trained[0], calib, (digits.val.x, digits.val.y))


@pytest.fixture(scope="module")
def measured(evaluator):
    return measure_sensitivity(evaluator, [(w, a) for w in (2, 4, 8) for a in (2, 4, 8)])


def test_fast_path_equals_apply_calibrate_evaluate(evaluator, trained, calib, digits):
    rng = np.random.default_rng(0)
    pols = rng.choice([2, 3, 4, 6, 8, 32], size=(4, 7, 2))
    accs = evaluator.evaluate(pols)
    for p, acc in zip(pols, accs):
        q = calibrate(apply_policy(trained[0], p.tolist()), calib, 4)
        assert acc == accuracy(q, [(digits.val.x, digits.val.y)])


def test_cached_by_policy_id(evaluator):
    names = evaluator.names
    pol = Policy(w_bits={names[0]: 5}, default=(6, 7))
    before = evaluator.evaluations
    a1 = evaluator(pol)
    a2 = evaluator([(5, 7)] + [(6, 7)] * 6)  # the same pairs as a list
    assert a1 == a2 and evaluator.evaluations == before + 1
    assert evaluator.policy_id(pol) in evaluator.cache


def test_ptq_figures_on_test_split(trained, calib, digits):
    model, info = trained
    test = (digits.test.x, digits.test.y)
    ev = PTQAccuracy(model, calib, test)
    fp32 = info["fp32_test_accuracy"]
    assert fp32 >= 0.97
    w8a8, w2a2 = ev([(8, 8)] * 7), ev([(2, 2)] * 7)
    assert abs(w8a8 - fp32) <= 0.01
    assert w2a2 <= w8a8 - 0.05


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


def test_long_table_errors_name_file_line_and_layer(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("layer,w_bits,a_bits,sensitivity\nconv1,4,4,0.1\nfc,9,4,0.2\nfc,4,4,x\n")
    with pytest.raises(UserError) as err:
        SensitivityTable.read(bad)
    msg = str(err.value)
    assert f"{bad}:3: layer fc: w_bits" in msg and f"{bad}:4: layer fc: sensitivity" in msg
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="expected columns layer,w_bits,a_bits,sensitivity"):
        SensitivityTable.read(other)
    with pytest.raises(UserError, match="not found"):
        SensitivityTable.read(tmp_path / "missing.csv")


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


def _hawq_csv(tmp_path):
    path = tmp_path / "hawq_v3_sensitivity_tiny.csv"
    path.write_text(
        "layer,weight_params,macs_per_image,hutchinson_trace_per_param,delta_w8_sq,delta_w4_sq,"
        "tie_group\n"
        "a,10,100,0.5,0.01,2.0,t1\n"
        "b,10,100,0.25,0.02,4.0,t1\n"
    )
    return path


def test_hawq_v3_format(tmp_path):
    table = SensitivityTable.read(_hawq_csv(tmp_path))
    assert table.tie_groups == {"a": "t1", "b": "t1"}
    names = ["stem", "a", "b", "head"]
    pol = [(8, 8), (4, 8), (8, 4), (8, 8)]
    assert table.proxy(pol, names, pinned=["stem", "head"]) == pytest.approx(
        0.5 * 2.0 + 0.25 * 0.02
    )
    with pytest.raises(UserError, match="stem, head"):
        table.proxy(pol, names)
    with pytest.raises(UserError, match="layer a at w_bits=2"):
        table.proxy([(8, 8), (2, 8), (8, 8), (8, 8)], names, pinned=["stem", "head"])


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_published_hawq_v3_tables_against_zoo_models(arch):
    from hwq.models import load_model

    path = REFERENCE / f"hawq_v3_sensitivity_{arch}.csv"
    table = SensitivityTable.read(path)
    ref = pd.read_csv(path)
    names = quantizable_layers(load_model(arch))
    pinned = [names[0], names[-1]]  # the first conv and the fc stay at 8 bits in HAWQ-V3
    arr = np.array([[(4, 8)] * len(names), [(8, 8)] * len(names)])
    got = table.proxy_many(arr, names, pinned=pinned)
    want4 = float((ref.hutchinson_trace_per_param * ref.delta_w4_sq).sum())
    want8 = float((ref.hutchinson_trace_per_param * ref.delta_w8_sq).sum())
    np.testing.assert_allclose(got, [want4, want8], rtol=1e-12)


def test_hessian_sensitivity_is_weight_only(evaluator):
    table = measure_sensitivity(
        evaluator, [(2, 8), (4, 8), (8, 8)], method="hessian", hessian_iters=4
    )
    assert table.frame.a_bits.isna().all()
    per_bits = table.frame.groupby("w_bits").sensitivity.sum()
    assert per_bits[2] > per_bits[4] > per_bits[8] > 0


def test_quality_objective_refuses_untrained_weights():
    for make in (accuracy_objective, sensitivity_objective):
        with pytest.raises(UserError, match="--weights FILE.*--sensitivity FILE.*random weights"):
            make("resnet20")


def test_quality_objective_with_user_weights_needs_data(tmp_path):
    from hwq.models import load_model

    path = tmp_path / "w.pt"
    torch.save(load_model("resnet20").state_dict(), path)
    with pytest.raises(UserError, match="--data package.module:factory"):
        accuracy_objective("resnet20", weights=str(path))


def test_sensitivity_objective_reads_a_file_without_weights(tmp_path):
    table = sensitivity_objective("resnet18", sensitivity_file=str(_hawq_csv(tmp_path)))
    assert len(table) == 4


def test_digits_accuracy_objective_uses_trained_weights(trained):
    obj = accuracy_objective("digits_resnet")
    assert obj([(8, 8)] * 7) >= 0.95

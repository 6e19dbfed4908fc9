"""PTQ accuracy for search (fast path == generic path, cached by policy id) and the refusal to
score untrained weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwq.errors import UserError
from hwq.policy import Policy
from hwq.quant.apply import apply_policy, calibrate
from hwq.quant.finetune import accuracy
from hwq.quant.ptq import PTQAccuracy, accuracy_objective
from hwq.quant.sensitivity import sensitivity_objective


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


def test_digits_accuracy_objective_uses_trained_weights(trained):
    obj = accuracy_objective("digits_resnet")
    assert obj([(8, 8)] * 7) >= 0.95

"""`--finetune-epochs N`: each candidate's accuracy is measured after N epochs of QAT with
distillation (the verification settings), on the validation split."""

from __future__ import annotations

import numpy as np
import pytest

import hwq.search as hs
from hwq.runs import Run

from .conftest import DEVICE, HAWQ18


def test_candidates_accuracies_are_the_fine_tuned_ones(tmp_path, hwq_cli):
    from hwq.quant.apply import quantizable_layers
    from hwq.quant.finetune import finetune
    from hwq.quant.verification import VERIFY_SETTINGS
    from hwq.torch_threads import one_thread
    from hwq.trained import calibration_batches, load_trained

    out = tmp_path / "ft"
    code, _stdout, err = hwq_cli([
        "search", "--device", DEVICE, "--objectives", "accuracy,weight_memory",
        "--algorithm", "random", "--population", "2", "--generations", "1",
        "--finetune-epochs", "1", "--verify-top", "0", "-o", str(out),
    ])
    assert code == 0, err
    run = Run.open(out)
    cand = run.candidates
    assert len(cand) == 2 and (cand["finetune_epochs"] == 1).all()
    assert cand["ptq_accuracy"].between(0, 1).all()
    # an independent fine-tune of the second candidate (the job saw the first one before it)
    row = cand.iloc[1]
    pairs = list(zip(np.asarray(row["w_bits"]).tolist(), np.asarray(row["a_bits"]).tolist()))
    net, (train, val, _test), _ = load_trained("digits_resnet", model_args={"seed": 0})
    calib = calibration_batches("digits_resnet", None, train, VERIFY_SETTINGS["calib_batches"])
    with one_thread():
        rec = finetune(net, pairs, train, val, epochs=1, calib=calib,
                       layer_names=quantizable_layers(net, next(iter(val))[0][:1]), seed=0,
                       **VERIFY_SETTINGS)
    assert row["accuracy"] == rec["qat_accuracy"]
    assert row["ptq_accuracy"] == rec["ptq_accuracy"]
    doc = (out / "config.yaml").read_text()
    assert "finetune_epochs: 1" in doc and "QAT with distillation" in doc


def test_without_fine_tuning_no_extra_columns(tmp_path):
    run = hs(device=DEVICE, objectives="accuracy,weight_memory", algorithm="random",
             population=2, generations=1, verify_top=0, output_dir=str(tmp_path / "ptq"))
    assert "finetune_epochs" not in run.candidates and "ptq_accuracy" not in run.candidates


@pytest.mark.parametrize("extra", [
    ["--sensitivity", str(HAWQ18), "--model", "resnet18", "--objectives", "sensitivity,bops"],
    ["--objectives", "latency,weight_memory"],
])
def test_fine_tuning_needs_the_accuracy_objective(tmp_path, hwq_cli, extra):
    code, _out, err = hwq_cli(["search", "--device", DEVICE, "--finetune-epochs", "1", *extra,
                               "-o", str(tmp_path / "x")])
    assert code == 2 and "--finetune-epochs" in err

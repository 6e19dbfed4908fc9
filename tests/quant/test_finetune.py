"""QAT with distillation and `hwq finetune`."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from hwq.data import digits_calibration, digits_loaders
from hwq.errors import UserError
from hwq.quant.finetune import distillation_loss, finetune

KEYS = {"policy_id", "fp32_accuracy", "ptq_accuracy", "qat_accuracy", "epochs", "wall_s"}


def _run(seed: int, bits: tuple[int, int], epochs: int = 3):
    from hwq.models.digits import load_trained_digits_resnet

    model, info = load_trained_digits_resnet(seed)
    train, val, test = digits_loaders(64, seed=seed)
    rec = finetune(
        model,
        [bits] * 7,
        train,
        test,
        val=val,
        epochs=epochs,
        seed=seed,
        calib=digits_calibration(4),
    )
    return rec, info


def test_distillation_loss_mix():
    s, t = torch.randn(5, 10), torch.randn(5, 10)
    y = torch.randint(0, 10, (5,))
    ce = torch.nn.functional.cross_entropy(s, y)
    assert torch.allclose(distillation_loss(s, t, y, 0.0, 4.0), ce)
    assert float(distillation_loss(t, t, y, 1.0, 4.0)) == pytest.approx(0.0, abs=1e-6)
    mix = distillation_loss(s, t, y, 0.3, 2.0)
    kd = distillation_loss(s, t, y, 1.0, 2.0)
    assert torch.allclose(mix, 0.3 * kd + 0.7 * ce)


def test_w4a4_qat_with_distillation_seed0():
    rec, info = _run(0, (4, 4))
    assert KEYS <= set(rec) and rec["epochs"] == 3
    assert rec["fp32_accuracy"] == pytest.approx(info["fp32_test_accuracy"])
    assert rec["qat_accuracy"] >= rec["fp32_accuracy"] - 0.02
    assert rec["qat_accuracy"] >= rec["ptq_accuracy"]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_done_when_figures(seed):
    """The issue's figures for one seed: FP32 >= 97 %, W8A8 PTQ within 1 point, W2A2 PTQ at
    least 5 points below W8A8, W4A4 QAT (3 epochs) within 2 points of FP32 and >= its PTQ."""
    rec4, info = _run(seed, (4, 4))
    fp32 = info["fp32_test_accuracy"]
    assert fp32 >= 0.97
    rec8, _ = _run(seed, (8, 8), epochs=0)
    rec2, _ = _run(seed, (2, 2), epochs=0)
    assert abs(rec8["ptq_accuracy"] - fp32) <= 0.01
    assert rec2["ptq_accuracy"] <= rec8["ptq_accuracy"] - 0.05
    assert rec4["qat_accuracy"] >= fp32 - 0.02
    assert rec4["qat_accuracy"] >= rec4["ptq_accuracy"]


def test_bad_options_are_user_errors(trained):
    train, val, test = digits_loaders(64)
    with pytest.raises(UserError, match="--alpha"):
        finetune(trained[0], [(8, 8)] * 7, train, test, alpha=1.5)
    with pytest.raises(UserError, match="--temperature"):
        finetune(trained[0], [(8, 8)] * 7, train, test, temperature=0)
    with pytest.raises(UserError, match="layer2.0.conv2"):
        finetune(trained[0], [(8, 8)] * 4, train, test)


@pytest.fixture
def cli(monkeypatch):
    import hwq
    from hwq.profile import Bits

    class Profile:  # what finetune reads of a profile: its name and bits (hwq.allowed_bits)
        name = "bitfusion"
        bits = Bits((1, 2, 3, 4, 5, 6, 7, 8), (2, 4, 8), (4, 8))

    def fake_load_profile(name):
        if name != "bitfusion":
            raise UserError(f"unknown device profile {name!r}")
        return Profile()

    monkeypatch.setitem(hwq.__dict__, "load_profile", fake_load_profile)
    from hwq.cli.finetune_cmd import finetune as command

    return lambda *args: CliRunner().invoke(command, list(args), standalone_mode=False)


def test_cli_finetune_json(cli, tmp_path):
    out = tmp_path / "verify.parquet"
    res = cli("--device", "bitfusion", "--bits", "4,4", "--epochs", "1", "--json", "-o", str(out))
    assert res.exception is None, res.output
    doc = json.loads(res.output)
    assert set(doc) == KEYS and doc["epochs"] == 1
    assert 0.0 <= doc["ptq_accuracy"] <= 1.0 and 0.0 <= doc["qat_accuracy"] <= 1.0
    assert pq.read_table(out).num_rows == 1


def test_cli_finetune_policy_file_errors(cli, tmp_path):
    pol = tmp_path / "p.json"
    pol.write_text(json.dumps({"schema_version": 1, "layers": {"nope.conv": {"w_bits": 4}}}))
    res = cli("--device", "bitfusion", "--policy", str(pol), "--epochs", "0")
    assert isinstance(res.exception, UserError) and "nope.conv" in str(res.exception)
    res = cli("--device", "bitfusion", "--bits", "4,3", "--epochs", "0")
    assert isinstance(res.exception, UserError) and "a_bits=3" in str(res.exception)
    assert "conv1" in str(res.exception)
    res = cli("--device", "bitfusion", "--epochs", "0")
    assert isinstance(res.exception, UserError) and "--bits" in str(res.exception)
    res = cli("--device", "bitfusion", "--bits", "4,4", "--model", "resnet20")
    assert isinstance(res.exception, UserError) and "--weights" in str(res.exception)


def test_on_step_called_once_per_optimiser_step():
    from hwq.models.digits import load_trained_digits_resnet

    model, _info = load_trained_digits_resnet(0)
    train, _val, test = digits_loaders(64, seed=0)
    steps: list[int] = []
    finetune(model, [(8, 8)] * 7, train, test, epochs=1, calib=digits_calibration(2),
             on_step=lambda: steps.append(1))
    assert len(steps) == len(train)

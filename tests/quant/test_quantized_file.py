"""The quantized-model file (`hwq.quant.quantized_file`): a fine-tuned model with learned scales
saved and rebuilt by the one loader gives the same logits, bit for bit; `hwq finetune
--save-model` writes it, and the saved model's test accuracy is the record's `qat_accuracy`."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from hwq.data import digits_calibration, digits_loaders
from hwq.errors import UserError
from hwq.quant.apply import apply_policy, quant_layers
from hwq.quant.finetune import accuracy, finetune
from hwq.quant.quantized_file import (
    load_quantized,
    quantized_doc,
    read_quantized,
    rebuild_quantized,
    save_quantized,
)

POLICY = [(4, 4), (2, 8), (4, 4), (8, 4), (3, 3), (16, 16), (8, 8)]  # 7 digits_resnet layers


@pytest.fixture(scope="module")
def tuned(trained):
    model, _info = trained
    train, val, test = digits_loaders(64, seed=0)
    record, student = finetune(model, POLICY, train, test, val=val, epochs=1,
                               calib=digits_calibration(4), return_model=True)
    return record, student, test


def test_learned_scales_survive_save_and_load(tuned, tmp_path):
    record, student, test = tuned
    path = save_quantized(tmp_path / "m.pt", quantized_doc(
        student, model="digits_resnet", model_args={"seed": 0}, record=record))
    assert not list(tmp_path.glob(".*tmp"))  # written atomically
    loaded = load_quantized(path)  # an untrained digits_resnet, rebuilt and loaded
    x = next(iter(test))[0]
    with torch.no_grad():
        assert torch.equal(loaded(x), student(x))
    assert accuracy(loaded, test) == record["qat_accuracy"]
    layers = quant_layers(loaded)
    # the learned weight scales are the fine-tuned ones, not the observer's of the weights
    conv = layers["conv1"].weight_quant
    assert torch.equal(conv.scale_param, quant_layers(student)["conv1"].weight_quant.scale_param)
    assert not torch.equal(conv.effective_scale(), conv.scale)
    doc = read_quantized(path)
    assert doc["settings"]["learn_scales"] is True and doc["source"] == "qat"
    assert doc["policy_id"] == record["policy_id"]
    assert doc["quant"]["layer2.0.conv1"]["w_bits"] == 8 and "act_scale" in doc["quant"]["fc"]
    assert "weight_scale" not in doc["quant"]["layer2.0.downsample.0"]  # 16 bits: float


def test_the_trap_a_plain_rebuild_does_not_load_learned_scales(tuned, trained):
    """Why there is one loader: a model rebuilt without learned scales has no weight scale
    parameters to load them into (strict loading refuses the state dict)."""
    _record, student, _test = tuned
    doc = quantized_doc(student, model="digits_resnet")
    plain = apply_policy(trained[0], POLICY)
    with pytest.raises(RuntimeError, match="scale_param"):
        plain.load_state_dict(doc["state_dict"])
    rebuilt = rebuild_quantized(doc, trained[0])
    assert set(rebuilt.state_dict()) == set(doc["state_dict"])


def test_foreign_or_missing_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_quantized(tmp_path / "absent.pt", "--weights")
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(UserError, match="not an hwq quantized model"):
        read_quantized(other)


def test_cli_finetune_save_model(tmp_path, monkeypatch):
    import hwq
    from hwq.cli.finetune_cmd import finetune as command
    from hwq.profile import Bits

    class Profile:  # what finetune reads of a profile: its name and bits
        name = "bitfusion"
        bits = Bits((1, 2, 3, 4, 5, 6, 7, 8), (2, 4, 8), (4, 8))

    monkeypatch.setitem(hwq.__dict__, "load_profile", lambda name: Profile())
    out = tmp_path / "w2a4.pt"
    res = CliRunner().invoke(command, ["--device", "bitfusion", "--bits", "2,4", "--epochs", "1",
                                       "--save-model", str(out), "--json"],
                             standalone_mode=False)
    assert res.exception is None, res.output
    rec = json.loads(res.output)
    from hwq.data import load_digits_splits

    test = load_digits_splits().test
    with torch.no_grad():
        correct = int((load_quantized(out)(test.x).argmax(1) == test.y).sum())
    assert correct / len(test.y) == rec["qat_accuracy"]
    assert read_quantized(out)["record"]["qat_accuracy"] == rec["qat_accuracy"]
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    res = CliRunner().invoke(command, ["--device", "bitfusion", "--bits", "2,4", "--epochs",
                                       "0", "--save-model", str(blocked / "m.pt")],
                             standalone_mode=False)
    assert isinstance(res.exception, UserError) and "--save-model" in str(res.exception)

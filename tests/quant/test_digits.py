"""digits_resnet: zoo entry, trained on first use, cached with its accuracy, loaded fast."""

from __future__ import annotations

import time

import pytest
import torch

import hwq.models.digits as digits_mod
from hwq.models.cached_training import save_atomic
from hwq.models.digits import load_trained_digits_resnet


def test_registered_in_the_zoo():
    import hwq
    from hwq.models import natural_input_shape, zoo_names

    assert "digits_resnet" in zoo_names()
    assert natural_input_shape("digits_resnet") == (1, 1, 8, 8)
    model = hwq.load_model("digits_resnet")
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    names = [
        n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
    ]
    assert names == [
        "conv1",
        "layer1.0.conv1",
        "layer1.0.conv2",
        "layer2.0.conv1",
        "layer2.0.conv2",
        "layer2.0.downsample.0",
        "fc",
    ]


def test_trained_accuracy_and_cache(trained):
    model, info = trained
    assert info["fp32_test_accuracy"] >= 0.97
    assert info["model"] == "digits_resnet" and info["seed"] == 0
    assert not model.training


def test_second_use_loads_from_the_cache_file(tmp_cache, monkeypatch, trained):
    # put the session's trained weights into an empty cache, then forbid training
    path = digits_mod.cache_path(0)
    assert str(path).startswith(str(tmp_cache))
    model, info = trained
    save_atomic(
        {
            "recipe_key": digits_mod.recipe_key(),
            "state_dict": model.state_dict(),
            "info": {k: v for k, v in info.items() if k != "cache_file"},
        },
        path,
    )
    assert not list(path.parent.glob(".*tmp*"))
    digits_mod._MEMO.clear()
    monkeypatch.setattr(digits_mod, "_train", lambda seed: pytest.fail("retrained"))
    t0 = time.perf_counter()
    again, info2 = load_trained_digits_resnet(0)
    assert time.perf_counter() - t0 < 1.0
    assert info2["cache_file"] == str(path)
    assert info2["fp32_test_accuracy"] == info["fp32_test_accuracy"]
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
    digits_mod._MEMO.clear()


def test_damaged_cache_file_is_retrained(tmp_cache, monkeypatch, trained):
    path = digits_mod.cache_path(5)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a torch file")
    model, info = trained
    calls = []

    def fake_train(seed):
        calls.append(seed)
        return {
            "recipe_key": digits_mod.recipe_key(),
            "state_dict": model.state_dict(),
            "info": {"seed": seed, "fp32_test_accuracy": 1.0},
        }

    monkeypatch.setattr(digits_mod, "_train", fake_train)
    digits_mod._MEMO.clear()
    load_trained_digits_resnet(5)
    assert calls == [5]
    assert torch.load(path, weights_only=True)["info"]["seed"] == 5
    digits_mod._MEMO.clear()

"""Fixtures for the quantization tests: the trained digits_resnet and its data (cached)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def digits():
    from hwq.data import load_digits_splits

    return load_digits_splits()


@pytest.fixture(scope="session")
def trained():
    """(model, info) of the trained digits_resnet, seed 0 (trained once, then cached)."""
    from hwq.models.digits import load_trained_digits_resnet

    return load_trained_digits_resnet(0)


@pytest.fixture(scope="session")
def calib():
    from hwq.data import digits_calibration

    return digits_calibration(4)


@pytest.fixture(scope="module")
def evaluator(trained, calib, digits):
    from hwq.quant.ptq import PTQAccuracy

    return PTQAccuracy(trained[0], calib, (digits.val.x, digits.val.y))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)

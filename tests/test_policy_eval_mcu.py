"""hwq.evaluate adds the mcu network terms: weights in flash, activations in SRAM."""

from __future__ import annotations

import numpy as np
import torch

import hwq
from tests.small_models import Residual


def test_flash_and_sram_feasibility():
    profile = hwq.load_profile("stm32h743")
    big = hwq.trace(hwq.load_model("mobilenet_v2"), torch.zeros(1, 3, 224, 224))
    table = hwq.cost_table(big, profile, bits=[(8, 8), (4, 8)])
    res = hwq.evaluate(table, [hwq.Policy.uniform(8, 8)]).iloc[0]
    flash = profile.get("memory.flash_bytes")
    runtime = profile.get("memory.runtime_flash_bytes")
    expected_flash_overflow = big.totals()["weight_params"] + runtime - flash  # 8-bit: 1 B/param
    assert not res["feasible"]
    assert f"flash overflow {expected_flash_overflow} B" in res["infeasible_reason"]
    assert res["overflow_bytes"] >= expected_flash_overflow
    small = hwq.trace(Residual(), torch.zeros(1, 3, 8, 8))
    ok = hwq.evaluate(hwq.cost_table(small, profile, bits=[(8, 8)]),
                      np.full((1, len(small), 2), 8)).iloc[0]
    assert ok["feasible"] and ok["infeasible_reason"] == "" and ok["overflow_bytes"] == 0

"""Fake-quantization, post-training quality for search, and QAT verification (DESIGN.md §5).

Public names load lazily (torch is imported on first use):

* `apply_policy(model, policy, *, fold_bn=False, ...)`, `calibrate(model, data, batches=4)`,
  `quantizable_layers(model, example_input=None)`, `fold_batchnorm(model)` — hwq.quant.apply
* `WeightFakeQuant`, `ActFakeQuant` — hwq.quant.fake_quant
* `PTQAccuracy`, `SensitivityTable`, `measure_sensitivity`, `accuracy_objective`,
  `sensitivity_objective` — hwq.quant.quality
* `hwq.quant.finetune.finetune(...)` (QAT with distillation), `accuracy`
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "apply_policy": "hwq.quant.apply",
    "calibrate": "hwq.quant.apply",
    "quantizable_layers": "hwq.quant.apply",
    "fold_batchnorm": "hwq.quant.apply",
    "policy_pairs": "hwq.quant.apply",
    "WeightFakeQuant": "hwq.quant.fake_quant",
    "ActFakeQuant": "hwq.quant.fake_quant",
    "PTQAccuracy": "hwq.quant.quality",
    "SensitivityTable": "hwq.quant.quality",
    "measure_sensitivity": "hwq.quant.quality",
    "accuracy_objective": "hwq.quant.quality",
    "sensitivity_objective": "hwq.quant.quality",
    "accuracy": "hwq.quant.finetune",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hwq.quant' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

"""Fake-quantization, post-training quality for search, and QAT verification (DESIGN.md §5).

Public names load lazily (torch is imported on first use):

* `apply_policy(model, policy, *, fold_bn=False, ...)`, `calibrate(model, data, batches=4)`,
  `quantizable_layers(model, example_input=None)`, `fold_batchnorm(model)` — hwq.quant.apply
* `WeightFakeQuant`, `ActFakeQuant` — hwq.quant.fake_quant
* `PTQAccuracy`, `accuracy_objective` — hwq.quant.ptq
* `measure_sensitivity`, `sensitivity_objective` — hwq.quant.sensitivity (reading a sensitivity
  file needs no torch: `hwq.sensitivity_files.SensitivityTable`)
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
    "WeightFakeQuant": "hwq.quant.fake_quant",
    "ActFakeQuant": "hwq.quant.fake_quant",
    "PTQAccuracy": "hwq.quant.ptq",
    "accuracy_objective": "hwq.quant.ptq",
    "measure_sensitivity": "hwq.quant.sensitivity",
    "sensitivity_objective": "hwq.quant.sensitivity",
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

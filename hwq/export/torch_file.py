"""The `torch` writer and its reader: the quantized-model file of `hwq.quant.quantized_file`
(the same format verification saves as `verified/<policy_id>.pt`): `format`, `source` (`qat` or
`ptq`), `model`, `model_args`, `weights`, `policy` (the JSON), `layers`, `settings`, `state_dict`
(the quantized model's: weights, batch norms, activation scales/zero points, learned scales) and
`quant` (per layer: `w_bits, a_bits, weight_scale [C], weight_int` (int8, the integer weights),
`act_scale, act_zero_point, act_signed, act_qmax`). `load_torch_export(path)` rebuilds the
fake-quant model from it.
"""

from __future__ import annotations

import os
from typing import Any

from hwq.policy import Policy


def export_torch_model(
    qmodel: Any,
    policy: Policy,
    model_info: dict[str, Any],
    out: Any,
    *,
    source: str = "ptq",
    record: dict[str, Any] | None = None,
) -> dict:
    from hwq.quant.quantized_file import quantized_doc, save_quantized

    doc = quantized_doc(
        qmodel,
        model=model_info.get("model"),
        model_args=model_info.get("model_args"),
        weights=model_info.get("weights"),
        source=source,
        record=record,
        policy=policy,
    )
    save_quantized(out, doc)
    return {"layers": len(doc["quant"]), "tensors": len(doc["state_dict"])}


def load_torch_export(path: str | os.PathLike[str], model: Any = None) -> Any:
    """The fake-quant model of an `hwq export --format torch` file (eval mode). `model`: the
    float model to quantize (default: the zoo model named in the file, untrained weights that the
    file's state dict then replaces)."""
    from hwq.quant.quantized_file import load_quantized

    return load_quantized(path, model)

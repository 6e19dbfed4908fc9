"""The `torch` writer and its reader.

* `torch` — `torch.save` of a dict: `format`, `model`, `model_args`, `policy` (the JSON), `layers`,
  `state_dict` (the quantized model's: float weights, batch norms, activation scales/zero points)
  and `quant` (per layer: `w_bits, a_bits, weight_scale [C], weight_int` (int8, the integer
  weights), `act_scale, act_zero_point, act_signed, act_qmax`). `load_torch_export(path)` rebuilds
  the fake-quant model from it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from hwq.errors import UserError
from hwq.export.model import layer_qparams
from hwq.policy import Policy


def export_torch_model(qmodel: Any, policy: Policy, model_info: dict[str, Any], out: Any) -> dict:
    import torch

    from hwq.quant.apply import quant_layers

    quant = {n: layer_qparams(layer) for n, layer in quant_layers(qmodel).items()}
    doc = {
        "format": "hwq-quantized-state-dict",
        "schema_version": 1,
        "model": model_info.get("model"),
        "model_args": model_info.get("model_args") or {},
        "weights": model_info.get("weights"),
        "policy": policy.to_dict(),
        "layers": list(qmodel.hwq_layers),
        "state_dict": {k: v.detach().clone() for k, v in qmodel.state_dict().items()},
        "quant": quant,
    }
    torch.save(doc, str(out))
    return {"layers": len(quant), "tensors": len(doc["state_dict"])}


def load_torch_export(path: str | os.PathLike[str], model: Any = None) -> Any:
    """The fake-quant model of an `hwq export --format torch` file (eval mode). `model`: the
    float model to quantize (default: the zoo model named in the file, untrained weights that the
    file's state dict then replaces)."""
    import torch

    from hwq.quant.apply import apply_policy, quant_layers

    doc = torch.load(str(path), map_location="cpu", weights_only=True)
    if doc.get("format") != "hwq-quantized-state-dict":
        raise UserError(f"{path}: not an hwq torch export")
    if model is None:
        from hwq.models import load_model

        args = {k: v for k, v in (doc.get("model_args") or {}).items() if k != "seed"}
        model = load_model(doc["model"], **args)
    policy = Policy.from_json(json.dumps(doc["policy"]), source=str(path))
    q = apply_policy(model, policy, layer_names=doc["layers"])
    q.load_state_dict(doc["state_dict"])
    for name, layer in quant_layers(q).items():
        p = doc["quant"][name]
        if "act_scale" in p:
            layer.act_quant.set_qparams(p["act_scale"], p["act_zero_point"], p["act_signed"])
        layer.weight_quant.init_scale(layer.weight)
    return q.eval()

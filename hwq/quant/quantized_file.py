"""The quantized-model file: a fake-quant model with its quantization parameters. Verification
saves each fine-tuned model in it (`verified/<policy_id>.pt` of a run directory, by the search and
by `hwq verify`), `hwq finetune --save-model FILE` writes it and `hwq export --format torch` hands
it off: one format, one writer, one loader.

`torch.save` of a dict (it loads with `weights_only=True`):

* `format` (`hwq-quantized-state-dict`), `schema_version` (2), `source` (`qat`: fine-tuned;
  `ptq`: calibrated only);
* `model`, `model_args`, `weights`: the float model it was built on;
* `policy` (the policy JSON document, every layer named), `policy_id`, `layers` (layer order);
* `settings`: how `apply_policy` built it (`fold_bn`, `learn_scales`, `weight_observer`,
  `act_observer`, `percentile`);
* `state_dict`: the fake-quant model's (weights, batch norms, activation scales and zero points,
  and with learned scales the weight and activation `scale_param`s);
* `quant`: per layer, as the forward pass applies them: `w_bits, a_bits, weight_scale` [C],
  `weight_int` (int8), `act_scale, act_zero_point, act_signed, act_qmax`;
* `record` (optional): the fine-tuning's record (`fp32_accuracy, ptq_accuracy, qat_accuracy`, ...).

`rebuild_quantized(doc, model)` is the one loader: `apply_policy` with the saved settings (with
learned scales the weight quantizers hold their scale parameters before the state dict is loaded,
and the activation quantizers create theirs from it), then a strict `load_state_dict`, then the
activation signedness from `quant`. Schema-1 files (torch exports before the settings were
recorded) rebuild as post-training models.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hwq.errors import UserError, reason

FORMAT = "hwq-quantized-state-dict"
SCHEMA_VERSION = 2
SOURCES = ("qat", "ptq")
# `apply_policy`'s defaults: how a file without `settings` (schema 1) was built
DEFAULT_SETTINGS: dict[str, Any] = {
    "fold_bn": False,
    "learn_scales": False,
    "weight_observer": "minmax",
    "act_observer": "minmax",
    "percentile": 99.99,
}


def layer_qparams(layer: Any) -> dict[str, Any]:
    """Quantization parameters of one quantized layer, as its fake-quantizers apply them."""
    import torch

    wq, aq = layer.weight_quant, layer.act_quant
    out: dict[str, Any] = {"w_bits": int(wq.bits), "a_bits": int(aq.bits)}
    with torch.no_grad():
        if wq.active:
            qw = wq(layer.weight).detach()
            scale = wq.effective_scale().detach().clone().float()
            s = scale.reshape(-1, *([1] * (qw.dim() - 1)))
            wint = torch.round(qw / s).to(torch.int8)
            if not torch.equal(wint.float() * s, qw):
                raise RuntimeError("integer weights do not reproduce the fake-quant weights")
            out.update(weight_scale=scale, weight_int=wint)
        if aq.active:
            out.update(
                act_scale=aq.effective_scale(),
                act_zero_point=aq.zero_point_value,
                act_signed=bool(aq.signed),
                act_qmax=int(2**aq.bits - 1),
            )
    return out


def quantized_doc(
    qmodel: Any,
    *,
    model: str | None,
    model_args: Mapping[str, Any] | None = None,
    weights: str | None = None,
    source: str = "qat",
    record: Mapping[str, Any] | None = None,
    policy: Any = None,
) -> dict[str, Any]:
    """The file's dict of a quantized model returned by `apply_policy` (calibrated, and
    fine-tuned for `source="qat"`). `policy`: the `hwq.Policy` to record (its device, graph hash
    and predicted values kept; default: the model's per-layer bits)."""
    from hwq.policy import Policy
    from hwq.quant.apply import quant_layers

    if source not in SOURCES:
        raise ValueError(f"source: expected one of {', '.join(SOURCES)}, found {source!r}")
    names = list(qmodel.hwq_layers)
    pairs = [(int(w), int(a)) for w, a in qmodel.hwq_pairs]
    explicit = Policy({n: w for n, (w, _) in zip(names, pairs)},
                      {n: a for n, (_, a) in zip(names, pairs)})
    if policy is not None:
        if policy.pairs(names) != pairs:
            raise ValueError("policy: its bits are not the quantized model's")
        explicit.device, explicit.graph_hash = policy.device, policy.graph_hash
        explicit.predicted = dict(policy.predicted)
    doc: dict[str, Any] = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "source": source,
        "model": model,
        "model_args": dict(model_args or {}),
        "weights": None if weights is None else str(weights),
        "policy": explicit.to_dict(),
        "policy_id": str(qmodel.hwq_policy_id),
        "layers": names,
        "settings": {**DEFAULT_SETTINGS, **getattr(qmodel, "hwq_settings", {})},
        "state_dict": {k: v.detach().clone() for k, v in qmodel.state_dict().items()},
        "quant": {n: layer_qparams(layer) for n, layer in quant_layers(qmodel).items()},
    }
    if record is not None:
        doc["record"] = {k: v for k, v in record.items() if isinstance(v, int | float | str)}
    return doc


def quantized_bytes(doc: Mapping[str, Any]) -> bytes:
    """The file's bytes (what a verification job hands back to the process that writes)."""
    import torch

    buf = io.BytesIO()
    torch.save(dict(doc), buf)
    return buf.getvalue()


def save_quantized(path: str | os.PathLike[str], doc: Mapping[str, Any] | bytes) -> Path:
    """Write the file atomically (a reader never sees half of it)."""
    from hwq.atomic import write_bytes_atomic

    data = doc if isinstance(doc, bytes) else quantized_bytes(doc)
    return write_bytes_atomic(path, data)


def read_quantized(path: str | os.PathLike[str], what: str = "") -> dict[str, Any]:
    """The file's dict; a missing, damaged or foreign file is a UserError naming it (`what`:
    the option or command that named it)."""
    import torch

    label = f"{what} {path}" if what else str(path)
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{label}: no such file (expected a quantized model saved by hwq)")
    try:
        doc = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (not a zip), EOFError, ...
        raise UserError(f"{label}: damaged or not a torch file ({reason(exc)}): expected a "
                        "quantized model saved by hwq") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UserError(f"{label}: not an hwq quantized model (format {FORMAT} expected)")
    version = doc.get("schema_version")
    if version not in (1, SCHEMA_VERSION):
        raise UserError(f"{label}: schema_version: expected 1 or {SCHEMA_VERSION}, "
                        f"found {version!r}")
    return doc


def doc_pairs(doc: Mapping[str, Any], source: str = "quantized model") -> list[tuple[int, int]]:
    """(w_bits, a_bits) per layer of the file, in its layer order."""
    from hwq.policy import Policy

    policy = Policy.from_json(json.dumps(doc["policy"]), source=source)
    return policy.pairs(list(doc["layers"]))


def rebuild_quantized(doc: Mapping[str, Any], model: Any, source: str = "quantized model") -> Any:
    """The fake-quant model of the file's dict on `model` (a float model of the same
    architecture; its weights are replaced), in eval mode: the one loader (module doc)."""
    from hwq.quant.apply import apply_policy, quant_layers

    settings = {**DEFAULT_SETTINGS, **(doc.get("settings") or {})}
    names: Sequence[str] = list(doc["layers"])
    q = apply_policy(model, doc_pairs(doc, source), layer_names=names, **settings)
    try:
        q.load_state_dict(doc["state_dict"], strict=True)
    except RuntimeError as exc:
        raise UserError(f"{source}: its state dict does not fit the model "
                        f"{doc.get('model')!r} ({reason(exc)})") from None
    quant = doc.get("quant") or {}
    for name, layer in quant_layers(q).items():
        params = quant.get(name, {})
        if "act_signed" in params:
            layer.act_quant.signed = bool(params["act_signed"])
        if not settings["learn_scales"]:
            layer.weight_quant.init_scale(layer.weight)  # the observer's, of the loaded weights
    return q.eval()


def load_quantized(path: str | os.PathLike[str], model: Any = None, what: str = "") -> Any:
    """The fake-quant model saved in `path` (eval mode). `model`: the float model to quantize
    (default: the model named in the file, built untrained; the file's weights replace its)."""
    doc = read_quantized(path, what)
    if model is None:
        from hwq.models import load_model

        args = {k: v for k, v in (doc.get("model_args") or {}).items() if k != "seed"}
        model = load_model(doc["model"], **args)
    return rebuild_quantized(doc, model, source=f"{what} {path}" if what else str(path))

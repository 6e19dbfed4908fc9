"""The calibrated fake-quant model of a run's policy, shared by the onnx and torch writers:
the run's trained model (`hwq.trained`) under `apply_policy` without batch-norm folding,
calibrated on the same batches as the search's PTQ accuracy, and each layer's quantization
parameters as the fake-quantizers apply them."""

from __future__ import annotations

from typing import Any

from hwq.errors import UserError
from hwq.policy import Policy
from hwq.runs import Run

CALIB_BATCHES = 4  # the search's PTQ accuracy calibrates on 4 batches (hwq.quant.ptq)


def run_model_options(run: Run) -> dict[str, Any]:
    """The run's model, weights, data and model arguments (from its meta and config)."""
    cfg = run.config or {}
    opts = cfg.get("search", cfg) if isinstance(cfg, dict) else {}
    model = run.meta.get("model") or opts.get("model")
    if not model:
        raise UserError(f"{run.path}: the run names no model")
    return {
        "model": model,
        "weights": opts.get("weights"),
        "data": opts.get("data"),
        "model_args": dict(opts.get("model_args") or {}),
    }


def quantized_model(run: Run, policy: Policy) -> tuple[Any, Any, Any]:
    """(calibrated fake-quant model in eval mode, test inputs, test labels) of `policy` on the
    run's trained model, built as the search's PTQ accuracy builds it."""
    from hwq.quant.apply import apply_policy, calibrate
    from hwq.trained import calibration_batches, load_trained, trained_model_kwargs

    opts = run_model_options(run)
    kw = trained_model_kwargs(opts["model"], opts["weights"], opts["data"], opts["model_args"])
    net, (train, _val, test), _info = load_trained(
        kw["model"],
        weights=kw["weights"],
        data=kw["data"],
        model_args=kw["model_args"],
        seed=kw["seed"],
        objective="export",
    )
    calib = calibration_batches(kw["model"], kw["data"], train, CALIB_BATCHES)
    names = list(run.layers.names)
    qmodel = apply_policy(net, policy, layer_names=names).eval()
    calibrate(qmodel, calib, CALIB_BATCHES)
    import torch

    xs, ys = [], []
    for batch in test:
        xs.append(batch[0])
        ys.append(batch[1])
    return qmodel, torch.cat(xs), torch.cat(ys)


def layer_qparams(layer: Any) -> dict[str, Any]:
    """Quantization parameters of one quantized layer, as the fake-quantizers apply them."""
    import torch

    wq, aq = layer.weight_quant, layer.act_quant
    out: dict[str, Any] = {"w_bits": int(wq.bits), "a_bits": int(aq.bits)}
    with torch.no_grad():
        if wq.active:
            qw = wq(layer.weight).detach()
            scale = wq.scale.detach().clone().float()
            s = scale.reshape(-1, *([1] * (qw.dim() - 1)))
            wint = torch.round(qw / s).to(torch.int8)
            if not torch.equal(wint.float() * s, qw):
                raise RuntimeError("integer weights do not reproduce the fake-quant weights")
            out.update(weight_scale=scale, weight_int=wint)
        if aq.active:
            scale = aq.scale_param.abs() if aq.scale_param is not None else aq.scale
            out.update(
                act_scale=float(scale),
                act_zero_point=aq.zero_point_value,
                act_signed=bool(aq.signed),
                act_qmax=int(2**aq.bits - 1),
            )
    return out

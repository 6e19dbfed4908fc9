"""The fake-quant model of a run's policy, shared by the onnx and torch writers, from one of two
sources (`hwq export --from qat|ptq`):

* `qat` — the fine-tuned model verification saved (`verified/<policy_id>.pt`, read by
  `hwq.quant.quantized_file`): the model whose test accuracy is `verify.parquet`'s
  `qat_accuracy`;
* `ptq` — the run's trained model (`hwq.trained`) under `apply_policy` without batch-norm folding,
  calibrated on the same batches as the search's PTQ accuracy.

The default is `qat` where the run holds the policy's verified file, else `ptq`.

On a device whose int8 layers requantize their outputs (the run's frozen profile declares
`measurement.int8_outputs: requantized`, as `hwq measure --runtime onnxruntime` writes it;
`hwq.quant.output_quant`), the `ptq` model carries those output quantizers, as the search's PTQ
accuracy on that device does; a verified file without them is not that device's model: the
default then is `ptq`, and `--from qat` says why it cannot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from hwq.errors import UserError
from hwq.policy import Policy
from hwq.quant.int8_outputs import run_requantizes
from hwq.quant.quantized_file import layer_qparams  # noqa: F401  (the writers' import)
from hwq.runs import Run

CALIB_BATCHES = 4  # the search's PTQ accuracy calibrates on 4 batches (hwq.quant.ptq)
SOURCES = ("qat", "ptq")


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


def export_source(run: Run, policy_id: str, requested: str | None) -> tuple[str, Path]:
    """(`qat` or `ptq`, the verified file's path) for `--from requested` (None: `qat` where the
    verified file exists); `--from qat` without it is a UserError naming the missing file."""
    path = run.verified_file(policy_id)
    if requested is not None and requested not in SOURCES:
        raise UserError(f"--from: expected one of {', '.join(SOURCES)}, found {requested!r}")
    if requested == "ptq":
        return requested, path
    if not path.is_file():
        if requested is None:
            return "ptq", path
        raise UserError(
            f"--from qat: {path} does not exist: policy {policy_id} has no fine-tuned model in "
            f"this run; verify it first (`hwq verify {run.path}`), or export the post-training "
            "model with --from ptq"
        )
    if run_requantizes(run.path) and not _file_requantizes(path):
        if requested is None:
            return "ptq", path
        raise UserError(
            f"--from qat: {path} was fine-tuned without the int8 output requantization of the "
            f"run's device ({run.path / 'profile.yaml'}: measurement.int8_outputs: "
            "requantized): export the post-training model with --from ptq")
    return "qat", path


def _file_requantizes(path: Path) -> bool:
    from hwq.quant.quantized_file import read_quantized

    return bool((read_quantized(path).get("settings") or {}).get("requantize_outputs"))


class ExportModel(NamedTuple):
    """A fake-quant model to export, with the run's test split (inputs and labels
    concatenated, and the loader whose batches verification evaluated)."""

    model: Any
    x: Any
    y: Any
    test: Any


def export_model(
    run: Run, policy: Policy, source: str = "ptq", verified: Path | None = None
) -> ExportModel:
    """The fake-quant model of `policy` on the run's trained model in eval mode: calibrated as
    the search's PTQ accuracy does it (`ptq`), or the fine-tuned model of the verified file
    `verified` (`qat`)."""
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
    names = list(run.layers.names)
    if source == "qat":
        qmodel = _verified_model(verified, net, policy, names)
    else:
        calib = calibration_batches(kw["model"], kw["data"], train, CALIB_BATCHES)
        qmodel = apply_policy(net, policy, layer_names=names,
                              requantize_outputs=run_requantizes(run.path)).eval()
        calibrate(qmodel, calib, CALIB_BATCHES)
    import torch

    xs, ys = [], []
    for batch in test:
        xs.append(batch[0])
        ys.append(batch[1])
    return ExportModel(qmodel, torch.cat(xs), torch.cat(ys), test)


def quantized_model(run: Run, policy: Policy) -> tuple[Any, Any, Any]:
    """(calibrated fake-quant model in eval mode, test inputs, test labels) of `policy` on the
    run's trained model, built as the search's PTQ accuracy builds it."""
    built = export_model(run, policy, "ptq")
    return built.model, built.x, built.y


def _verified_model(path: Path | None, net: Any, policy: Policy, names: list[str]) -> Any:
    """The fine-tuned model of a verified file, checked to hold `policy`'s bits."""
    from hwq.quant.quantized_file import doc_pairs, read_quantized, rebuild_quantized

    if path is None:
        raise ValueError("source qat needs the verified file")
    doc = read_quantized(path)
    pairs = doc_pairs(doc, str(path))
    saved = list(doc["layers"])
    if sorted(saved) != sorted(names) or policy.pairs(saved) != pairs:
        raise UserError(f"{path}: holds another policy ({doc.get('policy_id')}) than the one "
                        "exported; re-verify the policy (`hwq verify`)")
    return rebuild_quantized(doc, net, source=str(path))

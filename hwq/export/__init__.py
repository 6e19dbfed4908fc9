"""Handing a policy off (`hwq export RUN_DIR --policy ID --format json|onnx|torch -o FILE`).

One module per writer: `hwq.export.policy_file` (`json`: the portable policy, DESIGN.md §9),
`hwq.export.onnx_qdq` (`onnx`: a QDQ graph of the fake-quant model) and `hwq.export.torch_file`
(`torch`: a quantized state dict, read back by `load_torch_export`); `hwq.export.model` builds
the calibrated fake-quant model of a run's policy that the last two write. `export_run` is the
command.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from hwq.errors import UserError
from hwq.export.model import quantized_model, run_model_options
from hwq.export.onnx_qdq import DEFAULT_OPSET, export_onnx_model, onnx_logits
from hwq.export.policy_file import export_json, run_policy
from hwq.export.torch_file import export_torch_model
from hwq.runs import Run

FORMATS = ("json", "onnx", "torch")


def export_run(
    run_dir: str | os.PathLike[str],
    policy_id: str,
    fmt: str,
    out: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
) -> dict[str, Any]:
    """`hwq export`: write policy `policy_id` of the run in `fmt` to `out`; returns a summary."""
    from hwq.progress import step

    if fmt not in FORMATS:
        raise UserError(f"--format: expected one of {', '.join(FORMATS)}, found {fmt!r}")
    run = Run.open(run_dir)
    out = Path(out)
    if out.parent and not out.parent.exists():
        raise UserError(f"-o {out}: directory {out.parent} does not exist")
    if fmt == "json":
        return export_json(run, policy_id, out)
    policy = run_policy(run, policy_id)
    step("building the fake-quant model of %s", policy_id)
    qmodel, x, y = quantized_model(run, policy)
    import torch

    with torch.no_grad():
        ref = qmodel(x)
    info: dict[str, Any] = {"policy_id": policy_id, "format": fmt, "file": str(out)}
    if fmt == "onnx":
        step("exporting ONNX (opset %d)", opset)
        desc = export_onnx_model(qmodel, x[:1], out, opset=opset)
        got = onnx_logits(out, x)
        diff = float(np.abs(got - ref.numpy()).max())
        agree = float((got.argmax(1) == ref.numpy().argmax(1)).mean())
        info.update(
            opset=desc["opset"],
            qdq=", ".join(f"{k}: {v}" for k, v in desc["qdq"].items()),
            test_images=int(len(x)),
            max_abs_logit_diff=diff,
            argmax_agreement=agree,
            onnx_accuracy=float((got.argmax(1) == y.numpy()).mean()),
        )
    else:
        desc = export_torch_model(qmodel, policy, run_model_options(run), out)
        info.update(desc)
    info["fake_quant_accuracy"] = float((ref.argmax(1) == y).float().mean())
    return info

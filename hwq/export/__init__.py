"""Handing a policy off (`hwq export RUN_DIR --policy ID --format FORMAT -o FILE`).

One module per writer: `hwq.export.policy_file` (`json`: the portable policy, DESIGN.md §9),
`hwq.export.llama_cpp` (`llama-cpp`: llama-quantize `--tensor-type` lines, GGUF types by the
layers' bits), `hwq.export.hf_quant_config` (`hf-quant-config`: a compressed-tensors
quantization_config for transformers / vLLM),
`hwq.export.onnx_qdq` (`onnx`: a QDQ graph of the fake-quant model) and `hwq.export.torch_file`
(`torch`: the quantized-model file of `hwq.quant.quantized_file`, read back by
`load_torch_export`); `hwq.export.model` builds the fake-quant model of a run's policy that the last
two write: the fine-tuned one verification saved (`--from qat`, the default where the run holds
`verified/<policy_id>.pt`) or the calibrated post-training one (`--from ptq`). `export_run` is the
command.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from hwq.errors import UserError
from hwq.export.model import export_model, export_source, run_model_options
from hwq.export.onnx_integer import DEFAULT_FORM
from hwq.export.onnx_qdq import DEFAULT_OPSET, export_onnx_model, onnx_logits
from hwq.export.policy_file import export_json, run_policy
from hwq.export.torch_file import export_torch_model
from hwq.runs import Run

FORMATS = ("json", "onnx", "torch", "llama-cpp", "hf-quant-config")
BITS_ONLY = ("json", "llama-cpp", "hf-quant-config")  # bits, no weights: no --from


def export_run(
    run_dir: str | os.PathLike[str],
    policy_id: str,
    fmt: str,
    out: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    source: str | None = None,
    onnx_form: str = DEFAULT_FORM,
) -> dict[str, Any]:
    """`hwq export`: write policy `policy_id` of the run in `fmt` to `out`; returns a summary.
    `source` (`--from`): `qat` (the fine-tuned model of `verified/<policy_id>.pt`), `ptq` (the
    calibrated post-training model), None: `qat` where the run holds that file, else `ptq`.
    `onnx_form`: `integer` or `qdq` (hwq.export.onnx_integer)."""
    from hwq.progress import step

    if fmt not in FORMATS:
        raise UserError(f"--format: expected one of {', '.join(FORMATS)}, found {fmt!r}")
    run = Run.open(run_dir)
    out = Path(out)
    if out.parent and not out.parent.exists():
        raise UserError(f"-o {out}: directory {out.parent} does not exist")
    if fmt in BITS_ONLY:
        if source is not None:
            raise UserError(f"--from: only for --format onnx or torch (--format {fmt} holds bits, "
                            "not weights)")
        if fmt == "llama-cpp":
            from hwq.export.llama_cpp import export_llama_cpp

            return export_llama_cpp(run, policy_id, out)
        if fmt == "hf-quant-config":
            from hwq.export.hf_quant_config import export_hf_quant_config

            return export_hf_quant_config(run, policy_id, out)
        return export_json(run, policy_id, out)
    policy = run_policy(run, policy_id)
    source, verified = export_source(run, policy_id, source)
    step("building the %s fake-quant model of %s", source.upper(), policy_id)
    built = export_model(run, policy, source, verified)
    qmodel, x, y = built.model, built.x, built.y
    from hwq.quant.finetune import accuracy
    from hwq.torch_threads import one_thread

    with one_thread():  # as verification evaluated it: the same numbers on any machine
        import torch

        with torch.no_grad():
            ref = qmodel(x)
        fq_accuracy = accuracy(qmodel, built.test)
    info: dict[str, Any] = {"policy_id": policy_id, "format": fmt, "from": source,
                            "file": str(out)}
    if fmt == "onnx":
        step("exporting ONNX (opset %d)", opset)
        desc = export_onnx_model(qmodel, x[:1], out, opset=opset, form=onnx_form)
        got = onnx_logits(out, x)
        diff = float(np.abs(got - ref.numpy()).max())
        agree = float((got.argmax(1) == ref.numpy().argmax(1)).mean())
        info.update(
            opset=desc["opset"],
            qdq=", ".join(f"{k}: {v}" for k, v in desc["qdq"].items()),
            onnx_form=desc["form"],
            integer_layers=", ".join(f"{k}: {v}" for k, v in desc["integer_layers"].items()),
            test_images=int(len(x)),
            max_abs_logit_diff=diff,
            argmax_agreement=agree,
            onnx_accuracy=float((got.argmax(1) == y.numpy()).mean()),
        )
    else:
        record = _verify_record(run, policy_id) if source == "qat" else None
        desc = export_torch_model(qmodel, policy, run_model_options(run), out, source=source,
                                  record=record)
        info.update(desc)
    info["fake_quant_accuracy"] = float(fq_accuracy)
    if source == "qat":
        record = _verify_record(run, policy_id)
        if record is not None:
            info["qat_accuracy"] = record["qat_accuracy"]
    return info


def _verify_record(run: Run, policy_id: str) -> dict[str, Any] | None:
    """The policy's row of verify.parquet (None when it has none)."""
    table = run.verify
    rows = table[table["policy_id"] == policy_id] if len(table) else table
    if not len(rows):
        return None
    row = rows.iloc[-1]
    return {c: (row[c].item() if hasattr(row[c], "item") else row[c]) for c in rows.columns}

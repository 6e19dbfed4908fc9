"""The QAT verification job of a search's best policies (DESIGN.md §5): QAT with distillation
(`hwq.quant.finetune.finetune`) of a policy on the trained model (`hwq.trained`), with the
settings of `hwq finetune`'s defaults. Executors run it as `hwq.quant.verification:verify_job`.

The job hands back the record and the fine-tuned model as the bytes of its quantized-model file
(`hwq.quant.quantized_file`, under `STATE_KEY`): jobs never write files, the driver writes it as
`verified/<policy_id>.pt`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hwq.trained import calibration_batches, load_trained

# QAT settings of verification, and the defaults of `hwq finetune`'s options
VERIFY_SETTINGS: dict[str, Any] = {
    "lr": 0.005,
    "alpha": 0.9,
    "temperature": 4.0,
    "calib_batches": 4,
    "learn_scales": True,
    "weight_observer": "minmax",
    "act_observer": "minmax",
}


STATE_KEY = "quantized_file"  # the record's key holding the fine-tuned model's file bytes


def verify_job(
    model: str,
    weights: str | None = None,
    data: str | None = None,
    model_args: Mapping[str, Any] | None = None,
    epochs: int = 3,
    seed: int = 0,
    requantize_outputs: bool = False,
) -> Callable[[Any], dict[str, Any]]:
    """A function pairs [L, 2] -> the QAT verification record of `hwq.quant.finetune.finetune`
    (distillation from the FP32 model on the training split, test-split accuracies), with the
    settings of `hwq finetune` (`requantize_outputs` on a device whose int8 layers requantize
    their outputs, as the search measured them), and under `STATE_KEY` the fine-tuned model's
    file bytes."""
    from hwq.quant.apply import quantizable_layers
    from hwq.quant.finetune import finetune
    from hwq.quant.quantized_file import quantized_bytes, quantized_doc

    net, (train, val, test), _info = load_trained(
        model, weights=weights, data=data, model_args=model_args, seed=seed, objective="verify"
    )
    calib = calibration_batches(model, data, train, VERIFY_SETTINGS["calib_batches"])
    example = next(iter(test))[0][:1]
    names = quantizable_layers(net, example)

    def run(pairs: Any) -> dict[str, Any]:
        record, student = finetune(
            net,
            [(int(w), int(a)) for w, a in pairs],
            train,
            test,
            val=val,
            epochs=epochs,
            calib=calib,
            layer_names=names,
            seed=seed,
            return_model=True,
            requantize_outputs=requantize_outputs,
            **VERIFY_SETTINGS,
        )
        doc = quantized_doc(student, model=model, model_args=model_args, weights=weights,
                            source="qat", record=record)
        return {**record, STATE_KEY: quantized_bytes(doc)}

    return run

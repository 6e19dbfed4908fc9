"""`hwq finetune`: verify one policy by quantization-aware fine-tuning with distillation."""

from __future__ import annotations

from typing import Any

import click

from hwq.cli.options import json_option
from hwq.errors import UserError
from hwq.quant.verification import VERIFY_SETTINGS
from hwq.search.config import DEFAULT_MODEL, SearchConfig

OBSERVER_CHOICE = click.Choice(["minmax", "percentile", "mse"])


@click.command()
@click.option(
    "--model",
    "-m",
    default=DEFAULT_MODEL,
    show_default=True,
    help="Zoo name or package.module:factory (trained weights: --weights, except for a zoo "
    "model that comes trained).",
)
@click.option(
    "--model-arg",
    "model_args",
    multiple=True,
    metavar="K=V",
    help="Keyword argument for the model factory (repeatable).",
)
@click.option(
    "--weights",
    type=click.Path(dir_okay=False),
    help="State dict of the trained model (a zoo model that comes trained: trained and cached "
    "if omitted).",
)
@click.option(
    "--data",
    metavar="package.module:factory",
    help="(train, val, test) loaders for the model (default: the bundled digits).",
)
@click.option("--device", "-d", required=True, help="Profile name or YAML path.")
@click.option("--bits", help="Uniform pair W,A (weights first), e.g. 4,4.")
@click.option(
    "--policy", "policy_file", type=click.Path(dir_okay=False), help="A policy JSON file."
)
@click.option("--epochs", type=int, default=SearchConfig.verify_epochs, show_default=True,
              help="QAT epochs.")
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the fine-tuning (and of a zoo model's trained weights unless --model-arg "
    "seed=N).",
)
@click.option(
    "--lr", type=float, default=VERIFY_SETTINGS["lr"], show_default=True, help="Peak learning rate."
)
@click.option(
    "--alpha",
    type=float,
    default=VERIFY_SETTINGS["alpha"],
    show_default=True,
    help="Weight of the distillation term (1 - alpha on cross-entropy).",
)
@click.option(
    "--temperature", type=float, default=VERIFY_SETTINGS["temperature"], show_default=True
)
@click.option(
    "--calib-batches", type=int, default=VERIFY_SETTINGS["calib_batches"], show_default=True
)
@click.option("--fold-bn", is_flag=True, help="Fold batch norms into the layers first.")
@click.option(
    "--learn-scales/--no-learn-scales",
    default=VERIFY_SETTINGS["learn_scales"],
    show_default=True,
    help="LSQ-learned scales during fine-tuning.",
)
@click.option(
    "--weight-observer",
    type=OBSERVER_CHOICE,
    default=VERIFY_SETTINGS["weight_observer"],
    show_default=True,
)
@click.option(
    "--act-observer",
    type=OBSERVER_CHOICE,
    default=VERIFY_SETTINGS["act_observer"],
    show_default=True,
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False),
    help="Also write the record to this verify.parquet file.",
)
@click.option(
    "--save-model",
    type=click.Path(dir_okay=False),
    help="Also save the fine-tuned model with its quantization parameters to this file (the "
    "format of a run's verified/<policy_id>.pt; hwq.quant.quantized_file.load_quantized reads "
    "it).",
)
@json_option
def finetune(
    model: str,
    model_args: tuple[str, ...],
    weights: str | None,
    data: str | None,
    device: str,
    bits: str | None,
    policy_file: str | None,
    epochs: int,
    seed: int,
    lr: float,
    alpha: float,
    temperature: float,
    calib_batches: int,
    fold_bn: bool,
    learn_scales: bool,
    weight_observer: str,
    act_observer: str,
    output: str | None,
    save_model: str | None,
    as_json: bool,
) -> None:
    """Fine-tune MODEL under one policy with distillation from its FP32 weights; report FP32,
    post-training and fine-tuned test accuracy."""
    from hwq.cli.output import emit_json, emit_mapping
    from hwq.display import display_mapping
    from hwq.models.loading import parse_model_args
    from hwq.policy import Policy
    from hwq.units import parse_pair

    if (bits is None) == (policy_file is None):
        raise UserError("give exactly one of --bits W,A or --policy FILE")
    from hwq.writable import check_file

    if output:
        check_file(output, "-o")  # before any training
    if save_model:
        check_file(save_model, "--save-model")
    if epochs < 0:
        raise UserError(f"--epochs: expected a non-negative integer, found {epochs}")
    if calib_batches < 1:
        raise UserError(f"--calib-batches: expected a positive integer, found {calib_batches}")
    policy = Policy.read(policy_file) if policy_file else Policy.uniform(*parse_pair(bits or ""))
    from hwq import load_profile

    prof = load_profile(device)
    device_name = str(getattr(prof, "name", device))
    from hwq.allowed_bits import check_layers

    # the widths a policy file names, before any training; every layer's below
    named = sorted(policy.layer_names())
    check_layers(prof, named, [policy.bits(n) for n in named], where=f"--policy {policy_file}")

    import numpy as np
    import torch

    from hwq.policy import policy_pairs
    from hwq.quant.apply import quantizable_layers
    from hwq.quant.finetune import finetune as run_finetune
    from hwq.runs import VERIFY_COLUMNS, write_verify_parquet
    from hwq.trained import calibration_batches, load_trained

    torch.manual_seed(seed)
    kwargs = parse_model_args(model_args)
    net, (train, val, test), _info = load_trained(
        model, weights=weights, data=data, model_args=kwargs, seed=seed, objective="finetune"
    )
    example = _example_input(test)
    names = quantizable_layers(net, example)
    pairs = policy_pairs(policy, names)
    check_layers(prof, names, np.array(pairs, dtype=np.int64).reshape(-1, 2),
                 where=f"--policy {policy_file}" if policy_file else f"--bits {bits}")
    calib = calibration_batches(model, data, train, calib_batches)
    from hwq.progress import progress

    try:
        steps: int | None = epochs * len(train)
    except TypeError:
        steps = None
    with progress(f"fine-tuning {model} ({epochs} epochs)", total=steps) as bar:
        record, student = run_finetune(
            net,
            pairs,
            train,
            test,
            val=val,
            epochs=epochs,
            lr=lr,
            alpha=alpha,
            temperature=temperature,
            calib=calib,
            calib_batches=calib_batches,
            fold_bn=fold_bn,
            learn_scales=learn_scales,
            weight_observer=weight_observer,
            act_observer=act_observer,
            layer_names=names,
            seed=seed,
            on_step=bar.advance,
            return_model=True,
        )
    doc = {k: record[k] for k in VERIFY_COLUMNS if k != "run_id"}
    if save_model:
        from hwq.quant.quantized_file import quantized_doc, save_quantized

        save_quantized(save_model, quantized_doc(student, model=model, model_args=kwargs,
                                                 weights=weights, source="qat", record=record))
    if output:
        write_verify_parquet([doc], output, run_id=f"finetune-{model}-{device_name}")
    if as_json:
        emit_json(doc)
    else:
        emit_mapping({"model": model, "device": device_name, **display_mapping(doc)})


def _example_input(loader: Any) -> Any:
    for batch in loader:
        x = batch[0] if isinstance(batch, tuple | list) else batch
        return x[:1]
    raise UserError("--data: the test loader has no batches")

"""Options shared by several commands (MODEL, --model-arg, --input-shape, --input-dtype,
--json)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from hwq.graph import LayerGraph
from hwq.model_source import INPUT_DTYPE_HELP, INPUT_DTYPES

INPUT_SHAPE_HELP = (
    "Example input shape, any rank, samples first: N,C,H,W (images), N,T (token ids, with "
    "--input-dtype int64), N,C,D,H,W ... (default: the zoo model's natural input)."
)


def model_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--model-arg",
        "model_args",
        multiple=True,
        metavar="K=V",
        help="Keyword argument for the model factory (repeatable).",
    )(func)
    func = click.option(
        "--input-dtype",
        type=click.Choice(INPUT_DTYPES, case_sensitive=False),
        help=INPUT_DTYPE_HELP,
    )(func)
    func = click.option("--input-shape", metavar="N,...", help=INPUT_SHAPE_HELP)(func)
    func = click.option(
        "--weights",
        type=click.Path(dir_okay=False),
        help="A state dict file to load into the model.",
    )(func)
    return func


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")(
        func
    )


def resolve_graph(
    model: str,
    model_args: tuple[str, ...],
    input_shape: str | None,
    weights: str | None = None,
    input_dtype: str | None = None,
) -> LayerGraph:
    from hwq.model_source import load_graph
    from hwq.models.loading import parse_input_shape, parse_model_args

    shape = parse_input_shape(input_shape) if input_shape else None
    dtype = input_dtype.lower() if input_dtype else None
    return load_graph(model, parse_model_args(model_args), shape, weights, dtype)

"""Options shared by several commands (MODEL, --model-arg, --input-shape, --json)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from hwq.graph import LayerGraph


def model_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--model-arg",
        "model_args",
        multiple=True,
        metavar="K=V",
        help="Keyword argument for the model factory (repeatable).",
    )(func)
    func = click.option(
        "--input-shape",
        metavar="N,C,H,W",
        help="Example input shape (default: the zoo model's natural input).",
    )(func)
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
    model: str, model_args: tuple[str, ...], input_shape: str | None, weights: str | None = None
) -> LayerGraph:
    from hwq.model_source import load_graph
    from hwq.models.loading import parse_input_shape, parse_model_args

    shape = parse_input_shape(input_shape) if input_shape else None
    return load_graph(model, parse_model_args(model_args), shape, weights)

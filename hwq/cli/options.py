"""Options shared by several commands (MODEL, --model-arg, --input-shape, --json)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from hwq.errors import UserError
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


def parse_model_args(pairs: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"--model-arg: expected K=V, found {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = _scalar(value.strip())
    return out


def _scalar(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_input_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(p) for p in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(s <= 0 for s in shape):
        raise UserError(f"--input-shape: expected positive integers N,C,H,W, found {text!r}")
    return shape


def resolve_graph(
    model: str, model_args: tuple[str, ...], input_shape: str | None, weights: str | None = None
) -> LayerGraph:
    from hwq.model_source import load_graph

    return load_graph(model, parse_model_args(model_args), parse_input_shape(input_shape), weights)

"""Resolve the CLI's MODEL argument to a LayerGraph: a saved layer file, a zoo name, or a
`package.module:factory` path. A layer file never imports torch."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hwq.errors import UserError
from hwq.graph import LayerGraph

LAYER_FILE_SUFFIXES = (".parquet", ".csv")


def is_layer_file(model: str) -> bool:
    return Path(model).suffix.lower() in LAYER_FILE_SUFFIXES


def load_graph(
    model: str,
    model_args: Mapping[str, Any] | None = None,
    input_shape: tuple[int, ...] | None = None,
    weights: str | None = None,
) -> LayerGraph:
    """LayerGraph for MODEL; torch is imported only when MODEL is not a layer file."""
    if is_layer_file(model):
        if model_args or input_shape:
            raise UserError(f"{model}: --model-arg and --input-shape do not apply to a layer file")
        return LayerGraph.read(model)
    import torch

    from hwq.models import load_model, natural_input_shape
    from hwq.models.loading import load_weights
    from hwq.tracing import trace

    module = load_model(model, **dict(model_args or {}))
    if weights:
        load_weights(module, weights)
    if input_shape is None:
        if ":" in model or model.endswith(".py"):
            raise UserError(f"{model}: --input-shape N,C,H,W is needed for a model outside the zoo")
        input_shape = natural_input_shape(model)
    example = torch.zeros(input_shape)
    name = model.split(":")[-1]
    return trace(module, example, model_name=name)

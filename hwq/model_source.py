"""Resolve the CLI's MODEL argument to a LayerGraph: a saved layer file, a zoo name, or a
`package.module:factory` path, traced on an example input built from `--input-shape` and
`--input-dtype`. A layer file never imports torch."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwq.errors import UserError
from hwq.graph import LayerGraph

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger("hwq.trace")

LAYER_FILE_SUFFIXES = (".parquet", ".csv")
INPUT_DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8",
                "uint8")
DEFAULT_INPUT_DTYPE = "float32"
INPUT_DTYPE_HELP = (
    "Dtype of the example input (default float32). A floating dtype draws N(0, 1) values and "
    "runs the model in that dtype; an integer dtype draws token ids uniformly below the "
    "num_embeddings of the model's first nn.Embedding (in [0, 2) when it has none). Seeded: "
    "the same input every run."
)
EXAMPLE_SEED = 0
NO_EMBEDDING_IDS = 2  # integer inputs of a model without an nn.Embedding: 0 or 1


def is_layer_file(model: str) -> bool:
    return Path(model).suffix.lower() in LAYER_FILE_SUFFIXES


def load_graph(
    model: str,
    model_args: Mapping[str, Any] | None = None,
    input_shape: tuple[int, ...] | None = None,
    weights: str | None = None,
    input_dtype: str | None = None,
) -> LayerGraph:
    """LayerGraph for MODEL; torch is imported only when MODEL is not a layer file."""
    if is_layer_file(model):
        if model_args or input_shape or input_dtype:
            raise UserError(f"{model}: --model-arg, --input-shape and --input-dtype do not apply "
                            "to a layer file")
        return LayerGraph.read(model)
    from hwq.models import load_model, natural_input_shape
    from hwq.models.loading import load_weights
    from hwq.tracing import trace

    dtype = input_dtype or DEFAULT_INPUT_DTYPE
    if dtype not in INPUT_DTYPES:
        raise UserError(f"--input-dtype: expected one of {', '.join(INPUT_DTYPES)}, "
                        f"found {input_dtype!r}")
    module = load_model(model, **dict(model_args or {}))
    if weights:
        load_weights(module, weights)
    if input_shape is None:
        if ":" in model or model.endswith(".py"):
            raise UserError(f"{model}: --input-shape N,... is needed for a model outside the zoo")
        input_shape = natural_input_shape(model)
    example = example_input(module, tuple(input_shape), dtype)
    if example.is_floating_point():
        module.to(example.dtype)  # the model runs in the dtype of its input
    name = model.split(":")[-1]
    return trace(module, example, model_name=name)


def example_input(module: nn.Module, shape: tuple[int, ...], dtype_name: str) -> torch.Tensor:
    """The CLI's example input, the same every run: N(0, 1) values for a floating dtype, token
    ids uniform in [0, `token_range(module)`) for an integer one."""
    import torch

    dtype = getattr(torch, dtype_name)
    gen = torch.Generator().manual_seed(EXAMPLE_SEED)
    if dtype.is_floating_point:
        return torch.randn(shape, generator=gen).to(dtype)
    high = min(token_range(module), torch.iinfo(dtype).max + 1)
    return torch.randint(0, high, shape, generator=gen, dtype=dtype)


def token_range(module: nn.Module) -> int:
    """num_embeddings of the model's first nn.Embedding/EmbeddingBag (registration order); 2
    for a model without one (0/1 ids, valid for any table and any mask)."""
    from hwq.example_call import EMBEDDINGS

    name, emb = next(((n, m) for n, m in module.named_modules() if isinstance(m, EMBEDDINGS)),
                     ("", None))
    if emb is None:
        log.info("the model has no nn.Embedding: integer example inputs are 0 or 1")
        return NO_EMBEDDING_IDS
    log.info("integer example input: token ids below %s.num_embeddings = %d", name or "<model>",
             emb.num_embeddings)
    return int(emb.num_embeddings)

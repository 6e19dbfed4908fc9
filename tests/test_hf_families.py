"""Hugging Face families built from tiny configs (tests/hf_factories.py), traced as users call
them (keyword inputs for T5's encoder-decoder and the token models), against an independent
count of our own: a TorchFunctionMode that sees every F.linear/conv1d/conv2d/embedding, matmul/
bmm/einsum and scaled_dot_product_attention call of the same forward pass and prices it by hand,
and per-family layer counts from the config."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

import hwq
from hwq.graph import LayerGraph
from tests.hf_factories import BATCH, DECODER_TOKENS, EXAMPLES, LAYERS, TOKENS

FAMILIES = tuple(EXAMPLES)
PRODUCTS = ("matmul", "__matmul__", "__rmatmul__", "bmm", "mm")

# (conv, linear, embedding, matmul) rows from each config (2 layers per stack)
EXPECTED_ROWS = {
    # encoder q,k,v,o,wi,wo; decoder self q,k,v,o, cross q,k,v,o, wi, wo; the shared embedding
    # read by encoder and decoder plus one relative-position bias table each; sdpa = 2 rows
    "t5": (0, LAYERS * 6 + LAYERS * 10, 2 + 2, 2 * (LAYERS + 2 * LAYERS)),
    # q,k,v,o,intermediate,output per layer + pooler; word, token-type, position embeddings
    "roberta": (0, LAYERS * 6 + 1, 3, 2 * LAYERS),
    "roberta_eager": (0, LAYERS * 6 + 1, 3, 2 * LAYERS),
    # q,k,v,o,gate,up,down per layer + the tied LM head; one embedding
    "qwen2": (0, LAYERS * 7 + 1, 1, 2 * LAYERS),
    # patch conv; q,k,v,o,fc1,fc2 per block (2 + 2 blocks) + the patch merging's reduction
    "swin": (1, 4 * 6 + 1, 0, 2 * 4),
    # patch conv; q,k,v,o,fc1,fc2 per layer + pooler
    "deit": (1, LAYERS * 6 + 1, 0, 2 * LAYERS),
    # two feature-extractor convs + the positional conv; projection + 6 per layer
    "wav2vec2": (3, 1 + LAYERS * 6, 0, 2 * LAYERS),
}


def _arg(args: tuple, kwargs: dict, i: int, name: str) -> Any:
    return args[i] if len(args) > i else kwargs.get(name)


@dataclass
class Counted:
    """What the forward pass computed, by function call."""

    conv: list[int] = field(default_factory=list)  # MACs per call
    linear: list[int] = field(default_factory=list)
    embedding: list[int] = field(default_factory=list)  # table size per call
    matmul: list[int] = field(default_factory=list)  # sdpa: scores, then context
    weights: dict[int, int] = field(default_factory=dict)  # id(weight) -> elements, once each

    def weight(self, w: torch.Tensor) -> None:
        self.weights.setdefault(id(w), w.numel())


class CallCounter(TorchFunctionMode):
    """Prices each product from its operands' shapes: linear = out elements x in features,
    conv = out elements x (in channels / groups x kernel), matmul = out elements x K,
    scaled_dot_product_attention = heads x L x S x (E + Ev)."""

    def __init__(self, params: set[int]) -> None:
        super().__init__()
        self.params = params
        self.counted = Counted()

    def __torch_function__(self, func: Callable, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        c = self.counted
        if name == "linear":
            w = _arg(args, kwargs, 1, "weight")
            c.linear.append(out.numel() * w.shape[1])
            c.weight(w)
        elif name in ("conv1d", "conv2d"):
            w = _arg(args, kwargs, 1, "weight")
            c.conv.append(out.numel() * w[0].numel())
            c.weight(w)
        elif name == "embedding":
            w = _arg(args, kwargs, 1, "weight")
            c.embedding.append(w.numel())
            c.weight(w)
        elif name in PRODUCTS:
            a, b = args[0], args[1]
            assert id(a) not in self.params and id(b) not in self.params, "a weight matmul"
            c.matmul.append(out.numel() * a.shape[-1])
        elif name == "einsum":
            raise AssertionError("no family here calls einsum")
        elif name == "scaled_dot_product_attention":
            q, k, v = (_arg(args, kwargs, i, n) for i, n in enumerate(("query", "key", "value")))
            heads, seq_q, seq_k = math.prod(q.shape[:-2]), q.shape[-2], k.shape[-2]
            c.matmul += [heads * seq_q * seq_k * q.shape[-1], heads * seq_q * seq_k * v.shape[-1]]
        return out


@dataclass(frozen=True)
class Traced:
    graph: LayerGraph
    counted: Counted


@cache
def traced(family: str) -> Traced:
    factory, example = EXAMPLES[family]
    model: nn.Module = factory()
    args, kwargs = example()
    graph = hwq.trace(model, args, example_kwargs=kwargs, model_name=family)
    counter = CallCounter({id(p) for p in model.parameters()})
    with torch.no_grad(), counter:
        model(*args, **kwargs)
    return Traced(graph, counter.counted)


def rows(graph: LayerGraph, op: str) -> Any:
    frame = graph.frame
    return frame[frame["op"] == op]


@pytest.mark.parametrize("family", FAMILIES)
def test_weight_layers_count_and_macs(family: str) -> None:
    t = traced(family)
    conv, linear, _, _ = EXPECTED_ROWS[family]
    assert (len(t.counted.conv), len(t.counted.linear)) == (conv, linear)
    assert len(rows(t.graph, "conv")) == conv
    assert len(rows(t.graph, "linear")) == linear
    assert int(rows(t.graph, "conv")["macs"].sum()) == sum(t.counted.conv)
    assert int(rows(t.graph, "linear")["macs"].sum()) == sum(t.counted.linear)
    assert set(t.graph.frame["batch"]) == {BATCH}  # samples, never tokens


@pytest.mark.parametrize("family", FAMILIES)
def test_reference_count_agrees_and_nothing_is_dropped(family: str) -> None:
    """The aten-level reference equals our function-level count, and every MAC of it is a row
    or listed as unsupported."""
    t = traced(family)
    c = t.counted
    cov = t.graph.coverage
    assert cov is not None
    assert cov["reference_macs"] == sum(c.conv) + sum(c.linear) + sum(c.matmul)
    assert cov["graph_macs"] + cov["unsupported_macs"] == cov["reference_macs"]


@pytest.mark.parametrize("family", FAMILIES)
def test_matmul_rows_count_and_macs(family: str) -> None:
    t = traced(family)
    *_, matmul = EXPECTED_ROWS[family]
    assert len(t.counted.matmul) == matmul
    assert len(rows(t.graph, "matmul")) == matmul
    assert rows(t.graph, "matmul")["macs"].tolist() == t.counted.matmul


@pytest.mark.parametrize("family", FAMILIES)
def test_coverage_at_least_99_percent(family: str) -> None:
    cov = traced(family).graph.coverage
    assert cov is not None and cov["fraction"] >= 0.99
    assert cov["unsupported_macs"] == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_embedding_rows_and_weights_counted_once(family: str) -> None:
    """Every table read is an embedding row; weight_params hold every weight once (Qwen2's LM
    head shares the embedding's table, T5's decoder reads the encoder's)."""
    t = traced(family)
    embedding = EXPECTED_ROWS[family][2]
    assert len(t.counted.embedding) == embedding
    assert len(rows(t.graph, "embedding")) == embedding
    assert int(t.graph.frame["weight_params"].sum()) == sum(t.counted.weights.values())


def test_t5_keyword_inputs_reach_encoder_and_decoder() -> None:
    """T5 called as model(input_ids=..., decoder_input_ids=...): the encoder's linears see 12
    tokens per sample, the decoder's 8, cross-attention's keys and values the encoder's 12."""
    frame = traced("t5").graph.frame.set_index("name")
    linear = frame[frame["op"] == "linear"]
    enc = linear[linear.index.str.startswith("encoder.")]
    dec = linear[linear.index.str.startswith("decoder.")]
    assert set(enc["out_h"]) == {TOKENS}
    assert len(enc) == LAYERS * 6 and len(dec) == LAYERS * 10
    cross_kv = [f"decoder.block.{i}.layer.1.EncDecAttention.{p}"
                for i in range(LAYERS) for p in "kv"]
    assert set(linear.loc[cross_kv, "out_h"]) == {TOKENS}
    assert set(dec.drop(index=cross_kv)["out_h"]) == {DECODER_TOKENS}


def test_qwen2_grouped_query_projections() -> None:
    """4 query heads, 2 key/value heads of 8: q_proj 32 -> 32, k_proj and v_proj 32 -> 16."""
    frame = traced("qwen2").graph.frame.set_index("name")
    attn = "model.layers.0.self_attn"
    assert frame.loc[f"{attn}.q_proj", "out_channels"] == 32
    assert frame.loc[f"{attn}.k_proj", "out_channels"] == 16
    assert frame.loc[f"{attn}.v_proj", "out_channels"] == 16
    assert frame.loc["lm_head", "macs"] == BATCH * TOKENS * 32 * 100

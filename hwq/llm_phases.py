"""LayerGraphs of a causal language model's two phases (issue 19, DESIGN.md §2 "LLMs").

* `prefill`: one forward pass over `context` prompt tokens per sequence (the logits of the last
  token only, as generation computes them).
* `decode`: one decode step, one new token per sequence against a KV cache: the step generates
  token number `context`, so its attention reads `context` keys and values (the `context - 1`
  cached ones and its own), every linear layer reads its whole weight for one token per sequence
  and the embedding reads only the looked-up rows.

Both are traced with the model's own forward on the meta device (a twin of the model built from
its config when it holds weights): counts need shapes only, so a 70B config traces in seconds.
The decode step runs against a real KV cache of `context - 1` tokens (built by a meta prefill),
so the attention matmul rows hold exact K/N = context. With grouped-query attention the matmul
rows are written as `batch x kv_heads` products of M = tokens x (heads / kv_heads): the MACs are
unchanged and a row's second operand is then exactly the K (or V) cache it reads, once per
key/value head, as a fused attention kernel reads it.

`latency_s` of a decode graph is one step for the whole batch: tokens/s = batch / latency_s;
of a prefill graph tokens/s = batch x context / latency_s (`tokens_per_s`).
"""

from __future__ import annotations

import copy
import inspect
import logging
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from hwq.errors import UserError
from hwq.graph import LayerGraph

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger("hwq.trace")

PHASES = ("prefill", "decode")
DEFAULT_PHASE = "decode"
MAX_DEFAULT_CONTEXT = 512
PHASE_HELP = ("LLM phase to price: decode (one new token per sequence against a KV cache of "
              "--context tokens) or prefill (--context prompt tokens). Default for a causal LM: "
              "decode.")
CONTEXT_HELP = ("LLM context in tokens: the KV cache a decode step reads, or the prompt a "
                "prefill processes (default: the config's max_position_embeddings, at most 512).")


def is_causal_lm(model: Any) -> bool:
    """A Hugging Face model with a causal-LM head (what `llm_graph` prices)."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "get_output_embeddings"):
        return False
    from hwq.hf_models import is_causal_lm as config_is_causal

    return type(model).__name__.endswith("ForCausalLM") or config_is_causal(config)


def max_positions(model: Any) -> int | None:
    value = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None


def default_context(model: Any) -> int:
    """The config's max_position_embeddings, at most MAX_DEFAULT_CONTEXT."""
    return min(max_positions(model) or MAX_DEFAULT_CONTEXT, MAX_DEFAULT_CONTEXT)


_LABEL = re.compile(r" (prefill|decode)@([0-9]+)$")


def phase_label(name: str, phase: str, context: int) -> str:
    """The model label of an LLM graph (`llama decode@128`); `phase_of` reads it back, also from
    a saved layer file."""
    return f"{name} {phase}@{context}"


def phase_of(graph: LayerGraph) -> tuple[str, int] | None:
    """(phase, context) of a graph `llm_graph` made; None for any other graph."""
    match = _LABEL.search(graph.model or "")
    return (match.group(1), int(match.group(2))) if match else None


def tokens_per_s(phase: str, batch: int, context: int, latency_s: float) -> float:
    """Decode: batch / latency_s (one token per sequence per step); prefill: batch x context /
    latency_s."""
    tokens = batch if phase == "decode" else batch * context
    return tokens / latency_s


def llm_graph(model: nn.Module, phase: str = DEFAULT_PHASE, context: int | None = None,
              batch: int = 1) -> LayerGraph:
    """LayerGraph of one prefill of `context` tokens per sequence, or of one decode step against
    a KV cache of `context` tokens, for `batch` sequences (module docstring)."""
    if phase not in PHASES:
        raise UserError(f"--phase: expected one of {', '.join(PHASES)}, found {phase!r}")
    if not is_causal_lm(model):
        raise UserError(f"{type(model).__name__}: --phase/--context price a causal language "
                        "model (a Hugging Face *ForCausalLM, e.g. hf-config:DIR)")
    limit = max_positions(model)
    context = default_context(model) if context is None else int(context)
    if context < 1:
        raise UserError(f"--context: expected a positive number of tokens, found {context}")
    if limit is not None and context > limit:
        raise UserError(f"--context {context}: the config allows at most "
                        f"max_position_embeddings = {limit} tokens")
    if batch < 1:
        raise UserError(f"--batch: expected a positive integer, found {batch}")
    twin = _meta_twin(model)
    graph = _trace_phase(twin, phase, context, batch)
    name = str(getattr(model.config, "name_or_path", "") or model.config.model_type)
    return _grouped_query_rows(graph, model.config, phase_label(name, phase, context))


def _meta_twin(model: nn.Module) -> nn.Module:
    """The same architecture on the meta device (the model itself when it is there already)."""
    import torch

    if all(p.device.type == "meta" for p in model.parameters()):
        return model.eval()
    with torch.device("meta"):
        twin = type(model)(copy.deepcopy(model.config))
    return twin.eval()


def _cache_kwarg(model: nn.Module) -> str:
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params and "past_key_values" not in params else "past_key_values"


def _trace_phase(model: nn.Module, phase: str, context: int, batch: int) -> LayerGraph:
    import torch

    from hwq.coverage import with_coverage
    from hwq.tracing import trace_hooks

    # a cache in both phases: without one transformers inspects position ids for packed
    # sequences, a data-dependent check the meta device cannot run
    kwargs: dict[str, Any] = {"use_cache": True}
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        kwargs["logits_to_keep"] = 1  # generation's prefill computes the last token's logits
    tokens = context if phase == "prefill" else 1
    kwargs["input_ids"] = torch.zeros((batch, tokens), dtype=torch.int64, device="meta")
    handle = None
    if phase == "decode" and context > 1:
        key = _cache_kwarg(model)
        with torch.no_grad():
            prompt = torch.zeros((batch, context - 1), dtype=torch.int64, device="meta")
            out = model(input_ids=prompt, use_cache=True, logits_to_keep=1) \
                if "logits_to_keep" in kwargs else model(input_ids=prompt, use_cache=True)
        template = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        if template is None:
            raise UserError(f"{type(model).__name__}: the model returned no KV cache, so its "
                            "decode step cannot be traced")

        def fresh_cache(mod: Any, args: tuple, kw: dict) -> tuple[tuple, dict]:
            # every forward of the trace (tracer, coverage count) starts from the same cache
            return args, {**kw, key: copy.deepcopy(template)}

        handle = model.register_forward_pre_hook(fresh_cache, with_kwargs=True)
        kwargs[key] = None
    try:
        graph = trace_hooks(model, (), None, example_kwargs=kwargs)
        return with_coverage(graph, model, (), kwargs)
    finally:
        if handle is not None:
            handle.remove()


def _grouped_query_rows(graph: LayerGraph, config: Any, name: str) -> LayerGraph:
    """Attention matmul rows as batch x kv_heads products of M = tokens x heads / kv_heads."""
    heads = getattr(config, "num_attention_heads", None)
    kv = getattr(config, "num_key_value_heads", None) or heads
    df = graph.frame.copy()
    if isinstance(heads, int) and isinstance(kv, int) and 0 < kv < heads and heads % kv == 0:
        rows = (df["op"].to_numpy() == "matmul") & (df["groups"].to_numpy() == heads)
        per = heads // kv
        df.loc[rows, "groups"] = kv
        df.loc[rows, "out_h"] = df.loc[rows, "out_h"].to_numpy() * per
        df.loc[rows, "in_h"] = df.loc[rows, "in_h"].to_numpy() * per
        if rows.any():
            log.info("grouped-query attention: %d matmul rows read the K/V cache once per "
                     "key/value head (%d heads share each)", int(rows.sum()), per)
    return LayerGraph(df, graph.inputs, graph.specialised, graph.unsupported, name,
                      graph.coverage, graph.second_inputs)


def kv_cache_elems(graph: LayerGraph) -> np.ndarray:
    """[L] K/V-cache values each attention matmul row reads (its second operand; 0 elsewhere)."""
    return graph.second_elems()

"""How much of a model's compute a LayerGraph accounts for, against an independent count.

The example forward pass runs once more under a TorchDispatchMode that counts the MACs of every
aten-level product (torch's `torch.utils.flop_counter` formulas, plus the CPU attention kernel
they miss), attributed to the innermost module running: the same products the graph's conv,
linear and matmul rows hold (attention's scores and context included, in full under a causal
mask), so a graph that misses nothing has fraction 1.0. `LayerGraph.coverage` is
`{reference_macs, graph_macs, unsupported_macs, fraction}` (fraction = graph / reference); below
0.99 a warning names the modules with the most compute missing from the graph.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from hwq.graph import LayerGraph

log = logging.getLogger("hwq.trace")

THRESHOLD = 0.99
ROOT = "<model>"
aten = torch.ops.aten


def _sdpa_cpu_flops(query: Any, key: Any, value: Any, *args: Any, out_val: Any = None,
                    **kwargs: Any) -> int:
    """Scores (L x E by S) plus context (L x S by Ev) per batch x head, as flops (2 per MAC)."""
    *lead, seq_q, e = query.shape
    seq_k, ev = key.shape[-2], value.shape[-1]
    return 2 * math.prod(lead) * seq_q * seq_k * (e + ev)


def _rnn_layer_flops(x: Any, w_ih: Any, w_hh: Any, *args: Any, out_val: Any = None,
                     **kwargs: Any) -> int:
    """One layer and direction of a CPU (mkldnn) RNN: every step multiplies by both weights."""
    steps = x.numel() // w_ih.shape[1]
    return 2 * steps * (w_ih.numel() + w_hh.numel())


EXTRA: dict[Any, Callable[..., int]] = {
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops,
    aten.mkldnn_rnn_layer: _rnn_layer_flops,
}


class _Counter(TorchDispatchMode):
    def __init__(self, stack: list[str]) -> None:
        super().__init__()
        self.stack = stack
        self.by_module: dict[str, int] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func.overloadpacket
        formula = flop_registry.get(packet) or EXTRA.get(packet)
        if formula is not None:
            macs = int(formula(*args, **kwargs, out_val=out)) // 2
            where = self.stack[-1] if self.stack else ROOT
            self.by_module[where] = self.by_module.get(where, 0) + macs
        return out


def reference_macs(model: nn.Module, args: tuple[Any, ...],
                   kwargs: dict[str, Any] | None = None) -> dict[str, int]:
    """aten-level MACs of the forward pass `model(*args, **kwargs)`, per innermost module
    (`<model>` for the root)."""
    from hwq.tracing import fast_paths_disabled

    stack: list[str] = []
    handles = []

    def enter(qual: str) -> Callable[..., None]:
        def hook(mod: nn.Module, args: Any) -> None:
            stack.append(qual)

        return hook

    def leave(mod: nn.Module, args: Any, out: Any) -> None:
        stack.pop()

    for name, mod in model.named_modules():
        handles.append(mod.register_forward_pre_hook(enter(name or ROOT)))
        handles.append(mod.register_forward_hook(leave))
    counter = _Counter(stack)
    try:
        with torch.no_grad(), fast_paths_disabled(), counter:
            model(*args, **(kwargs or {}))
    finally:
        for h in handles:
            h.remove()
    return counter.by_module


def _module_of(name: str, modules: set[str]) -> str:
    """The innermost module a row or unsupported entry belongs to (its longest module prefix)."""
    base = name.split("@", 1)[0]
    while base:
        if base in modules:
            return base
        base = base.rpartition(".")[0]
    return ROOT


def missing_modules(graph: LayerGraph, by_module: dict[str, int], modules: set[str],
                    top: int = 5) -> list[tuple[str, int]]:
    """Modules whose aten-level MACs exceed the graph's rows there, largest deficit first."""
    counted: dict[str, int] = {}
    for name, macs in zip(graph.names, graph.column("macs")):
        m = _module_of(str(name), modules)
        counted[m] = counted.get(m, 0) + int(macs)
    deficit = {m: ref - counted.get(m, 0) for m, ref in by_module.items()}
    ranked = sorted(((m, d) for m, d in deficit.items() if d > 0), key=lambda x: -x[1])
    return ranked[:top]


def with_coverage(graph: LayerGraph, model: nn.Module, args: tuple[Any, ...],
                  kwargs: dict[str, Any] | None = None) -> LayerGraph:
    """The graph with its `coverage` on the call `model(*args, **kwargs)`; warns, naming the
    modules, when below 0.99."""
    try:
        by_module = reference_macs(model, args, kwargs)
    except Exception as exc:  # the count is a check: a model it cannot run keeps its graph
        log.warning("hwq could not count the model's MACs at the aten level (%s: %s); "
                    "the graph has no coverage figure", type(exc).__name__, exc)
        return graph
    ref = sum(by_module.values())
    got = int(graph.frame["macs"].sum())
    unsupported = sum(u.macs for u in graph.unsupported)
    coverage = {
        "reference_macs": int(ref),
        "graph_macs": got,
        "unsupported_macs": int(unsupported),
        "fraction": float(got / ref) if ref else 1.0,
    }
    if coverage["fraction"] < THRESHOLD:
        modules = {n or ROOT for n, _ in model.named_modules()}
        worst = missing_modules(graph, by_module, modules)
        log.warning(
            "the layer graph accounts for %.1f%% of the model's %s MACs; missing most in: %s",
            100 * coverage["fraction"], f"{ref:,}",
            ", ".join(f"{m} ({d:,} MACs)" for m, d in worst) or "(unattributed)",
        )
    return replace(graph, coverage=coverage)

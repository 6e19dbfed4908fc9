"""The example forward call a model is traced on: positional inputs plus keyword inputs.

`hwq.trace(model, example_input, example_kwargs=...)` describes one call, `model(*args,
**kwargs)`: `example_input` is a tensor (one positional input) or a tuple of positional inputs
(`()` for none), `example_kwargs` a mapping of keyword inputs (`input_ids=...`). The hooks tracer
and the coverage count run exactly that call; torch.fx binds it through the forward's signature
(`fx_binding`). `batch` of every row is `samples()`: dim 0 of the first tensor among the
positional, then the keyword inputs.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from hwq.errors import GraphError, reason

# a forward parameter the call leaves at a default of one of these types is specialised to it
# under fx (`if mask is None:` then traces the branch the call takes)
_CONCRETE_TYPES = (type(None), bool, int, float, str)
EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)


@dataclass(frozen=True)
class ExampleCall:
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, example_input: Any, example_kwargs: Mapping[str, Any] | None = None
           ) -> ExampleCall:
        """The call `hwq.trace` was given (a tuple is the positional inputs)."""
        args = example_input if isinstance(example_input, tuple) else (example_input,)
        if example_kwargs is None:
            return cls(args)
        if not isinstance(example_kwargs, Mapping):
            raise GraphError(f"example_kwargs: expected a mapping of keyword inputs, found "
                             f"{type(example_kwargs).__name__}")
        bad = [repr(k) for k in example_kwargs if not isinstance(k, str)]
        if bad:
            raise GraphError(f"example_kwargs: keyword names must be strings, found "
                             f"{', '.join(bad)}")
        return cls(args, dict(example_kwargs))

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor of the call, positional inputs first (nested lists/dicts included)."""
        return [t for t in tree_leaves((self.args, self.kwargs)) if isinstance(t, torch.Tensor)]

    def samples(self) -> int:
        """Dim 0 of the first tensor (1 for a scalar tensor or a call without tensors)."""
        first = next(iter(self.tensors()), None)
        return int(first.shape[0]) if first is not None and first.dim() > 0 else 1

    def run(self, model: nn.Module) -> Any:
        return model(*self.args, **self.kwargs)

    def describe(self) -> str:
        """`input shape [(1, 3, 8, 8)]`, keyword inputs by name, dtypes other than float32:
        for error messages."""
        def one(t: Any) -> str:
            if not isinstance(t, torch.Tensor):
                return type(t).__name__
            dtype = "" if t.dtype == torch.float32 else f" {str(t.dtype).removeprefix('torch.')}"
            return f"{tuple(t.shape)}{dtype}"

        parts = [one(a) for a in self.args if isinstance(a, torch.Tensor)]
        parts += [f"{k}={one(v)}" for k, v in self.kwargs.items()]
        return f"input shape [{', '.join(parts)}]"

    def fx_binding(self, model: nn.Module) -> tuple[dict[str, Any] | None, tuple[Any, ...]]:
        """(concrete_args for `torch.fx.Tracer.trace`, the positional values the traced graph
        takes): the call bound to `model.forward`'s signature, each parameter it leaves out
        specialised to its default where that is None, a bool, a number or a string. Raises
        TypeError when the call does not bind to the signature or gives keyword inputs to a
        forward's `**kwargs` (the hooks tracer then runs the call itself and names what
        fails)."""
        sig = inspect.signature(model.forward)
        bound = sig.bind(*self.args, **self.kwargs)
        params = list(sig.parameters.values())
        concrete = {
            p.name: p.default
            for p in params
            if p.name not in bound.arguments and p.default is not inspect.Parameter.empty
            and type(p.default) in _CONCRETE_TYPES
        }
        bound.apply_defaults()
        # fx's placeholders: the named parameters in signature order (keyword-only ones
        # included), then a `*args` one that takes every value left
        values: list[Any] = []
        for p in params:
            value = bound.arguments[p.name]
            if p.kind is inspect.Parameter.VAR_KEYWORD:
                if value:
                    raise TypeError("keyword inputs into the forward's **kwargs have no fx "
                                    "placeholder")
            elif p.kind is not inspect.Parameter.VAR_POSITIONAL:
                values.append(value)
        varargs = [bound.arguments[p.name] for p in params
                   if p.kind is inspect.Parameter.VAR_POSITIONAL]
        return concrete or None, (*values, *(varargs[0] if varargs else ()))


def forward_failure(where: str, module: nn.Module | None, call: ExampleCall,
                    exc: BaseException) -> GraphError:
    """The error of a forward pass that raised in module `where` (the innermost one running):
    a float input into an embedding says to feed token ids."""
    text = f"module {where}: forward pass on {call.describe()} failed: {reason(exc)}"
    if isinstance(module, EMBEDDINGS):
        tensors = call.tensors()
        if tensors and all(t.is_floating_point() or t.is_complex() for t in tensors):
            found = ", ".join(sorted({str(t.dtype).removeprefix("torch.") for t in tensors}))
            text = (f"module {where}: expected integer token ids, found {found} input; use "
                    f"--input-dtype int64 (in Python: an integer tensor)")
        elif "index out of range" in str(exc):
            text += f" (token ids must be below num_embeddings={module.num_embeddings})"
    return GraphError(text)

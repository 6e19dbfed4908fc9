"""hwq: hardware-aware cost models and mixed-precision quantization search.

Public names (DESIGN.md §9) are importable from `hwq`. They load lazily so that
`import hwq` and cost queries never import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY: dict[str, tuple[str, str]] = {
    "LayerGraph": ("hwq.graph", "LayerGraph"),
    "trace": ("hwq.tracing", "trace"),
    "load_model": ("hwq.models", "load_model"),
    "llm_graph": ("hwq.llm_phases", "llm_graph"),
    "load_profile": ("hwq.profile", "load_profile"),
    "DeviceProfile": ("hwq.profile", "DeviceProfile"),
    "list_profiles": ("hwq.profile", "list_profiles"),
    "ProfileError": ("hwq.errors", "ProfileError"),
    "UserError": ("hwq.errors", "UserError"),
    "HwqError": ("hwq.errors", "HwqError"),
    "Policy": ("hwq.policy", "Policy"),
    "cost_table": ("hwq.tables", "cost_table"),
    "CostTable": ("hwq.tables", "CostTable"),
    "evaluate": ("hwq.policy_eval", "evaluate"),
    "Run": ("hwq.runs", "Run"),
}

__all__ = ["__version__", "search", *_LAZY]


def __getattr__(name: str) -> Any:
    if name == "search":  # the hwq.search package is callable: hwq.search(...) runs a search
        return importlib.import_module("hwq.search")
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'hwq' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

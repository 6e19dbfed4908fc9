"""Numba cost models, installed as `hwq.cost_models`: one module per device kind, each declaring
its kind in one `DeviceKind` and registering it with `register_kind` (see `kind.py`)."""

from hwq.cost_models.kind import (
    DeviceKind,
    Priced,
    find_kind,
    kind,
    kinds,
    register_kind,
    unregister_kind,
)

__all__ = ["DeviceKind", "Priced", "find_kind", "kind", "kinds", "register_kind",
           "unregister_kind"]

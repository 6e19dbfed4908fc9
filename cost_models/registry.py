"""Which cost model prices which device kind. Models import lazily (Numba compile is per kind).

A pricing function has the signature
    price(graph: LayerGraph, profile: DeviceProfile, w_bits: int64[P], a_bits: int64[P])
        -> dict[str, float64 [L, P] array]
and returns any of the CostTable columns it knows (`cycles`, `compute_cycles`, `stall_cycles`,
`latency_s`, `energy_pj`, `energy_core_pj`, `energy_sram_pj`, `energy_dram_pj`,
`dram_read_bits`, `dram_write_bits`, `feasible`) plus the kind's own detail columns.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

PRICERS: dict[str, str] = {
    "bitfusion": "hwq.cost_models.bitfusion_table:price",
    "bit_serial": "hwq.cost_models.bit_serial:price",
    "gpu": "hwq.cost_models.gpu:price",
    "lut": "hwq.cost_models.lut:price",
    "mcu": "hwq.cost_models.mcu:price",
}


def pricer(kind: str) -> Callable[..., dict[str, Any]] | None:
    """The pricing function of `kind`, or None while that kind has no cost model yet."""
    target = PRICERS.get(kind)
    if target is None:
        return None
    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.startswith("hwq.cost_models"):
            return None
        raise
    return getattr(module, attr)

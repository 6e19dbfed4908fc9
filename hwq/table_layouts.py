"""Cost tables in the lookup-table layouts of the tools people already use (HAQ, APQ); `hwq table
--format haq|apq`."""

from __future__ import annotations

from typing import Any

import numpy as np

from hwq.tables import CostTable


def to_haq(table: CostTable) -> np.ndarray:
    """HAQ lookup table: float64 [layers, 8, 8] indexed [layer, w_bits-1, a_bits-1], latency in
    milliseconds per forward pass of the table's batch; NaN where a pair was not priced."""
    out = np.full((len(table.graph), 8, 8), np.nan)
    lat = table.values["latency_s"]
    for k, (w, a) in enumerate(table.pairs):
        if 1 <= w <= 8 and 1 <= a <= 8:
            out[:, w - 1, a - 1] = lat[:, k] * 1e3
    return out


def apq_key(row: Any) -> str:
    return (
        f"({row.in_channels}, {row.out_channels}, {row.in_h}, {row.kernel_h}, "
        f"{row.stride_h}, {row.pad_h}, {row.groups})"
    )


def to_apq(table: CostTable) -> dict[str, dict[str, float]]:
    """APQ lookup table: `"(cin, cout, input_size, kernel, stride, padding, groups)-W{w}A{a}"` ->
    {"latency": ms, "energy": mJ}; layers of identical shape share a key (and a value)."""
    lat = table.values["latency_s"]
    energy = table.values["energy_pj"]
    out: dict[str, dict[str, float]] = {}
    for i, row in enumerate(table.graph.frame.itertuples(index=False)):
        key = apq_key(row)
        for k, (w, a) in enumerate(table.pairs):
            out[f"{key}-W{w}A{a}"] = {
                "latency": float(lat[i, k] * 1e3),
                "energy": float(energy[i, k] * 1e-9),
            }
    return out

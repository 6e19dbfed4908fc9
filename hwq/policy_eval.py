"""Price batches of policies on a CostTable: a Numba gather/sum plus the network terms."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from hwq.errors import UserError
from hwq.policy import Policy
from hwq.tables import VALUE_COLUMNS, CostTable

SUM_COLUMNS: tuple[str, ...] = ("macs", "bops", "weight_bytes", "cycles", "latency_s", "energy_pj")
EVALUATE_COLUMNS: tuple[str, ...] = (
    "macs",
    "bops",
    "weight_bytes",
    "peak_activation_bytes",
    "cycles",
    "latency_s",
    "energy_pj",
    "feasible",
    "infeasible_reason",
)


def policies_to_array(table: CostTable, policies: Sequence[Policy] | np.ndarray) -> np.ndarray:
    """int64 [P, L, 2] of (w, a) per layer in layer order."""
    n = len(table.graph)
    if isinstance(policies, np.ndarray):
        arr = np.asarray(policies)
        if arr.ndim != 3 or arr.shape[1:] != (n, 2):
            raise UserError(
                f"policies: expected an int array [P, {n}, 2] of (w_bits, a_bits) per layer, "
                f"found shape {tuple(arr.shape)}"
            )
        return arr.astype(np.int64, copy=False)
    return (
        np.stack([p.to_array(table.graph) for p in policies])
        if len(policies)
        else np.zeros((0, n, 2), dtype=np.int64)
    )


def evaluate(table: CostTable, policies: Sequence[Policy] | np.ndarray) -> pd.DataFrame:
    """One row per policy: totals over layers, peak activation memory and feasibility."""
    from hwq.cost_models.gather import gather_all, gather_sum

    arr = policies_to_array(table, policies)
    w, a = arr[:, :, 0], arr[:, :, 1]
    if arr.size and (w.min() < 0 or a.min() < 0 or w.max() > 32 or a.max() > 32):
        raise UserError("policies: bits must be within 1-8, 16 or 32")
    idx = table.pair_lookup[w, a] if arr.size else np.zeros(w.shape, dtype=np.int64)
    if arr.size and idx.min() < 0:
        p, i = map(int, np.argwhere(idx < 0)[0])
        raise UserError(
            f"policy {p}: layer {table.graph.names[i]}: pair W{w[p, i]}A{a[p, i]} is not in the "
            f"cost table (pairs: {', '.join(f'{x}x{y}' for x, y in table.pairs)})"
        )
    sums = gather_sum(table.stacked, np.ascontiguousarray(idx))
    out = pd.DataFrame({c: sums[:, VALUE_COLUMNS.index(c)] for c in SUM_COLUMNS})
    out.insert(3, "peak_activation_bytes", table.activation_plan.peak_bytes(a))
    bad_layer = gather_all(table.feasible, np.ascontiguousarray(idx))
    names = table.graph.names
    out["feasible"] = bad_layer < 0
    out["infeasible_reason"] = [
        ""
        if b < 0
        else f"layer {names[b]}: not feasible at W{w[p, b]}A{a[p, b]} on {table.profile.name}"
        for p, b in enumerate(bad_layer)
    ]
    if table.profile.kind == "mcu":  # network terms: weights in flash, activations in SRAM
        from hwq.cost_models.mcu import network_terms

        fits, reasons, overflow = network_terms(table, arr, out["peak_activation_bytes"].to_numpy())
        out["feasible"] = out["feasible"].to_numpy() & np.asarray(fits, dtype=bool)
        out["infeasible_reason"] = [
            "; ".join(r for r in (layer, net) if r)
            for layer, net in zip(out["infeasible_reason"], reasons)
        ]
        out["overflow_bytes"] = np.asarray(overflow, dtype=np.float64)
    return out

"""Price batches of policies on a CostTable: a Numba gather/sum plus the network terms."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from hwq.allowed_bits import check_layers
from hwq.cost_models.kind import kind
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
    from hwq.cost_models.gather import evaluate_batch

    arr = policies_to_array(table, policies)
    check_layers(table.profile, table.graph.names, arr)
    plan = table.activation_plan
    sums, peak, bad_layer, missing = evaluate_batch(
        table.stacked_lkc, table.pair_lookup, table.feasible, arr, plan.ask_layer,
        plan.ask_side, plan.tensor_elems, plan.reader_ptr, plan.reader_idx, plan.live_ptr,
        plan.live_idx,
    )
    if len(missing) and missing.max() >= 0:
        p = int(np.argmax(missing >= 0))
        i = int(missing[p])
        w, a = arr[p, i]
        raise UserError(
            f"policy {p}: layer {table.graph.names[i]}: pair W{w}A{a} is not in the cost table "
            f"(pairs: {', '.join(f'{x}x{y}' for x, y in table.pairs)})"
        )
    out = pd.DataFrame({c: sums[:, VALUE_COLUMNS.index(c)] for c in SUM_COLUMNS})
    out.insert(3, "peak_activation_bytes", peak)
    names = table.graph.names
    out["feasible"] = bad_layer < 0
    reasons = np.full(len(arr), "", dtype=object)
    for p in np.flatnonzero(bad_layer >= 0):
        b = int(bad_layer[p])
        reasons[p] = (f"layer {names[b]}: not feasible at W{arr[p, b, 0]}A{arr[p, b, 1]} on "
                      f"{table.profile.name}")
    out["infeasible_reason"] = reasons
    network_terms = kind(table.profile.kind).network_terms
    if network_terms is not None:  # e.g. an MCU's weights in flash, activations in SRAM
        fit = network_terms(table, arr, out["peak_activation_bytes"].to_numpy())
        out["feasible"] = out["feasible"].to_numpy() & np.asarray(fit.feasible, dtype=bool)
        out["infeasible_reason"] = [
            "; ".join(r for r in (layer, net) if r)
            for layer, net in zip(out["infeasible_reason"], fit.reasons)
        ]
        for col, values in fit.columns.items():
            out[col] = np.asarray(values, dtype=np.float64)
    return out

"""The global Pareto archive of a search: every feasible, mutually non-dominated policy
evaluated so far, and the least-violating infeasible one (for the 'no policy meets' message).

Policies with identical objective vectors are one front point: the archive keeps the one with
the smallest sum of w_bits + a_bits over layers (then the smallest policy id) and lists the
others in its `equivalent_ids` (sorted), so a front never holds twins and verification never
spends its budget on them."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from hwq.search.indicators import nondominated_mask


class ParetoArchive:
    """Every feasible, mutually non-dominated policy evaluated so far (one row per policy id);
    also remembers the least-violating infeasible policy for the 'no policy meets' message."""

    def __init__(self) -> None:
        self.records: pd.DataFrame | None = None
        self.F = np.zeros((0, 0))
        self.closest: tuple[float, dict[str, Any]] | None = None

    def update(self, records: pd.DataFrame, F: np.ndarray, G: np.ndarray) -> None:
        """Add one evaluated batch (its records, objectives F minimised, constraints G)."""
        cv = np.clip(G, 0.0, None).sum(axis=1)
        feas = cv <= 0
        if (~feas).any():
            j = int(np.argmin(np.where(feas, np.inf, cv)))
            if self.closest is None or cv[j] < self.closest[0]:
                self.closest = (float(cv[j]), records.iloc[j].to_dict())
        if not feas.any():
            return
        new = records[feas].reset_index(drop=True)
        new["equivalent_ids"] = [[] for _ in range(len(new))]
        newF = F[feas]
        if self.records is not None:
            allr = pd.concat([self.records, new], ignore_index=True)
            allF = np.concatenate([self.F, newF])
        else:
            allr, allF = new, newF
        first = ~allr["policy_id"].duplicated(keep="first").to_numpy()
        allr, allF = allr[first].reset_index(drop=True), allF[first]
        keep = nondominated_mask(allF)
        self.records, self.F = _merge_twins(allr[keep].reset_index(drop=True), allF[keep])

    def __len__(self) -> int:
        return 0 if self.records is None else len(self.records)

    def sorted(self) -> tuple[pd.DataFrame, np.ndarray]:
        if self.records is None:
            return pd.DataFrame(), np.zeros((0, 0))
        order = np.lexsort((self.records["policy_id"].to_numpy(), *self.F.T[::-1]))
        return self.records.iloc[order].reset_index(drop=True), self.F[order]

    def no_feasible_message(self, constraints: dict[str, float]) -> str:
        """What to say when no evaluated policy met `constraints` (name -> limit): the limits,
        and how close the least-violating policy came."""
        from hwq.display import bits_summary, format_limit, format_quantity
        from hwq.objectives import OBJECTIVES

        limits = ", ".join(f"--max {k}={format_limit(OBJECTIVES[k][0], v)}"
                           for k, v in constraints.items())
        msg = f"no evaluated policy meets the constraints ({limits or 'device feasibility'})"
        if self.closest is None:
            return msg
        rec = self.closest[1]
        pairs = np.stack([np.asarray(rec["w_bits"]), np.asarray(rec["a_bits"])], axis=1)
        parts = []
        for name, limit in constraints.items():
            v = float(rec.get(OBJECTIVES[name][0], math.nan))
            col = OBJECTIVES[name][0]
            shown = format_quantity(col, v, among=[limit])
            parts.append(f"{name} {shown} (limit {format_quantity(col, limit)})")
        if not rec.get("feasible", True):
            parts.append(str(rec.get("infeasible_reason") or "not feasible on the device"))
        return msg + f"; the closest is {rec['policy_id']} ({bits_summary(pairs)}): " + ", ".join(
            parts
        )


def _merge_twins(records: pd.DataFrame, F: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per distinct objective vector: the member with the fewest bits (sum of w_bits
    + a_bits over layers), then the smallest policy id; the others (and their own equivalents)
    in its `equivalent_ids`."""
    if len(records) < 2:
        return records, F
    _, group = np.unique(F, axis=0, return_inverse=True)
    group = np.asarray(group).reshape(-1)
    if len(np.unique(group)) == len(records):
        return records, F
    bits = np.array([int(np.sum(w)) + int(np.sum(a))
                     for w, a in zip(records["w_bits"], records["a_bits"])])
    ids = records["policy_id"].to_numpy()
    keep: list[int] = []
    equivalents: list[list[str]] = []
    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        best = int(members[np.lexsort((ids[members], bits[members]))[0]])
        others = {str(ids[m]) for m in members if m != best}
        for m in members:
            others.update(records["equivalent_ids"].iloc[m])
        keep.append(best)
        equivalents.append(sorted(others))
    order = np.argsort(keep)
    rows = [keep[i] for i in order]
    out = records.iloc[rows].reset_index(drop=True)
    out["equivalent_ids"] = [equivalents[i] for i in order]
    return out, F[rows]

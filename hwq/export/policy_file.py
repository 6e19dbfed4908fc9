"""The policy a run hands off: `run_policy` (the run's policy with device, graph hash and
predicted values filled in), `compact_policy` (most common bits as the default plus overrides)
and the `json` writer (DESIGN.md §9; `hwq cost --policy FILE` re-prices it)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from hwq.policy import Policy
from hwq.runs import Run


def run_policy(run: Run, policy_id: str) -> Policy:
    """The policy `policy_id` of the run, with device, graph hash and predicted values filled in
    from the run when its file lacks them."""
    pol = run.policy(policy_id)
    meta = run.meta
    if pol.device is None:
        pol.device = meta.get("device")
    if pol.graph_hash is None:
        pol.graph_hash = meta.get("graph_hash")
    if not pol.predicted:
        front = run.pareto
        rows = front[front["policy_id"] == policy_id] if len(front) else front
        if not len(rows):
            cand = run.candidates
            rows = cand[cand["policy_id"] == policy_id] if len(cand) else cand
        if len(rows):
            skip = {"run_id", "generation", "species", "policy_id", "w_bits", "a_bits"}
            row = rows.iloc[0]
            pol.predicted = {
                c: (bool(row[c]) if c == "feasible" else float(row[c]))
                for c in rows.columns
                if c not in skip and c != "eval_wall_s"
            }
    return pol


def compact_policy(policy: Policy, names: list[str]) -> Policy:
    """The same per-layer bits as `policy` on `names`, written as the most common (w, a) as the
    default plus per-layer overrides of the layers that differ."""
    pairs = policy.pairs(names)
    dw = Counter(w for w, _ in pairs).most_common(1)[0][0]
    da = Counter(a for _, a in pairs).most_common(1)[0][0]
    w_bits = {n: w for n, (w, _) in zip(names, pairs) if w != dw}
    a_bits = {n: a for n, (_, a) in zip(names, pairs) if a != da}
    out = Policy(
        w_bits,
        a_bits,
        default=(dw, da),
        device=policy.device,
        graph_hash=policy.graph_hash,
        predicted=policy.predicted,
    )
    assert out.pairs(names) == pairs
    return out


def export_json(run: Run, policy_id: str, out: str | os.PathLike[str]) -> dict[str, Any]:
    names = list(run.layers.names)
    pol = compact_policy(run_policy(run, policy_id), names)
    Path(out).write_text(pol.to_json() + "\n", encoding="utf-8")
    return {
        "policy_id": policy_id,
        "format": "json",
        "file": str(out),
        "default": f"{pol.default[0]}x{pol.default[1]}",
        "overrides": len(pol.layer_names()),
    }

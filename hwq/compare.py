"""`hwq compare RUN_DIR...`: several runs (one model on two devices, two algorithms, two seeds)
side by side — one plot of their fronts and one table.

The plot has one panel per cost objective the runs share (or the one chosen with `--x`): task
quality against that cost, each run's front as markers joined by its 2-D non-dominated staircase.
The table has one row per run: what ran, its budget, the best value of each shared objective on
its front (display units common to all runs), the hypervolume of its front in one normalisation
shared by all runs (objectives scaled over the union of the fronts, reference point 1.1; higher
is better — comparable between the rows of one table only), and the best QAT-verified accuracy.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwq.display import LABELS, axis_label, display_unit, in_unit, table_header
from hwq.errors import UserError
from hwq.objectives import COLUMN_TO_OBJECTIVE, OBJECTIVES, QUALITY_OBJECTIVES
from hwq.plots import pyplot, staircase
from hwq.report import best_values, run_objectives
from hwq.runs import Run


def _label(run: Run, all_runs: list[Run]) -> str:
    meta = run.meta
    parts = []
    for key in ("model", "device", "algorithm"):
        if len({r.meta.get(key) for r in all_runs}) > 1 or key == "device":
            parts.append(str(meta.get(key)))
    label = " / ".join(parts)
    same = [r for r in all_runs if _base_label(r) == _base_label(run)]
    if len(same) > 1:
        label += f" ({run.path.name})"
    return label


def _base_label(run: Run) -> tuple[Any, ...]:
    return tuple(run.meta.get(k) for k in ("model", "device", "algorithm"))


def shared_objectives(runs: list[Run]) -> list[str]:
    sets = [run_objectives(r) for r in runs]
    return [o for o in sets[0] if all(o in s for s in sets[1:])]


def compare_runs(
    run_dirs: list[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    x_objective: str | None = None,
    log_x: bool | None = None,
) -> tuple[list[dict[str, Any]], Path, dict[str, str]]:
    """Write the comparison plot to `out`; return (table rows, plot path, the x scale of each
    panel: `log` or `linear`). `log_x` None: a log axis where the fronts' values span two
    decades or more (an MCU beside accelerators), linear otherwise."""
    if not run_dirs:
        raise UserError("compare: give at least one RUN_DIR")
    runs = [Run.open(d) for d in run_dirs]
    fronts = [r.pareto for r in runs]
    for r, f in zip(runs, fronts):
        if not len(f):
            raise UserError(f"{r.path}: the run has no front yet (status {r.status})")
    shared = shared_objectives(runs)
    if not shared:
        raise UserError("compare: the runs share no objective")
    quality = next((o for o in shared if o in QUALITY_OBJECTIVES), None)
    costs = [o for o in shared if o not in QUALITY_OBJECTIVES]
    if x_objective is not None:
        name = COLUMN_TO_OBJECTIVE.get(x_objective, x_objective)
        if name not in OBJECTIVES:
            raise UserError(
                f"--x: unknown objective {x_objective!r} (known: {', '.join(OBJECTIVES)})"
            )
        if not all(OBJECTIVES[name][0] in f.columns for f in fronts):
            raise UserError(f"--x {x_objective}: not logged by every run")
        costs = [name]
    if quality is None:
        if len(costs) < 2:
            raise UserError("compare: the runs share no quality objective and only one cost")
        quality, costs = costs[0], costs[1:]
    labels = [_label(r, runs) for r in runs]
    scales = {
        cost: "log" if wants_log_axis(
            np.concatenate([f[OBJECTIVES[cost][0]].to_numpy(float) for f in fronts]), log_x
        ) else "linear"
        for cost in costs[:3]
    }
    path = _plot(runs, fronts, labels, quality, costs, Path(out), scales)
    rows = _table(runs, fronts, labels, shared)
    return rows, path, scales


def wants_log_axis(values: np.ndarray, log_x: bool | None = None) -> bool:
    """Whether a panel's x axis is logarithmic: as asked, else when the positive values span a
    factor of 100 or more (a log axis needs positive values)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0 or (v <= 0).any():
        return False
    if log_x is not None:
        return log_x
    return float(v.max()) >= 100.0 * float(v.min())


def _plot(runs, fronts, labels, quality, costs, out: Path, scales: dict[str, str]) -> Path:
    plt = pyplot()
    qcol, maximise = OBJECTIVES[quality]
    qdiv, qunit = display_unit(qcol, pd.concat([f[qcol] for f in fronts]))
    n = len(costs[:3])
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n + 0.4, 5.0), squeeze=False)
    markers = "osD^vP*Xh<>"
    cmap = plt.get_cmap("tab10")
    for k, cost in enumerate(costs[:3]):
        ax = axes[0][k]
        ccol = OBJECTIVES[cost][0]
        cdiv, cunit = display_unit(ccol, pd.concat([f[ccol] for f in fronts]))
        for i, (front, label) in enumerate(zip(fronts, labels)):
            xs = front[ccol].to_numpy(dtype=float) / cdiv
            ys = front[qcol].to_numpy(dtype=float) / qdiv
            order = np.argsort(xs, kind="stable")
            xs, ys = xs[order], ys[order]
            colour = cmap(i % 10)
            ax.scatter(
                xs,
                ys,
                s=30,
                marker=markers[i % len(markers)],
                color=colour,
                edgecolors="black",
                linewidths=0.5,
                label=label,
                zorder=3,
            )
            keep = staircase(xs, ys, maximise)
            ax.step(xs[keep], ys[keep], where="post", color=colour, lw=1.2, alpha=0.8)
        ax.set_xscale(scales[cost])
        ax.set_xlabel(axis_label(ccol, cunit) + (" (log)" if scales[cost] == "log" else ""))
        ax.set_ylabel(axis_label(qcol, qunit) + (" (validation)" if qcol == "accuracy" else ""))
        ax.set_title(f"{LABELS.get(qcol, qcol)} vs {LABELS.get(ccol, ccol)}", fontsize=10)
        ax.grid(True, alpha=0.3)
    handles, names = axes[0][0].get_legend_handles_labels()
    ncol = min(len(names), 3)
    fig.legend(handles, names, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    rows = math.ceil(len(names) / ncol)
    fig.suptitle(f"Pareto fronts of {len(runs)} runs", fontsize=11)
    fig.tight_layout(rect=(0, min(0.4, (0.15 + 0.22 * rows) / 5.0), 1, 0.95))
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _table(runs, fronts, labels, shared) -> list[dict[str, Any]]:
    from hwq.search.indicators import hypervolume, nondominated_mask

    cols = [OBJECTIVES[o][0] for o in shared]
    sign = np.array([-1.0 if OBJECTIVES[o][1] else 1.0 for o in shared])
    allF = np.concatenate([f[cols].to_numpy(dtype=float) * sign for f in fronts])
    allF = allF[np.isfinite(allF).all(axis=1)]
    ideal, nadir = allF.min(axis=0), allF.max(axis=0)
    span = np.where(nadir > ideal, nadir - ideal, 1.0)
    units = {c: display_unit(c, pd.concat([f[c] for f in fronts])) for c in cols}
    rows = []
    for run, front, label in zip(runs, fronts, labels):
        meta = run.meta
        row: dict[str, Any] = {
            "run": label,
            "run_id": meta.get("run_id"),
            "status": meta.get("status"),
            "evaluations": meta.get("evaluations"),
            "front_size": len(front),
        }
        best = best_values(run, front)
        for name, col in zip(shared, cols):
            div, unit = units[col]
            v = best.get(name)
            row[f"best_{table_header(col, unit)}"] = None if v is None else in_unit(v, div)
        F = (front[cols].to_numpy(dtype=float) * sign - ideal) / span
        F = F[np.isfinite(F).all(axis=1)]
        nd = F[nondominated_mask(F)] if len(F) else F
        row["hypervolume"] = round(hypervolume(nd, np.full(len(cols), 1.1)), 4)
        ver = run.verify
        row["best_qat_accuracy_%"] = (
            round(100 * float(ver["qat_accuracy"].max()), 2) if len(ver) else None
        )
        row["run_dir"] = str(run.path)
        rows.append(row)
    return rows

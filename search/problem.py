"""The search problem: a pymoo `Problem` over per-group bit decisions, vectorised over the
population.

One evaluation of a population X [P, n_var]:

1. decode X to per-layer pairs [P, L, 2] (`Encoding.decode`);
2. price all P policies at once on the cost table (`hwq.evaluate`: Numba gather/sum + peak
   activation memory + device feasibility);
3. task quality: `sensitivity` is a gather/sum over a per-layer table (in-process); `accuracy`
   (PTQ of the trained model) is one job per *new* policy id, run by the executor and cached;
4. F: the objectives, all minimised (accuracy enters as -accuracy); G: one column per `--max`
   constraint, ``value / limit - 1 <= 0``, and one for the device's feasibility (0 or 1).

`last` keeps the per-candidate records of the latest evaluation (policy ids, bits, every
objective column, feasibility, wall time), which the driver logs.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pymoo.core.problem import Problem

from hwq.display import bits_summary, format_limit
from hwq.errors import UserError
from hwq.objectives import (
    ADDITIVE_COLUMNS,
    COLUMN_TO_OBJECTIVE,
    COST_COLUMNS,
    OBJECTIVES,
    QUALITY_OBJECTIVES,
)
from hwq.policy import policy_id_from_pairs
from hwq.search.quality_sources import DetailedQuality

if TYPE_CHECKING:
    from hwq.search.quality_sources import QualitySource

log = logging.getLogger("hwq.search")

BAD = 1e30  # F value standing in for a non-finite cost


def parse_objectives(text: str | Sequence[str]) -> list[str]:
    items = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    items = [p for p in items if p]
    if not items:
        raise UserError("--objectives: expected at least one objective")
    out: list[str] = []
    for name in items:
        if name not in OBJECTIVES:
            raise UserError(
                f"--objectives: unknown objective {name!r} (known: {', '.join(OBJECTIVES)})"
            )
        if name not in out:
            out.append(name)
    if len([o for o in out if o in QUALITY_OBJECTIVES]) > 1:
        raise UserError("--objectives: use one task-quality objective, accuracy or sensitivity")
    if len(out) < 2:
        raise UserError(
            f"--objectives: a Pareto search needs at least two objectives, found {', '.join(out)}"
        )
    return out


_PLAIN_SUFFIX = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def _parse_plain(text: str, where: str) -> float:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([kKMGT]?)\s*", text)
    if not m:
        raise UserError(f"{where}: expected a number (optionally with k, M, G, T), found {text!r}")
    return float(m.group(1)) * _PLAIN_SUFFIX[m.group(2)]


def parse_constraint(spec: str) -> tuple[str, float]:
    """`latency=2ms` -> ("latency", 0.002): objective name and limit in the column's unit."""
    from hwq.units import parse_energy_pj, parse_size_bytes, parse_time_s

    if "=" not in spec:
        raise UserError(
            f"--max {spec}: expected NAME=VALUE, e.g. latency=2ms or weight_memory=256KiB"
        )
    name, value = (p.strip() for p in spec.split("=", 1))
    name = COLUMN_TO_OBJECTIVE.get(name, name)
    if name not in OBJECTIVES:
        raise UserError(
            f"--max {spec}: unknown quantity {name!r} (known: "
            f"{', '.join(k for k, (_, up) in OBJECTIVES.items() if not up)})"
        )
    column, maximised = OBJECTIVES[name]
    if maximised:
        raise UserError(f"--max {spec}: {name} is maximised; it cannot take an upper limit")
    where = f"--max {spec}"
    try:  # the unit is in the column's name (_bytes, _s, _pj); other columns are plain numbers
        if column.endswith("_bytes"):
            limit = parse_size_bytes(value)
        elif column.endswith("_s"):
            limit = parse_time_s(value)
        elif column.endswith("_pj"):
            limit = parse_energy_pj(value)
        else:
            limit = _parse_plain(value, where)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    if not limit > 0:
        raise UserError(f"{where}: the limit must be positive")
    return name, float(limit)


def parse_constraints(specs: Sequence[str] | Mapping[str, float]) -> dict[str, float]:
    if isinstance(specs, Mapping):
        return {str(k): float(v) for k, v in specs.items()}
    out: dict[str, float] = {}
    for spec in specs:
        name, limit = parse_constraint(spec)
        out[name] = min(limit, out.get(name, np.inf))
    return out


@dataclass
class Evaluation:
    """Result of evaluating one batch: records (one row per candidate), F and G."""

    records: pd.DataFrame
    F: np.ndarray
    G: np.ndarray
    pairs: np.ndarray
    quality_wall_s: float = 0.0  # wall time of the quality evaluation of the batch


def unpriced(name: str, table: Any) -> bool:
    """Whether the device of cost `table` has no model of cost objective `name` (a latency or
    energy column without one finite value: a measured `lut` profile has no energy)."""
    col = OBJECTIVES[name][0]
    return col in ("latency_s", "energy_pj") and not np.isfinite(table.values[col]).any()


class SearchProblem(Problem):
    """A mixed-precision search problem (DESIGN.md §4) as a pymoo Problem (integer genome)."""

    def __init__(
        self,
        encoding: Any,
        table: Any,
        objectives: Sequence[str],
        constraints: Mapping[str, float] | None = None,
        quality: QualitySource | None = None,
        executor: Any = None,
    ) -> None:
        self.encoding = encoding
        self.table = table
        self.objectives = list(objectives)
        self.constraints = dict(constraints or {})
        self.quality = quality
        self.executor = executor
        if self.encoding.n_var == 0:
            raise UserError("nothing to search: every layer is pinned (see --pin)")
        self.quality_name = next((o for o in self.objectives if o in QUALITY_OBJECTIVES), None)
        for name in [*self.objectives, *self.constraints]:
            if name in QUALITY_OBJECTIVES:
                if self.quality is None or self.quality.name != name:
                    raise UserError(f"objective {name}: no quality source was configured")
                continue
            if unpriced(name, self.table):
                raise UserError(
                    f"{name}: device {self.table.profile.name} (kind {self.table.profile.kind}) "
                    f"has no {name} model"
                )
        if "accuracy" in self.constraints:
            raise UserError("--max accuracy: accuracy is maximised; it cannot take an upper limit")
        self.constraint_names = list(self.constraints)
        Problem.__init__(
            self,
            n_var=self.encoding.n_var,
            n_obj=len(self.objectives),
            n_ieq_constr=len(self.constraints) + 1,
            xl=self.encoding.xl,
            xu=self.encoding.xu,
            vtype=int,
        )
        self.last: Evaluation | None = None

    # pymoo keeps a reference to the problem in algorithms; checkpoints drop it (see __getstate__)
    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("SearchProblem is not pickled; checkpoints store the algorithm without it")

    # -- columns ---------------------------------------------------------------------------------
    @property
    def objective_columns(self) -> list[str]:
        return [OBJECTIVES[o][0] for o in self.objectives]

    @property
    def logged_columns(self) -> list[str]:
        """Objective columns every candidate row carries: the quality column, then all costs."""
        q = [OBJECTIVES[self.quality_name][0]] if self.quality_name else []
        return [*q, *COST_COLUMNS]

    # -- evaluation ------------------------------------------------------------------------------
    def _evaluate(self, X: np.ndarray, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        ev = self.evaluate_X(X)
        out["F"] = ev.F
        out["G"] = ev.G

    def evaluate_X(self, X: np.ndarray) -> Evaluation:
        return self.evaluate_pairs(self.encoding.decode(X))

    def evaluate_pairs(self, pairs: np.ndarray) -> Evaluation:
        from hwq.policy_eval import evaluate

        pairs = np.asarray(pairs, dtype=np.int64)
        n = pairs.shape[0]
        t0 = time.perf_counter()
        costs = evaluate(self.table, pairs)
        ids = [policy_id_from_pairs(p) for p in pairs]
        cost_wall = (time.perf_counter() - t0) / max(n, 1)
        records = pd.DataFrame(
            {
                "policy_id": ids,
                "w_bits": [p[:, 0].astype(np.int8) for p in pairs],
                "a_bits": [p[:, 1].astype(np.int8) for p in pairs],
            }
        )
        wall = np.full(n, cost_wall)
        q_total = 0.0
        if self.quality is not None:
            tq = time.perf_counter()
            values, q_wall = self.quality.evaluate(pairs, ids, self.executor)
            q_total = time.perf_counter() - tq
            records[self.quality.column] = np.asarray(values, dtype=np.float64)
            if isinstance(self.quality, DetailedQuality):
                for col, vals in self.quality.details(ids).items():
                    records[col] = vals
            wall = wall + np.asarray(q_wall, dtype=np.float64)
        for col in COST_COLUMNS:
            records[col] = costs[col].to_numpy(dtype=np.float64)
        records["feasible"] = costs["feasible"].to_numpy(dtype=bool)
        records["infeasible_reason"] = costs["infeasible_reason"].to_numpy()
        records["eval_wall_s"] = wall
        F = self.F_of(records)
        G = self.G_of(records)
        ev = Evaluation(records, F, G, pairs, q_total)
        self.last = ev
        return ev

    def F_of(self, records: pd.DataFrame) -> np.ndarray:
        cols = []
        for name in self.objectives:
            col, maximise = OBJECTIVES[name]
            v = records[col].to_numpy(dtype=np.float64)
            v = np.where(np.isfinite(v), v, -BAD if maximise else BAD)
            cols.append(-v if maximise else v)
        return np.stack(cols, axis=1) if cols else np.zeros((len(records), 0))

    def G_of(self, records: pd.DataFrame) -> np.ndarray:
        cols = []
        for name, limit in self.constraints.items():
            v = records[OBJECTIVES[name][0]].to_numpy(dtype=np.float64)
            v = np.where(np.isfinite(v), v, BAD)
            cols.append(v / limit - 1.0)
        cols.append(np.where(records["feasible"].to_numpy(dtype=bool), 0.0, 1.0))
        return np.stack(cols, axis=1)

    # -- helpers for the exact baselines and fail-fast checks ------------------------------------
    def group_costs(self, column: str) -> tuple[np.ndarray, float]:
        """(cost [G, C] of every free group at every choice, fixed cost of the pinned layers)
        for an additive column (sensitivity or a CostTable column)."""
        enc = self.encoding
        if column == "sensitivity":
            values = self.quality.table_values(self.table) if self.quality is not None else None
            if values is None:
                raise UserError("this needs a sensitivity table (--sensitivity FILE or measured)")
        else:
            values = self.table.values[column]
        lut = self.table.pair_lookup
        out = np.zeros((enc.n_groups, enc.n_choices))
        for g, group in enumerate(enc.groups):
            for c, (w, a) in enumerate(enc.choices):
                out[g, c] = values[group, lut[w, a]].sum()
        fixed = float(sum(values[i, lut[w, a]] for i, (w, a) in enc.pins.items()))
        return out, fixed

    def group_feasible(self) -> np.ndarray:
        """bool [G, C]: the device can run every layer of the group at the choice."""
        enc = self.encoding
        lut = self.table.pair_lookup
        out = np.ones((enc.n_groups, enc.n_choices), dtype=bool)
        for g, group in enumerate(enc.groups):
            for c, (w, a) in enumerate(enc.choices):
                out[g, c] = bool(self.table.feasible[group, lut[w, a]].all())
        return out

    def check_constraints_reachable(self) -> None:
        """Fail fast when even the cheapest policy breaks an additive `--max` limit."""
        feas = self.group_feasible()
        for name, limit in self.constraints.items():
            col = OBJECTIVES[name][0]
            if col not in ADDITIVE_COLUMNS:
                continue
            costs, fixed = self.group_costs(col)
            costs = np.where(feas, costs, np.inf)
            best_c = np.argmin(costs, axis=1)
            low = fixed + float(costs[np.arange(len(best_c)), best_c].sum())
            if low > limit * (1 + 1e-12):
                pairs = self.encoding.decode_choice_index(best_c[None, :])[0]
                pid = policy_id_from_pairs(pairs)
                summary = bits_summary(pairs)
                raise UserError(
                    f"--max {name}={format_limit(col, limit)}: no policy meets it; the closest "
                    f"({pid}, {summary}) has {name} {format_limit(col, low)}"
                )

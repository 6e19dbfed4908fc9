"""Baselines on the same problem, budget and logs as NEMO.

* `make_nsga2` — pymoo's NSGA-II with its integer-variable recipe (integer random sampling,
  SBX and polynomial mutation with eta 3 on floats, rounded; duplicates eliminated, against
  every policy proposed so far as well, and a generation the mating leaves short is topped up
  with random new decisions: `History`).
* `RandomSearch` — `pop_size` uniformly random new decisions per generation (a pymoo
  Algorithm; a draw repeating an earlier policy is drawn again).
* `solve_ilp` — HAWQ-V3's integer program: one choice per group, minimise the summed
  sensitivity subject to budgets on additive costs (`scipy.optimize.milp`, exact).
* `greedy_path` — a knapsack-style greedy (MPQNNCO): start at the least sensitive choice of
  every group and repeatedly take the move with the least sensitivity increase per unit of cost
  saved; every step is a candidate, so the path traces a front; it stops once every budget is
  met (or at the cheapest policy when there is no budget).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.algorithm import Algorithm
from pymoo.core.duplicate import DefaultDuplicateElimination
from pymoo.core.population import Population

from hwq.errors import UserError
from hwq.search.algorithm_base import CheckpointSafe, History, SingleSpecies
from hwq.search.indicators import order_by_rank, rank_and_crowding


class SeenElimination(DefaultDuplicateElimination):
    """pymoo's duplicate elimination that also drops a policy proposed in an earlier
    generation (`History`), so the mating breeds again instead of re-proposing it."""

    def __init__(self, history: History) -> None:
        super().__init__()
        self.history = history

    def _do(self, pop: Any, other: Any, is_duplicate: np.ndarray) -> np.ndarray:
        is_duplicate = super()._do(pop, other, is_duplicate)
        if other is None and self.history.seen:
            X = np.rint(np.asarray(pop.get("X"), dtype=np.float64)).astype(np.int64)
            is_duplicate |= np.array([History.key(x) in self.history.seen for x in X])
        return is_duplicate


class CheckpointableNSGA2(CheckpointSafe, SingleSpecies, NSGA2):
    """NSGA-II proposing exactly `n_offsprings` new policies every generation."""

    name = "nsga2"

    def __init__(self, history: History, **kwargs: Any) -> None:
        super().__init__(eliminate_duplicates=SeenElimination(history), **kwargs)
        self.history = history

    def _exact(self, pop: Population | None, n: int) -> Population:
        """`pop` as it is when it holds n new policies; else its new ones topped up."""
        p = self.problem
        X = np.zeros((0, p.n_var)) if pop is None else np.asarray(pop.get("X"))
        Xi = np.rint(X.astype(np.float64)).astype(np.int64)
        if len(Xi) == n and self.history.is_new(Xi).all():
            self.history.note(Xi)
            return pop
        return Population.new("X", self.history.top_up(Xi, n, p.xl, p.xu, self.random_state))

    def _initialize_infill(self) -> Population:
        return self._exact(super()._initialize_infill(), self.pop_size)

    def _infill(self) -> Population:
        return self._exact(super()._infill(), self.n_offsprings)


def make_nsga2(pop_size: int, seed: int) -> Algorithm:
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling

    return CheckpointableNSGA2(
        History(),
        pop_size=pop_size,
        n_offsprings=pop_size,
        sampling=IntegerRandomSampling(),
        crossover=SBX(prob=1.0, eta=3.0, vtype=float, repair=RoundingRepair()),
        mutation=PM(prob=1.0, eta=3.0, vtype=float, repair=RoundingRepair()),
        seed=seed,
    )


class RandomSearch(CheckpointSafe, SingleSpecies, Algorithm):
    """Uniformly random integer decisions, `pop_size` per generation; keeps the front."""

    name = "random"

    def __init__(self, pop_size: int = 20, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pop_size = int(pop_size)
        self.history = History()

    def _sample(self) -> Population:
        p, rng = self.problem, self.random_state
        X = rng.integers(p.xl, p.xu + 1, size=(self.pop_size, p.n_var)).astype(np.int64)
        return Population.new("X", self.history.top_up(X, self.pop_size, p.xl, p.xu, rng))

    def _initialize_infill(self) -> Population:
        return self._sample()

    def _initialize_advance(self, infills: Population | None = None, **kwargs: Any) -> None:
        self._keep(infills)

    def _infill(self) -> Population:
        return self._sample()

    def _advance(self, infills: Population | None = None, **kwargs: Any) -> None:
        self._keep(Population.merge(self.pop, infills))

    def _keep(self, pool: Population) -> None:
        rank, crowd = rank_and_crowding(pool.get("F"), pool.get("CV").reshape(-1))
        order = order_by_rank(rank, crowd)
        best = order[rank[order] == rank[order[0]]]
        self.pop = pool[best]


class OneShot(CheckpointSafe, SingleSpecies, Algorithm):
    """An algorithm that proposes all its candidates at once (ILP, greedy): `propose(problem)`
    gives per-group choice indices [S, G]; one generation evaluates them, and the population is
    all of them."""

    def __init__(
        self, name: str, propose: Callable[[Any], np.ndarray], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.propose = propose

    def _initialize_infill(self) -> Population:
        C = np.asarray(self.propose(self.problem), dtype=np.int64)
        return Population.new("X", self.problem.encoding.X_from_choice_index(C))

    def _initialize_advance(self, infills: Population | None = None, **kwargs: Any) -> None:
        self.pop = infills

    def _infill(self) -> Population:  # never reached: one generation
        raise RuntimeError(f"{self.name} proposes its candidates once")


# -- exact and greedy baselines on additive objectives -------------------------------------------
def additive_budgets(problem: Any) -> dict[str, float]:
    from hwq.objectives import ADDITIVE_COLUMNS, OBJECTIVES

    out: dict[str, float] = {}
    for name, limit in problem.constraints.items():
        col = OBJECTIVES[name][0]
        if col not in ADDITIVE_COLUMNS or col == "sensitivity":
            raise UserError(
                f"--max {name}: the ILP and greedy searches take budgets on additive costs only "
                "(weight_memory, bops, latency, energy)"
            )
        out[col] = limit
    return out


def require_sensitivity(problem: Any, algorithm: str) -> None:
    if problem.quality is None or problem.quality.name != "sensitivity":
        raise UserError(
            f"--algorithm {algorithm}: needs the sensitivity objective "
            "(--objectives sensitivity,... with --sensitivity FILE, or measured on a trained model)"
        )


def _row_scale(values: np.ndarray, limit: float | None = None) -> float:
    """A positive factor that brings a row of the program to order one: HiGHS's feasibility
    and optimality tolerances are absolute (~1e-6), while latencies are ~1e-5 s and BOPs ~1e9."""
    finite = np.abs(values[np.isfinite(values)])
    ref = abs(limit) if limit is not None and np.isfinite(limit) and limit != 0 else 0.0
    ref = ref or (float(finite.max()) if finite.size else 0.0)
    return 1.0 / ref if ref > 0 else 1.0


def solve_ilp_arrays(
    sensitivity: np.ndarray,
    budgets: list[tuple[np.ndarray, float]],
    feasible: np.ndarray | None = None,
) -> np.ndarray | None:
    """The exact optimum of: pick one choice c per group g, minimise sum sensitivity[g, c]
    subject to sum cost[g, c] <= limit for every (cost [G, C], limit) of `budgets`
    (`scipy.optimize.milp`). Every budget row is divided by its limit and the objective by its
    largest value before solving, so the solver's absolute tolerances are relative ones; the
    returned choice meets every budget in float64 sums (a choice the solver's tolerance let
    over a limit is solved again with that limit lowered by the excess). Choice indices [G], or
    None when nothing fits."""
    sens = np.asarray(sensitivity, dtype=np.float64)
    feas = np.ones(sens.shape, bool) if feasible is None else np.asarray(feasible, bool)
    feas = feas & np.isfinite(sens)
    costs = [np.asarray(cost, dtype=np.float64) for cost, _ in budgets]
    for cost in costs:
        feas = feas & np.isfinite(cost)
    limits = [float(limit) for _, limit in budgets]
    effective = list(limits)
    G = sens.shape[0]
    for _ in range(8):
        choice = _milp(sens, list(zip(costs, effective)), feas)
        if choice is None:
            return None
        totals = [float(cost[np.arange(G), choice].sum()) for cost in costs]
        over = [t - lim for t, lim in zip(totals, limits)]
        if all(o <= 0 for o in over):
            return choice
        effective = [
            e - (o + 1e-9 * max(abs(lim), 1e-300)) if o > 0 else e
            for e, o, lim in zip(effective, over, limits)
        ]
    return None


def _milp(
    sens: np.ndarray, budgets: list[tuple[np.ndarray, float]], feas: np.ndarray
) -> np.ndarray | None:
    from scipy.optimize import Bounds, LinearConstraint, milp

    G, C = sens.shape
    A_eq = np.zeros((G, G * C))
    for g in range(G):
        A_eq[g, g * C : (g + 1) * C] = 1.0
    rows, lo, hi = [A_eq], [np.ones(G)], [np.ones(G)]
    for cost, limit in budgets:
        row = np.where(feas, cost, 0.0)
        scale = _row_scale(row, limit)
        rows.append(row.reshape(1, -1) * scale)
        lo.append(np.array([-np.inf]))
        hi.append(np.array([limit * scale]))
    objective = np.where(feas, sens, 0.0)
    res = milp(
        objective.reshape(-1) * _row_scale(objective),
        constraints=LinearConstraint(np.concatenate(rows), np.concatenate(lo), np.concatenate(hi)),
        integrality=np.ones(G * C),
        bounds=Bounds(np.zeros(G * C), feas.reshape(-1).astype(np.float64)),
        options={"disp": False},
    )
    if res.status != 0 or res.x is None:
        return None
    return np.argmax(res.x.reshape(G, C), axis=1).astype(np.int64)


def solve_ilp(problem: Any, budgets: dict[str, float] | None = None) -> np.ndarray:
    """Choice indices [G] of the least-sensitive policy within `budgets` (column -> limit);
    default: the problem's `--max` constraints. The choice is priced by `hwq.evaluate` (the
    numbers the run logs) and solved again with a lower limit if it misses a budget there.
    Raises UserError when no policy fits."""
    from hwq.policy_eval import evaluate

    require_sensitivity(problem, "ilp")
    budgets = dict(budgets) if budgets is not None else additive_budgets(problem)
    if not budgets:
        raise UserError(
            "--algorithm ilp: give one budget, e.g. --max bops=100G or --max weight_memory=2MiB"
        )
    sens, _ = problem.group_costs("sensitivity")
    costs = {col: problem.group_costs(col) for col in budgets}
    margin = dict.fromkeys(budgets, 0.0)
    feasible = problem.group_feasible()
    enc = problem.encoding
    for _ in range(8):
        rows = [(cost, budgets[col] - fixed - margin[col]) for col, (cost, fixed) in costs.items()]
        choice = solve_ilp_arrays(sens, rows, feasible)
        if choice is None:
            break
        pairs = enc.decode(enc.X_from_choice_index(choice[None, :]))
        totals = evaluate(problem.table, pairs)
        over = {col: float(totals[col].iloc[0]) - budgets[col] for col in budgets}
        if all(o <= 0 for o in over.values()):
            return choice
        for col, o in over.items():
            if o > 0:
                margin[col] += o + 1e-9 * abs(budgets[col])
    from hwq.display import format_quantity, mapping_label

    raise UserError(
        "--algorithm ilp: no policy meets "
        + ", ".join(f"{mapping_label(k)} <= {format_quantity(k, v)}" for k, v in budgets.items())
    )


def ilp_choice(problem: Any) -> np.ndarray:
    """The ILP's one candidate as choice indices [1, G] (what `OneShot` proposes)."""
    return solve_ilp(problem)[None, :]


def greedy_path(problem: Any, cost_column: str | None = None) -> np.ndarray:
    """Choice indices [S, G] of the greedy path (first row: the least sensitive policy)."""
    from hwq.objectives import OBJECTIVES

    require_sensitivity(problem, "greedy")
    budgets = additive_budgets(problem)
    if cost_column is None:
        if budgets:
            cost_column = next(iter(budgets))
        else:
            costs = [OBJECTIVES[o][0] for o in problem.objectives if o != "sensitivity"]
            if not costs:
                raise UserError("--algorithm greedy: needs a cost objective or a --max budget")
            cost_column = costs[0]
    sens, sens_fixed = problem.group_costs("sensitivity")
    cost, cost_fixed = problem.group_costs(cost_column)
    feas = problem.group_feasible() & np.isfinite(sens) & np.isfinite(cost)
    G = problem.encoding.n_groups
    big = np.inf
    s_m = np.where(feas, sens, big)
    # least sensitive choice, ties to the cheaper one
    cur = np.array([np.lexsort((np.where(feas[g], cost[g], big), s_m[g]))[0] for g in range(G)])
    budget_cols = {c: problem.group_costs(c) for c in budgets}

    def meets(choice: np.ndarray) -> bool:
        return all(
            fixed + vals[np.arange(G), choice].sum() <= budgets[c] * (1 + 1e-12)
            for c, (vals, fixed) in budget_cols.items()
        )

    path = [cur.copy()]
    while not (budgets and meets(cur)):
        best, best_ratio = None, np.inf
        for g in range(G):
            c0 = cur[g]
            saved = cost[g, c0] - cost[g]
            dsens = sens[g] - sens[g, c0]
            ok = feas[g] & (saved > 0)
            if not ok.any():
                continue
            ratio = np.where(ok, dsens / np.where(saved > 0, saved, 1.0), np.inf)
            c = int(np.argmin(ratio))
            if ratio[c] < best_ratio:
                best, best_ratio = (g, c), ratio[c]
        if best is None:
            break
        cur[best[0]] = best[1]
        path.append(cur.copy())
    return np.stack(path)

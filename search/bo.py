"""Bayesian optimisation over the policy encoding (BoTorch): `--algorithm bo`.

One Gaussian process (BoTorch's `SingleTaskGP`, standardised outcome, fitted by marginal
likelihood) models the task quality (accuracy or sensitivity) over the free genes of the
encoding (`hwq.search.encoding`: one ordinal gene per tie group, or two in the product layout;
pinned layers take no gene), scaled to [0, 1]; it is fitted on every evaluated candidate (the
front and the most recent ones past `max_train` points). The cost objectives are known
functions of the policy: they enter the acquisition exactly, as a BoTorch
`GenericDeterministicModel` beside the GP (`ModelList`), priced by `hwq.evaluate` on the run's
cost table — the numbers the run logs.

Generation 0 is a scrambled Sobol design of `population` policies; every later generation
proposes `population` new policies (the budget counts them all) chosen from a discrete
candidate set, never by rounding a continuous optimum:

* `pool_random` power-biased random decisions (each candidate draws u ** exp(N(0, 1)) per gene,
  so the set reaches from the cheapest to the dearest policies), plus
* up to `pool_neighbours` one- and two-gene changes of the current front;
* filtered to new policies the device can run that meet every `--max` limit on a cost.

Two modes (`--bo-mode`):

* ``ehvi`` (default) — BoTorch's `qExpectedHypervolumeImprovement` on all objectives (normalised
  to the box of the observed outcomes and the candidates' exact costs, reference point 1.1 x
  its nadir, as `benchmarks/search_quality.py` measures hypervolume), the
  run's `--max` limits as outcome constraints; the batch is chosen greedily one policy at a
  time (`select_ehvi`: the pool's qEHVI from its precomputed samples), each pick entering the
  front at its posterior mean
  (Kriging believer) before the next; a pick moves only the front, so each candidate's
  posterior (one joint posterior of the pool: its mean and covariance diagonal) and its MC
  samples are computed once per generation (`marginal_samples`), and the greedy is lazy.
  Evaluations are deterministic, so the observed front is
  exact: the noisy variant (qLogNEHVI) measured 19 s per batch of 20 on 2 objectives and
  564 s on 4 at 100-200 points, against about a second here.
* ``bomp`` — BOMP-NAS (van Son et al. 2023): UCB (`qUpperConfidenceBound`, beta `ucb_beta`)
  on the scalarised score (`bomp_score`), the batch one pick at a time with the GP
  conditioned on each pick at its posterior mean (GP-BUCB)

      score = accuracy / ref_accuracy + sum over cost objectives c of ref_c / log10(c)

  with ref_accuracy the FP32 accuracy (1.0 where the quality source cannot measure it) and
  ref_c = log10 of the uniform W8A8 policy's cost (pins kept; the widest allowed pair where
  W8A8 is not one), costs in their base unit (`BASE_UNITS`: bits for memory, cycles for
  latency, pJ, BOPs). A minimised quality (sensitivity) enters as ref / value with ref the
  uniform W8A8 policy's value. `--max` limits: a penalty on infeasible samples
  (`ConstrainedMCObjective`).

Every proposal is a deterministic function of the algorithm's state: torch runs with one thread,
seeded per generation from the algorithm's generator inside `torch.random.fork_rng` (the
caller's torch RNG state is restored), and the GP is refitted from the pickled evaluations, so
a run resumed from its checkpoint proposes what the uninterrupted one did. Nothing in a
proposal reads the number of generations, so the first B evaluations of a run are those of
any longer run with the same population and seed (`benchmarks/search_budgets.py --anytime`).
The time spent in the surrogate per generation is reported (`generation_timing`, logged as
meta.json `timing.surrogate_wall_s`).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from pymoo.core.algorithm import Algorithm
from pymoo.core.population import Population

from hwq.objectives import OBJECTIVES, QUALITY_OBJECTIVES
from hwq.search.algorithm_base import CheckpointSafe, History, SingleSpecies

log = logging.getLogger("hwq.search")

# cost objective -> (column priced by hwq.evaluate, factor to its base unit) for BOMP's score
BASE_UNITS: dict[str, tuple[str, float]] = {
    "weight_memory": ("weight_bytes", 8.0),
    "activation_memory": ("peak_activation_bytes", 8.0),
    "bops": ("bops", 1.0),
    "latency": ("cycles", 1.0),
    "energy": ("energy_pj", 1.0),
}


@dataclass
class BOParams:
    """The constants of `--algorithm bo` (recorded in config.yaml)."""

    mode: str = "ehvi"  # ehvi or bomp
    pool_random: int = 1000  # power-biased random candidates per generation
    pool_neighbours: int = 1000  # at most this many one/two-gene changes of the front
    mc_samples: int = 64  # quasi-MC samples of the acquisition
    max_train: int = 1000  # GP training points: the front, then the most recent
    ucb_beta: float = 2.0  # bomp's UCB exploration (the paper does not publish its value)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, config: Any) -> BOParams:
        return cls(mode=str(config.bo_mode))


# -- the problem as the surrogate sees it ----------------------------------------------------------
class CostOracle:
    """Exact costs of decisions X [P, n_var] (hwq.evaluate on the run's cost table), memoised
    by decision for the generation it serves."""

    def __init__(self, problem: Any, columns: list[str]) -> None:
        self.problem = problem
        self.columns = list(dict.fromkeys(columns))
        self.memo: dict[bytes, tuple[np.ndarray, bool]] = {}

    def __call__(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(float64 [P, len(columns)], device-feasible bool [P])."""
        from hwq.policy_eval import evaluate

        X = np.asarray(X, dtype=np.int64).reshape(-1, self.problem.n_var)
        keys = [x.tobytes() for x in X]
        todo = list(dict.fromkeys(k for k in keys if k not in self.memo))
        if todo:
            rows = np.frombuffer(b"".join(todo), dtype=np.int64).reshape(len(todo), -1)
            costs = evaluate(self.problem.table, self.problem.encoding.decode(rows))
            values = np.stack([costs[c].to_numpy(dtype=np.float64) for c in self.columns],
                              axis=1) if self.columns else np.zeros((len(todo), 0))
            feasible = costs["feasible"].to_numpy(dtype=bool)
            for k, v, f in zip(todo, values, feasible):
                self.memo[k] = (v, bool(f))
        if not keys:
            return np.zeros((0, len(self.columns))), np.zeros(0, dtype=bool)
        return (np.stack([self.memo[k][0] for k in keys]),
                np.array([self.memo[k][1] for k in keys], dtype=bool))


@dataclass
class Layout:
    """The surrogate's outputs: the quality (if any) first, then cost columns; each objective
    and `--max` limit as (output index, sign that makes it maximised / limit)."""

    quality: str | None  # accuracy, sensitivity or None
    cost_columns: list[str]
    objectives: list[tuple[int, float]]  # (output, +1 maximised / -1 minimised)
    limits: list[tuple[int, float]]  # (output, limit): output <= limit

    @property
    def n_outputs(self) -> int:
        return (self.quality is not None) + len(self.cost_columns)


def layout_of(problem: Any, bomp: bool = False) -> Layout:
    """The outputs of `problem`'s surrogate; with `bomp`, each cost objective is read in its
    base-unit column (`BASE_UNITS`: latency as cycles) for the score."""
    quality = next((o for o in problem.objectives if o in QUALITY_OBJECTIVES), None)
    if quality is None:
        quality = next((o for o in problem.constraints if o in QUALITY_OBJECTIVES), None)
    q0 = int(quality is not None)
    cols: list[str] = []

    def out(name: str, scored: bool = False) -> int:
        if name in QUALITY_OBJECTIVES:
            return 0
        col = BASE_UNITS[name][0] if scored else OBJECTIVES[name][0]
        if col not in cols:
            cols.append(col)
        return q0 + cols.index(col)

    objectives = [(out(o, bomp), 1.0 if OBJECTIVES[o][1] else -1.0) for o in problem.objectives]
    limits = [(out(o), float(v)) for o, v in problem.constraints.items()]
    return Layout(quality, cols, objectives, limits)


def normalised_inputs(X: np.ndarray, xl: np.ndarray, xu: np.ndarray) -> np.ndarray:
    """Decisions scaled to [0, 1] per gene (a gene with one level maps to 0)."""
    span = np.maximum(np.asarray(xu) - np.asarray(xl), 1)
    return (np.asarray(X, dtype=np.float64) - xl) / span


# -- candidate sets ----------------------------------------------------------------------------
def biased_random(rng: np.random.Generator, n: int, xl: np.ndarray, xu: np.ndarray) -> np.ndarray:
    """n decisions, gene level floor(u ** alpha * levels) with one alpha = exp(N(0, 1)) per
    candidate: some lean to the low levels, some to the high ones."""
    levels = (xu - xl + 1).astype(np.int64)
    alpha = np.exp(rng.normal(0.0, 1.0, size=(n, 1)))
    U = rng.random((n, len(xl))) ** alpha
    return xl + np.minimum(np.floor(U * levels).astype(np.int64), levels - 1)


def single_changes(X: np.ndarray, xl: np.ndarray, xu: np.ndarray) -> np.ndarray:
    """Every decision that differs from a row of X [F, d] in exactly one gene."""
    X = np.asarray(X, dtype=np.int64)
    levels = (xu - xl + 1).astype(np.int64)
    top = int(levels.max()) if len(levels) else 1
    genes = np.repeat(np.arange(len(xl)), max(top - 1, 0))
    steps = np.tile(np.arange(1, top), len(xl))
    ok = steps < levels[genes]
    genes, steps = genes[ok], steps[ok]
    if not len(X) or not len(genes):
        return np.zeros((0, len(xl)), dtype=np.int64)
    out = np.repeat(X[:, None, :], len(genes), axis=1)
    cols = np.arange(len(genes))
    out[:, cols, genes] = (X[:, genes] - xl[genes] + steps) % levels[genes] + xl[genes]
    return out.reshape(-1, len(xl))


def double_changes(
    rng: np.random.Generator, X: np.ndarray, n: int, xl: np.ndarray, xu: np.ndarray
) -> np.ndarray:
    """n decisions, each a random row of X with two random genes set to other levels."""
    X = np.asarray(X, dtype=np.int64)
    if not len(X) or n <= 0:
        return np.zeros((0, len(xl)), dtype=np.int64)
    levels = (xu - xl + 1).astype(np.int64)
    out = X[rng.integers(0, len(X), size=n)].copy()
    for _ in range(2):
        j = rng.integers(0, len(xl), size=n)
        step = 1 + np.floor(rng.random(n) * np.maximum(levels[j] - 1, 1)).astype(np.int64)
        moved = levels[j] > 1
        rows = np.arange(n)[moved]
        out[rows, j[moved]] = (
            (out[rows, j[moved]] - xl[j[moved]] + step[moved]) % levels[j[moved]] + xl[j[moved]]
        )
    return out


def candidate_pool(
    rng: np.random.Generator,
    front_X: np.ndarray,
    xl: np.ndarray,
    xu: np.ndarray,
    n_random: int,
    n_neighbours: int,
) -> np.ndarray:
    """The discrete set the acquisition is maximised over (before filtering): power-biased
    random decisions, one-gene changes of the front (a random subset past half of
    `n_neighbours`) and two-gene changes."""
    singles = single_changes(front_X, xl, xu)
    half = n_neighbours // 2
    if len(singles) > half:
        singles = singles[np.sort(rng.choice(len(singles), size=half, replace=False))]
    doubles = double_changes(rng, front_X, n_neighbours - len(singles), xl, xu)
    return np.concatenate([biased_random(rng, n_random, xl, xu), singles, doubles])


# -- BoTorch parts -----------------------------------------------------------------------------
FIT_MAXITER = 60  # L-BFGS iterations of one GP fit (warm-started from the previous one)


def fit_quality_gp(Xn: Any, y: Any, warm: dict[str, np.ndarray] | None = None) -> Any:
    """A SingleTaskGP (standardised outcome) fitted by exact marginal likelihood, starting
    from `warm` hyperparameters (the previous generation's fit) when given."""
    import torch
    from botorch.exceptions.errors import ModelFittingError
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.outcome import Standardize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    gp = SingleTaskGP(Xn, y, outcome_transform=Standardize(m=1))
    if warm:
        gp.load_state_dict({k: torch.as_tensor(v) for k, v in warm.items()}, strict=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp),
                             optimizer_kwargs={"options": {"maxiter": FIT_MAXITER}})
        except ModelFittingError:
            log.warning("bo: the GP fit did not converge; its prior hyperparameters are used")
    gp.eval()
    return gp


def hyperparameters(gp: Any) -> dict[str, np.ndarray]:
    """The fitted GP's hyperparameters (no training data, no outcome scaling): a warm start
    the checkpoint can pickle."""
    return {k: v.detach().numpy().copy() for k, v in gp.state_dict().items()
            if not k.startswith("outcome_transform") and "train" not in k}


def surrogate(gp: Any, costs: Any, n_costs: int, mc_samples: int, seed: int) -> tuple[Any, Any]:
    """(model, sampler): the GP beside the exact costs as one BoTorch model (either may be
    absent), and a quasi-MC sampler matching it."""
    import torch
    from botorch.models.deterministic import GenericDeterministicModel
    from botorch.models.model import ModelList
    from botorch.sampling import SobolQMCNormalSampler
    from botorch.sampling.index_sampler import IndexSampler
    from botorch.sampling.list_sampler import ListSampler

    shape = torch.Size([mc_samples])
    parts, samplers = [], []
    if gp is not None:
        parts.append(gp)
        samplers.append(SobolQMCNormalSampler(shape, seed=seed))
    if n_costs:
        parts.append(GenericDeterministicModel(costs, num_outputs=n_costs))
        samplers.append(IndexSampler(shape, seed=seed))
    if len(parts) == 1:
        return parts[0], samplers[0]
    return ModelList(*parts), ListSampler(*samplers)


def bomp_score(Z: Any, layout: Layout, refs: list[float], units: list[float]) -> Any:
    """BOMP-NAS's score of outputs Z [..., n_outputs]: per objective, a maximised quality
    value / ref, a minimised quality ref / value, a cost ref / log10(cost in its base unit)
    (`refs`, `units` per objective, in `layout.objectives` order)."""
    import torch

    total = torch.zeros(Z.shape[:-1], dtype=Z.dtype)
    for (k, sign), ref, unit in zip(layout.objectives, refs, units):
        v = Z[..., k]
        if layout.quality is not None and k == 0:
            total = total + (v / ref if sign > 0 else ref / v.clamp_min(1e-12))
        else:
            total = total + ref / torch.log10((v * unit).clamp_min(1.0 + 1e-9))
    return total


def bomp_score_np(values: np.ndarray, layout: Layout, refs: list[float],
                  units: list[float]) -> np.ndarray:
    """`bomp_score` of a float64 array [..., n_outputs] (for logs and tests)."""
    import torch

    return bomp_score(torch.as_tensor(values, dtype=torch.float64), layout, refs,
                      units).numpy()


def _limits(layout: Layout) -> list[Any]:
    """Outcome constraints: output / limit - 1 <= 0."""
    return [lambda Z, k=k, lim=lim: Z[..., k] / lim - 1.0 for k, lim in layout.limits]


LAZY_BATCH = 64  # candidates whose improvement is refreshed at once (lazy greedy)


def marginal_samples(believed: Any, std: Any, has_quality: bool, mc_samples: int,
                     seed: int) -> Any:
    """[mc, N, 1, m] quasi-MC samples of each of N candidates' own posterior (q = 1): the
    quality (output 0, if any) ``mean + std * z`` with z the `mc_samples` scrambled-Sobol
    normal draws of `seed` (what BoTorch's `SobolQMCNormalSampler` draws for one output), the
    exact costs as they are. `believed` [N, m] the outputs at the posterior mean, `std` [N]."""
    from botorch.utils.sampling import draw_sobol_normal_samples

    S = believed.unsqueeze(0).expand(mc_samples, -1, -1).clone()
    if has_quality:
        z = draw_sobol_normal_samples(d=1, n=mc_samples, seed=seed, dtype=believed.dtype)
        S[..., 0] = believed[None, :, 0] + std[None, :] * z.reshape(mc_samples, 1)
    return S.unsqueeze(-2)


def select_ehvi(
    model: Any,
    layout: Layout,
    Y_obs: Any,
    feasible_obs: Any,
    samples: Any,
    believed: Any,
    std: Any,
    Y_pool: Any,
    q: int,
) -> list[int]:
    """q indices into the pool chosen greedily by qEHVI (q = 1 per pick; each pick enters the
    front at its posterior mean, the Kriging believer, before the next). The greedy is lazy
    (exact: a candidate's improvement only falls as the front grows).

    A candidate's posterior does not change within the batch (a pick moves only the front),
    so the pool's MC samples [mc, N, 1, m] (`marginal_samples`), its outputs at the posterior
    mean `believed` [N, m] and the quality's std [N] are computed once by the caller; a
    refresh is the acquisition's improvement of those fixed samples over the current
    partitioning. (`model` only constructs the acquisition.)"""
    import torch
    from botorch.acquisition.multi_objective.monte_carlo import qExpectedHypervolumeImprovement
    from botorch.acquisition.multi_objective.objective import GenericMCMultiOutputObjective
    from botorch.utils.multi_objective.box_decompositions.non_dominated import (
        FastNondominatedPartitioning,
    )
    from botorch.utils.multi_objective.pareto import is_non_dominated

    idx = torch.tensor([k for k, _ in layout.objectives])
    sign = torch.tensor([s for _, s in layout.objectives], dtype=torch.float64)
    # the box: observed outcomes, and for the costs the candidates' exact values too, so a
    # candidate beyond the front's extremes (e.g. the widest policy) still improves it
    M = torch.cat([Y_obs, Y_pool])
    M = M[:, idx] * sign
    lo = torch.stack([c[torch.isfinite(c)].min() for c in M.T])
    hi = torch.stack([c[torch.isfinite(c)].max() for c in M.T])
    span = (hi - lo).clamp_min(1e-12)

    def norm(Z: Any, X: Any = None) -> Any:
        return (Z[..., idx] * sign - lo) / span

    objective = GenericMCMultiOutputObjective(norm)
    constraints = _limits(layout) or None
    Yn = norm(Y_obs)[feasible_obs]
    front = Yn[is_non_dominated(Yn)] if len(Yn) else torch.zeros((0, len(idx)))
    ref = torch.full((len(idx),), -0.1, dtype=torch.float64)  # 1.1 x the box's nadir
    partitioning = FastNondominatedPartitioning(ref_point=ref, Y=front)

    def values_of(rows: Any) -> Any:
        """qEHVI (q = 1) of pool[rows] against the current partitioning."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # legacy EHVI numerics: no gradients used here
            acq = qExpectedHypervolumeImprovement(
                model=model, ref_point=ref.tolist(), partitioning=partitioning,
                objective=objective, constraints=constraints,
            )
            with torch.no_grad():
                return torch.cat([acq._compute_qehvi(samples=samples[:, rows[i : i + 1024]])
                                  for i in range(0, len(rows), 1024)])

    # lazy greedy: a pick only adds to the front, so every other candidate's improvement can
    # only fall; last step's values bound this step's, and only the best bounds are refreshed
    n = samples.shape[1]
    bound = values_of(torch.arange(n))
    left = torch.ones(n, dtype=torch.bool)
    picks: list[int] = []
    for step in range(min(q, n)):
        while True:
            order = torch.argsort(torch.where(left, bound, -torch.inf), descending=True)
            order = order[: int(left.sum())]
            top = order[:LAZY_BATCH]
            if step:
                bound[top] = values_of(top)
            best = top[int(torch.argmax(bound[top]))]
            if len(order) <= LAZY_BATCH or bound[best] >= bound[order[LAZY_BATCH]]:
                break
        j = int(best)
        if not float(bound[j]) > 0:  # nothing improves in any sample: explore
            rest = torch.nonzero(left).reshape(-1)
            j = int(rest[int(torch.argmax(std[rest]))])
        picks.append(j)
        left[j] = False
        pick = believed[j : j + 1]
        if all(float(pick[0, k]) <= lim for k, lim in layout.limits):
            partitioning.update(Y=norm(pick))
    return picks


def select_bomp(
    gp: Any, build: Any, layout: Layout, refs: list[float], units: list[float],
    pool: Any, q: int, beta: float,
) -> list[int]:
    """q indices into `pool` by UCB on the BOMP-NAS score, one pick at a time
    (`optimize_acqf_discrete`, q = 1), the GP conditioned on each pick at its posterior mean
    before the next (GP-BUCB, Desautels et al. 2014: the batch spreads as the variance near
    earlier picks falls). `build(gp)` -> (model, sampler) beside the exact costs."""
    import torch
    from botorch.acquisition.monte_carlo import qUpperConfidenceBound
    from botorch.acquisition.objective import ConstrainedMCObjective, GenericMCObjective
    from botorch.optim import optimize_acqf_discrete

    def score(Z: Any, X: Any = None) -> Any:
        return bomp_score(Z, layout, refs, units)

    objective: Any = GenericMCObjective(score)
    if layout.limits:
        objective = ConstrainedMCObjective(objective=score, constraints=_limits(layout),
                                           infeasible_cost=0.0)
    left = torch.ones(len(pool), dtype=torch.bool)
    picks: list[int] = []
    for _ in range(min(q, len(pool))):
        model, sampler = build(gp)
        acq = qUpperConfidenceBound(model, beta=beta, sampler=sampler, objective=objective)
        rest = torch.nonzero(left).reshape(-1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            best, _ = optimize_acqf_discrete(acq, q=1, choices=pool[rest])
        j = int(rest[int(torch.nonzero((pool[rest] == best).all(dim=-1))[0, 0])])
        picks.append(j)
        left[j] = False
        if gp is not None:
            x = pool[j : j + 1]
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                gp = gp.condition_on_observations(x, gp.posterior(x).mean)
    return picks


# -- the algorithm -----------------------------------------------------------------------------
class BayesOpt(CheckpointSafe, SingleSpecies, Algorithm):
    """Batch Bayesian optimisation over the encoding (see the module doc). `self.pop` holds
    every evaluated candidate."""

    name = "bo"

    def __init__(self, pop_size: int = 20, params: BOParams | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.pop_size = int(pop_size)
        self.params = params or BOParams()
        self.history = History()
        self.refs: list[float] | None = None  # bomp: the score's references (set once)
        self.gp_state: dict[str, np.ndarray] | None = None  # last fit: the next one's start
        self.surrogate_wall_s = 0.0

    # -- reporting -------------------------------------------------------------------------------
    def generation_timing(self) -> dict[str, float]:
        """Seconds this generation spent in the surrogate (GP fit, candidates, acquisition)."""
        return {"surrogate_wall_s": self.surrogate_wall_s}

    # -- pymoo hooks -----------------------------------------------------------------------------
    def _initialize_infill(self) -> Population:
        from scipy.stats import qmc

        t0 = time.perf_counter()
        p, rng = self.problem, self.random_state
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a Sobol size other than a power of 2
            U = qmc.Sobol(d=p.n_var, scramble=True, seed=rng).random(self.pop_size)
        levels = p.xu - p.xl + 1
        X = p.xl + np.minimum(np.floor(U * levels).astype(np.int64), levels - 1)
        X = self.history.top_up(X, self.pop_size, p.xl, p.xu, rng)
        self.surrogate_wall_s = time.perf_counter() - t0
        return Population.new("X", X)

    def _initialize_advance(self, infills: Population | None = None, **kwargs: Any) -> None:
        self.pop = infills

    def _infill(self) -> Population:
        t0 = time.perf_counter()
        p, rng = self.problem, self.random_state
        seed = int(rng.integers(0, 2**31 - 1))
        X = self._propose(seed)
        X = self.history.top_up(X, self.pop_size, p.xl, p.xu, rng)
        self.surrogate_wall_s = time.perf_counter() - t0
        return Population.new("X", X)

    def _advance(self, infills: Population | None = None, **kwargs: Any) -> None:
        self.pop = Population.merge(self.pop, infills)

    # -- one batch of proposals --------------------------------------------------------------------
    def _propose(self, seed: int) -> np.ndarray:
        import torch

        from hwq.torch_threads import one_thread

        with one_thread(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self._propose_torch(seed)

    def _propose_torch(self, seed: int) -> np.ndarray:
        import torch

        p, rng, prm = self.problem, self.random_state, self.params
        layout = layout_of(p, bomp=prm.mode == "bomp")
        oracle = CostOracle(p, layout.cost_columns)
        X_obs = np.rint(np.asarray(self.pop.get("X"), dtype=np.float64)).astype(np.int64)
        F = np.asarray(self.pop.get("F"), dtype=np.float64)
        CV = np.asarray(self.pop.get("CV"), dtype=np.float64).reshape(-1)
        costs_obs, _ = oracle(X_obs)
        cols = []
        if layout.quality is not None:
            cols.append(self._quality_values(F)[:, None])
        Y_obs = np.concatenate([*cols, costs_obs], axis=1)
        feasible_obs = CV <= 0
        front = _front_rows(F, CV)

        # the candidate set: new, runnable, within every limit on a cost
        pool = candidate_pool(rng, X_obs[front], p.xl, p.xu, prm.pool_random,
                              prm.pool_neighbours)
        pool = pool[self.history.is_new(pool)]
        pool_costs, runnable = oracle(pool)
        ok = runnable.copy()
        q0 = int(layout.quality is not None)
        for k, lim in layout.limits:
            if k >= q0:
                ok &= pool_costs[:, k - q0] <= lim
        pool = pool[ok]
        if not len(pool):
            return np.zeros((0, p.n_var), dtype=np.int64)

        gp = None
        if layout.quality is not None:
            train = _training_rows(front, len(X_obs), prm.max_train)
            y = Y_obs[train, 0]
            finite = np.isfinite(y)
            if finite.sum() < 2:
                return pool[rng.permutation(len(pool))[: self.pop_size]]
            train = train[finite]
            Xn = torch.tensor(normalised_inputs(X_obs[train], p.xl, p.xu))
            gp = fit_quality_gp(Xn, torch.tensor(Y_obs[train, :1]), self.gp_state)
            self.gp_state = hyperparameters(gp)
        xl, xu = p.xl, p.xu
        span = np.maximum(xu - xl, 1)

        def exact_costs(Xn: Any) -> Any:
            Xi = np.rint(Xn.detach().numpy().reshape(-1, p.n_var) * span + xl).astype(np.int64)
            values, _ = oracle(Xi)
            return torch.as_tensor(values).reshape(*Xn.shape[:-1], len(layout.cost_columns))

        model, sampler = surrogate(gp, exact_costs, len(layout.cost_columns), prm.mc_samples,
                                   seed)

        def mean_of(Xn: Any) -> tuple[Any, Any]:
            """(outputs at the GP's posterior mean [n, m], the quality's posterior std [n]):
            each point's marginal, read off one joint posterior per 2,000 points (its mean
            and the diagonal of its covariance; a batch of n one-point posteriors gives the
            same numbers 10-20x slower at 1,000 training points)."""
            parts, std = [], torch.zeros(Xn.shape[0], dtype=torch.float64)
            with torch.no_grad():
                if gp is not None:
                    means, sds = [], []
                    for i in range(0, len(Xn), 2000):
                        post = gp.posterior(Xn[i : i + 2000])
                        means.append(post.mean.reshape(-1, 1))
                        sds.append(post.variance.reshape(-1).clamp_min(0).sqrt())
                    parts.append(torch.cat(means) if means else torch.zeros((0, 1)))
                    std = torch.cat(sds) if sds else std
            if layout.cost_columns:
                parts.append(exact_costs(Xn))
            return torch.cat(parts, dim=-1), std

        pool_t = torch.tensor(normalised_inputs(pool, xl, xu))
        if prm.mode == "bomp":
            if self.refs is None:
                self.refs = bomp_references(p)
            units = [1.0 if o in QUALITY_OBJECTIVES else BASE_UNITS[o][1] for o in p.objectives]
            refs = list(self.refs)

            def build(g: Any) -> tuple[Any, Any]:
                return surrogate(g, exact_costs, len(layout.cost_columns), prm.mc_samples, seed)

            picks = select_bomp(gp, build, layout, refs, units, pool_t, self.pop_size,
                                prm.ucb_beta)
        else:
            Y_pool = np.concatenate([np.full((len(pool), q0), np.nan), pool_costs[ok]], axis=1)
            believed, std = mean_of(pool_t)
            samples = marginal_samples(believed, std, gp is not None, prm.mc_samples, seed)
            picks = select_ehvi(model, layout, torch.tensor(Y_obs), torch.tensor(feasible_obs),
                                samples, believed, std, torch.tensor(Y_pool), self.pop_size)
        return pool[np.asarray(picks, dtype=np.int64)]

    def _quality_values(self, F: np.ndarray) -> np.ndarray:
        """The quality of the evaluated candidates in its own unit (from F, or the logged
        records where the quality is only constrained)."""
        p = self.problem
        name = next((o for o in p.objectives if o in QUALITY_OBJECTIVES), None)
        if name is not None:
            j = p.objectives.index(name)
            return -F[:, j] if OBJECTIVES[name][1] else F[:, j]
        # constrained only: G = value / limit - 1
        name = next(o for o in p.constraints if o in QUALITY_OBJECTIVES)
        j = list(p.constraints).index(name)
        G = np.asarray(self.pop.get("G"), dtype=np.float64)
        return (G[:, j] + 1.0) * p.constraints[name]


def _front_rows(F: np.ndarray, CV: np.ndarray) -> np.ndarray:
    """Indices of the feasible non-dominated rows (all rows when none is feasible)."""
    from hwq.search.indicators import nondominated_mask

    feas = np.flatnonzero(CV <= 0)
    if not len(feas):
        return np.arange(len(F))
    return feas[nondominated_mask(F[feas])]


def _training_rows(front: np.ndarray, n: int, cap: int) -> np.ndarray:
    """Every row while n <= cap; else the front, then the most recent rows, up to cap."""
    if n <= cap:
        return np.arange(n)
    keep = list(front[:cap])
    chosen = set(keep)
    for i in range(n - 1, -1, -1):
        if len(keep) >= cap:
            break
        if i not in chosen:
            keep.append(i)
    return np.sort(np.asarray(keep, dtype=np.int64))


def uniform_w8a8(problem: Any) -> np.ndarray:
    """Decisions [1, n_var] of the uniform W8A8 policy (the widest allowed pair where W8A8
    is not allowed; pinned layers keep their pins)."""
    enc = problem.encoding
    choices = list(enc.choices)
    c = choices.index((8, 8)) if (8, 8) in choices else int(
        np.argmax([w * a for w, a in choices])
    )
    return enc.X_from_choice_index(np.full((1, enc.n_groups), c))


def bomp_references(problem: Any) -> list[float]:
    """Per objective: the quality's reference (FP32 accuracy; the uniform W8A8 policy's
    sensitivity) and each cost's log10 at the uniform W8A8 policy in its base unit."""
    from hwq.search.quality_sources import FP32Reference

    X8 = uniform_w8a8(problem)
    refs: list[float] = []
    for name in problem.objectives:
        if name == "accuracy":
            q = problem.quality
            ref = (q.fp32_accuracy(len(problem.encoding.graph), problem.executor)
                   if isinstance(q, FP32Reference) else 1.0)
            refs.append(float(ref))
        elif name == "sensitivity":
            values = problem.quality.table_values(problem.table)
            if values is None:
                refs.append(1.0)
                continue
            pairs = problem.encoding.decode(X8)[0]
            lut = problem.table.pair_lookup
            ref = float(values[np.arange(len(pairs)), lut[pairs[:, 0], pairs[:, 1]]].sum())
            refs.append(ref if ref > 0 and math.isfinite(ref) else 1.0)
        else:
            col, unit = BASE_UNITS[name]
            values, _ = CostOracle(problem, [col])(X8)
            refs.append(float(np.log10(max(values[0, 0] * unit, 10.0))))
    return refs

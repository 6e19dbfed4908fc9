"""The precision-configuration environment (HAQ; Tandemlaunch's automated precision
configuration) as a Gymnasium `Env`: one decision group per step.

An episode walks the free groups of the search's encoding in layer order (pinned layers are
skipped: their pairs are fixed; tied layers are one group and share one decision). At step t:

* **state** (float32, every entry in [0, 1]) = the group's layer features (HAQ's embedding:
  op one-hot, channels, input size, kernel, stride, groups, params, MACs, output size, position
  in layer order, reads-the-input flag; log1p then min-max over the model, from
  `hwq.search.gnn.node_features` at the group's first layer), what every allowed choice costs
  the group for each budgeted cost and, when the quality is a per-layer table, its sensitivity
  (log10, min-max over groups and choices), the previous action, the episode's budget
  ``u_k = (B_k - lo_k) / (hi_k - lo_k)`` and what the choices so far spend
  ``(sum_{g<t} cost_k[g, c_g] + sum_{g>=t} cost_k[g, c*_g] + pinned_k - lo_k) / (hi_k - lo_k)``
  (the choices so far completed by the cheapest policy c*);
* **action** a in [0, 1]^A (A = 2 with separate weight and activation widths, the product
  layout; A = 1 with a list of pairs): HAQ's mapping to the allowed widths, bin
  ``min(floor(a * n), n - 1)`` of the n ascending widths (pairs: of the pairs ordered by cost);
  a choice the device cannot run at that group becomes the nearest one it can;
* **budget**: each episode draws, for every additive cost objective k (BOPs, weight memory,
  latency, energy; not the objective the reward is built on), a fraction u_k in [0, 1] of the
  range between the cheapest policy c* and the dearest policy (totals lo_k, hi_k):
  ``B_k = lo_k + u_k * (min(hi_k, max_k) - lo_k)`` where `--max` gives max_k; a `--max` on an
  additive cost that is no objective is a fixed budget ``B_k = max_k``. `reset(seed=...)` draws
  u uniformly from the env's generator; ``reset(options={"budget": u})`` sets it (the RL search
  draws a Latin hypercube over each generation's episodes, `draw_budgets`);
* **enforcement** after the last step: `hwq.search.env_budget` lowers the bits of the group
  whose cost falls most per unit of sensitivity until every budget holds (HAQ's action wall,
  ordered by sensitivity). Sensitivity: the problem's per-layer table when its quality is one
  (`QualitySource.table_values`); otherwise (accuracy, a user's function) the proxy
  ``sum over the group's layers of 4^-w + 4^-a`` — the relative noise power of a uniform
  quantizer, the same for every layer, so that among layers at the same widths the one saving
  the most cost is lowered first and 8-bit layers go to 4 bits before any goes to 2;
* **reward** at the last step (0 before): HAQ's accuracy reward under constraints

      r = clip(lambda * (q - q_ref), -10, 10) - sum_j max(0, g_j)

  with q the quality in maximised form (accuracy; the negated sensitivity, i.e. for a minimised
  quality r = -lambda * (s - s_ref)); without a quality objective, the first objective is q
  (negated when minimised) and gets no budget. g_j are the problem's constraint columns
  (``value / limit - 1`` of each `--max`, 1 where the device cannot run the policy): the
  patent's reward under constraints; enforcement makes them 0 for additive budgets. HAQ takes
  q_ref = the full-precision accuracy and lambda = 0.1 per percent; hwq cannot know the former
  without an evaluation outside the budget, so `Reward.from_warmup` sets q_ref to the mean and
  lambda to the inverse standard deviation of the warm-up episodes' qualities (the same affine
  form, on the unit scale the critic learns best). A standalone env (`evaluate=True`) measures
  q with the problem at the last step (reward `Reward()` unless given); the RL search
  (`hwq.search.rl`) runs the env's arrays (`EnvTables`) over a whole population at once with
  `evaluate=False` and feeds the rewards back after the driver evaluated the policies.

One episode = one evaluated policy. `info` of the last step holds the enforced `choice` [G]
and `pairs` [L, 2] (and `quality` when evaluated). Any stable-baselines3 off-policy agent
learns on this env directly (e.g. ``TD3("MlpPolicy", PrecisionEnv(problem)).learn(...)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from hwq.objectives import ADDITIVE_COLUMNS, OBJECTIVES, QUALITY_OBJECTIVES
from hwq.search.env_budget import enforce_budgets

MAX_MARGIN = 1e-12  # a --max budget is enforced this much (relative) below its limit
REWARD_CLIP = 10.0


def reward_index(problem: Any) -> int:
    """Index into the problem's objectives of the one the reward is built on: the quality
    objective, else the first objective."""
    objs = list(problem.objectives)
    return next((i for i, o in enumerate(objs) if o in QUALITY_OBJECTIVES), 0)


def reward_quality(problem: Any, F: np.ndarray) -> np.ndarray:
    """The reward objective in maximised form (every F column is minimised)."""
    return -np.asarray(F, dtype=np.float64)[:, reward_index(problem)]


@dataclass(frozen=True)
class Reward:
    """``r = clip(lam * (q - q_ref), -10, 10) - sum_j max(0, g_j)`` (module doc)."""

    q_ref: float = 0.0
    lam: float = 1.0

    def __call__(self, q: np.ndarray, G: np.ndarray) -> np.ndarray:
        q = np.asarray(q, dtype=np.float64)
        term = np.clip(self.lam * (np.nan_to_num(q, nan=-np.inf) - self.q_ref),
                       -REWARD_CLIP, REWARD_CLIP)
        G = np.asarray(G, dtype=np.float64).reshape(len(q), -1)
        return term - np.maximum(G, 0.0).sum(axis=1)

    @classmethod
    def from_warmup(cls, q: np.ndarray) -> Reward:
        """q_ref = mean, lam = 1 / standard deviation of the warm-up qualities (finite ones)."""
        q = np.asarray(q, dtype=np.float64)
        q = q[np.isfinite(q) & (np.abs(q) < 1e29)]
        if not len(q):
            return cls()
        mean, std = float(q.mean()), float(q.std())
        if not std > 0:
            std = abs(mean) if mean else 1.0
        return cls(q_ref=mean, lam=1.0 / std)


def _log_minmax(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """log10 min-max over the entries where `ok` (others 1: dearest); constant -> 0."""
    v = np.where(ok & np.isfinite(values), values, np.nan)
    pos = v[v > 0]
    if not pos.size:
        return np.where(ok, 0.0, 1.0)
    floor = pos.min() / 10.0
    lg = np.log10(np.maximum(np.nan_to_num(v, nan=floor), floor))
    lo, hi = lg[ok].min(), lg[ok].max()
    out = (lg - lo) / (hi - lo) if hi > lo else np.zeros_like(lg)
    return np.where(ok, np.clip(out, 0.0, 1.0), 1.0)


def _nearest_feasible(feas: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """int64 [G, C]: each choice itself where feasible, else the feasible choice nearest in
    index coordinates `coords` [C, d] (L1; ties to the lower index)."""
    G, C = feas.shape
    dist = np.abs(coords[:, None, :] - coords[None, :, :]).sum(axis=2)  # [C, C]
    out = np.tile(np.arange(C, dtype=np.int64), (G, 1))
    for g in np.flatnonzero(~feas.all(axis=1)):
        if not feas[g].any():
            continue
        d = np.where(feas[g][None, :], dist, np.inf)
        out[g] = np.where(feas[g], np.arange(C), np.argmin(d, axis=1))
    return out


@dataclass
class EnvTables:
    """Everything an episode reads, computed once from a `SearchProblem`; every method works on
    a batch of E episodes at once."""

    static: np.ndarray  # float32 [G, S] state entries of each group that do not change
    cost: np.ndarray  # float64 [K, G, C] per-group cost of every choice, budgeted columns
    fixed: np.ndarray  # float64 [K] pinned layers' cost
    lo: np.ndarray  # float64 [K] totals of the cheapest policy
    hi: np.ndarray  # float64 [K] totals of the dearest policy
    cap: np.ndarray  # float64 [K] upper end of a drawn budget (min(hi, --max))
    limit: np.ndarray  # float64 [K] --max limit (inf: none)
    drawn: np.ndarray  # bool [K] drawn per episode (an objective), else fixed at --max
    sens: np.ndarray  # float64 [G, C] sensitivity, or the noise proxy
    sens_from_table: bool
    feas: np.ndarray  # bool [G, C]
    remap: np.ndarray  # int64 [G, C] nearest feasible choice
    cheapest: np.ndarray  # int64 [G]
    columns: tuple[str, ...]  # budgeted cost columns
    mode: str  # encoding layout: product or pairs
    n_w: int
    n_a: int

    # -- sizes -----------------------------------------------------------------------------------
    @property
    def n_groups(self) -> int:
        return int(self.cost.shape[1]) if self.cost.shape[0] else int(self.sens.shape[0])

    @property
    def n_choices(self) -> int:
        return int(self.sens.shape[1])

    @property
    def n_actions(self) -> int:
        return 2 if self.mode == "product" else 1

    @property
    def n_budgets(self) -> int:
        return len(self.columns)

    @property
    def obs_dim(self) -> int:
        return int(self.static.shape[1]) + self.n_actions + 2 * self.n_budgets

    @property
    def span(self) -> np.ndarray:
        d = self.hi - self.lo
        return np.where(d > 0, d, np.maximum(np.abs(self.hi), 1e-300))

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def of(cls, problem: Any) -> EnvTables:
        from hwq.search.gnn import node_features

        enc = problem.encoding
        G, C = enc.n_groups, enc.n_choices
        ridx = reward_index(problem)
        drawn_cols: list[str] = []
        for i, name in enumerate(problem.objectives):
            col = OBJECTIVES[name][0]
            if i != ridx and col in ADDITIVE_COLUMNS and name not in QUALITY_OBJECTIVES:
                drawn_cols.append(col)
        limits = {OBJECTIVES[n][0]: float(v) for n, v in problem.constraints.items()
                  if n not in QUALITY_OBJECTIVES and OBJECTIVES[n][0] in ADDITIVE_COLUMNS}
        columns = tuple(drawn_cols + [c for c in limits if c not in drawn_cols])
        feas = problem.group_feasible()
        cost = np.zeros((len(columns), G, C))
        fixed = np.zeros(len(columns))
        for k, col in enumerate(columns):
            cost[k], fixed[k] = problem.group_costs(col)
            feas = feas & np.isfinite(cost[k])
        cost = np.where(feas[None], cost, np.inf)
        quality = problem.quality
        table = quality.table_values(problem.table) if quality is not None else None
        if table is not None and quality.name == "sensitivity":
            sens, _ = problem.group_costs("sensitivity")
            feas = feas & np.isfinite(sens)
            from_table = True
        else:
            proxy = np.array([4.0 ** -w + 4.0 ** -a for w, a in enc.choices])
            sizes = np.array([len(g) for g in enc.groups], dtype=np.float64)
            sens = sizes[:, None] * proxy[None, :]
            from_table = False
        # cheapest / dearest policy: per group the feasible choice of least / most summed cost
        # (each cost weighted by 1 / its dearest total)
        fin = np.where(feas[None], cost, 0.0)
        weight = 1.0 / np.maximum(fin.max(axis=2).sum(axis=1), 1e-300)
        score = (fin * weight[:, None, None]).sum(axis=0) if len(columns) else np.zeros((G, C))
        cheapest = np.argmin(np.where(feas, score, np.inf), axis=1).astype(np.int64)
        rev = np.where(feas, score, -np.inf)[:, ::-1]
        dearest = (C - 1 - np.argmax(rev, axis=1)).astype(np.int64)
        rows = np.arange(G)
        lo = fixed + (cost[:, rows, cheapest].sum(axis=1) if G else 0.0)
        hi = fixed + (cost[:, rows, dearest].sum(axis=1) if G else 0.0)
        limit = np.array([limits.get(c, np.inf) for c in columns])
        cap = np.minimum(hi, limit)
        drawn = np.array([c in drawn_cols for c in columns], dtype=bool)
        # index coordinates of each choice (product: weight and activation index)
        if enc.mode == "product":
            n_w, n_a = len(enc.w_choices), len(enc.a_choices)
            coords = np.array([[c // n_a, c % n_a] for c in range(C)], dtype=np.float64)
        else:
            n_w, n_a = C, 1
            coords = np.arange(C, dtype=np.float64)[:, None]
        remap = _nearest_feasible(feas, coords)
        # static state: layer features at each group's first layer, per-choice costs
        layer = node_features(enc.graph)[[g[0] for g in enc.groups]].astype(np.float64)
        parts = [layer]
        parts += [_log_minmax(cost[k], feas) for k in range(len(columns))]
        if from_table:
            parts.append(_log_minmax(sens, feas))
        static = np.concatenate(parts, axis=1).astype(np.float32) if G else np.zeros((0, 1))
        return cls(
            static=static, cost=cost, fixed=fixed, lo=lo, hi=hi, cap=cap, limit=limit,
            drawn=drawn, sens=sens, sens_from_table=from_table, feas=feas, remap=remap,
            cheapest=cheapest, columns=columns, mode=enc.mode, n_w=n_w, n_a=n_a,
        )

    # -- budgets ---------------------------------------------------------------------------------
    def draw_budgets(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """float64 [n, K]: a Latin hypercube of budget fractions (each cost's n fractions fall
        one into each of n equal strata, in an independent random order)."""
        K = self.n_budgets
        u = rng.random((n, K))
        for k in range(K):
            u[:, k] = (rng.permutation(n) + u[:, k]) / n
        return u

    def budgets(self, frac: np.ndarray) -> np.ndarray:
        """float64 [E, K] budget totals B_k of budget fractions [E, K] (module doc)."""
        frac = np.clip(np.asarray(frac, dtype=np.float64).reshape(-1, self.n_budgets), 0, 1)
        drawn = self.lo + frac * (self.cap - self.lo)
        B = np.where(self.drawn[None], drawn, self.limit[None])
        return np.minimum(B, self.limit * (1 - MAX_MARGIN))

    def budget_state(self, frac: np.ndarray) -> np.ndarray:
        """[E, K] the budgets as fractions of the full range (what the state shows)."""
        return np.clip((self.budgets(frac) - self.lo) / self.span, 0.0, 1.0)

    # -- steps -----------------------------------------------------------------------------------
    def choose(self, t: int, action: np.ndarray) -> np.ndarray:
        """int64 [E]: the choice index of group t for actions [E, A] in [0, 1]."""
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(-1, self.n_actions), 0.0, 1.0)
        if self.mode == "product":
            wi = np.minimum((a[:, 0] * self.n_w).astype(np.int64), self.n_w - 1)
            ai = np.minimum((a[:, 1] * self.n_a).astype(np.int64), self.n_a - 1)
            c = wi * self.n_a + ai
        else:
            c = np.minimum((a[:, 0] * self.n_choices).astype(np.int64), self.n_choices - 1)
        return self.remap[t, c]

    def observe(
        self, t: int, prev: np.ndarray, frac: np.ndarray, choice: np.ndarray
    ) -> np.ndarray:
        """float32 [E, D] states at step t: previous actions [E, A], budget fractions [E, K],
        the choices [E, G] of groups before t (later entries are ignored)."""
        G = self.n_groups
        prev = np.asarray(prev, dtype=np.float64).reshape(-1, self.n_actions)
        E = prev.shape[0]
        g = min(t, G - 1)
        parts = [np.broadcast_to(self.static[g], (E, self.static.shape[1])), prev]
        if self.n_budgets:
            chosen = np.asarray(choice, dtype=np.int64).reshape(E, G).copy()
            chosen[:, t:] = self.cheapest[t:][None, :]
            spent = self.fixed[None, :] + self.cost[:, np.arange(G)[None, :], chosen].sum(axis=2).T
            parts += [self.budget_state(frac), np.clip((spent - self.lo) / self.span, 0, 1)]
        obs = np.nan_to_num(np.concatenate(parts, axis=1), nan=1.0, posinf=1.0, neginf=0.0)
        return np.clip(obs, 0.0, 1.0).astype(np.float32)

    def enforce(self, choice: np.ndarray, frac: np.ndarray) -> np.ndarray:
        """int64 [E, G]: the choices after HAQ's enforcement of the budgets of `frac`."""
        choice = np.asarray(choice, dtype=np.int64).reshape(-1, self.n_groups)
        if not self.n_budgets:
            return choice.copy()
        limit = self.budgets(frac) - self.fixed[None, :]
        return enforce_budgets(choice, self.cost, limit, self.span, self.sens, self.feas,
                               self.cheapest)


class PrecisionEnv(gym.Env):
    """One episode = one policy of `problem`, one free group per step (module doc)."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        problem: Any,
        *,
        evaluate: bool = True,
        reward: Reward | None = None,
        tables: EnvTables | None = None,
    ) -> None:
        super().__init__()
        self.problem = problem
        self.tables = tables if tables is not None else EnvTables.of(problem)
        self.evaluate = evaluate
        self.reward = reward if reward is not None else Reward()
        tab = self.tables
        self.observation_space = spaces.Box(0.0, 1.0, shape=(tab.obs_dim,), dtype=np.float32)
        self.action_space = spaces.Box(0.0, 1.0, shape=(tab.n_actions,), dtype=np.float32)
        self._t = 0
        self._choice = np.zeros(tab.n_groups, dtype=np.int64)
        self._prev = np.zeros(tab.n_actions)
        self._frac = np.zeros(tab.n_budgets)

    def _obs(self) -> np.ndarray:
        return self.tables.observe(self._t, self._prev[None], self._frac[None],
                                   self._choice[None])[0]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        tab = self.tables
        budget = (options or {}).get("budget")
        if budget is None:
            self._frac = self.np_random.random(tab.n_budgets)
        else:
            self._frac = np.clip(np.asarray(budget, dtype=np.float64).reshape(tab.n_budgets),
                                 0.0, 1.0)
        self._t = 0
        self._choice = tab.cheapest.copy()
        self._prev = np.zeros(tab.n_actions)
        return self._obs(), {"budget": self._frac.copy()}

    def step(
        self, action: np.ndarray
    ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        tab = self.tables
        if self._t >= tab.n_groups:
            raise RuntimeError("step after the episode terminated; call reset()")
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(tab.n_actions), 0.0, 1.0)
        self._choice[self._t] = tab.choose(self._t, a[None])[0]
        self._prev = a
        self._t += 1
        terminated = self._t == tab.n_groups
        reward = 0.0
        info: dict[str, Any] = {}
        if terminated:
            final = tab.enforce(self._choice[None], self._frac[None])[0]
            pairs = self.problem.encoding.decode_choice_index(final[None])[0]
            info = {"choice": final, "pairs": pairs}
            if self.evaluate:
                ev = self.problem.evaluate_pairs(pairs[None])
                q = reward_quality(self.problem, ev.F)
                reward = float(self.reward(q, ev.G)[0])
                info["quality"] = float(q[0])
        return self._obs(), reward, terminated, False, info

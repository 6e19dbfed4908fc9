"""Local improvement of NEMO's archive by single-layer moves (an hwq extension; NEMO is silent).

A *move* changes the choice of one group (a single-layer move) or of two groups at once (a
swap: e.g. one layer up and another down at about the same cost). Which moves are worth an
evaluation is judged by an additive model fitted to every evaluation so far (`AdditiveModel`):
each objective (and each `--max` constraint) as a sum over groups of one value per (group,
choice), by least squares. Sensitivity tables, BOPs, weight memory and per-layer device costs
are exactly additive, so there the model is exact once it has seen enough policies; accuracy
is not, and the model only ranks the moves (every chosen move is evaluated for real and counts
toward the run's budget).

Each generation a few archive members (`DecisionArchive`: every feasible, mutually
non-dominated policy NEMO has evaluated) are parents; each parent's moves are scored by how far
their predicted objectives stand out beyond the archive (the additive epsilon: the smallest,
over archive points, of the largest normalised advantage; positive = not dominated by any
archive point), and the best new move of each parent is proposed, each proposal counting as a
point of the archive for the next parent's scores. `best_moves` is the Numba kernel.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from hwq.search.blas_threads import one_blas_thread
from hwq.search.indicators import nondominated_mask

BAD = 1e29  # objective values at or above this are the problem's stand-ins for non-finite costs


class AdditiveModel:
    """Least-squares fit of outputs Y [n, k] as ``sum_g theta[g, C[g]]`` over one-hot choices
    C [n, G] (normal equations accumulated; min-norm solution)."""

    def __init__(self, n_groups: int, n_choices: int, n_out: int) -> None:
        self.G, self.K, self.k = int(n_groups), int(n_choices), int(n_out)
        d = self.G * self.K
        self.ZtZ = np.zeros((d, d))
        self.ZtY = np.zeros((d, self.k))
        self.Ysum = np.zeros(self.k)
        self.YtY = np.zeros(self.k)
        self.rows = 0
        self.theta = np.zeros((self.G, self.K, self.k))
        self.r2 = np.full(self.k, -np.inf)

    @property
    def columns(self) -> int:
        return self.G * self.K

    def add(self, C: np.ndarray, Y: np.ndarray) -> None:
        C = np.asarray(C, dtype=np.int64).reshape(-1, self.G)
        Y = np.asarray(Y, dtype=np.float64).reshape(len(C), self.k)
        ok = np.all(np.isfinite(Y) & (np.abs(Y) < BAD), axis=1)
        C, Y = C[ok], Y[ok]
        if not len(C):
            return
        idx = C + (np.arange(self.G) * self.K)[None, :]  # [n, G] active columns
        d = self.columns
        pairs = (idx[:, :, None] * d + idx[:, None, :]).ravel()
        self.ZtZ += np.bincount(pairs, minlength=d * d).reshape(d, d)
        for j in range(self.k):
            self.ZtY[:, j] += np.bincount(idx.ravel(), weights=np.repeat(Y[:, j], self.G),
                                          minlength=d)
        self.Ysum += Y.sum(axis=0)
        self.YtY += (Y * Y).sum(axis=0)
        self.rows += len(C)

    def fit(self) -> None:
        """Solve the normal equations; `r2` per output (1 = exact)."""
        if not self.rows:
            return
        with one_blas_thread():
            sol = np.linalg.lstsq(self.ZtZ, self.ZtY, rcond=None)[0]  # [d, k]
            fitted = (sol * (self.ZtZ @ sol)).sum(axis=0)
        self.theta = sol.reshape(self.G, self.K, self.k)
        sse = self.YtY - 2.0 * (sol * self.ZtY).sum(axis=0) + fitted
        mean = self.Ysum / self.rows
        sst = self.YtY - self.rows * mean * mean
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.where(sst > 1e-12 * np.maximum(self.YtY, 1e-300),
                          1.0 - np.maximum(sse, 0.0) / sst, 1.0)
        self.r2 = r2


def hv_contributions(F: np.ndarray, ref: float = 1.1) -> np.ndarray:
    """Exclusive hypervolume contribution of each of the mutually non-dominated points F [n, m]
    (minimised): the volume only it dominates, with the objectives normalised to [0, 1] over F
    and the reference point `ref` in every objective (so the extremes keep a share). Two
    objectives: the product of the gaps to the neighbours; more: the hypervolume of all points
    less that of all but one."""
    F = np.asarray(F, dtype=np.float64)
    n, m = F.shape
    if n == 0:
        return np.zeros(0)
    lo, hi = F.min(axis=0), F.max(axis=0)
    Fn = (F - lo) / np.where(hi > lo, hi - lo, 1.0)
    if m == 1:
        out = np.zeros(n)
        out[np.argmin(Fn[:, 0])] = ref - Fn[:, 0].min()
        return out
    if m == 2:
        order = np.lexsort((Fn[:, 1], Fn[:, 0]))
        x, y = Fn[order, 0], Fn[order, 1]
        right = np.append(x[1:], ref) - x
        up = np.insert(y[:-1], 0, ref) - y
        out = np.empty(n)
        out[order] = np.maximum(right, 0.0) * np.maximum(up, 0.0)
        return out
    from hwq.search.indicators import hypervolume

    r = np.full(m, ref)
    whole = hypervolume(Fn, r)
    keep = np.ones(n, dtype=bool)
    out = np.empty(n)
    for i in range(n):
        keep[i] = False
        out[i] = whole - hypervolume(Fn[keep], r)
        keep[i] = True
    return np.maximum(out, 0.0)


class DecisionArchive:
    """Every feasible, mutually non-dominated policy evaluated: choices C [A, G] and outputs
    F [A, k] (the objectives, minimised, then the constraint values); one entry per objective
    vector (`LocalImprover` keeps it)."""

    def __init__(self, n_groups: int, n_out: int, n_obj: int | None = None) -> None:
        self.C = np.zeros((0, n_groups), dtype=np.int64)
        self.F = np.zeros((0, n_out))
        self.n_obj = n_out if n_obj is None else int(n_obj)
        self._contrib: np.ndarray | None = None  # hv_contributions of the current members

    def __len__(self) -> int:
        return len(self.C)

    def set(self, C: np.ndarray, F: np.ndarray) -> None:
        """Replace the members (a new archive after an evaluated batch)."""
        self.C, self.F = C, F
        self._contrib = None

    def contributions(self) -> np.ndarray:
        """Each member's exclusive hypervolume contribution (`hv_contributions` of the
        objectives), computed once per archive."""
        if self._contrib is None:
            self._contrib = hv_contributions(self.F[:, : self.n_obj])
        return self._contrib

    def pick(self, k: int, rng: np.random.Generator) -> np.ndarray:
        """Indices of k members, each the winner of a binary tournament on the exclusive
        hypervolume contribution (the front's sparse parts and extremes first; ties to the
        first drawn)."""
        if not len(self) or k <= 0:
            return np.zeros(0, dtype=np.int64)
        c = self.contributions()
        a = rng.integers(0, len(self), size=k)
        b = rng.integers(0, len(self), size=k)
        return np.where(c[a] >= c[b], a, b)


@njit(cache=True)
def _score(f: np.ndarray, Fa: np.ndarray, n_obj: int, floor: float) -> float:
    """Additive-epsilon gain of a normalised point f over the archive Fa (rows sorted by the
    first objective): the smallest, over archive points, of the largest advantage of f. The
    points nearest f in the first objective are visited first (in two objectives the one just
    below decides dominance), and the scan stops once the gain cannot beat `floor`."""
    A = Fa.shape[0]
    lo, hi = 0, A
    while lo < hi:  # first row with Fa[row, 0] > f[0]
        mid = (lo + hi) // 2
        if Fa[mid, 0] <= f[0]:
            lo = mid + 1
        else:
            hi = mid
    below, above = lo - 1, lo
    gain = np.inf
    for _ in range(A):
        if below >= 0 and (above >= A or f[0] - Fa[below, 0] <= Fa[above, 0] - f[0]):
            a = below
            below -= 1
        else:
            a = above
            above += 1
        best = -np.inf
        for j in range(n_obj):
            v = Fa[a, j] - f[j]
            if v > best:
                best = v
        if best < gain:
            gain = best
            if gain <= floor:
                return gain
    return gain


@njit(cache=True)
def best_moves(
    Cp: np.ndarray,  # int64 [P, G] parents' choices
    Yp: np.ndarray,  # float64 [P, k] parents' outputs: objectives, then constraints
    theta: np.ndarray,  # float64 [G, K, k] additive model of the outputs
    Fa: np.ndarray,  # float64 [A, m] archive points (normalised, sorted by objective 0)
    lo: np.ndarray,  # float64 [m] normalisation: (F - lo) / span
    span: np.ndarray,
    n_obj: int,
    pair_limit: int,  # swaps among at most this many single moves per parent
    top: int,  # best moves kept per parent
) -> tuple[np.ndarray, np.ndarray]:
    """Per parent, its `top` best moves by predicted gain over the archive: moves
    [P, top, 4] (g1, c1, g2, c2; g2 = -1 for a single move) and gains [P, top] (-inf where
    none). Moves whose predicted constraint outputs (past `n_obj`) exceed 0 are skipped."""
    P, G = Cp.shape
    K = theta.shape[1]
    k = theta.shape[2]
    moves = np.full((P, top, 4), -1, dtype=np.int64)
    gains = np.full((P, top), -np.inf)
    n_single = G * (K - 1)
    sg = np.empty(n_single, dtype=np.int64)
    sc = np.empty(n_single, dtype=np.int64)
    sd = np.empty((n_single, k))
    y = np.empty(k)
    for p in range(P):
        s = 0
        for g in range(G):
            cur = Cp[p, g]
            for c in range(K):
                if c != cur:
                    sg[s] = g
                    sc[s] = c
                    for j in range(k):
                        sd[s, j] = theta[g, c, j] - theta[g, cur, j]
                    s += 1
        # swaps are formed from all singles, or from the best pair_limit // n_obj per objective
        if n_single <= pair_limit:
            chosen = np.arange(n_single)
        else:
            per = max(pair_limit // n_obj, 1)
            mark = np.zeros(n_single, dtype=np.bool_)
            for j in range(n_obj):
                order = np.argsort(sd[:, j])
                for t in range(min(per, n_single)):
                    mark[order[t]] = True
            chosen = np.flatnonzero(mark)
        nc = len(chosen)
        for i in range(-1, nc):
            for t in range(n_single if i < 0 else nc):
                if i < 0:
                    a, b = t, -1
                else:
                    if t <= i:
                        continue
                    a, b = chosen[i], chosen[t]
                    if sg[a] == sg[b]:
                        continue
                ok = True
                for j in range(k):
                    y[j] = Yp[p, j] + sd[a, j] + (sd[b, j] if b >= 0 else 0.0)
                    if j >= n_obj and y[j] > 1e-12:
                        ok = False
                if not ok:
                    continue
                for j in range(n_obj):
                    y[j] = (y[j] - lo[j]) / span[j]
                floor = gains[p, top - 1]
                gain = _score(y, Fa, n_obj, floor)
                if gain <= floor:
                    continue
                r = top - 1
                while r > 0 and gains[p, r - 1] < gain:
                    gains[p, r] = gains[p, r - 1]
                    for z in range(4):
                        moves[p, r, z] = moves[p, r - 1, z]
                    r -= 1
                gains[p, r] = gain
                moves[p, r, 0] = sg[a]
                moves[p, r, 1] = sc[a]
                moves[p, r, 2] = sg[b] if b >= 0 else -1
                moves[p, r, 3] = sc[b] if b >= 0 else -1
    return moves, gains


class LocalImprover:
    """NEMO's local improvement: the additive model and the archive, both fed every evaluated
    batch, and the proposal of new policies by the best predicted moves of archive members
    (random single moves where the model predicts no gain, or before it is ready)."""

    def __init__(
        self,
        n_groups: int,
        n_choices: int,
        n_obj: int,
        n_constraints: int,
        max_columns: int = 1024,
        pair_limit: int = 64,
        guided: bool = True,
    ) -> None:
        self.n_obj = int(n_obj)
        self.guided = bool(guided)  # False: random single moves only (the --no-local ablation)
        self.model = AdditiveModel(n_groups, n_choices, n_obj + n_constraints)
        self.archive = DecisionArchive(n_groups, n_obj + n_constraints, n_obj)
        self.max_columns = int(max_columns)
        self.pair_limit = int(pair_limit)
        self.fitted_rows = -1

    @property
    def usable(self) -> bool:
        """The model is used (guided) and can be fitted at all (small enough)."""
        return self.guided and self.model.columns <= self.max_columns

    @property
    def ready(self) -> bool:
        """The model has seen at least twice as many policies as it has columns."""
        return self.usable and self.model.rows >= 2 * self.model.columns

    def observe(
        self, C: np.ndarray, F: np.ndarray, G: np.ndarray, feasible: np.ndarray
    ) -> np.ndarray:
        """One evaluated batch: choices C [n, groups], objectives F [n, m] (minimised),
        constraint values G [n, q] (<= 0 met), feasibility [n]. Returns which rows entered
        the archive [n] (a new objective vector that no evaluated policy dominates)."""
        Y = np.concatenate([np.asarray(F, np.float64), np.asarray(G, np.float64)], axis=1)
        if self.usable:
            self.model.add(C, Y)
        return self._update_archive(C, Y, feasible)

    def _update_archive(self, C: np.ndarray, Y: np.ndarray, feasible: np.ndarray) -> np.ndarray:
        a = self.archive
        keep = np.asarray(feasible, bool) & np.all(Y[:, : self.n_obj] < BAD, axis=1)
        entered = np.zeros(len(C), dtype=bool)
        if not keep.any():
            return entered
        old = len(a)
        allC = np.concatenate([a.C, np.asarray(C, np.int64)[keep]])
        allY = np.concatenate([a.F, Y[keep]])
        _, first = np.unique(allY[:, : self.n_obj], axis=0, return_index=True)
        first = np.sort(first)  # the archive's rows first: a repeated vector is not new
        allC, allY = allC[first], allY[first]
        nd = nondominated_mask(allY[:, : self.n_obj])
        a.set(allC[nd], allY[nd])
        rows = first[nd]
        entered[np.flatnonzero(keep)[rows[rows >= old] - old]] = True
        return entered

    def propose(self, n: int, rng: np.random.Generator, is_new) -> np.ndarray:
        """Up to n new choice vectors [<= n, groups]: the best predicted moves first, then
        random single moves of archive members; `is_new(c)` says whether a choice vector is
        new (and reserves it when it is)."""
        out: list[np.ndarray] = []
        if n <= 0:
            return np.zeros((0, self.model.G), dtype=np.int64)
        if self.ready and len(self.archive):
            out += self._predicted(n, rng, is_new)
        out += self._random(n - len(out), rng, is_new)
        return np.array(out, dtype=np.int64).reshape(-1, self.model.G)

    def _predicted(self, n: int, rng: np.random.Generator, is_new) -> list[np.ndarray]:
        if self.fitted_rows != self.model.rows:
            self.model.fit()
            self.fitted_rows = self.model.rows
        a, m = self.archive, self.n_obj
        F = a.F[:, :m]
        lo, hi = F.min(axis=0), F.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        Fa = (F - lo) / span
        Fa = Fa[np.argsort(Fa[:, 0], kind="stable")]
        parents = rng.permutation(len(a))[: max(2 * n, 1)]
        moves, gains = best_moves(a.C[parents], a.F[parents], self.model.theta, Fa, lo, span,
                                  m, self.pair_limit, 4)
        chosen: list[np.ndarray] = []
        ref = np.empty((n, m))  # the proposals' predicted points so far
        filled = 0
        # every move's predicted point at once (the same float operations, in the same order,
        # as one move at a time), and whether a point of the archive already dominates it
        theta = self.model.theta
        par = a.C[parents]
        g1, c1, g2, c2 = (moves[..., i] for i in range(4))
        has2 = g2 >= 0
        g1s, g2s, c2s = np.maximum(g1, 0), np.where(has2, g2, 0), np.where(has2, c2, 0)
        t1 = theta[g1s, np.maximum(c1, 0), :m]
        t1p = theta[g1s, np.take_along_axis(par, g1s, axis=1), :m]
        pred = (a.F[parents, :m][:, None, :] + t1) - t1p
        t2 = theta[g2s, c2s, :m] - theta[g2s, np.take_along_axis(par, g2s, axis=1), :m]
        pred = np.where(has2[..., None], pred + t2, pred)
        f_all = (pred - lo) / span
        beaten = np.zeros(gains.shape, dtype=bool)
        for r in range(gains.shape[1]):  # [parents, archive] per move rank: bounded memory
            beaten[:, r] = (Fa[None, :, :] <= f_all[:, r, None, :]).all(axis=2).any(axis=1)
        for p in np.argsort(-gains[:, 0], kind="stable"):
            if len(chosen) >= n or not gains[p, 0] > 0:
                break
            parent = a.C[parents[p]]
            for r in range(moves.shape[1]):
                if not gains[p, r] > 0:
                    break
                f = f_all[p, r]
                # still ahead of the archive and of the proposals so far, and a new policy
                if beaten[p, r] or (filled and bool((ref[:filled] <= f).all(axis=1).any())):
                    continue
                c = parent.copy()
                c[g1[p, r]] = c1[p, r]
                if g2[p, r] >= 0:
                    c[g2[p, r]] = c2[p, r]
                if not is_new(c):
                    continue
                chosen.append(c)
                ref[filled] = f
                filled += 1
                break
        return chosen

    def _random(self, n: int, rng: np.random.Generator, is_new) -> list[np.ndarray]:
        G, K = self.model.G, self.model.K
        out: list[np.ndarray] = []
        tries = 0
        while len(out) < n and tries < 50 * max(n, 1):
            tries += 1
            if len(self.archive) and tries <= 40 * n:
                c = self.archive.C[int(rng.integers(0, len(self.archive)))].copy()
                g = int(rng.integers(0, G))
                if K > 1:
                    c[g] = (c[g] + int(rng.integers(1, K))) % K
            else:
                c = rng.integers(0, K, size=G).astype(np.int64)
            if is_new(c):
                out.append(c)
        return out

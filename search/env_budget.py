"""HAQ's budget enforcement, as one Numba kernel over a batch of episodes.

An episode of the precision environment (`hwq.search.env`) chooses every group's bits; the
policy may then exceed the episode's budgets. HAQ lowers bits until the budget holds (its
"action wall", from the last layer backwards). hwq lowers, one group at a time, the bits of the
group whose cost falls most per unit of sensitivity:

    T_k(c) = sum_g cost[k, g, c_g]                       (free groups; pinned cost is in B_k)
    V(c)   = sum_k max(0, T_k(c) - B_k) / s_k           (violation, each cost on its range s_k)
    while V(c) > 0:
        among the moves of one group g to another feasible choice c' with V(c') < V(c), take the
        one with the largest (V(c) - V(c')) / (sens[g, c'] - sens[g, c_g]); a move that does not
        add sensitivity comes first (largest V decrease); ties go to the later group (HAQ's
        order), then to the lower choice index.

If no single move lowers V (possible only when choices trade one cost against another), the
groups are set to the `cheapest` policy from the last group backwards until V <= 0; a budget
at or above the cheapest policy's totals is therefore always met.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _violation(tot: np.ndarray, limit: np.ndarray, scale: np.ndarray) -> float:
    v = 0.0
    for k in range(tot.shape[0]):
        over = tot[k] - limit[k]
        if over > 0.0:
            v += over / scale[k]
    return v


@njit(cache=True)
def _totals(cost: np.ndarray, choice: np.ndarray, tot: np.ndarray) -> None:
    K, G = cost.shape[0], cost.shape[1]
    for k in range(K):
        s = 0.0
        for g in range(G):
            s += cost[k, g, choice[g]]
        tot[k] = s


@njit(cache=True)
def _enforce_kernel(
    choice: np.ndarray,  # int64 [E, G]
    cost: np.ndarray,  # float64 [K, G, C]
    limit: np.ndarray,  # float64 [E, K] (inf: no budget)
    scale: np.ndarray,  # float64 [K] > 0
    sens: np.ndarray,  # float64 [G, C]
    feas: np.ndarray,  # bool [G, C]
    cheapest: np.ndarray,  # int64 [G]
) -> np.ndarray:
    E, G = choice.shape
    K, C = cost.shape[0], cost.shape[2]
    out = choice.copy()
    tot = np.zeros(K)
    trial = np.zeros(K)
    for e in range(E):
        cur = out[e]
        lim = limit[e]
        _totals(cost, cur, tot)
        v = _violation(tot, lim, scale)
        while v > 0.0:
            best_g, best_c = -1, -1
            best_free, best_key = -1, -np.inf
            for g in range(G - 1, -1, -1):
                cg = cur[g]
                for c in range(C):
                    if c == cg or not feas[g, c]:
                        continue
                    for k in range(K):
                        trial[k] = tot[k] - cost[k, g, cg] + cost[k, g, c]
                    dv = v - _violation(trial, lim, scale)
                    if not dv > 0.0:
                        continue
                    ds = sens[g, c] - sens[g, cg]
                    free = 1 if ds <= 0.0 else 0
                    key = dv if free else dv / ds
                    if free > best_free or (free == best_free and key > best_key):
                        best_g, best_c, best_free, best_key = g, c, free, key
            if best_g < 0:
                break
            cur[best_g] = best_c
            _totals(cost, cur, tot)
            v = _violation(tot, lim, scale)
        g = G - 1
        while v > 0.0 and g >= 0:
            if cur[g] != cheapest[g]:
                cur[g] = cheapest[g]
                _totals(cost, cur, tot)
                v = _violation(tot, lim, scale)
            g -= 1
    return out


def enforce_budgets(
    choice: np.ndarray,
    cost: np.ndarray,
    limit: np.ndarray,
    scale: np.ndarray,
    sens: np.ndarray,
    feas: np.ndarray,
    cheapest: np.ndarray,
) -> np.ndarray:
    """Choice indices [E, G] after enforcing the budgets `limit` [E, K] (totals over the free
    groups, inf where a cost has no budget) on per-group costs `cost` [K, G, C]; `scale` [K]
    the range each violation is measured in, `sens` [G, C] the sensitivity (or its proxy),
    `feas` [G, C] the choices the device runs, `cheapest` [G] the fallback policy."""
    choice = np.ascontiguousarray(choice, dtype=np.int64)
    cost = np.ascontiguousarray(cost, dtype=np.float64)
    if cost.shape[0] == 0 or choice.size == 0:
        return choice.copy()
    return _enforce_kernel(
        choice,
        cost,
        np.ascontiguousarray(limit, dtype=np.float64),
        np.ascontiguousarray(scale, dtype=np.float64),
        np.ascontiguousarray(sens, dtype=np.float64),
        np.ascontiguousarray(feas, dtype=np.bool_),
        np.ascontiguousarray(cheapest, dtype=np.int64),
    )

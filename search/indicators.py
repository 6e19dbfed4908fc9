"""Ranking and indicators shared by the searches: constrained non-dominated sorting with crowding,
the R2 indicator (pymoo has none), weight vectors, the Pareto filter and the hypervolume."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import comb

import numpy as np


def nondominated_mask(F: np.ndarray) -> np.ndarray:
    """bool [n]: rows of F (minimised) that no other row dominates. Duplicates all stay."""
    F = np.asarray(F, dtype=np.float64)
    n = len(F)
    if n == 0:
        return np.zeros(0, dtype=bool)
    le = (F[:, None, :] <= F[None, :, :]).all(axis=2)  # le[i, j]: i <= j everywhere
    lt = (F[:, None, :] < F[None, :, :]).any(axis=2)
    dominated = (le & lt).any(axis=0)  # some i dominates j
    return ~dominated


def rank_and_crowding(F: np.ndarray, CV: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Constrained non-dominated rank (feasible fronts first, then infeasible by violation) and
    crowding distance within each front (inf at the extremes)."""
    from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    F = np.asarray(F, dtype=np.float64)
    CV = np.asarray(CV, dtype=np.float64).reshape(-1)
    n = len(F)
    rank = np.zeros(n, dtype=np.int64)
    crowd = np.zeros(n, dtype=np.float64)
    feas = np.flatnonzero(CV <= 0)
    infeas = np.flatnonzero(CV > 0)
    n_fronts = 0
    if len(feas):
        fronts = NonDominatedSorting().do(F[feas])
        for r, front in enumerate(fronts):
            idx = feas[np.asarray(front, dtype=np.int64)]
            rank[idx] = r
            crowd[idx] = calc_crowding_distance(F[idx]) if len(idx) > 2 else np.inf
        n_fronts = len(fronts)
    if len(infeas):
        _, dense = np.unique(CV[infeas], return_inverse=True)
        rank[infeas] = n_fronts + dense
        crowd[infeas] = 0.0
    return rank, crowd


def order_by_rank(rank: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """Indices best first: lower rank, then larger crowding, then index (stable)."""
    return np.lexsort((-np.nan_to_num(crowd, posinf=1e300), rank))


@lru_cache(maxsize=16)
def weight_vectors(n_obj: int, target: int = 100) -> np.ndarray:
    """Uniform (Das-Dennis) weight vectors on the simplex, about `target` of them."""
    from pymoo.util.ref_dirs import get_reference_directions

    if n_obj == 1:
        return np.ones((1, 1))
    p = 1
    while comb(p + 1 + n_obj - 1, n_obj - 1) <= target:
        p += 1
    return get_reference_directions("das-dennis", n_obj, n_partitions=p)


def normalise(F: np.ndarray, ideal: np.ndarray, nadir: np.ndarray) -> np.ndarray:
    span = np.where(nadir > ideal, nadir - ideal, 1.0)
    return (np.asarray(F, dtype=np.float64) - ideal) / span


def r2_indicator(Fn: np.ndarray, weights: np.ndarray) -> float:
    """R2 of a set of normalised points against the ideal point 0 (lower is better):
    mean over weight vectors of the best weighted Tchebycheff distance. 1.0 for an empty set
    (the worst value for points inside the unit box)."""
    Fn = np.asarray(Fn, dtype=np.float64)
    if len(Fn) == 0:
        return 1.0
    Fn = np.clip(Fn, 0.0, None)
    tch = (weights[:, None, :] * Fn[None, :, :]).max(axis=2)  # [W, n]
    return float(tch.min(axis=1).mean())


def hypervolume(Fn: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume (pymoo) of normalised points dominated-clipped to `ref`."""
    from pymoo.indicators.hv import HV

    Fn = np.asarray(Fn, dtype=np.float64)
    if len(Fn) == 0:
        return 0.0
    keep = (Fn < ref).all(axis=1)
    if not keep.any():
        return 0.0
    return float(HV(ref_point=np.asarray(ref, dtype=np.float64))(Fn[keep]))


@dataclass(frozen=True)
class FrontStats:
    """One population's first feasible front: `rank`/`crowd` per member, `front` (bool: first
    front, feasible members only when any is feasible) and `Fn`, the objectives normalised over
    the feasible members (all members when none is)."""

    rank: np.ndarray
    crowd: np.ndarray
    front: np.ndarray
    Fn: np.ndarray


def front_stats(F: np.ndarray, CV: np.ndarray) -> FrontStats:
    """The front statistics every algorithm reports (NEMO per species, the others as one)."""
    F = np.asarray(F, dtype=np.float64)
    CV = np.asarray(CV, dtype=np.float64).reshape(-1)
    rank, crowd = rank_and_crowding(F, CV)
    feas = CV <= 0
    ref = F[feas] if feas.any() else F
    front = (rank == 0) & (feas if feas.any() else np.ones(len(F), bool))
    return FrontStats(rank, crowd, front, normalise(F, ref.min(axis=0), ref.max(axis=0)))

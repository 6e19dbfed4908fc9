"""Pricing policy batches from a cost table: a Numba gather and sum over layers."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def gather_sum(values: np.ndarray, pair_idx: np.ndarray) -> np.ndarray:
    """values float64 [C, L, K] (column, layer, bit pair); pair_idx int64 [P, L] -> [P, C] sums."""
    n_cols, n_layers, _ = values.shape
    n_pol = pair_idx.shape[0]
    out = np.zeros((n_pol, n_cols), dtype=np.float64)
    for p in range(n_pol):
        for i in range(n_layers):
            k = pair_idx[p, i]
            for c in range(n_cols):
                out[p, c] += values[c, i, k]
    return out


@njit(cache=True)
def gather_all(flags: np.ndarray, pair_idx: np.ndarray) -> np.ndarray:
    """flags bool [L, K]; -> [P] index of the first layer whose pair is not feasible, or -1."""
    n_pol, n_layers = pair_idx.shape
    out = np.full(n_pol, -1, dtype=np.int64)
    for p in range(n_pol):
        for i in range(n_layers):
            if not flags[i, pair_idx[p, i]]:
                out[p] = i
                break
    return out

"""Pricing policy batches from a cost table: one Numba pass per policy for the sums, then the
peak activation memory of the whole batch in policy blocks."""

from __future__ import annotations

import numpy as np
from numba import njit

from hwq.cost_models.metrics import peak_activation_bytes


@njit(cache=True)
def evaluate_batch(
    values: np.ndarray,        # float64 [L, K, C] (columns innermost: one contiguous add)
    lut: np.ndarray,           # int64 [33, 33] pair index of (w, a), -1 if absent
    feasible: np.ndarray,      # bool [L, K]
    pairs: np.ndarray,         # int [P, L, 2] (w, a) per layer
    ask_layer: np.ndarray,     # activation plan (hwq.activations), see peak_activation_bytes
    ask_side: np.ndarray,
    tensor_elems: np.ndarray,
    reader_ptr: np.ndarray,
    reader_idx: np.ndarray,
    live_ptr: np.ndarray,
    live_idx: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Column sums [P, C], peak activation bytes [P], first infeasible
    layer [P] (-1: none) and first layer whose pair is not in the table [P] (-1: none)."""
    n_layers, _, n_cols = values.shape
    n_pol = pairs.shape[0]
    sums = np.zeros((n_pol, n_cols), dtype=np.float64)
    bad = np.full(n_pol, -1, dtype=np.int64)
    missing = np.full(n_pol, -1, dtype=np.int64)
    for p in range(n_pol):
        for i in range(n_layers):
            w = pairs[p, i, 0]
            a = pairs[p, i, 1]
            k = -1
            if 0 <= w <= 32 and 0 <= a <= 32:
                k = lut[w, a]
            if k < 0:
                missing[p] = i
                break
            row = values[i, k]
            for c in range(n_cols):
                sums[p, c] += row[c]
            if bad[p] < 0 and not feasible[i, k]:
                bad[p] = i
    peak = peak_activation_bytes(pairs, ask_layer, ask_side, tensor_elems, reader_ptr,
                                 reader_idx, live_ptr, live_idx)
    for p in range(n_pol):
        if missing[p] >= 0:
            peak[p] = 0.0
    return sums, peak, bad, missing

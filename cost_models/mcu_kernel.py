"""Numba kernel of the `mcu` kind (the model is described in `mcu.py`)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def simulate(macs: np.ndarray, types: np.ndarray, cpm: np.ndarray, clock: float,
             active_w: float) -> np.ndarray:
    """macs float64 [L], types int64 [L], cpm float64 [4, P] -> [L, P, 3] (cycles, s, pJ)."""
    n_l = macs.shape[0]
    n_p = cpm.shape[1]
    out = np.zeros((n_l, n_p, 3))
    for i in range(n_l):
        for j in range(n_p):
            c = np.ceil(macs[i] * cpm[types[i], j])
            t = c / clock
            out[i, j, 0] = c
            out[i, j, 1] = t
            out[i, j, 2] = active_w * t * 1e12
    return out

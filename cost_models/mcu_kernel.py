"""Numba kernel of the `mcu` kind (the model is described in `mcu.py`)."""

from __future__ import annotations

import numpy as np
from numba import njit

from hwq.cost_models.mcu import LOOKUP


@njit(cache=True)
def simulate(macs: np.ndarray, types: np.ndarray, copied: np.ndarray, cpm: np.ndarray,
             w_bits: np.ndarray, a_bits: np.ndarray, clock: float, active_w: float,
             copy_bytes_per_cycle: float) -> np.ndarray:
    """macs float64 [L], types int64 [L] (LAYER_TYPES index, or LOOKUP), copied float64 [L]
    (values a lookup copies), cpm float64 [4, P] -> [L, P, 3] (cycles, s, pJ)."""
    n_l = macs.shape[0]
    n_p = cpm.shape[1]
    out = np.zeros((n_l, n_p, 3))
    for i in range(n_l):
        for j in range(n_p):
            if types[i] == LOOKUP:
                c = np.ceil(copied[i] * (w_bits[j] + a_bits[j]) / 8.0 / copy_bytes_per_cycle)
            else:
                c = np.ceil(macs[i] * cpm[types[i], j])
            t = c / clock
            out[i, j, 0] = c
            out[i, j, 1] = t
            out[i, j, 2] = active_w * t * 1e12
    return out

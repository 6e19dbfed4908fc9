"""Numba kernel of the `mcu` kind (the model is described in `mcu.py`)."""

from __future__ import annotations

import numpy as np
from numba import njit

from hwq.cost_models.mcu import ACTIVE_W, CLOCK, COPY_BYTES, FLASH_CYCLES_PER_BYTE, LOOKUP


@njit(cache=True)
def simulate(macs: np.ndarray, types: np.ndarray, copied: np.ndarray, outs: np.ndarray,
             streams: np.ndarray, cpm: np.ndarray, glue: float, w_bits: np.ndarray,
             a_bits: np.ndarray, board: np.ndarray) -> np.ndarray:
    """macs float64 [L], types int64 [L] (LAYER_TYPES index, or LOOKUP), copied float64 [L]
    (values a lookup copies), outs float64 [L] (output elements), streams float64 [L] (1 where
    the layer streams its weights from flash: a linear layer), cpm float64 [4, P] (cycles per
    MAC), glue (cycles per output element), board (mcu.PARAM_NAMES)
    -> [L, P, 5] (cycles, compute cycles, stall cycles, s, pJ)."""
    n_l = macs.shape[0]
    n_p = cpm.shape[1]
    out = np.zeros((n_l, n_p, 5))
    clock = board[CLOCK]
    flash = board[FLASH_CYCLES_PER_BYTE]
    for i in range(n_l):
        for j in range(n_p):
            if types[i] == LOOKUP:
                c = np.ceil(copied[i] * (w_bits[j] + a_bits[j]) / 8.0 / board[COPY_BYTES])
                comp = c
            else:
                mac = macs[i] * cpm[types[i], j]
                glue_c = outs[i] * glue
                read = streams[i] * macs[i] * w_bits[j] / 8.0 * flash
                c = np.ceil(max(mac, read) + glue_c)
                comp = np.ceil(mac + glue_c)
            t = c / clock
            out[i, j, 0] = c
            out[i, j, 1] = comp
            out[i, j, 2] = c - comp
            out[i, j, 3] = t
            out[i, j, 4] = board[ACTIVE_W] * t * 1e12
    return out

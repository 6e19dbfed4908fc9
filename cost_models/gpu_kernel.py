"""Numba kernel of the `gpu` kind (the model is described in `gpu.py`, which also owns the layout
of the parameter vector: PARAM_NAMES and its index constants)."""

from __future__ import annotations

import numpy as np
from numba import njit

from hwq.cost_models.gpu import (
    BELOW_INT4_PREC,
    CLOCK,
    DRAM_BW,
    DRAM_PJ,
    EFF_COMPUTE,
    EFFICIENCY,
    IDLE_W,
    INT4_PREC,
    LAUNCH,
    MAX_W,
    PEAK,
    SATURATION,
    SM,
    TILE_K,
    TILE_M,
    TILE_N,
)


@njit(cache=True)
def simulate(layers: np.ndarray, w_bits: np.ndarray, a_bits: np.ndarray,
             prm: np.ndarray) -> np.ndarray:
    """layers float64 [L, 7] (M, N, K, GEMMs, weight-role elements, input elements, output
    elements; gpu.layer_rows) -> [L, P, 11]. K = 0 (an embedding's gather) computes nothing."""
    n_l = layers.shape[0]
    n_p = w_bits.shape[0]
    out = np.zeros((n_l, n_p, 11))
    sm, tm, tn = prm[SM], prm[TILE_M], prm[TILE_N]
    bw, dram_pj, launch = prm[DRAM_BW], prm[DRAM_PJ], prm[LAUNCH]
    e_m, ovl, sat = prm[EFFICIENCY], prm[EFFICIENCY + 1], prm[SATURATION]
    idle, pmax, clock = prm[IDLE_W], prm[MAX_W], prm[CLOCK]
    for i in range(n_l):
        m, n, k, g = layers[i, 0], layers[i, 1], layers[i, 2], layers[i, 3]
        wp, ie, oe = layers[i, 4], layers[i, 5], layers[i, 6]
        tiles = np.ceil(m / tm) * np.ceil(n / tn) * g
        waves = max(np.ceil(tiles / sm), sat)  # under `sat` CTAs per SM: not saturated
        true_ops = 2.0 * m * n * k * g
        for j in range(n_p):
            w = float(w_bits[j])
            a = float(a_bits[j])
            b = max(w, a)
            if b > 16:
                prec = 3
            elif b > 8:
                prec = 2
            elif b > 4:
                prec = 1
            elif b == 4:
                prec = int(prm[INT4_PREC])
            else:
                prec = int(prm[BELOW_INT4_PREC])
            peak = prm[PEAK + prec]
            tk = prm[TILE_K + prec]
            e_c = prm[EFF_COMPUTE + prec]
            tc = waves * 2.0 * tm * tn * np.ceil(k / tk) * tk / (peak / sm) / e_c
            a_out = a if a > 16 else (16.0 if a > 8 else a)
            rd = wp * w + ie * a
            wr = oe * a_out
            tmem = (rd + wr) / 8.0 / (bw * e_m)
            t = max(tc, tmem) + (1.0 - ovl) * min(tc, tmem) + launch
            util = min(1.0, true_ops / (peak * t))
            e_core = (idle + (pmax - idle) * util) * t * 1e12
            e_dram = dram_pj * (rd + wr)
            cyc = t * clock
            comp = min(tc * clock, cyc)
            out[i, j, 0] = cyc
            out[i, j, 1] = comp
            out[i, j, 2] = cyc - comp
            out[i, j, 3] = t
            out[i, j, 4] = e_core + e_dram
            out[i, j, 5] = e_core
            out[i, j, 6] = 0.0
            out[i, j, 7] = e_dram
            out[i, j, 8] = rd
            out[i, j, 9] = wr
            out[i, j, 10] = prec
    return out

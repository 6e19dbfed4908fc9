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
def _roofline_row(row: np.ndarray, tc: float, tmem: float, true_ops: float, peak: float,
                  rd: float, wr: float, prec: float, launch: float, ovl: float, idle: float,
                  pmax: float, dram_pj: float, clock: float) -> None:
    """One layer at one pair, both kernels: time = the binding of compute `tc` and memory `tmem`
    (plus the unoverlapped share and the launch), energy = power at the utilisation x time +
    DRAM bits x pJ, written into `row` (gpu.OUT_COLUMNS)."""
    t = max(tc, tmem) + (1.0 - ovl) * min(tc, tmem) + launch
    util = min(1.0, true_ops / (peak * t))
    e_core = (idle + (pmax - idle) * util) * t * 1e12
    e_dram = dram_pj * (rd + wr)
    cyc = t * clock
    comp = min(tc * clock, cyc)
    row[0] = cyc
    row[1] = comp
    row[2] = cyc - comp
    row[3] = t
    row[4] = e_core + e_dram
    row[5] = e_core
    row[6] = 0.0
    row[7] = e_dram
    row[8] = rd
    row[9] = wr
    row[10] = prec


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
            _roofline_row(out[i, j], tc, tmem, true_ops, peak, rd, wr, prec, launch, ovl,
                          idle, pmax, dram_pj, clock)
    return out


@njit(cache=True)
def simulate_llm(layers: np.ndarray, role_bits: np.ndarray, act_bits: np.ndarray,
                 e_mem: np.ndarray, e_comp: np.ndarray, prec: np.ndarray,
                 prm: np.ndarray) -> np.ndarray:
    """The per-format roofline of an LLM runtime (gpu_llm.py). layers float64 [L, 4] (MACs,
    weight-role elements, input elements, output elements); [L, P] bits of the weight-role
    elements (stored bits per weight, scales included; the KV bits of a matmul), activation bits,
    memory and compute efficiencies, precision codes -> [L, P, 11] (gpu.OUT_COLUMNS)."""
    n_l = layers.shape[0]
    n_p = role_bits.shape[1]
    out = np.zeros((n_l, n_p, 11))
    bw, dram_pj, launch = prm[DRAM_BW], prm[DRAM_PJ], prm[LAUNCH]
    ovl = prm[EFFICIENCY + 1]
    idle, pmax, clock = prm[IDLE_W], prm[MAX_W], prm[CLOCK]
    for i in range(n_l):
        macs, we, ie, oe = layers[i, 0], layers[i, 1], layers[i, 2], layers[i, 3]
        for j in range(n_p):
            p = prec[i, j]
            peak = prm[PEAK + p]
            a = act_bits[i, j]
            tc = 2.0 * macs / (peak * e_comp[i, j])
            rd = we * role_bits[i, j] + ie * a
            wr = oe * a
            tmem = (rd + wr) / 8.0 / (bw * e_mem[i, j])
            _roofline_row(out[i, j], tc, tmem, 2.0 * macs, peak, rd, wr, p, launch, ovl,
                          idle, pmax, dram_pj, clock)
    return out

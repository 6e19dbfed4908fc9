"""Numba kernels of the `bit_serial` kind (the model is described in `bit_serial.py`, which also
owns the parameter vector's layout: PARAM_NAMES and its index constants)."""

from __future__ import annotations

import numpy as np
from numba import njit

from hwq.cost_models.bit_serial import (
    ABUF_BITS,
    ABUF_R,
    ABUF_W,
    BINOPS,
    BITS_PER_CYCLE,
    BW,
    CORE_PJ,
    DRAM_PJ,
    FC_LAW,
    LANES,
    LAW,
    OBUF_R,
    OBUF_W,
    PARALLEL_BITS,
    WBUF_BITS,
    WBUF_R,
    WBUF_W,
)
from hwq.cost_models.operands import LINEAR, MATMUL


@njit(cache=True)
def _serial(bits: float, p: float, bpc: float) -> float:
    b = min(bits, p)
    return np.ceil(b / bpc) * bpc


@njit(cache=True)
def _compute_cycles(law: int, macs: float, w: float, a: float, lanes: float, p: float,
                    bpc: float, binops: float) -> float:
    if law == 0:
        c = macs / lanes * _serial(a, p, bpc) / p
    elif law == 1:
        c = macs / lanes * _serial(w, p, bpc) / p
    elif law == 2:
        c = macs / lanes * _serial(w, p, bpc) * _serial(a, p, bpc) / (p * p)
    elif law == 3:
        c = macs * w * a / binops
    else:
        c = macs / lanes
    return np.ceil(c)


@njit(cache=True)
def simulate(layers: np.ndarray, w_bits: np.ndarray, a_bits: np.ndarray,
             prm: np.ndarray) -> np.ndarray:
    """layers float64 [L, 6] (macs, weight-role elements, input elements, output elements, op
    code, GEMMs; bit_serial.layer_rows) -> [L, P, 9]."""
    n_l = layers.shape[0]
    n_p = w_bits.shape[0]
    out = np.zeros((n_l, n_p, 9))
    law = int(prm[LAW])
    fc_law = int(prm[FC_LAW])
    lanes, p, bpc, binops = prm[LANES], prm[PARALLEL_BITS], prm[BITS_PER_CYCLE], prm[BINOPS]
    bw, dram_pj, core_pj = prm[BW], prm[DRAM_PJ], prm[CORE_PJ]
    for i in range(n_l):
        macs, wp, ie, oe = layers[i, 0], layers[i, 1], layers[i, 2], layers[i, 3]
        op = int(layers[i, 4])
        n_gemm = layers[i, 5]
        lw = fc_law if op == LINEAR or op == MATMUL else law
        for j in range(n_p):
            w = float(w_bits[j])
            a = float(a_bits[j])
            comp = _compute_cycles(lw, macs, w, a, lanes, p, bpc, binops)
            w_dram = wp * w
            in_dram = ie * a
            w_one = w_dram / n_gemm  # one GEMM's operands (a matmul has batch x groups)
            if w_one > prm[WBUF_BITS] and in_dram / n_gemm > prm[ABUF_BITS]:
                in_dram *= np.ceil(w_one / prm[WBUF_BITS])
            rd = w_dram + in_dram
            wr = oe * a
            mem = np.ceil((rd + wr) / bw)
            cyc = max(comp, mem)
            e_core = core_pj * comp
            e_sram = (w_dram * (prm[WBUF_R] + prm[WBUF_W]) + in_dram * (prm[ABUF_R] + prm[ABUF_W])
                      + wr * (prm[OBUF_R] + prm[OBUF_W]))
            e_dram = dram_pj * (rd + wr)
            out[i, j, 0] = cyc
            out[i, j, 1] = comp
            out[i, j, 2] = cyc - comp
            out[i, j, 3] = e_core + e_sram + e_dram
            out[i, j, 4] = e_core
            out[i, j, 5] = e_sram
            out[i, j, 6] = e_dram
            out[i, j, 7] = rd
            out[i, j, 8] = wr
    return out

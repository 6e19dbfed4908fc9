"""Device-independent metrics as Numba kernels: BOPs, weight bytes, peak activation memory.

BOPs = MACs x w_bits x a_bits (a 16/32-bit operand counts as its width: FP32 is 32 x 32, the
HAWQ-V3 convention), also for a matmul row (a product of two activations: its w_bits are its
second operand's); weight bytes = params x w_bits / 8 (an exact fraction, biases excluded): 0 for
a matmul (no weights), table x w_bits for an embedding.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def layer_bops(
    macs: np.ndarray, w_bits: np.ndarray, a_bits: np.ndarray, use_max: bool
) -> np.ndarray:
    """[L, P] BOPs of every layer at every (w_bits[p], a_bits[p]) pair."""
    n, p = macs.shape[0], w_bits.shape[0]
    out = np.empty((n, p), dtype=np.float64)
    for i in range(n):
        for j in range(p):
            if use_max:
                out[i, j] = float(macs[i]) * max(w_bits[j], a_bits[j])
            else:
                out[i, j] = float(macs[i]) * w_bits[j] * a_bits[j]
    return out


@njit(cache=True)
def layer_weight_bytes(weight_params: np.ndarray, w_bits: np.ndarray) -> np.ndarray:
    """[L, P] weight bytes (exact fractions)."""
    n, p = weight_params.shape[0], w_bits.shape[0]
    out = np.empty((n, p), dtype=np.float64)
    for i in range(n):
        for j in range(p):
            out[i, j] = weight_params[i] * w_bits[j] / 8.0
    return out


@njit(cache=True)
def peak_activation_bytes(
    pairs: np.ndarray,          # int [P, L, 2] (w_bits, a_bits) of each layer
    ask_layer: np.ndarray,      # int64 [A] asks: the bits pairs[:, ask_layer[c], ask_side[c]]
    ask_side: np.ndarray,       # int64 [A] 1: a_bits (a layer's input), 0: w_bits (a matmul's
                                #           second operand)
    tensor_elems: np.ndarray,   # int64 [T]
    reader_ptr: np.ndarray,     # int64 [T + 1] CSR into reader_idx
    reader_idx: np.ndarray,     # int64 [R] asks that decide the tensor's bits
    live_ptr: np.ndarray,       # int64 [L + 1] CSR into live_idx
    live_idx: np.ndarray,       # int64 [E] tensors resident while layer i runs
) -> np.ndarray:
    """[P] peak activation bytes of a batch of policies: per policy, the max over layers of the
    bytes of every tensor live at it, each tensor at the largest bits its readers ask for (8 if
    it has none; hwq.activations builds the plan).

    Policies are taken in blocks with the policy index innermost, so that every step of the
    plan (a tensor's bits = the largest of its readers', a layer's live bytes) runs over a
    contiguous block in integer arithmetic: about 2.7x the per-policy loop on ResNet-50."""
    n_pol = pairs.shape[0]
    n_asks = ask_layer.shape[0]
    n_t = tensor_elems.shape[0]
    block = 512
    out = np.zeros(n_pol, dtype=np.float64)
    a_t = np.empty((n_asks, block), dtype=np.int64)
    bits = np.empty((n_t, block), dtype=np.int64)
    total = np.empty(block, dtype=np.int64)
    peak = np.empty(block, dtype=np.int64)
    for start in range(0, n_pol, block):
        nb = min(block, n_pol - start)
        for q in range(nb):
            for c in range(n_asks):
                a_t[c, q] = pairs[start + q, ask_layer[c], ask_side[c]]
        for t in range(n_t):
            row = bits[t]
            row[:nb] = 0
            for k in range(reader_ptr[t], reader_ptr[t + 1]):
                src = a_t[reader_idx[k]]
                for q in range(nb):
                    if src[q] > row[q]:
                        row[q] = src[q]
            for q in range(nb):
                if row[q] == 0:
                    row[q] = 8
        peak[:nb] = 0
        for i in range(live_ptr.shape[0] - 1):
            total[:nb] = 0
            for k in range(live_ptr[i], live_ptr[i + 1]):
                t = live_idx[k]
                e = tensor_elems[t]
                row = bits[t]
                for q in range(nb):
                    total[q] += e * row[q]
            for q in range(nb):
                if total[q] > peak[q]:
                    peak[q] = total[q]
        for q in range(nb):
            out[start + q] = peak[q] / 8.0
    return out

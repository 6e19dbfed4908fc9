"""The `gpu` kind: tensor-core GPUs (T4, A100, H100, Jetson Orin), DESIGN.md §3, issue 4.

Each layer is a GEMM: M = batch·out_h·out_w, N = out_channels/groups, K = in_channels/groups·kh·kw
(a linear layer: M = batch, N = out, K = in), `groups` GEMMs batched in one kernel.

* Precision = max(w, a): 32 → fp32 on the CUDA cores (`cuda_core.fp32_ops_per_s`, tile depth
  of fp16); 9–16 → fp16; 5–8 → int8; 4 → int4 (or `fallback.int4`, default int8,
  when the device has no int4 tensor cores); 1–3 → `fallback.below_int4` (default int4 if present,
  else int8). A fallback changes the compute rate only: bytes moved stay at the true widths.
* Tile and wave quantization: tiles = ceil(M/tm)·ceil(N/tn)·groups, waves = ceil(tiles/sm_count);
  compute time = waves · (2·tm·tn·ceil(K/tk)·tk) / (peak/sm_count) / efficiency.compute.
  `gemm_tile.k` is one number or one per precision ({fp16, int8, int4}): a tensor-core MMA step
  is twice as deep in K at int4 as at int8 (Turing mma m8n8k32 vs m8n8k16), so int4 kernels pad
  short reductions (K = 576, 64) to a coarser multiple.
* Memory time = (weights·w + input·a + output·a) / 8 / (dram_bytes_per_s · efficiency.memory)
  (the output is requantized to the layer's activation width; fp16 for 16/32-bit layers).
* time = max(tc, tm) + (1 − efficiency.overlap)·min(tc, tm) + launch_overhead_s.
  The three global parameters are `efficiency.{compute, memory, overlap}` (no per-layer constants).
* cycles = time · clock_hz; compute_cycles = tc · clock_hz (capped at cycles); stall = rest.
* energy = (idle_w + (max_w − idle_w)·utilisation)·time + dram_pj_per_bit·bits, utilisation =
  true ops / (peak · time) of the chosen precision. Core energy is the power term.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit

from hwq.errors import CostModelError

PREC = {"int4": 0, "int8": 1, "fp16": 2, "fp32": 3}
OUT_COLUMNS = ("cycles", "compute_cycles", "stall_cycles", "latency_s", "energy_pj",
               "energy_core_pj", "energy_sram_pj", "energy_dram_pj", "dram_read_bits",
               "dram_write_bits", "precision")
# The flat parameter vector of `simulate`, in this order. Peaks and tile depths are indexed by
# precision code (PREC: int4, int8, fp16, fp32); fp32 (CUDA cores) uses fp16's tile depth.
PARAM_NAMES = (
    "peak_int4_ops_per_s", "peak_int8_ops_per_s", "peak_fp16_ops_per_s", "peak_fp32_ops_per_s",
    "tile_k_int4", "tile_k_int8", "tile_k_fp16", "tile_k_fp32",
    "sm_count", "tile_m", "tile_n", "dram_bytes_per_s", "dram_pj_per_bit", "launch_overhead_s",
    "efficiency_compute", "efficiency_memory", "efficiency_overlap",
    "idle_w", "max_w", "clock_hz", "int4_precision", "below_int4_precision",
)
N_PARAMS = len(PARAM_NAMES)
PEAK, TILE_K, SM, TILE_M, TILE_N = 0, 4, 8, 9, 10
DRAM_BW, DRAM_PJ, LAUNCH, EFFICIENCY = 11, 12, 13, 14  # EFFICIENCY: compute, memory, overlap
IDLE_W, MAX_W, CLOCK, INT4_PREC, BELOW_INT4_PREC = 17, 18, 19, 20, 21


def tile_k(profile: Any) -> tuple[float, float, float]:
    """gemm_tile.k per precision (int4, int8, fp16): one number for all, or a mapping."""
    k = profile.get("gemm_tile.k")
    if isinstance(k, Mapping):
        k8 = float(k["int8"])
        return float(k.get("int4", k8)), k8, float(k.get("fp16", k8))
    return float(k), float(k), float(k)


def params_from_profile(profile: Any) -> np.ndarray:
    """The PARAM_NAMES vector of a gpu profile."""
    g = profile.get
    tc = g("tensor_core")
    has4 = "int4_ops_per_s" in tc
    fb4 = g("fallback.int4", "int4" if has4 else "int8")
    fbl = g("fallback.below_int4", "int4" if has4 else "int8")
    if (fb4 == "int4" or fbl == "int4") and not has4:
        raise CostModelError(f"profile {profile.name}: int4 fallback without int4 tensor cores")
    eff = g("efficiency")
    k4, k8, k16 = tile_k(profile)
    values = {
        "peak_int4_ops_per_s": tc.get("int4_ops_per_s", tc["int8_ops_per_s"]),
        "peak_int8_ops_per_s": tc["int8_ops_per_s"],
        "peak_fp16_ops_per_s": tc["fp16_ops_per_s"],
        "peak_fp32_ops_per_s": g("cuda_core.fp32_ops_per_s", 0.0),
        "tile_k_int4": k4, "tile_k_int8": k8, "tile_k_fp16": k16, "tile_k_fp32": k16,
        "sm_count": g("sm_count"), "tile_m": g("gemm_tile.m"), "tile_n": g("gemm_tile.n"),
        "dram_bytes_per_s": g("memory.dram_bytes_per_s"),
        "dram_pj_per_bit": g("memory.dram_pj_per_bit"),
        "launch_overhead_s": g("launch_overhead_s"),
        "efficiency_compute": eff.get("compute", 1.0),
        "efficiency_memory": eff.get("memory", 1.0),
        "efficiency_overlap": eff.get("overlap", 1.0),
        "idle_w": g("power.idle_w"), "max_w": g("power.max_w"), "clock_hz": profile.clock_hz,
        "int4_precision": PREC[fb4], "below_int4_precision": PREC[fbl],
    }
    return np.array([float(values[n]) for n in PARAM_NAMES], dtype=np.float64)


@njit(cache=True)
def simulate(layers: np.ndarray, w_bits: np.ndarray, a_bits: np.ndarray,
             prm: np.ndarray) -> np.ndarray:
    """layers float64 [L, 7] (M, N, K, groups, weight_params, in_elems, out_elems) -> [L, P, 11]."""
    n_l = layers.shape[0]
    n_p = w_bits.shape[0]
    out = np.zeros((n_l, n_p, 11))
    sm, tm, tn = prm[SM], prm[TILE_M], prm[TILE_N]
    bw, dram_pj, launch = prm[DRAM_BW], prm[DRAM_PJ], prm[LAUNCH]
    e_c, e_m, ovl = prm[EFFICIENCY], prm[EFFICIENCY + 1], prm[EFFICIENCY + 2]
    idle, pmax, clock = prm[IDLE_W], prm[MAX_W], prm[CLOCK]
    for i in range(n_l):
        m, n, k, g = layers[i, 0], layers[i, 1], layers[i, 2], layers[i, 3]
        wp, ie, oe = layers[i, 4], layers[i, 5], layers[i, 6]
        tiles = np.ceil(m / tm) * np.ceil(n / tn) * g
        waves = np.ceil(tiles / sm)
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


def layer_rows(graph: Any) -> np.ndarray:
    f = graph.frame
    col = lambda c: f[c].to_numpy(dtype=np.float64)  # noqa: E731
    g = col("groups")
    m = col("batch") * col("out_h") * col("out_w")
    n = col("out_channels") / g
    k = col("in_channels") / g * col("kernel_h") * col("kernel_w")
    return np.ascontiguousarray(np.stack(
        [m, n, k, g, col("weight_params"), col("in_elems"), col("out_elems")], axis=1))


def price(graph: Any, profile: Any, w_bits: np.ndarray, a_bits: np.ndarray) -> dict[str, Any]:
    w_bits = np.asarray(w_bits, dtype=np.int64)
    a_bits = np.asarray(a_bits, dtype=np.int64)
    for w, a in zip(w_bits, a_bits):
        if not (1 <= w <= 32 and 1 <= a <= 32):
            first = graph.names[0] if len(graph) else "?"
            raise CostModelError(f"layer {first}: {profile.name} cannot price W{w}A{a}")
        if max(w, a) > 16 and profile.get("cuda_core.fp32_ops_per_s", None) is None:
            first = graph.names[0] if len(graph) else "?"
            raise CostModelError(f"layer {first}: {profile.name} cannot price W{w}A{a}: 32-bit "
                                 "layers need cuda_core.fp32_ops_per_s in the profile")
    out = simulate(layer_rows(graph), w_bits, a_bits, params_from_profile(profile))
    result: dict[str, Any] = {name: out[:, :, i] for i, name in enumerate(OUT_COLUMNS)}
    result["_labels"] = {"precision": ("int4", "int8", "fp16", "fp32")}
    return result

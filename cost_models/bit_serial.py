"""The `bit_serial` kind: Stripes, Loom, UNPU, BISMO (DESIGN.md §3, issue 4).

Lanes are counted as `parallel_bits`-wide bit-parallel MAC equivalents (the profiles' comments):
a conv layer's compute cycles are

* serial_activations: MACs / lanes × a' / P             (a' = ceil(min(a, P) / bpc) × bpc)
* serial_weights:     MACs / lanes × w' / P
* serial_both:        MACs / lanes × w' × a' / P²
* binary_matrix:      MACs × w × a / (dm × dk × dn)
* parallel (fc_law):  MACs / lanes                       (no speed-up below P bits)

with P = `parallel_bits` and bpc = `bits_per_cycle` (default 1); bits above P clamp to P. FC
(linear) layers use `fc_law` (default: `law`). Compute cycles are rounded up to whole cycles.

Memory: DRAM reads = weights at w bits + input at a bits, the input re-read once per weight tile
when neither the weights fit the weight buffer nor the input the activation buffer; DRAM writes =
output at a bits (the layer's own activation width: a cost table is priced per uniform pair).
Memory cycles = DRAM bits / `offchip.bandwidth_bits_per_cycle`; cycles = max(compute, memory),
stall = cycles − compute.

Energy: core = `core.energy_pj_per_cycle` (the whole array's energy per busy cycle) × compute
cycles; SRAM = every DRAM bit written into its buffer once and read out once (weights →
`weights`, input → `activations`, output → `outputs` or else `activations`); DRAM =
`offchip.energy_pj_per_bit` × (reads + writes).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from hwq.errors import CostModelError

LAW_CODES = {"serial_activations": 0, "serial_weights": 1, "serial_both": 2, "binary_matrix": 3,
             "parallel": 4}
OUT_COLUMNS = ("cycles", "compute_cycles", "stall_cycles", "energy_pj", "energy_core_pj",
               "energy_sram_pj", "energy_dram_pj", "dram_read_bits", "dram_write_bits")
# params: law, fc_law, lanes, P, bpc, dm·dk·dn, bw bits/cycle, dram pJ/bit, core pJ/cycle,
#         w buf r, w buf w, a buf r, a buf w, o buf r, o buf w, w buf bits, a buf bits
N_PARAMS = 17


def params_from_profile(profile: Any) -> np.ndarray:
    g = profile.get
    law = str(g("compute.law"))
    fc_law = str(g("compute.fc_law", law))
    lanes = float(g("compute.lanes", 1))
    arr = g("compute.binary_array", None)
    binops = float(arr["dm"] * arr["dk"] * arr["dn"]) if arr else 1.0
    if fc_law == "parallel" and g("compute.lanes", None) is None:
        fc_law = law  # a binary engine without lanes has no bit-parallel mode
    wb = g("buffers.weights")
    ab = g("buffers.activations")
    ob = g("buffers.outputs", None) or ab
    return np.array([
        LAW_CODES[law], LAW_CODES[fc_law], lanes, float(g("compute.parallel_bits", 16)),
        float(g("compute.bits_per_cycle", 1)), binops,
        float(g("offchip.bandwidth_bits_per_cycle")), float(g("offchip.energy_pj_per_bit")),
        float(g("core.energy_pj_per_cycle")),
        float(wb["read_pj_per_bit"]), float(wb["write_pj_per_bit"]),
        float(ab["read_pj_per_bit"]), float(ab["write_pj_per_bit"]),
        float(ob["read_pj_per_bit"]), float(ob["write_pj_per_bit"]),
        8.0 * wb["size_bytes"], 8.0 * ab["size_bytes"],
    ], dtype=np.float64)


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
    """layers float64 [L, 5] (macs, weight_params, in_elems, out_elems, is_fc) -> [L, P, 9]."""
    n_l = layers.shape[0]
    n_p = w_bits.shape[0]
    out = np.zeros((n_l, n_p, 9))
    law = int(prm[0])
    fc_law = int(prm[1])
    lanes, p, bpc, binops = prm[2], prm[3], prm[4], prm[5]
    bw, dram_pj, core_pj = prm[6], prm[7], prm[8]
    for i in range(n_l):
        macs, wp, ie, oe = layers[i, 0], layers[i, 1], layers[i, 2], layers[i, 3]
        lw = fc_law if layers[i, 4] > 0.5 else law
        for j in range(n_p):
            w = float(w_bits[j])
            a = float(a_bits[j])
            comp = _compute_cycles(lw, macs, w, a, lanes, p, bpc, binops)
            w_dram = wp * w
            in_dram = ie * a
            if w_dram > prm[15] and in_dram > prm[16]:
                in_dram *= np.ceil(w_dram / prm[15])
            rd = w_dram + in_dram
            wr = oe * a
            mem = np.ceil((rd + wr) / bw)
            cyc = max(comp, mem)
            e_core = core_pj * comp
            e_sram = (w_dram * (prm[9] + prm[10]) + in_dram * (prm[11] + prm[12])
                      + wr * (prm[13] + prm[14]))
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


def layer_rows(graph: Any) -> np.ndarray:
    f = graph.frame
    rows = np.stack([f[c].to_numpy(dtype=np.float64)
                     for c in ("macs", "weight_params", "in_elems", "out_elems")], axis=1)
    is_fc = (f["op"] == "linear").to_numpy().astype(np.float64)
    return np.ascontiguousarray(np.concatenate([rows, is_fc[:, None]], axis=1))


def price(graph: Any, profile: Any, w_bits: np.ndarray, a_bits: np.ndarray) -> dict[str, Any]:
    w_bits = np.asarray(w_bits, dtype=np.int64)
    a_bits = np.asarray(a_bits, dtype=np.int64)
    for w, a in zip(w_bits, a_bits):
        if w < 1 or a < 1:
            first = graph.names[0] if len(graph) else "?"
            raise CostModelError(f"layer {first}: {profile.name} cannot price W{w}A{a}")
    out = simulate(layer_rows(graph), w_bits, a_bits, params_from_profile(profile))
    result: dict[str, Any] = {name: out[:, :, i] for i, name in enumerate(OUT_COLUMNS)}
    result["latency_s"] = result["cycles"] / float(profile.clock_hz)
    return result

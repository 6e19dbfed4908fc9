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

A `matmul` row (two activations) is a GEMM whose "weights" are its second operand (at w bits):
it uses `fc_law` like a linear layer (a 1×1 product of M rows with a K×N operand, the reuse
structure of an FC layer over tokens), and its second operand moves through the weight buffer
like weights (cost_models/operands.py). An `embedding` row computes nothing (MACs 0): it reads
its looked-up rows (batch·tokens·dimension values at w bits) through the weight buffer and writes
its output.

Memory: DRAM reads = weights at w bits + input at a bits, the input re-read once per weight tile
when neither the weights fit the weight buffer nor the input the activation buffer (for a matmul,
judged per GEMM: each of its batch·groups products has its own operands); DRAM writes = output at
a bits (the layer's own activation width: a cost table is priced per uniform pair).
Memory cycles = DRAM bits / `offchip.bandwidth_bits_per_cycle`; cycles = max(compute, memory),
stall = cycles − compute.

Energy: core = `core.energy_pj_per_cycle` (the whole array's energy per busy cycle) × compute
cycles; SRAM = every DRAM bit written into its buffer once and read out once (weights →
`weights`, input → `activations`, output → `outputs` or else `activations`); DRAM =
`offchip.energy_pj_per_bit` × (reads + writes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hwq.cost_models.kind import DeviceKind, Priced, register_kind
from hwq.errors import CostModelError
from hwq.profile_rules import RuleSource, int_at, max_width_problems
from hwq.profile_schema import BUFFER, CORE, OFFCHIP, POSINT, obj

if TYPE_CHECKING:
    from hwq.graph import LayerGraph
    from hwq.profile import DeviceProfile

LAWS = ["serial_activations", "serial_weights", "serial_both", "binary_matrix"]
PROPERTIES = {
    "compute": obj(
        {
            "law": {"enum": LAWS},
            "fc_law": {"enum": [*LAWS, "parallel"]},
            "lanes": POSINT,
            "parallel_bits": POSINT,
            "bits_per_cycle": POSINT,
            "binary_array": obj({"dm": POSINT, "dk": POSINT, "dn": POSINT}),
        },
        # lanes + parallel_bits (serial laws) or binary_array (binary_matrix): semantic rule
        optional=("fc_law", "lanes", "parallel_bits", "bits_per_cycle", "binary_array"),
    ),
    "buffers": obj({"weights": BUFFER, "activations": BUFFER, "outputs": BUFFER},
                   optional=("outputs",)),
    "offchip": OFFCHIP,
    "core": CORE,
}

LAW_CODES = {"serial_activations": 0, "serial_weights": 1, "serial_both": 2, "binary_matrix": 3,
             "parallel": 4}
OUT_COLUMNS = ("cycles", "compute_cycles", "stall_cycles", "energy_pj", "energy_core_pj",
               "energy_sram_pj", "energy_dram_pj", "dram_read_bits", "dram_write_bits")
# The flat parameter vector of the kernel, in this order.
PARAM_NAMES: tuple[str, ...] = (
    "law", "fc_law", "lanes", "parallel_bits", "bits_per_cycle", "binary_ops_per_cycle",
    "offchip_bandwidth_bits_per_cycle", "offchip_energy_pj_per_bit", "core_energy_pj_per_cycle",
    "weights_read_pj_per_bit", "weights_write_pj_per_bit", "activations_read_pj_per_bit",
    "activations_write_pj_per_bit", "outputs_read_pj_per_bit", "outputs_write_pj_per_bit",
    "weights_size_bits", "activations_size_bits",
)
LAW, FC_LAW, LANES, PARALLEL_BITS, BITS_PER_CYCLE, BINOPS = range(6)
BW, DRAM_PJ, CORE_PJ = 6, 7, 8
WBUF_R, WBUF_W, ABUF_R, ABUF_W, OBUF_R, OBUF_W = range(9, 15)
WBUF_BITS, ABUF_BITS = 15, 16


def params_from_profile(profile: DeviceProfile) -> np.ndarray:
    """The PARAM_NAMES vector of a bit_serial profile."""
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
    values = {
        "law": LAW_CODES[law], "fc_law": LAW_CODES[fc_law], "lanes": lanes,
        "parallel_bits": float(g("compute.parallel_bits", 16)),
        "bits_per_cycle": float(g("compute.bits_per_cycle", 1)), "binary_ops_per_cycle": binops,
        "offchip_bandwidth_bits_per_cycle": float(g("offchip.bandwidth_bits_per_cycle")),
        "offchip_energy_pj_per_bit": float(g("offchip.energy_pj_per_bit")),
        "core_energy_pj_per_cycle": float(g("core.energy_pj_per_cycle")),
        "weights_read_pj_per_bit": float(wb["read_pj_per_bit"]),
        "weights_write_pj_per_bit": float(wb["write_pj_per_bit"]),
        "activations_read_pj_per_bit": float(ab["read_pj_per_bit"]),
        "activations_write_pj_per_bit": float(ab["write_pj_per_bit"]),
        "outputs_read_pj_per_bit": float(ob["read_pj_per_bit"]),
        "outputs_write_pj_per_bit": float(ob["write_pj_per_bit"]),
        "weights_size_bits": 8.0 * wb["size_bytes"],
        "activations_size_bits": 8.0 * ab["size_bytes"],
    }
    return np.array([values[n] for n in PARAM_NAMES], dtype=np.float64)


def rules(src: RuleSource) -> list[str]:
    comp = src.data.get("compute")
    if not isinstance(comp, dict):
        return []
    where = src.at(("compute",))
    if comp.get("law") == "binary_matrix":
        if "binary_array" not in comp:
            return [f"{where}: compute.binary_array: expected {{dm, dk, dn}} for the "
                    "binary_matrix law, found nothing"]
        return []
    out = [f"{where}: compute.{key}: expected {what} for the {comp.get('law')} law, found "
           "nothing" for key, what in (("lanes", "the MACs per cycle at full precision"),
                                       ("parallel_bits", "the full-precision width"))
           if key not in comp]
    parallel = int_at(src.data, "compute", "parallel_bits")
    if parallel is not None:
        out += max_width_problems(src, parallel, "compute.parallel_bits")
    return out


def layer_rows(graph: LayerGraph) -> np.ndarray:
    """float64 [L, 6] kernel rows: macs, weight-role elements, input elements, output elements,
    op code, GEMMs per row (cost_models/operands.py)."""
    from hwq.cost_models import operands

    macs = graph.frame["macs"].to_numpy(dtype=np.float64)
    return np.ascontiguousarray(np.stack([
        macs, operands.weight_operand_elems(graph), operands.first_operand_elems(graph),
        graph.frame["out_elems"].to_numpy(dtype=np.float64),
        operands.op_codes(graph).astype(np.float64), operands.gemms(graph)], axis=1))


def price(graph: LayerGraph, profile: DeviceProfile, w_bits: np.ndarray,
          a_bits: np.ndarray) -> Priced:
    from hwq.cost_models.bit_serial_kernel import simulate

    w_bits = np.asarray(w_bits, dtype=np.int64)
    a_bits = np.asarray(a_bits, dtype=np.int64)
    for w, a in zip(w_bits, a_bits):
        if w < 1 or a < 1:
            first = graph.names[0] if len(graph) else "?"
            raise CostModelError(f"layer {first}: {profile.name} cannot price W{w}A{a}")
    out = simulate(layer_rows(graph), w_bits, a_bits, params_from_profile(profile))
    cols = {name: out[:, :, i] for i, name in enumerate(OUT_COLUMNS)}
    cols["latency_s"] = cols["cycles"] / float(profile.clock_hz)
    return Priced.from_columns(cols)


KIND = register_kind(DeviceKind(
    name="bit_serial",
    properties=PROPERTIES,
    price=price,
    rules=rules,
    param_names=PARAM_NAMES,
    params=params_from_profile,
))

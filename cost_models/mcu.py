"""The `mcu` kind: microcontrollers with CMSIS-NN / PULP-NN kernels (DESIGN.md §3, issue 4).

cycles = MACs × cycles_per_mac[kernel][layer type] (the profile's figure is for the whole core
cluster: not divided by `cores`). Layer type: `depthwise` (groups == in_channels > 1),
`pointwise` (1×1 conv, groups 1), `fc` (linear), else `conv`. A `matmul` row (two activations)
is an s8 matrix multiplication of CMSIS-NN's kind (arm_nn_mat_mult_nt_t_s8, the kernel beneath
its fully-connected and batch-matmul functions): it is priced with the `fc` figure, its MACs the
full batch·groups·M·K·N. An `embedding` row has no MACs: its lookup copies the looked-up rows
(batch·tokens·dimension values, read at w bits, written at a bits) at `copy_bytes_per_cycle`
bytes moved per cycle (read plus written; default 4, one 32-bit load or store per cycle), so
cycles = ceil(values × (w + a) / 8 / copy_bytes_per_cycle). Its table counts in flash
(`network_terms`: weight_params × w bits), its rows are never all read.

Kernel of (w, a): `w{w}a{a}` if the profile has it; else the narrowest profile kernel wXaY with
X ≥ w and Y ≥ a (fewest X + Y, then fewest X), where a profile with `int4_weight_unpack_overhead`
and no `w4a8` key has an implied `w4a8` = w8a8 × that overhead (CMSIS-NN int4 weights unpacked to
int8); `w8a8` always covers 1–8 bits. Weights and activations are still stored at their true bits
(see `network_terms`). Widths above 8 are a CostModelError naming the layer.

time = cycles / clock_hz; energy = power.active_w × time (all core energy); no DRAM, no stalls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hwq.cost_models.kind import DeviceKind, NetworkFit, Priced, register_kind
from hwq.errors import CostModelError
from hwq.profile_rules import RuleSource, max_width_problems
from hwq.profile_schema import POS, POSINT, obj

if TYPE_CHECKING:
    from hwq.graph import LayerGraph
    from hwq.profile import DeviceProfile
    from hwq.tables import CostTable

LAYER_TYPES = ("conv", "depthwise", "pointwise", "fc")
LAYER_CYCLES = obj({t: POS for t in LAYER_TYPES})
PROPERTIES = {
    "cores": POSINT,
    "cycles_per_mac": {
        "type": "object", "required": ["w8a8"],
        "propertyNames": {"pattern": "^w[1-8]a[1-8]$",
                          "description": "a kernel name like w8a8 or w4a8 (w<1-8>a<1-8>)"},
        "additionalProperties": LAYER_CYCLES,
    },
    "int4_weight_unpack_overhead": {"type": "number", "minimum": 1},
    "memory": obj({"flash_bytes": POSINT, "sram_bytes": POSINT, "runtime_flash_bytes": POSINT,
                   "runtime_sram_bytes": POSINT}),
    "power": obj({"active_w": POS}),
    "copy_bytes_per_cycle": POS,
}
# A row copy (an embedding lookup) without `copy_bytes_per_cycle`: one 32-bit load or store per
# cycle (LDR/STR, no burst), so a copied word costs two cycles.
COPY_BYTES_PER_CYCLE = 4.0
# Kernel type code of a lookup, after LAYER_TYPES' codes (conv, depthwise, pointwise, fc).
LOOKUP = len(LAYER_TYPES)


def kernels(profile: DeviceProfile) -> dict[tuple[int, int], np.ndarray]:
    """(X, Y) -> cycles per MAC float64[4] in LAYER_TYPES order."""
    table = profile.get("cycles_per_mac")
    out = {}
    for key, v in table.items():
        w, a = key[1:].split("a")
        out[(int(w), int(a))] = np.array([float(v[t]) for t in LAYER_TYPES])
    overhead = profile.get("int4_weight_unpack_overhead", None)
    if overhead is not None and (4, 8) not in out:
        out[(4, 8)] = out[(8, 8)] * float(overhead)
    return out


def cycles_table(profile: DeviceProfile, w_bits: np.ndarray, a_bits: np.ndarray) -> np.ndarray:
    """float64 [4, P]: cycles per MAC for each layer type and pair."""
    ks = kernels(profile)
    cols = []
    for w, a in zip(w_bits, a_bits):
        w, a = int(w), int(a)
        if (w, a) in ks:
            cols.append(ks[(w, a)])
            continue
        cover = [k for k in ks if k[0] >= w and k[1] >= a]
        best = min(cover, key=lambda k: (k[0] + k[1], k[0]))
        cols.append(ks[best])
    return np.ascontiguousarray(np.stack(cols, axis=1))


def layer_types(graph: LayerGraph) -> np.ndarray:
    """int64 [L]: index in LAYER_TYPES (a matmul is `fc`), or LOOKUP for an embedding."""
    from hwq.cost_models import operands

    f = graph.frame
    ic = f["in_channels"].to_numpy()
    g = f["groups"].to_numpy()
    op = operands.op_codes(graph)
    conv = op == operands.CONV
    dw = (g == ic) & (ic > 1) & conv
    pw = (f["kernel_h"].to_numpy() == 1) & (f["kernel_w"].to_numpy() == 1) & (g == 1) & conv
    t = np.zeros(len(f), dtype=np.int64)
    t[pw] = 2
    t[dw] = 1
    t[(op == operands.LINEAR) | (op == operands.MATMUL)] = 3
    t[op == operands.EMBEDDING] = LOOKUP
    return t


def price(graph: LayerGraph, profile: DeviceProfile, w_bits: np.ndarray,
          a_bits: np.ndarray) -> Priced:
    from hwq.cost_models import operands
    from hwq.cost_models.mcu_kernel import simulate

    w_bits = np.asarray(w_bits, dtype=np.int64)
    a_bits = np.asarray(a_bits, dtype=np.int64)
    for w, a in zip(w_bits, a_bits):
        if not (1 <= w <= 8 and 1 <= a <= 8):
            first = graph.names[0] if len(graph) else "?"
            raise CostModelError(
                f"layer {first}: {profile.name} cannot price W{w}A{a}: its kernels take 1-8 bits "
                "per operand (16/32-bit layers must run elsewhere)")
    macs = graph.frame["macs"].to_numpy(dtype=np.float64)
    types = layer_types(graph)
    copied = np.where(types == LOOKUP, operands.weight_operand_elems(graph), 0.0)
    out = simulate(macs, types, copied, cycles_table(profile, w_bits, a_bits), w_bits, a_bits,
                   float(profile.clock_hz), float(profile.get("power.active_w")),
                   float(profile.get("copy_bytes_per_cycle", COPY_BYTES_PER_CYCLE)))
    zero = np.zeros(out.shape[:2])
    return Priced({
        "cycles": out[:, :, 0], "compute_cycles": out[:, :, 0], "stall_cycles": zero,
        "latency_s": out[:, :, 1], "energy_pj": out[:, :, 2], "energy_core_pj": out[:, :, 2],
        "energy_sram_pj": zero, "energy_dram_pj": zero, "dram_read_bits": zero,
        "dram_write_bits": zero,
    }, feasible=np.ones(out.shape[:2], dtype=bool))


def im2col_bytes(graph: LayerGraph) -> float:
    """CMSIS-NN fast conv buffer: 2 columns of in_channels/groups·kh·kw int16 values, the largest
    over standard (non-depthwise, non-pointwise, non-fc) conv layers."""
    f = graph.frame
    t = layer_types(graph)
    col = (f["in_channels"] / f["groups"] * f["kernel_h"] * f["kernel_w"]).to_numpy()
    sel = col[t == 0]
    return float(2 * 2 * sel.max()) if sel.size else 0.0


def network_terms(table: CostTable, pairs_array: np.ndarray,
                  peak_activation_bytes: np.ndarray) -> NetworkFit:
    """Network feasibility of P policies.

    pairs_array int [P, L, 2] (w, a per layer); peak_activation_bytes float [P] (DESIGN.md §2).
    Flash: Σ ceil(weight_params·w / 8) + runtime_flash_bytes ≤ flash_bytes. SRAM: peak activation
    + im2col buffer + runtime_sram_bytes ≤ sram_bytes. Returns feasible [P], a reason per policy
    ('' when feasible, else 'flash overflow N B' / 'sram overflow N B' joined by '; ') and the
    column `overflow_bytes` [P] = flash overflow + SRAM overflow.
    """
    profile = table.profile
    graph = table.graph
    pairs_array = np.asarray(pairs_array)
    wp = graph.frame["weight_params"].to_numpy(dtype=np.float64)
    weight_bytes = np.ceil(wp[None, :] * pairs_array[:, :, 0] / 8).sum(axis=1)
    flash = weight_bytes + float(profile.get("memory.runtime_flash_bytes"))
    sram = (np.asarray(peak_activation_bytes, dtype=np.float64) + im2col_bytes(graph)
            + float(profile.get("memory.runtime_sram_bytes")))
    flash_over = np.maximum(flash - float(profile.get("memory.flash_bytes")), 0.0)
    sram_over = np.maximum(sram - float(profile.get("memory.sram_bytes")), 0.0)
    reasons = []
    for fo, so in zip(flash_over, sram_over):
        parts = []
        if fo > 0:
            parts.append(f"flash overflow {int(fo)} B")
        if so > 0:
            parts.append(f"sram overflow {int(so)} B")
        reasons.append("; ".join(parts))
    return NetworkFit((flash_over == 0) & (sram_over == 0), reasons,
                      {"overflow_bytes": flash_over + sram_over})


def rules(src: RuleSource) -> list[str]:
    out = max_width_problems(src, 8, "mcu kernels are integer kernels up to 8 bits")
    kernel_table = src.data.get("cycles_per_mac")
    if isinstance(kernel_table, dict) and "w4a8" in kernel_table and (
            "int4_weight_unpack_overhead" in src.data):
        out.append(f"{src.at(('int4_weight_unpack_overhead',))}: int4_weight_unpack_overhead: "
                   "expected either it or cycles_per_mac.w4a8, found both")
    return out


KIND = register_kind(DeviceKind(
    name="mcu",
    properties=PROPERTIES,
    optional=("int4_weight_unpack_overhead", "copy_bytes_per_cycle"),
    price=price,
    rules=rules,
    network_terms=network_terms,
))

"""The `mcu` kind: microcontrollers running a runtime's int8 kernels (DESIGN.md §3, issues 4, 17).

A layer's cycles, at a pair (w, a):

    compute = MACs x cycles_per_mac[kernel][class] + output elements x glue_cycles_per_element
    cycles  = max(MACs x cycles_per_mac[kernel][class], flash read cycles) + output elements x glue

(each rounded up to whole cycles).
Class: `depthwise` (groups == in_channels > 1), `pointwise` (1x1 conv, groups 1), `fc` (linear
and matmul), else `conv`. The glue is what a real network spends outside its MAC loops per
element it produces: requantisation, bias and activation, and the elementwise adds and pooling
between layers (which hwq's layer graph does not list as rows). Flash read cycles bound a `linear`
layer only: it uses each weight once per sample and token (CMSIS-NN-like kernels multiply one
vector at a time), so it streams MACs x w / 8 weight bytes from flash at
(memory.flash_wait_states + 1) / memory.flash_line_bytes cycles per byte; at batch 1 that, not its
MACs, is what bounds it on a board with a slow flash. A conv class reuses each weight over its
output pixels (registers, caches), so its figure holds its memory stalls. A profile without
flash figures has no such bound. stall_cycles = cycles - compute cycles.

A `matmul` row (two activations) is an s8 matrix multiplication of CMSIS-NN's kind
(arm_nn_mat_mult_nt_t_s8, beneath its fully-connected and batch-matmul functions): the `fc`
figure, its MACs the full batch·groups·M·K·N, its second operand in SRAM (no flash bound). An
`embedding` row has no MACs: its lookup copies the looked-up rows (batch·tokens·dimension values,
read at w bits, written at a bits) at `copy_bytes_per_cycle` bytes moved per cycle (read plus
written; default 4, one 32-bit load or store per cycle), so cycles = ceil(values × (w + a) / 8 /
copy_bytes_per_cycle). Its table counts in flash (`network_terms`: weight_params × w bits).

Where the figures come from (`cost_models/mcu_runtime.py`): a profile with its own
`cycles_per_mac` prices with those (and its own `glue_cycles_per_element`, default 0, and
`int4_weight_unpack_overhead`); `runtime` then only names what they assume (default cmsis-nn).
A profile without `cycles_per_mac` names a `core` and a `runtime` (default cmsis-nn), and the
runtime table gives that pair's calibrated figures; its own `glue_cycles_per_element` or
`int4_weight_unpack_overhead` override the runtime's.

Kernel of (w, a): `w{w}a{a}` if the figures have it; else the narrowest kernel wXaY with X ≥ w
and Y ≥ a (fewest X + Y, then fewest X), where an `int4_weight_unpack_overhead` with no `w4a8` key
implies `w4a8` = w8a8 × that overhead (int4 weights unpacked to int8); `w8a8` always covers 1–8
bits. Weights and activations are still stored at their true bits (see `network_terms`). Widths
above 8 are a CostModelError naming the layer.

time = cycles / clock_hz; energy = power.active_w × time (the board's average power over the
inference); no DRAM.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hwq.cost_models.kind import DeviceKind, NetworkFit, Priced, RuntimeInfo, register_kind
from hwq.cost_models.mcu_runtime import (
    CORES,
    DEFAULT_RUNTIME,
    KERNEL_CLASSES,
    RUNTIMES,
    RuntimeEntry,
    runtime_table,
)
from hwq.errors import CostModelError
from hwq.profile_rules import RuleSource, max_width_problems
from hwq.profile_schema import NONNEG, POS, POSINT, obj

if TYPE_CHECKING:
    from hwq.graph import LayerGraph
    from hwq.profile import DeviceProfile
    from hwq.tables import CostTable

LAYER_TYPES = KERNEL_CLASSES
LAYER_CYCLES = obj({t: POS for t in LAYER_TYPES})
FLASH_KEYS = ("flash_wait_states", "flash_line_bytes")
PROPERTIES = {
    "runtime": {"enum": list(RUNTIMES)},
    "core": {"enum": list(CORES)},
    "cores": POSINT,
    "cycles_per_mac": {
        "type": "object", "required": ["w8a8"],
        "propertyNames": {"pattern": "^w[1-8]a[1-8]$",
                          "description": "a kernel name like w8a8 or w4a8 (w<1-8>a<1-8>)"},
        "additionalProperties": LAYER_CYCLES,
    },
    "glue_cycles_per_element": NONNEG,
    "int4_weight_unpack_overhead": {"type": "number", "minimum": 1},
    "memory": obj({"flash_bytes": POSINT, "sram_bytes": POSINT, "runtime_flash_bytes": POSINT,
                   "runtime_sram_bytes": POSINT,
                   "flash_wait_states": {"type": "integer", "minimum": 0},
                   "flash_line_bytes": POSINT}, optional=FLASH_KEYS),
    "power": obj({"active_w": POS}),
    "copy_bytes_per_cycle": POS,
}
OPTIONAL = ("runtime", "core", "cycles_per_mac", "glue_cycles_per_element",
            "int4_weight_unpack_overhead", "copy_bytes_per_cycle")
# A row copy (an embedding lookup) without `copy_bytes_per_cycle`: one 32-bit load or store per
# cycle (LDR/STR, no burst), so a copied word costs two cycles.
COPY_BYTES_PER_CYCLE = 4.0
# Kernel type code of a lookup, after LAYER_TYPES' codes (conv, depthwise, pointwise, fc).
LOOKUP = len(LAYER_TYPES)
# The board's parameter vector (`params`), read by the kernel through these indices.
PARAM_NAMES = ("clock_hz", "active_w", "copy_bytes_per_cycle", "flash_cycles_per_byte")
CLOCK, ACTIVE_W, COPY_BYTES, FLASH_CYCLES_PER_BYTE = range(len(PARAM_NAMES))


@dataclass(frozen=True)
class Figures:
    """The per-MAC and per-element figures a profile prices with.

    `kernels`: (X, Y) -> cycles per MAC float64[4] in LAYER_TYPES order; `entry`: the runtime
    table's entry they come from, None for a profile's own figures."""

    runtime: str
    core: str | None
    kernels: Mapping[tuple[int, int], np.ndarray]
    glue_cycles_per_element: float
    entry: RuntimeEntry | None = None


def _kernel_table(table: Mapping[str, Mapping[str, float]]) -> dict[tuple[int, int], np.ndarray]:
    out = {}
    for key, v in table.items():
        w, a = key[1:].split("a")
        out[(int(w), int(a))] = np.array([float(v[t]) for t in LAYER_TYPES])
    return out


def figures(profile: DeviceProfile) -> Figures:
    """The profile's own figures, or its (runtime, core) entry of the runtime table."""
    runtime = str(profile.get("runtime", DEFAULT_RUNTIME))
    core = profile.get("core", None)
    own = profile.get("cycles_per_mac", None)
    entry = None
    if own is not None:
        kernels = _kernel_table(own)
        overhead = profile.get("int4_weight_unpack_overhead", None)
        glue = float(profile.get("glue_cycles_per_element", 0.0))
    else:
        entry = runtime_table().entry(runtime, str(core))
        if entry is None:  # the rules refuse such a profile; a plug-in may bypass them
            raise CostModelError(f"profile {profile.name}: runtime {runtime} has no figures for "
                                 f"core {core}; give cycles_per_mac")
        kernels = _kernel_table({"w8a8": entry.cycles_per_mac})
        overhead = profile.get("int4_weight_unpack_overhead", entry.int4_weight_unpack_overhead)
        glue = float(profile.get("glue_cycles_per_element", entry.glue_cycles_per_element))
    if overhead is not None and (4, 8) not in kernels:
        kernels[(4, 8)] = kernels[(8, 8)] * float(overhead)
    return Figures(runtime, None if core is None else str(core), kernels, glue, entry)


def cycles_table(figs: Figures, w_bits: np.ndarray, a_bits: np.ndarray) -> np.ndarray:
    """float64 [4, P]: cycles per MAC for each layer type and pair."""
    ks = figs.kernels
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


def flash_cycles_per_byte(profile: DeviceProfile) -> float:
    """(wait states + 1) / line bytes of the board's flash; 0 (no bound) without the figures."""
    ws = profile.get("memory.flash_wait_states", None)
    line = profile.get("memory.flash_line_bytes", None)
    if ws is None or line is None:
        return 0.0
    return (float(ws) + 1.0) / float(line)


def params(profile: DeviceProfile) -> np.ndarray:
    """The board's parameter vector, by PARAM_NAMES."""
    return np.array([float(profile.clock_hz), float(profile.get("power.active_w")),
                     float(profile.get("copy_bytes_per_cycle", COPY_BYTES_PER_CYCLE)),
                     flash_cycles_per_byte(profile)], dtype=np.float64)


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
    return price_with(graph, figures(profile), params(profile), w_bits, a_bits, profile.name)


def price_with(graph: LayerGraph, figs: Figures, board: np.ndarray, w_bits: np.ndarray,
               a_bits: np.ndarray, device: str = "the profile") -> Priced:
    """`price` with explicit figures and board parameters (PARAM_NAMES)."""
    w_bits = np.asarray(w_bits, dtype=np.int64)
    a_bits = np.asarray(a_bits, dtype=np.int64)
    for w, a in zip(w_bits, a_bits):
        if not (1 <= w <= 8 and 1 <= a <= 8):
            first = graph.names[0] if len(graph) else "?"
            raise CostModelError(
                f"layer {first}: {device} cannot price W{w}A{a}: its kernels take 1-8 bits "
                "per operand (16/32-bit layers must run elsewhere)")
    out = run(layer_arrays(graph), figs, board, w_bits, a_bits)
    zero = np.zeros(out.shape[:2])
    return Priced({
        "cycles": out[:, :, 0], "compute_cycles": out[:, :, 1], "stall_cycles": out[:, :, 2],
        "latency_s": out[:, :, 3], "energy_pj": out[:, :, 4], "energy_core_pj": out[:, :, 4],
        "energy_sram_pj": zero, "energy_dram_pj": zero, "dram_read_bits": zero,
        "dram_write_bits": zero,
    }, feasible=np.ones(out.shape[:2], dtype=bool))


@dataclass(frozen=True)
class LayerArrays:
    """What the kernel reads of a graph, float64/int64 [L]: MACs, class code (or LOOKUP), values a
    lookup copies, output elements, 1 where the layer streams its weights from flash (linear)."""

    macs: np.ndarray
    types: np.ndarray
    copied: np.ndarray
    outs: np.ndarray
    streams: np.ndarray


def layer_arrays(graph: LayerGraph) -> LayerArrays:
    from hwq.cost_models import operands

    f = graph.frame
    types = layer_types(graph)
    return LayerArrays(
        f["macs"].to_numpy(dtype=np.float64), types,
        np.where(types == LOOKUP, operands.weight_operand_elems(graph), 0.0).astype(np.float64),
        f["out_elems"].to_numpy(dtype=np.float64),
        (operands.op_codes(graph) == operands.LINEAR).astype(np.float64))


def run(layers: LayerArrays, figs: Figures, board: np.ndarray, w_bits: np.ndarray,
        a_bits: np.ndarray) -> np.ndarray:
    """[L, P, 5] (cycles, compute cycles, stall cycles, s, pJ) of the kernel."""
    from hwq.cost_models.mcu_kernel import simulate

    return simulate(layers.macs, layers.types, layers.copied, layers.outs, layers.streams,
                    cycles_table(figs, w_bits, a_bits), float(figs.glue_cycles_per_element),
                    np.asarray(w_bits, np.int64), np.asarray(a_bits, np.int64),
                    np.ascontiguousarray(board, dtype=np.float64))


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
    data = src.data
    kernel_table = data.get("cycles_per_mac")
    if isinstance(kernel_table, dict) and "w4a8" in kernel_table and (
            "int4_weight_unpack_overhead" in data):
        out.append(f"{src.at(('int4_weight_unpack_overhead',))}: int4_weight_unpack_overhead: "
                   "expected either it or cycles_per_mac.w4a8, found both")
    memory = data.get("memory")
    if isinstance(memory, dict):
        given = [k for k in FLASH_KEYS if k in memory]
        if len(given) == 1:
            missing = next(k for k in FLASH_KEYS if k not in memory)
            out.append(f"{src.at(('memory', given[0]))}: memory.{missing}: expected a value "
                       f"beside memory.{given[0]} (the flash bound needs both), found nothing")
    if "cycles_per_mac" not in data:
        out += _runtime_problems(src)
    return out


def _runtime_problems(src: RuleSource) -> list[str]:
    """A profile without its own cycles_per_mac needs a (runtime, core) the table has."""
    data = src.data
    runtime = data.get("runtime", DEFAULT_RUNTIME)
    core = data.get("core")
    if runtime not in RUNTIMES or (core is not None and core not in CORES):
        return []  # the schema reports the bad name
    table = runtime_table()
    covered = ", ".join(table.cores_of(runtime)) or "none"
    if core is None:
        return [f"{src.at(('core',))}: core: expected the core whose {runtime} figures price this "
                f"profile ({covered}) or the profile's own cycles_per_mac, found nothing"]
    if table.entry(runtime, core) is None:
        return [f"{src.at(('core',))}: core: expected a core the runtime table has figures of "
                f"for {runtime} ({covered}) or the profile's own cycles_per_mac, found {core!r}"]
    return []


def runtime_info(profile: DeviceProfile) -> RuntimeInfo:
    """Which runtime prices the profile and where its figures come from."""
    figs = figures(profile)
    named = profile.get("runtime", None) is not None
    if figs.entry is None:
        lines = (f"figures: the profile's own cycles_per_mac (the {figs.runtime} figures it "
                 "assumes; not calibrated by hwq)",)
        return RuntimeInfo(figs.runtime, named, lines)
    e = figs.entry
    cpm = ", ".join(f"{c} {e.cycles_per_mac[c]:.4g}" for c in LAYER_TYPES)
    lines = [f"figures: runtime table {figs.runtime} on {e.core} ({e.basis}), int8 cycles per "
             f"MAC {cpm}; glue {e.glue_cycles_per_element:.4g} cycles per output element",
             f"source: {e.source}"]
    for r in e.residuals:
        lines.append(f"  {r.board} {r.network}: measured {r.measured_ms:.4g} ms, fitted model "
                     f"{r.predicted_ms:.4g} ms ({r.residual:+.1%})")
    for key in ("glue_cycles_per_element", "int4_weight_unpack_overhead"):
        if profile.get(key, None) is not None:
            lines.append(f"override: the profile's {key} {profile.get(key)} replaces the "
                         "runtime's")
    return RuntimeInfo(figs.runtime, named, tuple(lines))


KIND = register_kind(DeviceKind(
    name="mcu",
    properties=PROPERTIES,
    optional=OPTIONAL,
    price=price,
    rules=rules,
    param_names=PARAM_NAMES,
    params=params,
    network_terms=network_terms,
    # the runtime table (mcu_runtimes.yaml) is data the profile's sha256 does not cover; pricing
    # is one pass over the layers, so tables are not cached
    cacheable=False,
    runtime=runtime_info,
))

"""The `bitfusion` kind: its profile keys and rules, its parameter vector, and the mapping of a
LayerGraph onto the reference simulator's layer abstraction, priced by `bitfusion_kernel.py`.

Mapping (reference/bitfusion_model.md §4, DESIGN.md §3): a conv keeps its kernel, output and
stride per axis (square in the reference, independent OH/OW tiles otherwise), `groups` splits it
into independent convs whose costs add, the layer that reads the model input uses im2col, and a
linear layer is K = S = 1 with OH = its tokens per sample and OW = 1 (the reference's FC, K = O =
S = 1, when it has one token), its batch and tokens the spatial reuse.

A `matmul` row (two activations, issue 12) is the reference's GEMM with the second operand in the
weights' role (at w bits, through the weight buffer and its DRAM traffic; it is not a stored
weight, so weight bytes count nothing): each sample's `groups` products are independent GEMMs of M
rows (OH = M, OW = 1) reducing K into N, with no reuse of a second operand across samples or
groups, so the row is a grouped 1×1 conv of batch·groups groups of K → N over one sample (IC =
K·batch·groups, OC = N·batch·groups, B = 1), whose costs add like any grouped conv's.

An `embedding` row (a lookup, MACs 0) does not use the array: its looked-up rows (batch·tokens·
dimension values at w bits, not the table) are read from DRAM and its output written back at a bits
through the off-chip interface, cycles = stall cycles = ceil((read + written bits) / bandwidth),
energy = DRAM energy of those bits (compute, core and buffer energy 0; the kernel's mode 2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hwq.cost_models.kind import PRICED_COLUMNS, DeviceKind, Priced, register_kind
from hwq.errors import CostModelError
from hwq.profile_rules import RuleSource, int_at, max_width_problems
from hwq.profile_schema import BUFFER, CORE, OFFCHIP, POSINT, obj

if TYPE_CHECKING:
    from hwq.graph import LayerGraph
    from hwq.profile import DeviceProfile

PROPERTIES = {
    "array": obj({"rows": POSINT, "cols": POSINT, "max_bits": POSINT, "min_bits": POSINT,
                  "partial_sum_bits": POSINT}),
    "buffers": obj({"wbuf": BUFFER, "ibuf": BUFFER, "obuf": BUFFER}),
    "offchip": OFFCHIP,
    "core": CORE,
}

# The flat parameter vector of the kernel, in this order.
PARAM_NAMES: tuple[str, ...] = (
    "array_rows",  # N: reduction side
    "array_cols",  # M: output-channel side
    "max_bits",
    "min_bits",
    "partial_sum_bits",
    "wbuf_size_bytes",
    "wbuf_read_pj_per_bit",
    "wbuf_write_pj_per_bit",
    "ibuf_size_bytes",
    "ibuf_read_pj_per_bit",
    "ibuf_write_pj_per_bit",
    "obuf_size_bytes",
    "obuf_read_pj_per_bit",
    "obuf_write_pj_per_bit",
    "offchip_bandwidth_bits_per_cycle",
    "offchip_energy_pj_per_bit",
    "core_energy_pj_per_cycle",
)
ARRAY_ROWS = PARAM_NAMES.index("array_rows")
ARRAY_COLS = PARAM_NAMES.index("array_cols")
MAX_BITS = PARAM_NAMES.index("max_bits")
MIN_BITS = PARAM_NAMES.index("min_bits")
PSUM_BITS = PARAM_NAMES.index("partial_sum_bits")
# Each buffer: size_bytes at its index, then read_pj_per_bit, write_pj_per_bit.
WBUF = PARAM_NAMES.index("wbuf_size_bytes")
IBUF = PARAM_NAMES.index("ibuf_size_bytes")
OBUF = PARAM_NAMES.index("obuf_size_bytes")
OFFCHIP_BW = PARAM_NAMES.index("offchip_bandwidth_bits_per_cycle")
OFFCHIP_PJ = PARAM_NAMES.index("offchip_energy_pj_per_bit")
CORE_PJ = PARAM_NAMES.index("core_energy_pj_per_cycle")

# The kernel's outputs per (layer, pair), in this order: the CostTable's columns and the kind's
# own details (buffer traffic, tiles, loop order, dataflow).
OUT_COLUMNS: tuple[str, ...] = (
    "cycles",
    "compute_cycles",
    "stall_cycles",
    "energy_pj",
    "energy_core_pj",
    "energy_sram_pj",
    "energy_dram_pj",
    "energy_ibuf_pj",
    "energy_wbuf_pj",
    "energy_obuf_pj",
    "dram_read_bits",
    "dram_write_bits",
    "ibuf_read_bits",
    "ibuf_write_bits",
    "wbuf_read_bits",
    "wbuf_write_bits",
    "obuf_read_bits",
    "obuf_write_bits",
    "tile_b",
    "tile_oh",
    "tile_ow",
    "tile_ic",
    "tile_oc",
    "ntiles_b",
    "ntiles_oh",
    "ntiles_ow",
    "ntiles_ic",
    "ntiles_oc",
    "loop_order",
    "dataflow",
    "perf_factor",
)
DETAIL_COLUMNS: tuple[str, ...] = tuple(c for c in OUT_COLUMNS if c not in PRICED_COLUMNS)

# The kernel row's last column (`im2col`): a plain layer, the im2col first layer, or a lookup.
MODE_PLAIN, MODE_IM2COL, MODE_LOOKUP = 0, 1, 2

KERNEL_COLUMNS = ("kernel_h", "kernel_w", "out_h", "out_w", "stride_h", "stride_w",
                  "in_channels", "out_channels", "batch", "groups")


def params_from_profile(profile: DeviceProfile) -> np.ndarray:
    """float64 vector in PARAM_NAMES order from a `bitfusion` profile."""
    g = profile.get
    values = [
        g("array.rows"), g("array.cols"), g("array.max_bits"), g("array.min_bits"),
        g("array.partial_sum_bits"),
        *(g(f"buffers.{b}.{k}") for b in ("wbuf", "ibuf", "obuf")
          for k in ("size_bytes", "read_pj_per_bit", "write_pj_per_bit")),
        g("offchip.bandwidth_bits_per_cycle"), g("offchip.energy_pj_per_bit"),
        g("core.energy_pj_per_cycle"),
    ]
    return np.asarray([float(v) for v in values], dtype=np.float64)


def reference_params() -> np.ndarray:
    """The `bf_e_conf.ini` configuration with the exact constants of bitfusion_model.md §1-2."""
    from hwq.profile import DeviceProfile

    return params_from_profile(DeviceProfile({
        "name": "bf_e_conf.ini",
        "array": {"rows": 16, "cols": 32, "max_bits": 8, "min_bits": 2, "partial_sum_bits": 32},
        "buffers": {
            "wbuf": {"size_bytes": 65536, "read_pj_per_bit": 0.02136565625,
                     "write_pj_per_bit": 0.02891615625},
            "ibuf": {"size_bytes": 32768, "read_pj_per_bit": 0.059474375,
                     "write_pj_per_bit": 0.1137040625},
            "obuf": {"size_bytes": 16384, "read_pj_per_bit": 0.0331553125,
                     "write_pj_per_bit": 0.0730840625},
        },
        "offchip": {"bandwidth_bits_per_cycle": 192, "energy_pj_per_bit": 15.0},
        "core": {"energy_pj_per_cycle": 235.104},
    }))


def rules(src: RuleSource) -> list[str]:
    lo, hi = int_at(src.data, "array", "min_bits"), int_at(src.data, "array", "max_bits")
    out = []
    if lo is not None and hi is not None and lo > hi:
        out.append(f"{src.at(('array', 'min_bits'))}: array.min_bits: expected at most "
                   f"array.max_bits ({hi}), found {lo}")
    if hi is not None:
        out += max_width_problems(src, hi, "array.max_bits")
    return out


def layer_rows(graph: LayerGraph) -> np.ndarray:
    """int64 [L, 11] simulator rows of a LayerGraph (see bitfusion_kernel.simulate; the mapping
    of each op is the module docstring's)."""
    from hwq.cost_models import operands

    frame = graph.frame
    rows = np.stack([frame[c].to_numpy(dtype=np.int64) for c in KERNEL_COLUMNS], axis=1)
    op = operands.op_codes(graph)
    tokens = op != operands.CONV  # linear, matmul, embedding: 1x1 over OH = tokens (M rows)
    rows[np.ix_(tokens, [0, 1, 3, 4, 5])] = 1  # kh, kw, ow, sh, sw
    rows[op == operands.LINEAR, 9] = 1
    mm = op == operands.MATMUL
    n = rows[mm, 8] * rows[mm, 9]  # batch x groups independent GEMMs of one sample
    rows[mm, 6] *= n
    rows[mm, 7] *= n
    rows[mm, 8] = 1
    rows[mm, 9] = n
    rows[op == operands.EMBEDDING, 9] = 1
    mode = np.where(frame["reads_input"].to_numpy(dtype=bool) & (op == operands.CONV),
                    MODE_IM2COL, MODE_PLAIN)
    mode[op == operands.EMBEDDING] = MODE_LOOKUP
    return np.ascontiguousarray(np.concatenate([rows, mode[:, None].astype(np.int64)], axis=1))


def price(graph: LayerGraph, profile: DeviceProfile, w_bits: np.ndarray,
          a_bits: np.ndarray) -> Priced:
    from hwq.cost_models import bitfusion_kernel as kernel

    max_bits = int(profile.get("array.max_bits"))
    for w, a in zip(w_bits, a_bits):
        if not (1 <= w <= max_bits and 1 <= a <= max_bits):
            first = graph.names[0] if len(graph) else "?"
            raise CostModelError(
                f"layer {first}: {profile.name} cannot price W{w}A{a}: its fusion units take "
                f"1-{max_bits} bits per operand (16/32-bit layers must run elsewhere)"
            )
    params = params_from_profile(profile)
    rows = layer_rows(graph)
    w_arr = np.asarray(w_bits, dtype=np.int64)
    a_arr = np.asarray(a_bits, dtype=np.int64)
    try:
        out = kernel.simulate(rows, w_arr, a_arr, params)
    except ValueError as exc:
        if "no tiling fits" not in str(exc):
            raise
        raise _nothing_fits(graph, profile, rows, w_arr, a_arr, params) from exc
    cols = {name: out[:, :, i] for i, name in enumerate(OUT_COLUMNS)}
    cols["latency_s"] = cols["cycles"] / float(profile.clock_hz)
    return Priced.from_columns(cols, {"loop_order": kernel.LOOP_ORDER_LABELS,
                                      "dataflow": kernel.DATAFLOW_LABELS})


def _nothing_fits(graph: LayerGraph, profile: DeviceProfile, rows: np.ndarray,
                  w_bits: np.ndarray, a_bits: np.ndarray, params: np.ndarray) -> CostModelError:
    """A user error naming the first layer and pair no tiling of which fits the buffers."""
    from hwq.cost_models import bitfusion_kernel as kernel

    for i, name in enumerate(graph.names):
        for w, a in zip(w_bits, a_bits):
            try:
                kernel.simulate(rows[i:i + 1], np.array([w], dtype=np.int64),
                                np.array([a], dtype=np.int64), params)
            except ValueError:
                return CostModelError(
                    f"layer {name}: no tiling at W{w}A{a} fits the buffers of {profile.name} "
                    "(each tile must fit in half of its buffer): enlarge buffers.wbuf, ibuf or "
                    "obuf"
                )
    return CostModelError(f"{profile.name}: no tiling fits the buffers")


KIND = register_kind(DeviceKind(
    name="bitfusion",
    properties=PROPERTIES,
    price=price,
    rules=rules,
    param_names=PARAM_NAMES,
    params=params_from_profile,
    columns=DETAIL_COLUMNS,
))

"""The `gpu` kind: tensor-core GPUs (T4, A100, H100, Jetson Orin), DESIGN.md §3, issue 4.

Each layer is a GEMM: M = batch·out_h·out_w, N = out_channels/groups, K = in_channels/groups·kh·kw
(a linear layer: M = batch·tokens, N = out, K = in), `groups` GEMMs batched in one kernel. A
`matmul` row (two activations) is a batched GEMM: batch·groups GEMMs of M×K×N (M = out_h) in one
kernel, its second operand read at w bits in the weights' place (cost_models/operands.py), on the
tensor-core class of max(w, a) like any GEMM (int8/int4 MMA take two activation operands alike).
An `embedding` row is a gather: no compute (K = 0), memory time for its looked-up rows
(batch·tokens·dimension values at w bits, not the table) and its output, plus the launch.

* Precision = max(w, a): 32 → fp32 on the CUDA cores (`cuda_core.fp32_ops_per_s`, tile depth
  of fp16); 9–16 → fp16; 5–8 → int8; 4 → int4 (or `fallback.int4`, default int8,
  when the device has no int4 tensor cores); 1–3 → `fallback.below_int4` (default int4 if present,
  else int8). A fallback changes the compute rate only: bytes moved stay at the true widths.
* Tile and wave quantization: tiles = ceil(M/tm)·ceil(N/tn)·groups, waves = ceil(tiles/sm_count);
  compute time = max(waves, s) · (2·tm·tn·ceil(K/tk)·tk) / (peak/sm_count) / e_c(precision).
  s = `saturation_ctas_per_sm` (default 1, today's pure wave model) is the number of CTAs an SM
  must hold for the runtime's kernels to reach their saturated rate (Little's law: latency is
  hidden by parallel work): a layer with fewer tiles per SM than s (batch 1) runs at waves/s of
  that rate, so its time does not shrink below s tile times. At a large batch waves >> s and the
  layer saturates at e_c of the peak; that is why a batch-256 throughput is not 256 times the
  batch-1 one (with the launch, which a batch amortises too).
  `efficiency.compute` (e_c) is one fraction for every precision or one per precision
  ({int8, int4?, fp16}; int4 defaults to int8's, fp32 on the CUDA cores uses fp16's): the
  tensor-core kernels of one precision are one kernel class of a runtime.
  `gemm_tile.k` is one number or one per precision ({fp16, int8, int4}): a tensor-core MMA step
  is twice as deep in K at int4 as at int8 (Turing mma m8n8k32 vs m8n8k16), so int4 kernels pad
  short reductions (K = 576, 64) to a coarser multiple.
* Memory time = (weights·w + input·a + output·a) / 8 / (dram_bytes_per_s · efficiency.memory)
  (the output is requantized to the layer's activation width; fp16 for 16/32-bit layers).
* time = max(tc, tm) + (1 − efficiency.overlap)·min(tc, tm) + launch_overhead_s.
  The global parameters are `efficiency.{compute, memory, overlap}` and `saturation_ctas_per_sm`
  (no per-layer constants).
* `runtime` names whose kernels those parameters describe (`tvm`, `tensorrt`, or `generic`: the
  default, datasheet figures with assumed efficiencies, calibrated on nothing). It is provenance,
  not a switch: a runtime's behaviour is its parameter values, fitted on one GPU's measured rows
  and carried to other GPUs unchanged as fractions of their datasheet peaks (docs/profiles.md,
  "GPU runtimes"); `calibration` records what was fitted on what (hwq.profile_schema).
* cycles = time · clock_hz; compute_cycles = tc · clock_hz (capped at cycles); stall = rest.
* energy = (idle_w + (max_w − idle_w)·utilisation)·time + dram_pj_per_bit·bits, utilisation =
  true ops / (peak · time) of the chosen precision. Core energy is the power term.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from hwq.cost_models.kind import DeviceKind, Priced, RuntimeInfo, register_kind
from hwq.errors import CostModelError
from hwq.profile_rules import RuleSource, calibration_problems, is_number, widths
from hwq.profile_schema import CALIBRATION, FRACTION, NONNEG, POS, POSINT, obj

if TYPE_CHECKING:
    from hwq.graph import LayerGraph
    from hwq.profile import DeviceProfile

GPU_PRECISIONS = ["int4", "int8", "fp16"]
RUNTIMES = ("generic", "tvm", "tensorrt")
DEFAULT_RUNTIME = "generic"
PROPERTIES = {
    "runtime": {"enum": list(RUNTIMES)},
    "sm_count": POSINT,
    "tensor_core": obj({"fp16_ops_per_s": POS, "int8_ops_per_s": POS, "int4_ops_per_s": POS},
                       optional=("int4_ops_per_s",)),
    "cuda_core": obj({"fp32_ops_per_s": POS}),
    "gemm_tile": obj({"m": POSINT, "n": POSINT, "k": {"anyOf": [
        POSINT, obj({"int4": POSINT, "int8": POSINT, "fp16": POSINT}, optional=("int4",))]}}),
    "memory": obj({"dram_bytes_per_s": POS, "l2_bytes": POSINT, "dram_pj_per_bit": POS}),
    "launch_overhead_s": POS,
    "efficiency": obj({"compute": {"anyOf": [FRACTION, obj(
                           {"int4": FRACTION, "int8": FRACTION, "fp16": FRACTION},
                           optional=("int4",))]},
                       "memory": FRACTION,
                       "overlap": {"type": "number", "minimum": 0, "maximum": 1}}),
    "saturation_ctas_per_sm": {"type": "number", "minimum": 1},
    "power": obj({"idle_w": NONNEG, "max_w": POS}),
    "fallback": obj({"int4": {"enum": GPU_PRECISIONS[1:]},
                     "below_int4": {"enum": GPU_PRECISIONS}}, optional=("int4", "below_int4")),
    "calibration": CALIBRATION,
}

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
    "efficiency_memory", "efficiency_overlap",
    "idle_w", "max_w", "clock_hz", "int4_precision", "below_int4_precision",
    "efficiency_compute_int4", "efficiency_compute_int8", "efficiency_compute_fp16",
    "efficiency_compute_fp32", "saturation_ctas_per_sm",
)
PEAK, TILE_K, SM, TILE_M, TILE_N = 0, 4, 8, 9, 10
DRAM_BW, DRAM_PJ, LAUNCH, EFFICIENCY = 11, 12, 13, 14  # EFFICIENCY: memory, overlap
IDLE_W, MAX_W, CLOCK, INT4_PREC, BELOW_INT4_PREC = 16, 17, 18, 19, 20
EFF_COMPUTE = PARAM_NAMES.index("efficiency_compute_int4")  # by precision code (PREC)
SATURATION = PARAM_NAMES.index("saturation_ctas_per_sm")


def tile_k(profile: DeviceProfile) -> tuple[float, float, float]:
    """gemm_tile.k per precision (int4, int8, fp16): one number for all, or a mapping."""
    k = profile.get("gemm_tile.k")
    if isinstance(k, Mapping):
        k8 = float(k["int8"])
        return float(k.get("int4", k8)), k8, float(k.get("fp16", k8))
    return float(k), float(k), float(k)


def compute_efficiency(profile: DeviceProfile) -> tuple[float, float, float, float]:
    """efficiency.compute per precision (int4, int8, fp16, fp32): one number for all, or a
    mapping (int4 defaults to int8's; fp32 on the CUDA cores uses fp16's)."""
    e = profile.get("efficiency.compute", 1.0)
    if isinstance(e, Mapping):
        e8, e16 = float(e["int8"]), float(e["fp16"])
        return float(e.get("int4", e8)), e8, e16, e16
    return float(e), float(e), float(e), float(e)


def runtime(profile: DeviceProfile) -> str:
    """The runtime whose kernels the profile's efficiencies describe (default `generic`)."""
    return str(profile.get("runtime", DEFAULT_RUNTIME))


def runtime_info(profile: DeviceProfile) -> RuntimeInfo:
    """The runtime of a profile and its fit report (`hwq profile list` / `show`)."""
    from hwq.profile_summary import calibration_lines

    name = runtime(profile)
    lines = calibration_lines(profile)
    if not lines:
        lines = (f"figures: datasheet figures with the profile's efficiencies (runtime {name}; "
                 "not calibrated by hwq)",)
    return RuntimeInfo(name, profile.get("runtime", None) is not None, lines)


def params_from_profile(profile: DeviceProfile) -> np.ndarray:
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
    c4, c8, c16, c32 = compute_efficiency(profile)
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
        "efficiency_memory": eff.get("memory", 1.0),
        "efficiency_overlap": eff.get("overlap", 1.0),
        "idle_w": g("power.idle_w"), "max_w": g("power.max_w"), "clock_hz": profile.clock_hz,
        "int4_precision": PREC[fb4], "below_int4_precision": PREC[fbl],
        "efficiency_compute_int4": c4, "efficiency_compute_int8": c8,
        "efficiency_compute_fp16": c16, "efficiency_compute_fp32": c32,
        "saturation_ctas_per_sm": g("saturation_ctas_per_sm", 1.0),
    }
    return np.array([float(values[n]) for n in PARAM_NAMES], dtype=np.float64)


def layer_rows(graph: LayerGraph) -> np.ndarray:
    """float64 [L, 7] kernel rows: M, N, K, GEMMs, weight-role elements, input elements, output
    elements (cost_models/operands.py for what each op reads)."""
    from hwq.cost_models import operands

    f = graph.frame
    col = lambda c: f[c].to_numpy(dtype=np.float64)  # noqa: E731
    op = operands.op_codes(graph)
    mm = op == operands.MATMUL
    g = col("groups")
    m = np.where(mm, col("out_h"), col("batch") * col("out_h") * col("out_w"))
    n = np.where(mm, col("out_channels"), col("out_channels") / g)
    k = np.where(mm, col("in_channels"), col("in_channels") / g * col("kernel_h") * col("kernel_w"))
    k[op == operands.EMBEDDING] = 0.0
    g = np.where(mm, operands.gemms(graph), g)
    return np.ascontiguousarray(np.stack(
        [m, n, k, g, operands.weight_operand_elems(graph), operands.first_operand_elems(graph),
         col("out_elems")], axis=1))


def price(graph: LayerGraph, profile: DeviceProfile, w_bits: np.ndarray,
          a_bits: np.ndarray) -> Priced:
    from hwq.cost_models.gpu_kernel import simulate

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
    return Priced.from_columns({name: out[:, :, i] for i, name in enumerate(OUT_COLUMNS)},
                               {"precision": tuple(PREC)})


def rules(src: RuleSource) -> list[str]:
    data, out = src.data, calibration_problems(src)
    listed = {b for side in widths(data).values() for b in side}
    tc = data.get("tensor_core") if isinstance(data.get("tensor_core"), dict) else {}
    fallback = data.get("fallback") if isinstance(data.get("fallback"), dict) else {}
    where = src.at(("fallback",) if "fallback" in data else ("bits",))
    if "int4_ops_per_s" not in tc and "int4" not in fallback and any(b <= 4 for b in listed):
        out.append(f"{where}: fallback.int4: expected int8 or fp16 (the device has no "
                   "tensor_core.int4_ops_per_s but bits lists widths <= 4), found nothing")
    if "below_int4" not in fallback and any(b < 4 for b in listed):
        out.append(f"{where}: fallback.below_int4: expected int4, int8 or fp16 (bits lists "
                   "widths below 4), found nothing")
    if "cuda_core" not in data and 32 in listed:
        out.append(f"{src.at(('bits',))}: cuda_core.fp32_ops_per_s: expected the FP32 peak "
                   "(bits lists 32), found nothing")
    power = data.get("power")
    if isinstance(power, dict):
        idle, peak = power.get("idle_w"), power.get("max_w")
        if is_number(idle) and is_number(peak) and idle > peak:
            out.append(f"{src.at(('power', 'idle_w'))}: power.idle_w: expected at most "
                       f"power.max_w ({peak}), found {idle}")
    return out


KIND = register_kind(DeviceKind(
    name="gpu",
    properties=PROPERTIES,
    optional=("cuda_core", "fallback", "runtime", "saturation_ctas_per_sm", "calibration"),
    price=price,
    rules=rules,
    param_names=PARAM_NAMES,
    params=params_from_profile,
    columns=("precision",),
    runtime=runtime_info,
))

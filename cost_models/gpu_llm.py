"""The `gpu` kind on an LLM runtime (`torchao`, `llamacpp`): weight-only formats and W8A8 priced
per format (issue 19). `gpu.py` dispatches here when the profile's runtime stores formats
(`hwq.cost_models.weight_formats`).

Each pair is a format of the runtime (`4x16`: 4-bit weights with 16-bit activations; `8x8`:
W8A8), with its own calibrated efficiencies in the profile's `formats` block:
`formats: {"4x16": {memory: e_m, compute: e_c}, ...}`. Every layer is a roofline:

* compute time tc = 2·MACs / (peak(precision) · e_c(format)); the precision is the tensor-core
  class of max(w, a) as everywhere in the kind (a weight-only format computes in fp16: its weights
  are dequantised into the 16-bit GEMM; W8A8 on the int8 tensor cores). No tile quantization:
  decode GEMMs are matrix-vector products and prefill GEMMs are large.
* memory time tm = (weights · bits per weight + input · a + output · a) / 8 /
  (dram_bytes_per_s · e_m(format)): the weights at their stored bits, scales included
  (`weight_formats`), which is what a decode step reads once per token.
* time = max(tc, tm) + (1 − efficiency.overlap)·min(tc, tm) + launch_overhead_s: the launch is
  the per-token floor, one per layer row.

A decode step (batch 1) is memory-bound: (weight bytes + KV-cache bytes) over the effective
bandwidth of the format, plus the floor, so 4-bit weights speed decode up by less than the byte
ratio when e_m(4x16) < e_m(16x16); a prefill is compute-bound and barely moves with the format.
Attention `matmul` rows read the KV cache (their second operand) at the runtime's `kv_bits`
(16) whatever the pair, with the 16x16 format's efficiencies (the attention kernels do not
change with the weight format), and so does an `embedding` gather. A `conv` prices only at
16-bit pairs: these runtimes quantize the linear layers of transformers, and a quantized conv is
refused naming the runtime.

Memory fit (`network_terms`): a profile with `memory.capacity_bytes` refuses a policy whose
weight bytes (at its formats) plus KV-cache bytes (every attention matmul's second operand at
`kv_bits`, i.e. the cache of the graph's context and batch) exceed it, with the overflow in bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from hwq.cost_models import operands
from hwq.cost_models.kind import NetworkFit, Priced
from hwq.cost_models.weight_formats import RuntimeStorage, bits_per_weight, storage
from hwq.errors import CostModelError
from hwq.profile_rules import RuleSource, pair_texts

if TYPE_CHECKING:
    from hwq.graph import LayerGraph
    from hwq.profile import DeviceProfile
    from hwq.tables import CostTable

FLOAT = (16, 32)
BASE_FORMAT = "16x16"  # attention and gathers price at it
PAIR_PATTERN = "^[0-9]+x[0-9]+$"


def runtime_storage(profile: DeviceProfile | Mapping[str, Any]) -> RuntimeStorage | None:
    """The formats of the profile's runtime, or None when it has none (not an LLM runtime)."""
    get = profile.get
    return storage(str(get("runtime", "generic")))


def format_efficiency(profile: DeviceProfile, w: int, a: int) -> tuple[float, float]:
    """(memory, compute) efficiency of the pair's format; float pairs the profile does not list
    use 16x16's."""
    formats = profile.get("formats")
    entry = formats.get(f"{w}x{a}") or formats[BASE_FORMAT]
    return float(entry["memory"]), float(entry["compute"])


def row_weights(graph: LayerGraph) -> np.ndarray:
    """float64 [L]: weights per output row (a linear's input features, a conv's
    in/groups·kh·kw, an embedding's dimension): what a per-channel scale covers."""
    f = graph.frame
    col = lambda c: f[c].to_numpy(dtype=np.float64)  # noqa: E731
    rows = col("in_channels") / col("groups") * col("kernel_h") * col("kernel_w")
    op = operands.op_codes(graph)
    return np.where(op == operands.EMBEDDING, col("out_channels"), rows)


def layer_bits_per_weight(graph: LayerGraph, profile: DeviceProfile,
                          w_bits: np.ndarray) -> np.ndarray:
    """float64 [L, P]: stored bits per weight of every row at every pair (NaN for a matmul row,
    which holds no weights)."""
    runtime = runtime_storage(profile)
    assert runtime is not None
    bpw = bits_per_weight(runtime, w_bits, row_weights(graph))
    bpw[operands.op_codes(graph) == operands.MATMUL] = np.nan
    return bpw


def check_convs(graph: LayerGraph, profile: DeviceProfile, w_bits: np.ndarray,
                a_bits: np.ndarray) -> None:
    op = operands.op_codes(graph)
    convs = np.flatnonzero(op == operands.CONV)
    for w, a in zip(w_bits, a_bits):
        if len(convs) and min(int(w), int(a)) < 16:
            runtime = profile.get("runtime")
            raise CostModelError(
                f"layer {graph.names[int(convs[0])]}: a conv at {w}x{a}: runtime {runtime} "
                f"(profile {profile.name}) quantizes linear layers only; price convs at 16x16")


def price(graph: LayerGraph, profile: DeviceProfile, w_bits: np.ndarray,
          a_bits: np.ndarray) -> Priced:
    from hwq.cost_models.gpu import PREC, params_from_profile
    from hwq.cost_models.gpu_kernel import simulate_llm

    check_convs(graph, profile, w_bits, a_bits)
    runtime = runtime_storage(profile)
    assert runtime is not None
    op = operands.op_codes(graph)
    shared = (op == operands.MATMUL) | (op == operands.EMBEDDING)  # at the 16x16 format
    n_l, n_p = len(graph), len(w_bits)
    bpw = layer_bits_per_weight(graph, profile, w_bits)
    role_bits = np.where(np.isnan(bpw), float(runtime.kv_bits), bpw)
    e_m = np.empty((n_l, n_p))
    e_c = np.empty((n_l, n_p))
    act = np.empty((n_l, n_p))
    base_m, base_c = format_efficiency(profile, 16, 16)
    for j, (w, a) in enumerate(zip(w_bits, a_bits)):  # per pair, not per layer
        m, c = format_efficiency(profile, int(w), int(a))
        e_m[:, j] = np.where(shared, base_m, m)
        e_c[:, j] = np.where(shared, base_c, c)
        act[:, j] = np.where(shared, 16.0, float(a))
    w_eff = np.where(shared[:, None], 16.0, np.asarray(w_bits, np.float64)[None, :])
    prec = _precision(np.maximum(w_eff, act), profile)
    f = graph.frame
    macs = f["macs"].to_numpy(dtype=np.float64)
    rows = np.ascontiguousarray(np.stack([
        macs, operands.weight_operand_elems(graph), operands.first_operand_elems(graph),
        f["out_elems"].to_numpy(dtype=np.float64)], axis=1))
    out = simulate_llm(rows, np.ascontiguousarray(role_bits), np.ascontiguousarray(act),
                       np.ascontiguousarray(e_m), np.ascontiguousarray(e_c),
                       np.ascontiguousarray(prec), params_from_profile(profile))
    from hwq.cost_models.gpu import OUT_COLUMNS

    return Priced.from_columns({name: out[:, :, i] for i, name in enumerate(OUT_COLUMNS)},
                               {"precision": tuple(PREC)}, bits_per_weight=bpw)


def _precision(bits: np.ndarray, profile: DeviceProfile) -> np.ndarray:
    """int64 codes (gpu.PREC) of the tensor-core class of max(w, a) bits."""
    from hwq.cost_models.gpu import PREC

    has4 = "int4_ops_per_s" in profile.get("tensor_core")
    int4 = PREC[profile.get("fallback.int4", "int4" if has4 else "int8")]
    below = PREC[profile.get("fallback.below_int4", "int4" if has4 else "int8")]
    out = np.full(bits.shape, PREC["int8"], dtype=np.int64)
    out[bits > 8] = PREC["fp16"]
    out[bits > 16] = PREC["fp32"]
    out[bits == 4] = int4
    out[bits < 4] = below
    return out


def kv_cache_bytes(table: CostTable) -> float:
    """Bytes of the KV cache the graph reads: every matmul's second operand at `kv_bits`."""
    runtime = runtime_storage(table.profile)
    kv_bits = runtime.kv_bits if runtime is not None else 16
    return float(table.graph.second_elems().sum()) * kv_bits / 8.0


def network_terms(table: CostTable, policies: np.ndarray,
                  peak_activation_bytes: np.ndarray) -> NetworkFit:
    """Weights (at each policy's formats) + KV cache must fit `memory.capacity_bytes`."""
    n = len(policies)
    capacity = table.profile.get("memory.capacity_bytes", None)
    if capacity is None:
        return NetworkFit(np.ones(n, dtype=bool), [""] * n)
    arr = np.asarray(policies, dtype=np.int64)
    idx = table.pair_lookup[arr[..., 0], arr[..., 1]]  # [P, L]
    layers = np.arange(len(table.graph))[None, :]
    weights = table.values["weight_bytes"][layers, np.maximum(idx, 0)].sum(axis=1)
    kv = kv_cache_bytes(table)
    over = np.maximum(weights + kv - float(capacity), 0.0)
    reasons = [f"memory overflow {int(np.ceil(o))} B (weights {int(np.ceil(wb))} B + KV cache "
               f"{int(np.ceil(kv))} B > {int(capacity)} B)" if o > 0 else ""
               for o, wb in zip(over, weights)]
    return NetworkFit(over == 0, reasons, {"overflow_bytes": over})


def rules(src: RuleSource) -> list[str]:
    """An LLM runtime's profile lists its formats as pairs, each stored by the runtime and
    priced by a `formats` entry (16x16 among them); `formats` belongs to LLM runtimes only."""
    data = src.data
    runtime = storage(str(data.get("runtime", "generic")))
    formats = data.get("formats")
    out = []
    if runtime is None:
        if formats is not None:
            out.append(f"{src.at(('formats',))}: formats: expected a runtime with weight formats "
                       f"(torchao, llamacpp), found runtime {data.get('runtime', 'generic')}")
        return out
    bits = data.get("bits") if isinstance(data.get("bits"), dict) else {}
    if "pairs" not in bits:
        out.append(f"{src.at(('bits',))}: bits.pairs: expected the runtime's formats as pairs "
                   f"(runtime {runtime.name}), found widths")
    if not isinstance(formats, dict):
        out.append(f"{src.at(('runtime',))}: formats: expected the efficiencies of every format "
                   f"of runtime {runtime.name}, found nothing")
        formats = {}
    if BASE_FORMAT not in formats and formats:
        out.append(f"{src.at(('formats',))}: formats.{BASE_FORMAT}: expected a value (attention "
                   "and gathers price at it), found nothing")
    for i, (w, a) in enumerate(pair_texts(data, "pairs")):
        if f"{w}x{a}" not in formats and formats:
            out.append(f"{src.at(('bits', 'pairs', i))}: formats.{w}x{a}: expected the "
                       f"efficiencies of format {w}x{a}, found nothing")
        if not (runtime.stores(w) or w in FLOAT):
            out.append(f"{src.at(('bits', 'pairs', i))}: bits.pairs[{i}]: expected weight "
                       f"widths runtime {runtime.name} stores "
                       f"({', '.join(map(str, sorted(runtime.formats)))}), found {w}x{a}")
    return out

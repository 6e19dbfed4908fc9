"""Whole networks, exported at a policy and timed in the measuring runtime.

Two exporters:

* `hwq` — hwq's own `hwq export --format onnx` path (`hwq.export.onnx_qdq`): the fake-quant model
  of the policy (calibrated on a few seeded batches) in the default integer form
  (`hwq.export.onnx_integer`), as it exports on the profile measured: every int8 layer's output
  requantized (`hwq.quant.output_quant`: QLinearConv / QGemm u8 x u8 everywhere; the profile
  says `measurement.int8_outputs: requantized`). fp32 layers stay float.
* `quantize_static` — onnxruntime's own quantizer on the fp32 export (batch norms folded by
  onnxruntime's basic graph optimizations first): QDQ format, weights s8 per channel (its
  default), activations as the backend prefers, calibrated on the same seeded batches; the
  layers the policy keeps at fp32 are excluded (`nodes_to_exclude`).
* `quantize_static_u8` — the same with u8 weights (`weight_type=QUInt8`): the configuration
  onnxruntime advises where its u8 x s8 kernels saturate (x86 CPUs without VNNI), and the
  same u8 x u8 kernels as hwq's export.

The policies (`network_cases`): every pair measured for all layers, uniformly; and where both
fp32 and int8 were measured, three mixed ones: `alternating` (every other layer int8: the
boundary term is fitted on it), `first-half-int8` and `last-half-int8` (half the layers int8),
each by every exporter (`EXPORTERS`) where it has int8 layers.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwq.errors import UserError

CALIB_BATCHES = 4
EXPORTERS = ("hwq", "quantize_static", "quantize_static_u8")
INT8, FP32 = (8, 8), (32, 32)


@dataclass(frozen=True)
class NetworkCase:
    """One whole-network run: `policy` [L, 2] exported by `exporter`; `fits` names the network
    term fitted on it ('' for a prediction)."""

    name: str
    exporter: str
    policy: np.ndarray
    fits: str = ""


def network_cases(n_layers: int, pairs: list[tuple[int, int]],
                  int8_form: str = "hwq") -> list[NetworkCase]:
    """The runs of one network whose layers were all measured at `pairs`; the int8 terms are
    fitted on the exporter that writes int8 layers as the single-layer models were
    (`quantize_static` for int8 form `runtime`, `hwq` for `hwq`)."""
    fit_on = "quantize_static" if int8_form == "runtime" else "hwq"
    def uniform(p: tuple[int, int]) -> np.ndarray:
        return np.tile(np.array(p, dtype=np.int64), (n_layers, 1))

    cases = []
    for p in pairs:
        tag = f"{p[0]}x{p[1]}"
        if p == INT8:
            for exporter in EXPORTERS:
                cases.append(NetworkCase(f"uniform {tag}", exporter, uniform(p),
                                         f"glue {tag}" if exporter == fit_on else ""))
        else:
            cases.append(NetworkCase(f"uniform {tag}", "hwq", uniform(p), f"glue {tag}"))
    if INT8 in pairs and FP32 in pairs and n_layers >= 2:
        idx = np.arange(n_layers)
        half = n_layers // 2
        mixed = {
            "alternating": idx % 2 == 1,
            "first-half-int8": idx < half,
            "last-half-int8": idx >= n_layers - half,
        }
        for name, is_int8 in mixed.items():
            policy = np.where(is_int8[:, None], np.array(INT8), np.array(FP32)).astype(np.int64)
            for exporter in EXPORTERS:
                fits = "boundary" if name == "alternating" and exporter == fit_on else ""
                cases.append(NetworkCase(name, exporter, policy, fits))
    return cases


def calibration_inputs(example: Any) -> list[Any]:
    """CALIB_BATCHES seeded N(0, 1) batches shaped like the example input."""
    import torch

    gen = torch.Generator().manual_seed(1)
    return [torch.randn(tuple(example.shape), generator=gen) for _ in range(CALIB_BATCHES)]


def export_hwq(module: Any, example: Any, names: list[str], policy: np.ndarray,
               out: Path, requantize_outputs: bool = False) -> Path:
    """hwq's ONNX export of `module` at `policy` (pairs per layer `names`); with
    `requantize_outputs` as on a device whose int8 layers requantize their outputs
    (`hwq.quant.output_quant`: every profile `hwq measure` writes)."""
    from hwq.export.onnx_qdq import export_onnx_model
    from hwq.quant.apply import apply_policy, calibrate

    pairs = [(int(w), int(a)) for w, a in policy]
    qmodel = apply_policy(module, pairs, layer_names=names,
                          requantize_outputs=requantize_outputs).eval()
    if any(w < 16 or a < 16 for w, a in pairs):
        calibrate(qmodel, calibration_inputs(example), CALIB_BATCHES)
    export_onnx_model(qmodel, example, out)
    return out


def fp32_optimized(fp32_file: Path, out: Path) -> Path:
    """The fp32 export with onnxruntime's basic optimizations applied (batch norms folded)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(out)
    opts.log_severity_level = 3
    ort.InferenceSession(str(fp32_file), opts, providers=["CPUExecutionProvider"])
    return out


def layer_nodes(model_file: Path, names: list[str]) -> dict[str, str]:
    """Layer name -> the Conv/Gemm/MatMul node reading its weight (`<layer>.weight`, also as
    onnxruntime's `ConvBnFusion_W_<layer>.weight`)."""
    import onnx

    wanted = {f"{n}.weight": n for n in names}
    out: dict[str, str] = {}
    for node in onnx.load(str(model_file)).graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul") and len(node.input) > 1:
            weight = node.input[1].removeprefix("ConvBnFusion_W_")
            if weight in wanted:
                out[wanted[weight]] = node.name
    return out


def export_quantize_static(fp32_opt: Path, example: Any, names: list[str], policy: np.ndarray,
                           activation: str, out: Path, weights: str = "int8") -> Path:
    """onnxruntime's quantize_static of the optimized fp32 export, int8 where `policy` is 8x8;
    weights s8 (`weights="int8"`, its default) or u8 (`"uint8"`)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    nodes = layer_nodes(fp32_opt, names)
    missing = [n for n in names if n not in nodes]
    if missing:
        raise UserError(f"quantize_static: no ONNX node found for layer(s) {missing[:3]}")
    other = [(n, (int(w), int(a))) for n, (w, a) in zip(names, policy)
             if (int(w), int(a)) not in (INT8, FP32)]
    if other:
        raise UserError(f"quantize_static: layer {other[0][0]} at W{other[0][1][0]}"
                        f"A{other[0][1][1]}: only int8 and fp32 layers")
    batches = [{"input": x.numpy()} for x in calibration_inputs(example)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self) -> dict[str, Any] | None:
            return next(self._it, None)

    exclude = [nodes[n] for n, (w, _a) in zip(names, policy) if int(w) == 32]
    act = QuantType.QUInt8 if activation == "uint8" else QuantType.QInt8
    import logging

    quiet = logging.getLogger()
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the quantizer logs its advice at WARNING on the root logger
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_static(str(fp32_opt), str(out), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=act,
                            weight_type=QuantType.QUInt8 if weights == "uint8" else QuantType.QInt8,
                            nodes_to_exclude=exclude)
    finally:
        quiet.setLevel(level)
    return out

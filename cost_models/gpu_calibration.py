"""How well a `gpu` parameter vector reproduces measured latencies (issues 4 and 17).

* A per-layer table (HAWQ-V3's T4 ResNet-18 table, the `tvm` runtime) gives int4 and int8
  latencies per layer at an unstated batch, so per-layer agreement is judged up to one common
  scale factor; whole networks are judged absolutely against published end-to-end latencies.
* Whole-network MLPerf figures (the `tensorrt` runtime): a batch-1 latency is `latency_s` of a
  batch-1 graph summed over layers (compare with SingleStream's p90), a throughput is
  batch / `latency_s` of the graph at that batch (compare with Offline). `network_figures`
  computes them from a parameter vector (the fit's inner loop) or a profile (through
  `hwq.cost_table`, the public path); both are the same model.

No torch here: graphs come in.

    check(prm, graph, measured, networks) -> CalibrationReport (a plain dict)
    network_figures(latency) -> {figure name: value}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from hwq.cost_models import gpu
from hwq.cost_models.gpu_kernel import simulate


@dataclass(frozen=True)
class Network:
    """A published end-to-end latency: `graph` at its batch, W8A8 and W4A4 (first/last at 8)."""

    name: str
    graph: Any
    w8a8_s: float
    w4a4_s: float


def latency_s(prm: np.ndarray, graph: Any, bits: Sequence[int]) -> np.ndarray:
    """[layers, len(bits)] latency of `graph` at uniform W=A=b for each b."""
    b = np.asarray(bits, np.int64)
    return simulate(gpu.layer_rows(graph), b, b, prm)[:, :, 3]


def network_latency_s(prm: np.ndarray, graph: Any) -> tuple[float, float]:
    """(W8A8, W4A4 with the first and last layer at 8 bits), summed over layers."""
    t = latency_s(prm, graph, [8, 4])
    w4 = t[:, 1].copy()
    w4[[0, -1]] = t[[0, -1], 0]
    return float(t[:, 0].sum()), float(w4.sum())


def measured_rows(graph: Any, measured: pd.DataFrame) -> np.ndarray:
    """Row index in `graph` of each measured layer (by name); MACs must agree."""
    idx = np.array([graph.index_of(n) for n in measured["layer"]])
    macs = graph.frame["macs"].to_numpy()[idx] // graph.frame["batch"].to_numpy()[idx]
    if not np.array_equal(macs, measured["macs_per_image"].to_numpy()):
        raise ValueError("measured table and graph disagree on layer MACs")
    return idx


def residuals(prm: np.ndarray, graph: Any, measured: pd.DataFrame, idx: np.ndarray,
              networks: Sequence[Network], network_weight: float = 3.0) -> np.ndarray:
    """Log residuals: per layer centred (free common scale), then weighted end-to-end ones."""
    pred = latency_s(prm, graph, [4, 8])[idx]
    meas = np.stack([measured["latency_int4_ms"], measured["latency_int8_ms"]], axis=1) * 1e-3
    r = np.log(pred) - np.log(meas)
    out = [(r - r.mean()).ravel()]
    for net in networks:
        w8, w4 = network_latency_s(prm, net.graph)
        out.append(network_weight * np.log([w8 / net.w8a8_s, w4 / net.w4a4_s]))
    return np.concatenate(out)


def check(prm: np.ndarray, graph: Any, measured: pd.DataFrame,
          networks: Sequence[Network] = ()) -> dict[str, Any]:
    """Per-layer errors after the best common scale, rank correlations, speed-ups, networks."""
    idx = measured_rows(graph, measured)
    pred = latency_s(prm, graph, [4, 8])[idx]
    meas = np.stack([measured["latency_int4_ms"], measured["latency_int8_ms"]], axis=1) * 1e-3
    scale = float(np.exp(np.median(np.log(meas / pred))))
    rel = pred * scale / meas - 1
    sp_meas = meas[:, 1] / meas[:, 0]
    sp_model = pred[:, 1] / pred[:, 0]
    sp_err = sp_model / sp_meas - 1
    nets: dict[str, Mapping[str, float]] = {}
    for net in networks:
        w8, w4 = network_latency_s(prm, net.graph)
        nets[net.name] = {"w8a8_ms": w8 * 1e3, "w8a8_measured_ms": net.w8a8_s * 1e3,
                          "w8a8_rel_error": w8 / net.w8a8_s - 1,
                          "w4a4_ms": w4 * 1e3, "w4a4_measured_ms": net.w4a4_s * 1e3,
                          "w4a4_rel_error": w4 / net.w4a4_s - 1}
    return {
        "best_common_scale": scale,
        "median_abs_rel_error_after_scale": {"int4": float(np.median(abs(rel[:, 0]))),
                                             "int8": float(np.median(abs(rel[:, 1])))},
        "spearman": {"int4": float(spearmanr(pred[:, 0], meas[:, 0])[0]),
                     "int8": float(spearmanr(pred[:, 1], meas[:, 1])[0])},
        "speedup_within_25pct": int(np.sum(abs(sp_err) <= 0.25)),
        "speedup_model_range": [float(sp_model.min()), float(sp_model.max())],
        "speedup_measured_range": [float(sp_meas.min()), float(sp_meas.max())],
        "networks": nets,
        "layers": [
            {"layer": name, "rel_err_int4": float(rel[i, 0]), "rel_err_int8": float(rel[i, 1]),
             "speedup_measured": float(sp_meas[i]), "speedup_model": float(sp_model[i])}
            for i, name in enumerate(measured["layer"])
        ],
    }


# -- whole-network figures as MLPerf measures them (issue 17) ------------------------------------
THROUGHPUT_BATCH = 256
# name -> (unit, precision, batch): "int4" is INT4 everywhere but the first layer (conv1) at INT8,
# as NVIDIA's INT4 ResNet-50 submission ran it
FIGURES: dict[str, tuple[str, str, int]] = {
    "resnet50_int8_batch1_latency": ("ms", "int8", 1),
    "resnet50_int8_batch256_throughput": ("images/s", "int8", THROUGHPUT_BATCH),
    "resnet50_int4_batch256_throughput": ("images/s", "int4", THROUGHPUT_BATCH),
}
# latency(batch) -> float64 [layers, 2]: latency_s of every layer at W8A8 and W4A4
Latency = Callable[[int], np.ndarray]


def network_figures(latency: Latency, names: Sequence[str] = tuple(FIGURES)) -> dict[str, float]:
    """Each FIGURES entry of a network whose per-layer latencies `latency(batch)` gives."""
    cache: dict[int, np.ndarray] = {}
    out = {}
    for name in names:
        unit, precision, batch = FIGURES[name]
        if batch not in cache:
            cache[batch] = np.asarray(latency(batch), dtype=np.float64)
        t = cache[batch]
        if precision == "int8":
            total = float(t[:, 0].sum())
        else:
            total = float(t[0, 0] + t[1:, 1].sum())
        out[name] = total * 1e3 if unit == "ms" else batch / total
    return out


def params_latency(prm: np.ndarray, graph: Any) -> Latency:
    """`latency(batch)` of a parameter vector on `graph` re-batched (the fit's inner loop)."""
    rows = {}

    def latency(batch: int) -> np.ndarray:
        if batch not in rows:
            rows[batch] = gpu.layer_rows(graph.with_batch(batch))
        b = np.array([8, 4], np.int64)
        return simulate(rows[batch], b, b, prm)[:, :, 3]
    return latency


def profile_latency(profile: Any, graph: Any) -> Latency:
    """`latency(batch)` of a profile through `hwq.cost_table(graph, profile, batch=...)`."""
    from hwq.tables import cost_table

    def latency(batch: int) -> np.ndarray:
        return cost_table(graph, profile, bits=[(8, 8), (4, 4)], batch=batch).values["latency_s"]
    return latency

"""Fitting the MCU runtime table on measured whole-network latencies and energies (issue 17).

The measured rows (`benchmarks/data/mlperf_tiny_rows.csv`: MLPerf Tiny IC and KWS on five boards
under five runtimes) give two latencies per (runtime, core). That cannot separate five figures
per (runtime, core), so the fit keeps the structure of the figures fixed by priors from the
kernels' inner loops and fits only what the data can say:

* per (runtime, core) one scale `s`: the runtime's conv cycles per MAC on that core; its other
  classes are `s x CLASS_RATIOS[runtime][class]` (priors, not fitted; see CLASS_RATIOS);
* per runtime one glue ratio `k`: glue cycles per output element = k x s (the glue costs k MACs
  of that runtime on any core), held to the prior GLUE_PRIOR by a weak log-space penalty
  (GLUE_PRIOR_WEIGHT), which decides `k` only where no row can (a leave-one-out fit without the
  KWS rows, whose many small layers are what reveals the glue).

Residuals are log(predicted / measured) latencies, each priced by the kind's own kernel
(`mcu.run`) at W8A8 on the board's profile (clock, flash). Energy = board power x time: a
profile's power is the geometric mean of measured energy / measured latency over its rows.
(runtime, core) pairs without a row are derived: the fitted entry of the runtime on another core
times the ratio of X-CUBE-AI 7.3's fitted scales on the two cores (the one runtime measured on
all three cores). No torch here: graphs come in.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwq.cost_models import mcu
from hwq.cost_models.mcu_runtime import KERNEL_CLASSES

# Cycles per MAC of each class relative to the runtime's standard conv (priors). Optimised s8
# kernels (CMSIS-NN, X-CUBE-AI, Plumerai): a pointwise conv is the conv's GEMM without its im2col
# copy (0.9); a depthwise conv has no reduction over input channels to feed the dual-MAC SIMD
# instructions (2.0); a fully connected layer runs the same dot-product loop (1.0; its flash
# reads are a separate bound). TFLite Micro's reference kernels are the same scalar loop for
# every class (1.0).
OPTIMISED_RATIOS = {"conv": 1.0, "depthwise": 2.0, "pointwise": 0.9, "fc": 1.0}
CLASS_RATIOS: dict[str, dict[str, float]] = {
    "tflm": dict.fromkeys(KERNEL_CLASSES, 1.0),
    "cmsis-nn": OPTIMISED_RATIOS,
    "x-cube-ai-7.3": OPTIMISED_RATIOS,
    "x-cube-ai-9.0": OPTIMISED_RATIOS,
    "plumerai": OPTIMISED_RATIOS,
}
# Glue per output element in MACs of the same runtime: requantising, clamping and storing one
# int8 output is ~12 instructions of an s8 output stage (multiply-high, shift, offset, clamp,
# store) against ~1 cycle per MAC of the SIMD inner loop.
GLUE_PRIOR = 12.0
GLUE_PRIOR_WEIGHT = 0.03
# The runtime measured on every core: its fitted scales carry the others to unmeasured cores.
TRANSFER_RUNTIME = "x-cube-ai-7.3"
FIT_CORES = ("cortex-m4", "cortex-m7", "cortex-m33")
NETWORK_MODELS = {"ic": "mlperf_tiny_ic", "vww": "mlperf_tiny_vww", "kws": "mlperf_tiny_kws",
                  "ad": "mlperf_tiny_ad"}

# What the table says of each runtime (not fitted).
RUNTIME_NOTES: dict[str, dict[str, Any]] = {
    "tflm": {
        "description": "TensorFlow Lite Micro with its reference (portable C) int8 kernels",
        "int4_weight_unpack_overhead": None,
        "sources": {"int4_weight_unpack_overhead": "none: the reference kernels compute int8 "
                    "only (int4 weights are stored packed and computed as int8)"}},
    "cmsis-nn": {
        "description": "Arm CMSIS-NN s8 kernels (as measured: under microTVM, MLPerf Tiny v1.0)",
        "int4_weight_unpack_overhead": 1.7,
        "sources": {"int4_weight_unpack_overhead": "derived: CMSIS-NN s4 unpack ~35 vs ~20 "
                    "instructions per 16 MACs (arm_nn_mat_mult_kernel_s4_s16.c), ~1.5-1.9x, "
                    "devices.md takes 1.7x"}},
    "x-cube-ai-7.3": {
        "description": "ST X-CUBE-AI 7.3 (STM32Cube.AI) generated C with its int8 kernels",
        "int4_weight_unpack_overhead": None,
        "sources": {"int4_weight_unpack_overhead": "none: no int4-weight kernels (int4 weights "
                    "computed as int8)"}},
    "x-cube-ai-9.0": {
        "description": "ST X-CUBE-AI 9.0 (STM32Cube.AI) generated C with its int8 kernels",
        "int4_weight_unpack_overhead": None,
        "sources": {"int4_weight_unpack_overhead": "none: no int4-weight kernels (int4 weights "
                    "computed as int8)"}},
    "plumerai": {
        "description": "Plumerai inference engine (MLPerf Tiny v1.0)",
        "int4_weight_unpack_overhead": None,
        "sources": {"int4_weight_unpack_overhead": "unknown: int4 weights computed as int8"}},
}


@dataclass(frozen=True)
class MeasuredRow:
    """One measured MLPerf Tiny result (latency = 1000 / median inferences per second)."""

    profile: str  # the shipped (board, runtime) profile it calibrates
    board: str  # the shipped board profile (clock, flash)
    core: str
    clock_hz: float
    runtime: str
    network: str  # ic | kws | vww | ad
    latency_ms: float
    energy_uj: float | None
    round: str
    source: str


def read_rows(path: str | Path) -> list[MeasuredRow]:
    """The measured rows of a CSV (columns as MeasuredRow's fields; blank energy: none)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return [MeasuredRow(r["profile"], r["board"], r["core"], float(r["clock_hz"]),
                            r["runtime"], r["network"], float(r["latency_ms"]),
                            float(r["energy_uj"]) if r["energy_uj"] else None, r["round"],
                            r["source"])
                for r in csv.DictReader(fh)]


@dataclass(frozen=True)
class Fit:
    """Fitted scales per (runtime, core) and glue ratios per runtime, with predictions."""

    scales: Mapping[tuple[str, str], float]
    glue_ratios: Mapping[str, float]
    networks: tuple[str, ...]  # the networks whose rows were fitted

    def entry_figures(self, runtime: str, core: str) -> tuple[dict[str, float], float]:
        """(cycles_per_mac by class, glue cycles per element) of one fitted (runtime, core)."""
        s = self.scales[(runtime, core)]
        ratios = CLASS_RATIOS[runtime]
        return {c: s * ratios[c] for c in KERNEL_CLASSES}, s * self.glue_ratios[runtime]


def figures_of(runtime: str, core: str, cycles_per_mac: Mapping[str, float],
               glue: float) -> mcu.Figures:
    """mcu.Figures of int8 figures (the kind's own types: one definition of the model)."""
    return mcu.Figures(runtime, core, {(8, 8): np.array([cycles_per_mac[c]
                                                           for c in KERNEL_CLASSES])}, glue)


def predict_s(layers: mcu.LayerArrays, board: np.ndarray, figs: mcu.Figures) -> float:
    """Whole-network latency (s) at W8A8: the sum of the kernel's layer latencies."""
    eight = np.array([8], np.int64)
    return float(mcu.run(layers, figs, board, eight, eight)[:, 0, 3].sum())


def fit(rows: Sequence[MeasuredRow], layers: Mapping[str, mcu.LayerArrays],
        boards: Mapping[str, np.ndarray], networks: Iterable[str] | None = None) -> Fit:
    """Fit scales and glue ratios on the rows of `networks` (default: every row's network).

    `layers`: network -> mcu.layer_arrays of its graph; `boards`: board -> mcu.params of its
    profile. Every (runtime, core) of `rows` gets a scale even when none of its rows is used
    (it then keeps the starting value: leave such a fit out of any check)."""
    from scipy.optimize import least_squares

    use_nets = tuple(sorted(set(networks) if networks is not None else {r.network for r in rows}))
    keys = sorted({(r.runtime, r.core) for r in rows})
    runtimes = sorted({r.runtime for r in rows})
    used = [r for r in rows if r.network in use_nets]

    def unpack(theta: np.ndarray) -> Fit:
        return Fit({k: float(np.exp(theta[i])) for i, k in enumerate(keys)},
                   {rt: float(np.exp(theta[len(keys) + j])) for j, rt in enumerate(runtimes)},
                   use_nets)

    def residuals(theta: np.ndarray) -> np.ndarray:
        f = unpack(theta)
        out = [math.log(predicted_ms(f, r, layers, boards) / r.latency_ms) for r in used]
        glue = theta[len(keys):] - math.log(GLUE_PRIOR)
        return np.concatenate([np.asarray(out), GLUE_PRIOR_WEIGHT * glue])

    start = np.concatenate([np.zeros(len(keys)), np.full(len(runtimes), math.log(GLUE_PRIOR))])
    theta = least_squares(residuals, start, diff_step=1e-4, xtol=1e-12, ftol=1e-12).x
    return unpack(theta)


def predicted_ms(f: Fit, row: MeasuredRow, layers: Mapping[str, mcu.LayerArrays],
                 boards: Mapping[str, np.ndarray]) -> float:
    """The fitted model's latency (ms) of a measured row's network on its board."""
    cpm, glue = f.entry_figures(row.runtime, row.core)
    figs = figures_of(row.runtime, row.core, cpm, glue)
    return 1e3 * predict_s(layers[row.network], boards[row.board], figs)


def board_power_w(rows: Sequence[MeasuredRow], profile: str,
                  networks: Iterable[str] | None = None) -> float | None:
    """Average power of one (board, runtime) profile: geometric mean of measured energy /
    measured latency over its rows with an energy (of `networks`); None without any."""
    nets = set(networks) if networks is not None else None
    ratios = [r.energy_uj * 1e-6 / (r.latency_ms * 1e-3) for r in rows
              if r.profile == profile and r.energy_uj is not None
              and (nets is None or r.network in nets)]
    return float(np.exp(np.mean(np.log(ratios)))) if ratios else None


def derived_scales(f: Fit) -> dict[tuple[str, str], tuple[float, str]]:
    """Scales of every (runtime, Cortex core) the fit lacks: (scale, how it was derived)."""
    out: dict[tuple[str, str], tuple[float, str]] = {}
    transfer = {c: f.scales.get((TRANSFER_RUNTIME, c)) for c in FIT_CORES}
    for runtime in sorted({rt for rt, _ in f.scales}):
        fitted = [c for c in FIT_CORES if (runtime, c) in f.scales]
        for core in FIT_CORES:
            if core in fitted or transfer[core] is None:
                continue
            logs = [math.log(f.scales[(runtime, c)] * transfer[core] / transfer[c])
                    for c in fitted if transfer[c] is not None]
            if not logs:
                continue
            how = " and ".join(f"{runtime} on {c} x ({TRANSFER_RUNTIME} {core} / {c})"
                               for c in fitted)
            out[(runtime, core)] = (float(math.exp(np.mean(logs))), how)
    return out


def table_document(rows: Sequence[MeasuredRow], f: Fit, layers: Mapping[str, mcu.LayerArrays],
                   boards: Mapping[str, np.ndarray], data_name: str) -> dict[str, Any]:
    """The runtime table (mcu_runtimes.yaml) of a fit: fitted entries with their residuals,
    derived entries for the other Cortex cores."""
    derived = derived_scales(f)
    runtimes: dict[str, Any] = {}
    for runtime in sorted({rt for rt, _ in f.scales}):
        notes = RUNTIME_NOTES[runtime]
        cores: dict[str, Any] = {}
        for core in FIT_CORES:
            if (runtime, core) in f.scales:
                own = [r for r in rows if (r.runtime, r.core) == (runtime, core)
                       and r.network in f.networks]
                cpm, glue = f.entry_figures(runtime, core)
                boards_used = sorted({r.board for r in own})
                what = ", ".join(f"{r.board} {r.network.upper()} {r.latency_ms:g} ms ({r.round})"
                                 for r in own)
                entry: dict[str, Any] = {
                    "cycles_per_mac": _rounded(cpm), "glue_cycles_per_element": _round(glue),
                    "basis": "fitted",
                    "source": (f"fitted by benchmarks/calibrate_devices.py on {data_name}: "
                               f"{what}; scale per (runtime, core), glue ratio per runtime, "
                               f"class ratios are priors (mcu_calibration.CLASS_RATIOS); "
                               f"board{'s' if len(boards_used) > 1 else ''} "
                               f"{', '.join(boards_used)}"),
                    "residuals": [],
                }
            elif (runtime, core) in derived:
                s, how = derived[(runtime, core)]
                ratios = CLASS_RATIOS[runtime]
                entry = {
                    "cycles_per_mac": _rounded({c: s * ratios[c] for c in KERNEL_CLASSES}),
                    "glue_cycles_per_element": _round(s * f.glue_ratios[runtime]),
                    "basis": "derived",
                    "source": (f"derived, not measured: {how}; glue ratio and class ratios "
                               f"of {runtime}"),
                }
            else:
                continue
            if entry["basis"] == "fitted":  # residuals of the figures as written (rounded)
                figs = figures_of(runtime, core, entry["cycles_per_mac"],
                                  entry["glue_cycles_per_element"])
                entry["residuals"] = [_residual(figs, r, layers, boards) for r in own]
            cores[core] = entry
        runtimes[runtime] = {
            "description": notes["description"],
            "int4_weight_unpack_overhead": notes["int4_weight_unpack_overhead"],
            "sources": dict(notes["sources"]),
            "class_ratios": dict(CLASS_RATIOS[runtime]),
            "glue_macs_per_element": _round(f.glue_ratios[runtime]),
            "cores": cores,
        }
    return {
        "schema_version": 1,
        "description": (f"MCU runtime figures per (runtime, core), int8; written by "
                        f"benchmarks/calibrate_devices.py --write from {data_name} (fitted "
                        f"on {', '.join(n.upper() for n in f.networks)}); do not edit by hand"),
        "runtimes": runtimes,
    }


def _residual(figs: mcu.Figures, r: MeasuredRow, layers: Mapping[str, mcu.LayerArrays],
              boards: Mapping[str, np.ndarray]) -> dict[str, Any]:
    pred = 1e3 * predict_s(layers[r.network], boards[r.board], figs)
    return {"board": r.board, "network": r.network, "measured_ms": r.latency_ms,
            "predicted_ms": _round(pred), "residual": round(pred / r.latency_ms - 1, 4)}


def _round(x: float) -> float:
    """Four significant digits (the table is data a person reads)."""
    return float(f"{x:.4g}")


def _rounded(d: Mapping[str, float]) -> dict[str, float]:
    return {k: _round(v) for k, v in d.items()}

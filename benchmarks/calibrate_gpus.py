"""Calibrate the `tensorrt` GPU runtime on the T4 MLPerf rows, carry it to other GPUs (issue 17).

Data: tests/cost_models/data/mlperf_resnet50_t4.csv (a copy of the T4 ResNet-50 v1.5 rows of
reference/measured_devices.md): INT8 SingleStream p90 1.086 ms, INT8 Offline 6036 images/s,
INT4 (conv1 INT8) Offline 9002 images/s per GPU. Nothing else is fitted on, and no row of another
GPU is read here.

Model (cost_models/gpu.py): ResNet-50 as traced (torchvision, 54 conv/linear rows), the gpu kind
with the runtime's CTA tile, `efficiency.memory`, `efficiency.overlap` and each device's
`launch_overhead_s` held at the profile's values (assumed, not fitted), and three fitted runtime
parameters, one per measured row:
  * efficiency.compute.int8 and .int4: the fraction of the dense datasheet peak the runtime's
    int8 and int4 tensor-core kernels reach when saturated (Offline, batch 256);
  * saturation_ctas_per_sm: how many CTAs an SM needs resident to reach that rate (SingleStream,
    batch 1: few tiles per SM, so the layers run below it).
The fit is log least squares on the three rows (three equations, three unknowns: the residuals
are zero when a solution exists; they are reported). Every `<gpu>-tensorrt` profile carries the
fitted values unchanged; its device figures are its datasheet's (peak per precision, DRAM
bandwidth, SM count, clock), so its predictions come from datasheets alone.

    python benchmarks/calibrate_gpus.py            # fit, carry, JSON on stdout
    python benchmarks/calibrate_gpus.py --shipped  # price the shipped profiles unchanged

The JSON holds the fitted values, the residuals on the T4 rows, each carried profile's predictions
(ResNet-50 INT8 batch-1 latency, INT8 and INT4 throughput at batch 256), and how far those
predictions move when an assumed figure (efficiency.memory, launch_overhead_s, the CTA tile)
changes and the fit is redone: the spread of what the T4 rows cannot pin down.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from hwq.cost_models import gpu
from hwq.cost_models.gpu_calibration import (
    FIGURES,
    network_figures,
    params_latency,
    profile_latency,
)
from hwq.model_source import load_graph
from hwq.profile import load_profile

CSV = (Path(__file__).resolve().parents[1] / "tests" / "cost_models" / "data"
       / "mlperf_resnet50_t4.csv")
CALIBRATED = "t4-tensorrt"
CARRIED = ("a100-tensorrt", "h100-tensorrt", "jetson-orin-tensorrt")
FITTED = ("efficiency.compute.int8", "efficiency.compute.int4", "saturation_ctas_per_sm")
# measured row (precision, scenario, metric) -> the model's figure
ROWS = {("int8", "SingleStream", "p90_latency"): "resnet50_int8_batch1_latency",
        ("int8", "Offline", "throughput"): "resnet50_int8_batch256_throughput",
        ("int4_conv1_int8", "Offline", "throughput"): "resnet50_int4_batch256_throughput"}


def targets(csv: Path) -> dict[str, tuple[float, str]]:
    """figure name -> (measured value, source) of the rows the fit uses."""
    df = pd.read_csv(csv)
    out = {}
    for r in df.itertuples():
        name = ROWS.get((r.precision, r.scenario, r.metric))
        if name is not None:
            if r.unit != FIGURES[name][0]:
                raise ValueError(f"{csv}: {name}: expected unit {FIGURES[name][0]}, found {r.unit}")
            out[name] = (float(r.value), str(r.source))
    if set(out) != set(ROWS.values()):
        raise ValueError(f"{csv}: expected rows for {sorted(ROWS.values())}, found {sorted(out)}")
    return out


def with_runtime(base: np.ndarray, e8: float, e4: float, sat: float) -> np.ndarray:
    """`base` with the runtime's fitted values (fp16 and fp32 keep int8's compute efficiency, as
    the shipped profiles do: the rows measure no fp16 kernel)."""
    prm = base.copy()
    prm[gpu.EFF_COMPUTE:gpu.EFF_COMPUTE + 4] = e4, e8, e8, e8
    prm[gpu.SATURATION] = sat
    return prm


def runtime_of(prm: np.ndarray) -> dict[str, float]:
    return {"efficiency.compute.int8": float(prm[gpu.EFF_COMPUTE + gpu.PREC["int8"]]),
            "efficiency.compute.int4": float(prm[gpu.EFF_COMPUTE + gpu.PREC["int4"]]),
            "saturation_ctas_per_sm": float(prm[gpu.SATURATION])}


def fit(base: np.ndarray, graph, measured: dict[str, tuple[float, str]]) -> tuple[np.ndarray, dict]:
    names = list(measured)
    want = np.log([measured[n][0] for n in names])

    def resid(x: np.ndarray) -> np.ndarray:
        prm = with_runtime(base, *np.exp(x))
        got = network_figures(params_latency(prm, graph), names)
        return np.log([got[n] for n in names]) - want

    best = None
    for x0 in ([0.4, 0.3, 2.0], [0.8, 0.6, 1.0], [0.2, 0.2, 8.0]):
        r = least_squares(resid, np.log(x0), bounds=(np.log([1e-3, 1e-3, 1.0]),
                                                      np.log([1.0, 1.0, 1e3])))
        if best is None or r.cost < best.cost:
            best = r
    prm = with_runtime(base, *np.exp(best.x))
    return prm, {n: float(np.expm1(v)) for n, v in zip(names, resid(best.x))}


def carried(prm_t4: np.ndarray, name: str) -> np.ndarray:
    """The carried profile's own parameter vector with the T4-fitted runtime values."""
    return with_runtime(gpu.params_from_profile(load_profile(name)),
                        *runtime_of(prm_t4).values())


def predictions(prm: np.ndarray, graph) -> dict[str, float]:
    return {k: round(v, 4) for k, v in network_figures(params_latency(prm, graph)).items()}


def sensitivity(base: np.ndarray, graph, measured) -> list[dict]:
    """Refit with one assumed figure changed; what the carried predictions become."""
    variants = []
    for label, change in (("efficiency.memory 0.6", (gpu.EFFICIENCY, 0.6)),
                          ("efficiency.memory 1.0", (gpu.EFFICIENCY, 1.0)),
                          ("launch_overhead_s x0.5", (gpu.LAUNCH, 0.5)),
                          ("launch_overhead_s x2", (gpu.LAUNCH, 2.0)),
                          ("gemm_tile 128x64", ("tile", (128, 64))),
                          ("gemm_tile 32x32", ("tile", (32, 32)))):
        b = base.copy()
        if change[0] == "tile":
            b[gpu.TILE_M], b[gpu.TILE_N] = change[1]
        elif change[0] == gpu.LAUNCH:
            b[gpu.LAUNCH] *= change[1]
        else:
            b[change[0]] = change[1]
        prm, res = fit(b, graph, measured)
        row = {"variant": label, "fitted": {k: round(v, 4) for k, v in runtime_of(prm).items()},
               "t4_residuals": {k: round(v, 4) for k, v in res.items()}}
        for name in CARRIED:
            c = with_runtime(gpu.params_from_profile(load_profile(name)), *runtime_of(prm).values())
            c[gpu.TILE_M], c[gpu.TILE_N] = b[gpu.TILE_M], b[gpu.TILE_N]
            if change[0] == gpu.LAUNCH:
                c[gpu.LAUNCH] *= change[1]
            if change[0] == gpu.EFFICIENCY:
                c[gpu.EFFICIENCY] = change[1]
            row[name] = predictions(c, graph)
        variants.append(row)
    return variants


def shipped(graph) -> dict:
    """Every tensorrt profile as shipped, through hwq.cost_table."""
    return {name: {k: round(v, 4) for k, v in
                   network_figures(profile_latency(load_profile(name), graph)).items()}
            for name in (CALIBRATED, *CARRIED)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", type=Path, default=CSV)
    ap.add_argument("--shipped", action="store_true", help="only price the shipped profiles")
    ap.add_argument("--no-sensitivity", action="store_true")
    args = ap.parse_args()
    graph = load_graph("resnet50", input_shape=(1, 3, 224, 224))
    if args.shipped:
        print(json.dumps(shipped(graph), indent=1))
        return
    measured = targets(args.csv)
    base = gpu.params_from_profile(load_profile(CALIBRATED))
    prm, res = fit(base, graph, measured)
    report: dict = {
        "fitted_on": {n: {"measured": v, "source": s} for n, (v, s) in measured.items()},
        "fitted": {k: round(v, 4) for k, v in runtime_of(prm).items()},
        "t4_model": predictions(prm, graph),
        "t4_residuals": {k: round(v, 4) for k, v in res.items()},
        "carried": {name: predictions(carried(prm, name), graph) for name in CARRIED},
    }
    if not args.no_sensitivity:
        report["sensitivity"] = sensitivity(base, graph, measured)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

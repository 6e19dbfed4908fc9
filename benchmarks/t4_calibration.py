"""Calibrate the t4 profile on the measured HAWQ-V3 table, then check it on other networks.

Data: tests/cost_models/data/t4_resnet18_layer_latency.csv (a copy of the shared reference: 19
ResNet-18 convs, int4 and int8, batch not stated) and the HAWQ-V3 README's end-to-end T4
latencies at batch 8 (devices.md 1.2):
ResNet-18 3.3 ms W8A8 / 2.2 ms W4A4, ResNet-50 8.5 ms / 5.8 ms (W4A4 with the first and last
layer at 8 bits).

Fit: the three global `efficiency.{compute, memory, overlap}` by scipy least squares on
  * per-layer log(predicted / measured) over the 38 points, centred (one free common scale:
    the table's batch is unknown and isolated layers do not add up to the end-to-end figure), and
  * log(predicted / measured) of ResNet-18's two end-to-end latencies (weight 3),
for every CTA tile shape of a small grid (m, n in 16..128; k per precision, int8 and int4, in
16..128); the tile with the lowest fit cost wins. The tile is structural (the kernels' shape, not an
efficiency), but it is chosen on the same table: the JSON lists the runner-ups so that the choice
can be judged. ResNet-50 is held out: it is only checked, never fitted.

    python benchmarks/t4_calibration.py                 # grid + fit + checks, JSON on stdout
    python benchmarks/t4_calibration.py --shipped       # check the shipped t4.yaml unchanged
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from hwq.cost_models import gpu
from hwq.cost_models.gpu_calibration import Network, check, measured_rows, residuals
from hwq.model_source import load_graph
from hwq.profile import load_profile

CSV = (Path(__file__).resolve().parents[1] / "tests" / "cost_models" / "data"
       / "t4_resnet18_layer_latency.csv")
END_TO_END_S = {"resnet18": (3.3e-3, 2.2e-3), "resnet50": (8.5e-3, 5.8e-3)}  # batch 8
GRID_MN = (16, 32, 64, 128)
GRID_K = (16, 32, 64, 128)


def with_efficiency(base: np.ndarray, compute: float, memory: float, overlap: float) -> np.ndarray:
    """`base` with one compute efficiency for every precision (the tvm runtime's fit)."""
    prm = base.copy()
    prm[gpu.EFF_COMPUTE:gpu.EFF_COMPUTE + 4] = compute
    prm[gpu.EFFICIENCY], prm[gpu.EFFICIENCY + 1] = memory, overlap
    return prm


def efficiency_of(prm: np.ndarray) -> tuple[float, float, float]:
    return (float(prm[gpu.EFF_COMPUTE + gpu.PREC["int8"]]), float(prm[gpu.EFFICIENCY]),
            float(prm[gpu.EFFICIENCY + 1]))


def networks(batch: int) -> dict[str, Network]:
    return {name: Network(name, load_graph(name, input_shape=(batch, 3, 224, 224)), w8, w4)
            for name, (w8, w4) in END_TO_END_S.items()}


def with_tile(base: np.ndarray, m: int, n: int, k8: int, k4: int) -> np.ndarray:
    prm = base.copy()
    prm[gpu.TILE_M], prm[gpu.TILE_N] = m, n
    prm[gpu.TILE_K:gpu.TILE_K + 4] = k4, k8, k8, k8  # int4, int8, fp16, fp32
    return prm


def fit(base: np.ndarray, graph, measured, idx, nets) -> tuple[np.ndarray, float]:
    def resid(x: np.ndarray) -> np.ndarray:
        prm = with_efficiency(base, np.exp(x[0]), np.exp(x[1]), x[2])
        return residuals(prm, graph, measured, idx, nets)

    best = None
    for x0 in ([np.log(0.05), np.log(0.5), 1.0], [np.log(0.1), np.log(0.1), 0.0],
               [np.log(0.02), np.log(0.9), 0.5]):
        r = least_squares(resid, x0, bounds=([np.log(1e-4), np.log(1e-4), 0.0], [0, 0, 1]))
        if best is None or r.cost < best.cost:
            best = r
    return with_efficiency(base, np.exp(best.x[0]), np.exp(best.x[1]), best.x[2]), float(best.cost)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", type=Path, default=CSV)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--shipped", action="store_true", help="only check the shipped t4 profile")
    args = ap.parse_args()
    measured = pd.read_csv(args.csv)
    nets = networks(args.batch)
    graph = nets["resnet18"].graph
    idx = measured_rows(graph, measured)
    base = gpu.params_from_profile(load_profile("t4"))
    report: dict = {"batch": args.batch}
    if not args.shipped:
        trials = []
        grid = list(itertools.product(GRID_MN, GRID_MN, GRID_K, GRID_K))
        for i, (m, n, k8, k4) in enumerate(grid):
            prm, cost = fit(with_tile(base, m, n, k8, k4), graph, measured, idx,
                            [nets["resnet18"]])
            trials.append((cost, (m, n, k8, k4), prm))
            if (i + 1) % 32 == 0:
                print(f"{i + 1}/{len(grid)} tile shapes fitted", file=sys.stderr)
        trials.sort(key=lambda t: t[0])
        cost, (m, n, k8, k4), base = trials[0]
        report["fit"] = {
            "gemm_tile": {"m": m, "n": n, "k": {"int8": k8, "int4": k4, "fp16": k8}},
            "efficiency": dict(zip(("compute", "memory", "overlap"),
                                   (round(v, 5) for v in efficiency_of(base)))),
            "cost": cost,
            "runner_ups": [
                {"tile": list(t), "cost": c,
                 "spearman": check(p, graph, measured)["spearman"]}
                for c, t, p in trials[1:6]
            ],
        }
    report["check"] = check(base, graph, measured, list(nets.values()))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

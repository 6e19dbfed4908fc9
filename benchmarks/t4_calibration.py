"""Calibrate the t4 profile's three global efficiency parameters on the measured HAWQ-V3 table.

Data: /work/shared/reference/t4_resnet18_layer_latency.csv (19 ResNet-18 convs, int4 and int8,
batch not stated; batch 8 assumed, as the repository's end-to-end figures). Fits
`efficiency.{compute, memory, overlap}` by scipy least squares on log(predicted / measured) over
all 38 points, then prints JSON: fitted values, per-layer relative errors (raw and after the best
single common scale), median absolute errors, Spearman rank correlations, per-layer int4/int8
speed-ups and whole-network ResNet-18 latency at batch 8 (W8A8 and W4A4 with first/last at 8).

    python benchmarks/t4_calibration.py [--csv PATH] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from hwq.cost_models import gpu
from scipy.optimize import least_squares
from scipy.stats import spearmanr

from hwq.graph import LayerGraph
from hwq.profile import load_profile

CSV = Path("/work/shared/reference/t4_resnet18_layer_latency.csv")
STAGE = {"layer1": (64, 56), "layer2": (128, 28), "layer3": (256, 14), "layer4": (512, 7)}


def resnet18_rows(batch: int) -> list[dict]:
    """torchvision ResNet-18 at 224x224: the stem conv, the 19 measured convs, the fc."""
    rows = [dict(name="conv1", op="conv", batch=batch, in_channels=3, out_channels=64,
                 in_h=224, out_h=112, kernel_h=7, stride_h=2, pad_h=3)]
    prev_c = 64
    for stage, (c, hw) in STAGE.items():
        for block in (0, 1):
            first = block == 0 and stage != "layer1"
            in_c, in_hw, s = (prev_c, hw * 2, 2) if first else (c, hw, 1)
            rows.append(dict(name=f"{stage}.{block}.conv1", op="conv", batch=batch,
                             in_channels=in_c, out_channels=c, in_h=in_hw, out_h=hw, kernel_h=3,
                             stride_h=s, pad_h=1))
            rows.append(dict(name=f"{stage}.{block}.conv2", op="conv", batch=batch,
                             in_channels=c, out_channels=c, in_h=hw, out_h=hw, kernel_h=3,
                             pad_h=1))
            if first:
                rows.append(dict(name=f"{stage}.{block}.downsample.0", op="conv", batch=batch,
                                 in_channels=in_c, out_channels=c, in_h=in_hw, out_h=hw,
                                 kernel_h=1, stride_h=2))
        prev_c = c
    rows.append(dict(name="fc", op="linear", batch=batch, in_channels=512, out_channels=1000))
    return rows


def predict(layers: np.ndarray, base: np.ndarray, eff: np.ndarray, w, a) -> np.ndarray:
    prm = base.copy()
    prm[10:13] = eff
    out = gpu.simulate(layers, np.asarray(w, np.int64), np.asarray(a, np.int64), prm)
    return out[:, :, 3]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", type=Path, default=CSV)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    meas = pd.read_csv(args.csv)
    graph = LayerGraph.from_frame(pd.DataFrame(resnet18_rows(args.batch)))
    idx = [graph.index_of(n) for n in meas["layer"]]
    macs = graph.frame["macs"].to_numpy()[idx] // args.batch
    assert np.array_equal(macs, meas["macs_per_image"].to_numpy()), "shape mismatch"
    layers = gpu.layer_rows(graph)
    base = gpu.params_from_profile(load_profile("t4"))
    y = np.log(np.stack([meas["latency_int4_ms"], meas["latency_int8_ms"]], axis=1) * 1e-3)

    def resid(x):
        eff = np.array([np.exp(x[0]), np.exp(x[1]), x[2]])
        return (np.log(predict(layers, base, eff, [4, 8], [4, 8])[idx]) - y).ravel()

    best = None
    for x0 in ([np.log(0.05), np.log(0.5), 1.0], [np.log(0.05), np.log(0.05), 0.0],
               [np.log(0.1), np.log(0.1), 0.5]):
        fit = least_squares(resid, x0, bounds=([np.log(1e-4), np.log(1e-4), 0.0], [0, 0, 1]))
        if best is None or fit.cost < best.cost:
            best = fit
    eff = np.array([np.exp(best.x[0]), np.exp(best.x[1]), best.x[2]])
    pred = predict(layers, base, eff, [4, 8], [4, 8])[idx]
    measured = np.exp(y)
    rel = pred / measured - 1
    scale = float(np.exp(-np.median(np.log(pred / measured))))
    rel_s = pred * scale / measured - 1
    sp_meas = measured[:, 1] / measured[:, 0]
    sp_pred = pred[:, 1] / pred[:, 0]
    sp_err = sp_pred / sp_meas - 1
    full = predict(layers, base, eff, [8, 4], [8, 4])
    w4a4 = full[:, 1].copy()
    w4a4[[0, len(graph) - 1]] = full[[0, len(graph) - 1], 0]
    report = {
        "batch": args.batch,
        "efficiency": {"compute": round(float(eff[0]), 5), "memory": round(float(eff[1]), 5),
                       "overlap": round(float(eff[2]), 4)},
        "log_rmse": float(np.sqrt(np.mean(best.fun ** 2))),
        "best_common_scale": scale,
        "median_abs_rel_error": {"int4": float(np.median(abs(rel[:, 0]))),
                                 "int8": float(np.median(abs(rel[:, 1])))},
        "median_abs_rel_error_after_scale": {"int4": float(np.median(abs(rel_s[:, 0]))),
                                             "int8": float(np.median(abs(rel_s[:, 1])))},
        "spearman": {"int4": float(spearmanr(pred[:, 0], measured[:, 0])[0]),
                     "int8": float(spearmanr(pred[:, 1], measured[:, 1])[0])},
        "speedup_within_25pct": int(np.sum(abs(sp_err) <= 0.25)),
        "network_latency_ms": {"w8a8": float(full[:, 0].sum() * 1e3),
                               "w4a4_first_last_8": float(w4a4.sum() * 1e3),
                               "measured_w8a8": 3.3, "measured_w4a4": 2.2},
        "layers": [
            {"layer": name, "rel_err_int4": float(rel[i, 0]), "rel_err_int8": float(rel[i, 1]),
             "speedup_measured": float(sp_meas[i]), "speedup_model": float(sp_pred[i])}
            for i, name in enumerate(meas["layer"])
        ],
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

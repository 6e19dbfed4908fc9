"""Speed of the `bitfusion` cost model against the reference simulator's wall time.

With the persistent cache disabled (HWQ_NO_CACHE=1, set before hwq is imported) and after a
warm-up that compiles or loads every Numba kernel, it times
`hwq.cost_models.bitfusion_kernel.simulate` over the distinct batch-16 (layer, bit pair) rows of
the reference CSV:

* per row: one `simulate` call per (layer, pair), `--repeat` times; a row's time is the median of
  its repeats, and `hwq_median_s_per_row` is the median over rows;
* whole table: the CSV's distinct layer rows x distinct pairs in ONE call, `--repeat` times; the
  median call time divided by the number of CSV rows (and by the number of table cells).

`reference_median_s_per_row` is the median `sim_wall_s` (the authors' simulator, wall seconds per
layer and pair) of the same rows, and `speedup_ratio` = reference median / hwq median.  A second
layer set is timed the same way: ResNet-50 at batch 16 by default, or the layers of a saved hwq
LayerGraph (`--model-layers FILE.parquet`, mapped like the `bitfusion` table adapter; a Parquet
table with the 11 columns of `bitfusion.LAYER_COLUMNS` is read as is).  Prints one JSON object.

Usage: python benchmarks/bitfusion_speed.py [--model-layers FILE.parquet] [--pairs 2,4,8]
                                            [--repeat N]
"""

from __future__ import annotations

import os

os.environ["HWQ_NO_CACHE"] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import hwq.cost_models.bitfusion_kernel as bf  # noqa: E402
from hwq.cost_models import bitfusion  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT / "tests" / "data" / "bitfusion_reference_visible.csv"

# ResNet-50 (torchvision v1.5: stride on the 3x3) at 224x224: (K, O, S, IC, OC, im2col)
_RESNET50: list[tuple[int, int, int, int, int, int]] = [(7, 112, 2, 3, 64, 1)]


def _resnet50_layers() -> list[tuple[int, int, int, int, int, int]]:
    layers = list(_RESNET50)
    in_ch, size = 64, 56
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        out_ch = width * 4
        for blk in range(blocks):
            s = stride if blk == 0 else 1
            o = size // s
            layers.append((1, size, 1, in_ch, width, 0))
            layers.append((3, o, s, width, width, 0))
            layers.append((1, o, 1, width, out_ch, 0))
            if blk == 0:
                layers.append((1, o, s, in_ch, out_ch, 0))
            in_ch, size = out_ch, o
    layers.append((1, 1, 1, 2048, 1000, 0))  # fc
    return sorted(set(layers))


def resnet50_rows(batch: int = 16) -> np.ndarray:
    return np.array([[k, k, o, o, s, s, ic, oc, batch, 1, im2col]
                     for k, o, s, ic, oc, im2col in _resnet50_layers()], dtype=np.int64)


def csv_rows(frame: pd.DataFrame) -> np.ndarray:
    """Simulator rows of CSV lines (fc: K = O = S = 1, never im2col, like get_FC_cycles)."""
    fc = (frame["layer_type"] == "fc").to_numpy()
    one = np.ones(len(frame), dtype=np.int64)

    def pick(col: str, fc_values) -> np.ndarray:
        return np.where(fc, fc_values, frame[col].to_numpy()).astype(np.int64)

    return np.stack([
        pick("kernel_h", one), pick("kernel_h", one), pick("out_h", one), pick("out_h", one),
        pick("stride", one), pick("stride", one),
        pick("in_channels", frame["fc_in_features"].fillna(0).to_numpy()),
        pick("out_channels", frame["fc_out_features"].fillna(0).to_numpy()),
        frame["batch"].to_numpy(dtype=np.int64), one,
        np.where(fc, 0, frame["im2col_first_layer"].to_numpy(dtype=np.int64)),
    ], axis=1)


def model_rows(path: str) -> np.ndarray:
    """Layer rows of a saved LayerGraph, or of a Parquet table holding LAYER_COLUMNS."""
    frame = pd.read_parquet(path)
    if all(c in frame.columns for c in bf.LAYER_COLUMNS):
        return np.ascontiguousarray(frame[list(bf.LAYER_COLUMNS)].to_numpy(dtype=np.int64))
    from hwq.cost_models.bitfusion import layer_rows
    from hwq.graph import LayerGraph

    return layer_rows(LayerGraph.read(path))


def time_rows(rows: np.ndarray, w: np.ndarray, a: np.ndarray, params: np.ndarray,
              repeat: int) -> np.ndarray:
    """Median over `repeat` runs of the wall seconds of one simulate call per (row, pair)."""
    times = np.empty((repeat, len(rows)))
    for r in range(repeat):
        for i in range(len(rows)):
            t0 = time.perf_counter()
            bf.simulate(rows[i:i + 1], w[i:i + 1], a[i:i + 1], params, use_cache=False)
            times[r, i] = time.perf_counter() - t0
    return np.median(times, axis=0)


def time_table(rows: np.ndarray, w: np.ndarray, a: np.ndarray, params: np.ndarray,
               repeat: int) -> tuple[float, int]:
    """Median wall seconds of ONE simulate call over distinct rows x distinct pairs, and the
    number of table cells."""
    u_rows = np.unique(rows, axis=0)
    u_pairs = np.unique(np.stack([w, a], axis=1), axis=0)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        bf.simulate(u_rows, u_pairs[:, 0], u_pairs[:, 1], params, use_cache=False)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), len(u_rows) * len(u_pairs)


def _stats(times: np.ndarray) -> dict[str, float]:
    return {"rows": int(times.size), "median_s_per_row": float(np.median(times)),
            "mean_s_per_row": float(times.mean()),
            "p90_s_per_row": float(np.quantile(times, 0.9)), "max_s_per_row": float(times.max())}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-layers", "--layers", dest="model_layers",
                    help="saved hwq LayerGraph (.parquet) to time instead of ResNet-50")
    ap.add_argument("--pairs", default="2,4,8", help="bit widths crossed for that layer set")
    ap.add_argument("--batch", type=int, default=16, help="batch of the ResNet-50 layer set")
    ap.add_argument("--repeat", type=int, default=5, help="runs per timing (median taken)")
    args = ap.parse_args(argv)

    params = bitfusion.reference_params()
    ref = pd.read_csv(CSV)
    ref = ref[(ref["status"] == "ok") & (ref["batch"] == 16)]
    ref = ref.drop_duplicates(["network", "layer", "wbits", "abits"]).reset_index(drop=True)
    c_rows = csv_rows(ref)
    c_w = ref["wbits"].to_numpy(dtype=np.int64)
    c_a = ref["abits"].to_numpy(dtype=np.int64)

    if args.model_layers:
        layer_set, set_name = model_rows(args.model_layers), Path(args.model_layers).name
    else:
        layer_set, set_name = resnet50_rows(args.batch), f"resnet50_b{args.batch}"
    widths = [int(x) for x in args.pairs.split(",")]
    grid = [(w, a) for w in widths for a in widths]
    g_rows = np.repeat(layer_set, len(grid), axis=0)
    g_w = np.tile(np.array([p[0] for p in grid], dtype=np.int64), len(layer_set))
    g_a = np.tile(np.array([p[1] for p in grid], dtype=np.int64), len(layer_set))

    # Warm-up: load or compile every kernel (serial and parallel paths).
    t0 = time.perf_counter()
    n_par = bf.PARALLEL_MIN_JOBS
    bf.simulate(c_rows[:n_par], c_w[:n_par], c_a[:n_par], params, use_cache=False)
    bf.simulate(c_rows[:1], c_w[:1], c_a[:1], params, use_cache=False)
    warmup_s = time.perf_counter() - t0

    t_csv = time_rows(c_rows, c_w, c_a, params, args.repeat)
    table_csv_s, cells_csv = time_table(c_rows, c_w, c_a, params, args.repeat)
    t_set = time_rows(g_rows, g_w, g_a, params, args.repeat)
    table_set_s, cells_set = time_table(g_rows, g_w, g_a, params, args.repeat)

    ref_median = float(ref["sim_wall_s"].median())
    hwq_median = float(np.median(t_csv))
    report = {
        "rows": int(t_csv.size),
        "hwq_median_s_per_row": hwq_median,
        "reference_median_s_per_row": ref_median,
        "speedup_ratio": ref_median / hwq_median,
        "hwq_p90_s_per_row": float(np.quantile(t_csv, 0.9)),
        "hwq_max_s_per_row": float(t_csv.max()),
        "hwq_total_s_one_call_per_row": float(t_csv.sum()),
        "whole_table_call_s": table_csv_s,
        "whole_table_s_per_row": table_csv_s / len(t_csv),
        "whole_table_cells": cells_csv,
        "whole_table_s_per_cell": table_csv_s / cells_csv,
        "reference_total_s": float(ref["sim_wall_s"].sum()),
        set_name: {**_stats(t_set), "layers": int(len(layer_set)), "pairs": len(grid),
                   "whole_table_call_s": table_set_s,
                   "whole_table_s_per_cell": table_set_s / cells_set},
        "repeat": args.repeat,
        "warmup_s": warmup_s,
        "numba_threads": int(__import__("numba").get_num_threads()),
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()

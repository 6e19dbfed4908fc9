"""Policies priced per second by hwq.evaluate on ResNet-50 / bitfusion (one core), against a
plain NumPy gather of the same table in the same run. Prints JSON on stdout.

    python benchmarks/evaluate_speed.py [--policies 1000000] [--layers resnet50.parquet]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import hwq  # noqa: E402
from hwq.tables import VALUE_COLUMNS  # noqa: E402


def resnet50_graph(path: str | None) -> hwq.LayerGraph:
    if path:
        return hwq.LayerGraph.read(path)
    import torch

    return hwq.trace(hwq.load_model("resnet50"), torch.zeros(1, 3, 224, 224))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--policies", type=int, default=1_000_000)
    ap.add_argument("--layers", help="a saved resnet50 layer file (skips tracing)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    graph = resnet50_graph(args.layers)
    table = hwq.cost_table(graph, hwq.load_profile("bitfusion"))
    rng = np.random.default_rng(0)
    choice = rng.integers(0, len(table.pairs), size=(args.policies, len(graph)))
    pairs = np.asarray(table.pairs, dtype=np.int64)[choice]  # [P, L, 2]
    hwq.evaluate(table, pairs[:10])  # compile / load the kernels
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        hwq.evaluate(table, pairs)
        times.append(time.perf_counter() - t0)
    best = min(times)
    # baseline: NumPy fancy-index gather and sum of the same columns (no peak memory)
    stacked = table.stacked
    idx = table.pair_lookup[pairs[:, :, 0], pairs[:, :, 1]]
    layer = np.arange(len(graph))[None, :]
    t0 = time.perf_counter()
    base = np.stack([stacked[c][layer, idx].sum(axis=1) for c in range(len(VALUE_COLUMNS))], 1)
    t_np = time.perf_counter() - t0
    ours = hwq.evaluate(table, pairs[:1000])
    assert np.allclose(ours["energy_pj"], base[:1000, VALUE_COLUMNS.index("energy_pj")])
    print(json.dumps({
        "model": "resnet50", "device": "bitfusion", "layers": len(graph),
        "pairs": len(table.pairs), "policies": args.policies,
        "evaluate_s": best, "policies_per_s": args.policies / best,
        "numpy_gather_s": t_np, "numpy_policies_per_s": args.policies / t_np,
        "ratio_vs_numpy": t_np / best, "numba_threads": int(os.environ["NUMBA_NUM_THREADS"]),
    }, indent=2))


if __name__ == "__main__":
    main()

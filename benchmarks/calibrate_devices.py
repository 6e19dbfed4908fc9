"""Reproduce every device calibration from the measured rows kept in the repository (issue 17).

One function per device family (FAMILIES); each returns a JSON-able report of what it fitted on
what, the residuals, the leave-one-out checks and what the shipped profiles predict.

MCU (`calibrate_mcu`): data benchmarks/data/mlperf_tiny_rows.csv (a copy of the MLPerf Tiny rows
of ../shared/reference/measured_devices.md: IC and KWS latency, and energy where submitted, on
five boards under five runtimes) and benchmarks/data/xcubeai73_footprints.csv (X-CUBE-AI 7.3's
MACs, flash and RAM of the four reference models). The fit is hwq.cost_models.mcu_calibration:
one scale per (runtime, core), one glue ratio per runtime, class ratios as priors; every latency
priced by the mcu kind's own kernel at W8A8 on the board's profile. Board power per (board,
runtime) profile = geometric mean of measured energy / latency. Leave-one-out: fitted without
the KWS rows (then without the IC rows), the left-out network's latency and energy.

GPU (`calibrate_gpu`): data benchmarks/data/mlperf_resnet50_t4.csv (a copy of the T4 ResNet-50
v1.5 rows of measured_devices.md: INT8 SingleStream p90 1.086 ms, INT8 Offline 6036 images/s,
INT4 with conv1 at INT8 Offline 9002 images/s per GPU; no other GPU's rows are read). ResNet-50 as
traced (54 conv/linear rows) on the gpu kind with t4-tensorrt's CTA tile, `efficiency.memory`,
`efficiency.overlap` and `launch_overhead_s` held (assumed, not fitted) and the tensorrt runtime's
three parameters fitted, one per row: `efficiency.compute.int8` and `.int4` (the fraction of the
dense datasheet peak its saturated int8 / int4 kernels reach: the Offline rows, batch 256) and
`saturation_ctas_per_sm` (how many CTAs an SM needs to reach it: the SingleStream row, batch 1).
Log least squares, three rows and three unknowns. Every other `<gpu>-tensorrt` profile carries
the fitted values unchanged, so its predictions (ResNet-50 INT8 batch-1 latency, INT8 and INT4
throughput at batch 256 = 256 / latency_s of the graph at batch 256) come from its datasheet
figures alone. The report also refits with each assumed figure changed (memory efficiency,
launch, tile) and shows how far the carried predictions move: what the T4 rows cannot pin.

    python benchmarks/calibrate_devices.py                # fit + checks, JSON on stdout
    python benchmarks/calibrate_devices.py --write  # and rewrite the fitted tables and profiles
    python benchmarks/calibrate_devices.py --family mcu   # one family (mcu, gpu)
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy.optimize import least_squares

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
MLPERF_TINY_ROWS = DATA / "mlperf_tiny_rows.csv"
XCUBEAI_FOOTPRINTS = DATA / "xcubeai73_footprints.csv"
MCU_TABLE = ROOT / "cost_models" / "mcu_runtimes.yaml"
# the four MLPerf Tiny models, priced on every MCU profile the rows calibrate
ALL_NETWORKS = ("ic", "vww", "kws", "ad")


# -- MCU -------------------------------------------------------------------------------------------
def mcu_inputs() -> tuple[list, dict, dict, dict]:
    """(rows, layer arrays per network, board parameters per board, graphs per network)."""
    from hwq.cost_models import mcu
    from hwq.cost_models.mcu_calibration import NETWORK_MODELS, read_rows
    from hwq.model_source import load_graph
    from hwq.profile import load_profile

    rows = read_rows(MLPERF_TINY_ROWS)
    graphs = {net: load_graph(model) for net, model in NETWORK_MODELS.items()}
    layers = {net: mcu.layer_arrays(g) for net, g in graphs.items()}
    boards = {}
    for board in sorted({r.board for r in rows}):
        p = load_profile(board)
        for r in (r for r in rows if r.board == board):
            if (r.core, r.clock_hz) != (p.get("core"), p.clock_hz):
                raise ValueError(f"{MLPERF_TINY_ROWS.name}: {r.profile} says {r.core} at "
                                 f"{r.clock_hz:g} Hz, the {board} profile {p.get('core')} at "
                                 f"{p.clock_hz:g} Hz")
        boards[board] = mcu.params(p)
    return rows, layers, boards, graphs


def mcu_leave_one_out(rows, layers, boards, left_out: str) -> list[dict[str, Any]]:
    """Fitted without the `left_out` rows: each row of it, predicted."""
    from hwq.cost_models.mcu_calibration import board_power_w, fit, predicted_ms

    kept = [n for n in sorted({r.network for r in rows}) if n != left_out]
    f = fit(rows, layers, boards, kept)
    out = []
    for r in (r for r in rows if r.network == left_out):
        pred = predicted_ms(f, r, layers, boards)
        power = board_power_w(rows, r.profile, kept)
        entry = {"profile": r.profile, "network": r.network, "measured_ms": r.latency_ms,
                 "predicted_ms": round(pred, 3), "latency_error": round(pred / r.latency_ms - 1, 4)}
        if r.energy_uj is not None and power is not None:
            e = power * pred * 1e3  # W x ms -> uJ
            entry.update(measured_uj=r.energy_uj, predicted_uj=round(e, 1),
                         energy_error=round(e / r.energy_uj - 1, 4))
        out.append(entry)
    return out


def mcu_shipped(rows, graphs) -> list[dict[str, Any]]:
    """Every measured row priced on its shipped (board, runtime) profile, W8A8."""
    import hwq

    out = []
    for r in rows:
        profile = hwq.load_profile(r.profile)
        t = hwq.cost_table(graphs[r.network], profile, bits=[(8, 8)])
        ms = float(t.values["latency_s"].sum()) * 1e3
        uj = float(t.values["energy_pj"].sum()) * 1e-6
        entry = {"profile": r.profile, "network": r.network, "measured_ms": r.latency_ms,
                 "predicted_ms": round(ms, 3), "latency_error": round(ms / r.latency_ms - 1, 4)}
        if r.energy_uj is not None:
            entry.update(measured_uj=r.energy_uj, predicted_uj=round(uj, 1),
                         energy_error=round(uj / r.energy_uj - 1, 4))
        out.append(entry)
    return out


def mcu_predictions(rows, graphs) -> dict[str, dict[str, float]]:
    """What each calibrated profile predicts for all four reference models (ms, W8A8)."""
    import hwq

    out = {}
    for name in sorted({r.profile for r in rows}):
        profile = hwq.load_profile(name)
        out[name] = {net: round(float(hwq.cost_table(graphs[net], profile, bits=[(8, 8)])
                                      .values["latency_s"].sum()) * 1e3, 3)
                     for net in ALL_NETWORKS}
    return out


def mcu_footprints(graphs, profile_name: str = "stm32h7a3-xcubeai73") -> list[dict[str, Any]]:
    """hwq's W8A8 flash and SRAM of the four models on an X-CUBE-AI 7.3 profile next to the
    X-CUBE-AI 7.3 figures, and hwq's MACs next to its ModelMacc."""
    import hwq
    from hwq.cost_models import mcu

    profile = hwq.load_profile(profile_name)
    out = []
    with open(XCUBEAI_FOOTPRINTS, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            g = graphs[row["network"]]
            table = hwq.cost_table(g, profile, bits=[(8, 8)])
            totals = hwq.evaluate(table, np.full((1, len(g), 2), 8)).iloc[0]
            weights = float(totals["weight_bytes"])
            flash = weights + profile.get("memory.runtime_flash_bytes")
            sram = (float(totals["peak_activation_bytes"]) + mcu.im2col_bytes(g)
                    + profile.get("memory.runtime_sram_bytes"))
            macs = int(g.frame["macs"].sum())
            out.append({
                "network": row["network"], "macs": macs, "xcubeai_macc": int(row["macc"]),
                "macs_vs_macc": round(macs / int(row["macc"]) - 1, 4),
                "weight_bytes": int(weights),
                "peak_activation_bytes": int(totals["peak_activation_bytes"]),
                "im2col_bytes": int(mcu.im2col_bytes(g)),
                "flash_bytes": int(flash), "xcubeai_flash_bytes": int(row["flash_bytes"]),
                "sram_bytes": int(sram), "xcubeai_ram_bytes": int(row["ram_bytes"])})
    return out


def xcubeai_runtime_footprint(graphs) -> dict[str, int]:
    """X-CUBE-AI 7.3's own flash and RAM beyond hwq's W8A8 weights and activations: the median
    over the four models (what `memory.runtime_*_bytes` of its profiles hold)."""
    import hwq
    from hwq.cost_models import mcu

    profile = hwq.load_profile("stm32h7a3")
    flash, ram = [], []
    with open(XCUBEAI_FOOTPRINTS, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            g = graphs[row["network"]]
            table = hwq.cost_table(g, profile, bits=[(8, 8)])
            totals = hwq.evaluate(table, np.full((1, len(g), 2), 8)).iloc[0]
            flash.append(int(row["flash_bytes"]) - float(totals["weight_bytes"]))
            ram.append(int(row["ram_bytes"]) - float(totals["peak_activation_bytes"])
                       - mcu.im2col_bytes(g))
    return {"runtime_flash_bytes": int(np.median(flash)),
            "runtime_sram_bytes": max(int(np.median(ram)), 1)}


def calibrate_mcu(write: bool = False) -> dict[str, Any]:
    from hwq.cost_models.mcu_calibration import board_power_w, fit, table_document

    rows, layers, boards, graphs = mcu_inputs()
    full = fit(rows, layers, boards)
    data_name = str(MLPERF_TINY_ROWS.relative_to(ROOT))
    document = table_document(rows, full, layers, boards, data_name)
    if write:
        text = yaml.safe_dump(document, sort_keys=False, width=100, default_flow_style=None)
        MCU_TABLE.write_text(text, encoding="utf-8")
        from hwq.cost_models.mcu_runtime import runtime_table
        runtime_table.cache_clear()
    profiles = sorted({r.profile for r in rows})
    board_power = {}
    for board in sorted({r.board for r in rows}):
        ratios = [r.energy_uj / r.latency_ms * 1e-3 for r in rows
                  if r.board == board and r.energy_uj is not None]
        if ratios:
            board_power[board] = round(float(np.exp(np.mean(np.log(ratios)))), 5)
    return {
        "data": data_name,
        "fitted": {"scales": {f"{rt} {core}": round(s, 4) for (rt, core), s in
                              sorted(full.scales.items())},
                   "glue_ratios": {rt: round(k, 3) for rt, k in sorted(full.glue_ratios.items())}},
        "table": document,
        "table_written": str(MCU_TABLE.relative_to(ROOT)) if write else None,
        "profile_power_w": {p: (None if (w := board_power_w(rows, p)) is None else round(w, 5))
                            for p in profiles},
        "board_power_w": board_power,
        "xcubeai73_runtime_footprint": xcubeai_runtime_footprint(graphs),
        "leave_one_out": {f"without_{n}": mcu_leave_one_out(rows, layers, boards, n)
                          for n in ("kws", "ic")},
        "shipped": mcu_shipped(rows, graphs),
        "predictions_ms": mcu_predictions(rows, graphs),
        "footprints": mcu_footprints(graphs),
    }


# -- GPU -------------------------------------------------------------------------------------------
GPU_ROWS = DATA / "mlperf_resnet50_t4.csv"
GPU_CALIBRATED = "t4-tensorrt"
GPU_CARRIED = ("a100-tensorrt", "h100-tensorrt", "jetson-orin-tensorrt")
# measured row (precision, scenario, metric) -> the model's figure (gpu_calibration.FIGURES)
GPU_TARGETS = {("int8", "SingleStream", "p90_latency"): "resnet50_int8_batch1_latency",
               ("int8", "Offline", "throughput"): "resnet50_int8_batch256_throughput",
               ("int4_conv1_int8", "Offline", "throughput"): "resnet50_int4_batch256_throughput"}


def gpu_rows(path: Path = GPU_ROWS) -> dict[str, tuple[float, str]]:
    """figure name -> (measured value, source) of the rows the GPU fit uses."""
    from hwq.cost_models.gpu_calibration import FIGURES

    out = {}
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            name = GPU_TARGETS.get((r["precision"], r["scenario"], r["metric"]))
            if name is None:
                continue
            if r["unit"] != FIGURES[name][0]:
                raise ValueError(f"{path.name}: {name}: expected unit {FIGURES[name][0]}, found "
                                 f"{r['unit']}")
            out[name] = (float(r["value"]), r["source"])
    if set(out) != set(GPU_TARGETS.values()):
        raise ValueError(f"{path.name}: expected rows for {sorted(GPU_TARGETS.values())}, found "
                         f"{sorted(out)}")
    return out


def gpu_with_runtime(base: np.ndarray, e8: float, e4: float, sat: float) -> np.ndarray:
    """`base` with the runtime's values (fp16 and fp32 keep int8's compute efficiency, as the
    shipped profiles do: no row measures an fp16 kernel)."""
    from hwq.cost_models import gpu

    prm = base.copy()
    prm[gpu.EFF_COMPUTE:gpu.EFF_COMPUTE + 4] = e4, e8, e8, e8
    prm[gpu.SATURATION] = sat
    return prm


def gpu_runtime_of(prm: np.ndarray) -> dict[str, float]:
    from hwq.cost_models import gpu

    return {"efficiency.compute.int8": float(prm[gpu.EFF_COMPUTE + gpu.PREC["int8"]]),
            "efficiency.compute.int4": float(prm[gpu.EFF_COMPUTE + gpu.PREC["int4"]]),
            "saturation_ctas_per_sm": float(prm[gpu.SATURATION])}


def gpu_fit(base: np.ndarray, graph, measured) -> tuple[np.ndarray, dict[str, float]]:
    """The three runtime values on the rows; the residuals model / measured - 1."""
    from hwq.cost_models.gpu_calibration import network_figures, params_latency

    names = list(measured)
    want = np.log([measured[n][0] for n in names])

    def resid(x: np.ndarray) -> np.ndarray:
        got = network_figures(params_latency(gpu_with_runtime(base, *np.exp(x)), graph), names)
        return np.log([got[n] for n in names]) - want

    best = None
    for x0 in ([0.4, 0.3, 2.0], [0.8, 0.6, 1.0], [0.2, 0.2, 8.0]):
        r = least_squares(resid, np.log(x0), bounds=(np.log([1e-3, 1e-3, 1.0]),
                                                      np.log([1.0, 1.0, 1e3])))
        if best is None or r.cost < best.cost:
            best = r
    return (gpu_with_runtime(base, *np.exp(best.x)),
            {n: float(np.expm1(v)) for n, v in zip(names, resid(best.x))})


def gpu_predictions(prm: np.ndarray, graph) -> dict[str, float]:
    from hwq.cost_models.gpu_calibration import network_figures, params_latency

    return {k: round(v, 4) for k, v in network_figures(params_latency(prm, graph)).items()}


def gpu_changed(prm: np.ndarray, index: int, value: Any) -> np.ndarray:
    """`prm` with one assumed figure changed: the tile (index TILE_M, value (m, n)), the launch
    (scaled by value) or another entry (set to value)."""
    from hwq.cost_models import gpu

    prm = prm.copy()
    if index == gpu.TILE_M:
        prm[gpu.TILE_M], prm[gpu.TILE_N] = value
    elif index == gpu.LAUNCH:
        prm[gpu.LAUNCH] *= value
    else:
        prm[index] = value
    return prm


def gpu_sensitivity(base: np.ndarray, graph, measured) -> list[dict[str, Any]]:
    """Refit with one assumed figure changed; what the carried predictions become."""
    from hwq.cost_models import gpu
    from hwq.profile import load_profile

    out = []
    for label, index, value in (("efficiency.memory 0.6", gpu.EFFICIENCY, 0.6),
                                ("efficiency.memory 1.0", gpu.EFFICIENCY, 1.0),
                                ("launch_overhead_s x0.5", gpu.LAUNCH, 0.5),
                                ("launch_overhead_s x2", gpu.LAUNCH, 2.0),
                                ("gemm_tile 128x64", gpu.TILE_M, (128, 64)),
                                ("gemm_tile 32x32", gpu.TILE_M, (32, 32))):
        prm, res = gpu_fit(gpu_changed(base, index, value), graph, measured)
        values = gpu_runtime_of(prm)
        row: dict[str, Any] = {"variant": label,
                               "fitted": {k: round(v, 4) for k, v in values.items()},
                               "t4_residuals": {k: round(v, 4) for k, v in res.items()}}
        for name in GPU_CARRIED:
            own = gpu_changed(gpu.params_from_profile(load_profile(name)), index, value)
            row[name] = gpu_predictions(gpu_with_runtime(own, *values.values()), graph)
        out.append(row)
    return out


def gpu_write(values: dict[str, float], predicted: dict[str, dict[str, float]]) -> None:
    """Rewrite the fitted values and each target's model value in the tensorrt profiles (their
    other lines, comments included, stay as written)."""
    import re

    from hwq.cost_models.gpu_calibration import FIGURES

    e8, e4 = values["efficiency.compute.int8"], values["efficiency.compute.int4"]
    for name, figures in predicted.items():
        path = ROOT / "device_profiles" / f"{name}.yaml"
        text = path.read_text(encoding="utf-8")
        subs = [(r"(efficiency: \{compute: \{int8: )[0-9.e+-]+(, int4: )[0-9.e+-]+(, fp16: )"
                 r"[0-9.e+-]+", rf"\g<1>{e8:.4f}\g<2>{e4:.4f}\g<3>{e8:.4f}"),
                (r"(?m)^(saturation_ctas_per_sm: )[0-9.e+-]+",
                 rf"\g<1>{values['saturation_ctas_per_sm']:.4g}")]
        for fig, v in figures.items():
            shown = f"{v:.4g}" if FIGURES[fig][0] == "ms" else f"{round(v)}"
            subs.append((rf"(name: {fig}, [^\n]*?model: )[0-9.e+-]+", rf"\g<1>{shown}"))
        for pattern, repl in subs:
            text, n = re.subn(pattern, repl, text)
            if n != 1:
                raise ValueError(f"{path.name}: expected one line matching {pattern!r}")
        path.write_text(text, encoding="utf-8")


def calibrate_gpu(write: bool = False) -> dict[str, Any]:
    from hwq.cost_models import gpu
    from hwq.cost_models.gpu_calibration import network_figures, profile_latency
    from hwq.model_source import load_graph
    from hwq.profile import load_profile

    graph = load_graph("resnet50", input_shape=(1, 3, 224, 224))
    measured = gpu_rows()
    base = gpu.params_from_profile(load_profile(GPU_CALIBRATED))
    prm, res = gpu_fit(base, graph, measured)
    values = gpu_runtime_of(prm)
    rounded = {"efficiency.compute.int8": round(values["efficiency.compute.int8"], 4),
               "efficiency.compute.int4": round(values["efficiency.compute.int4"], 4),
               "saturation_ctas_per_sm": float(f"{values['saturation_ctas_per_sm']:.4g}")}
    carried = {name: gpu_predictions(gpu_with_runtime(
        gpu.params_from_profile(load_profile(name)), *rounded.values()), graph)
        for name in (GPU_CALIBRATED, *GPU_CARRIED)}
    if write:
        gpu_write(rounded, carried)
    return {
        "data": str(GPU_ROWS.relative_to(ROOT)),
        "fitted_on": {n: {"measured": v, "source": s} for n, (v, s) in measured.items()},
        "fitted": rounded,
        "t4_residuals": {k: round(v, 4) for k, v in res.items()},
        "predictions": carried,
        "profiles_written": [*carried] if write else None,
        "shipped": {name: {k: round(v, 4) for k, v in
                           network_figures(profile_latency(load_profile(name), graph)).items()}
                    for name in (GPU_CALIBRATED, *GPU_CARRIED)},
        "sensitivity": gpu_sensitivity(base, graph, measured),
    }


# One function per device family: name -> calibrate(write) -> report.
FAMILIES: dict[str, Callable[[bool], dict[str, Any]]] = {"mcu": calibrate_mcu,
                                                         "gpu": calibrate_gpu}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", choices=[*FAMILIES, "all"], default="all")
    ap.add_argument("--write", action="store_true",
                    help="rewrite the fitted tables in the repository (cost_models/*.yaml)")
    args = ap.parse_args(argv)
    names = list(FAMILIES) if args.family == "all" else [args.family]
    report = {name: FAMILIES[name](args.write) for name in names}
    json.dump(report, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

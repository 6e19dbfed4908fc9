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

    python benchmarks/calibrate_devices.py                # fit + checks, JSON on stdout
    python benchmarks/calibrate_devices.py --write  # and rewrite cost_models/mcu_runtimes.yaml
    python benchmarks/calibrate_devices.py --family mcu   # one family
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


# One function per device family: name -> calibrate(write) -> report.
FAMILIES: dict[str, Callable[[bool], dict[str, Any]]] = {"mcu": calibrate_mcu}


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

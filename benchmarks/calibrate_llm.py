"""Calibrate the LLM runtimes of the `gpu` kind on the rows given (issue 19), beside
calibrate_devices.py's families.

Data: benchmarks/data/llm_measured.csv (a copy of the rows of ../shared/reference/
llm_measured.md: torchao on an A100-80GB SXM, Llama-2-7B batch-1 decode at bf16, int8
weight-only, int4 weight-only g64 and int8 dynamic W8A8; llama.cpp on an RTX 4090, Llama-2-7B
F16 and Q4_0 decode and 512-token prefill) and benchmarks/data/llamacpp_type_ratios.csv (the
one-machine llama.cpp table: ratios to F16 only). Fitted per runtime and format, never per model:

* every decode row fixes its format's `formats.<pair>.memory` (the fraction of the datasheet
  bandwidth the format's decode kernels reach, above the assumed per-row launch floor), solved
  so that the profile's tokens/s of Llama-2-7B decode (context 128, batch 1, from
  docs/examples/llama-2-7b/config.json) equals the row; 16x16 first (the attention rows price at
  it);
* every prefill row (llama.cpp) fixes its format's `formats.<pair>.compute` the same way
  (prefill of 512 tokens); memory and compute are solved in turn until they settle;
* llama.cpp formats without an RTX 4090 row (Q8_0, Q6_K, Q3_K, Q2_K) take 16x16's efficiencies
  times their ratio to F16 in the one-machine table (effective bandwidth; prefill tokens/s);
* torchao's compute efficiencies are assumed (no prefill row); h100-torchao carries
  a100-torchao's fitted formats unchanged and its targets are predictions from its datasheet
  figures, written before any comparison.

    python benchmarks/calibrate_llm.py           # fit, JSON report on stdout
    python benchmarks/calibrate_llm.py --write   # and rewrite the profiles' formats/calibration
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
ROWS = DATA / "llm_measured.csv"
RATIOS = DATA / "llamacpp_type_ratios.csv"
CONFIG = ROOT / "docs" / "examples" / "llama-2-7b"
PROFILES = ROOT / "device_profiles"
# runtime -> (profile fitted on its rows, profiles carrying its fitted formats)
FITTED = {"torchao": ("a100-torchao", ("h100-torchao",)), "llamacpp": ("rtx4090-llamacpp", ())}
DIGITS = 4


def rows() -> list[dict[str, Any]]:
    with ROWS.open() as fh:
        return list(csv.DictReader(fh))


def graphs() -> dict[tuple[str, int], Any]:
    """Llama-2-7B decode@128 and prefill@512, batch 1."""
    import hwq

    model = hwq.load_model(f"hf-config:{CONFIG}")
    return {(phase, ctx): hwq.llm_graph(model, phase, ctx)
            for phase, ctx in (("decode", 128), ("prefill", 512))}


def tokens_per_s(data: dict[str, Any], graph: Any, pair: tuple[int, int], phase: str,
                 context: int) -> float:
    """The profile `data`'s tokens/s of `graph` at a uniform pair (through hwq.cost_table)."""
    from hwq.llm_phases import tokens_per_s as rate
    from hwq.profile import DeviceProfile
    from hwq.tables import cost_table

    t = cost_table(graph, DeviceProfile(data), [pair]).values["latency_s"][:, 0].sum()
    return rate(phase, 1, context, float(t))


def solve(f: Any, target: float) -> float:
    """x in (1e-4, 1] with f(x) = target, f increasing (bisection on log x)."""
    lo, hi = np.log(1e-4), 0.0
    if f(1.0) < target:
        return 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(float(np.exp(mid))) < target else (lo, mid)
    return float(np.exp(hi))


def pair_of(text: str) -> tuple[int, int]:
    w, a = text.split("x")
    return int(w), int(a)


def fit_runtime(runtime: str, data: dict[str, Any], g: dict, measured: list[dict]) -> None:
    """Set data['formats'][pair] from the rows of `runtime` (module docstring), in place."""
    own = [r for r in measured if r["runtime"] == runtime]
    pairs = list(dict.fromkeys(r["pair"] for r in own))
    pairs.sort(key=lambda p: p != "16x16")  # 16x16 first: attention prices at it
    for key in pairs:
        entry = data["formats"][key]
        for _ in range(4):  # memory (decode) and compute (prefill) in turn
            for r in own:
                if r["pair"] != key:
                    continue
                side = "memory" if r["phase"] == "decode" else "compute"
                ctx = int(r["context"])

                def f(x: float, side: str = side, r: dict = r, ctx: int = ctx,
                      entry: dict = entry, key: str = key) -> float:
                    entry[side] = x
                    return tokens_per_s(data, g[(r["phase"], ctx)], pair_of(key), r["phase"],
                                        ctx)
                entry[side] = round(solve(f, float(r["tokens_per_s"])), DIGITS)
    if runtime == "llamacpp":
        base = data["formats"]["16x16"]
        with RATIOS.open() as fh:
            for r in csv.DictReader(fh):
                if r["pair"] in pairs or r["pair"] not in data["formats"]:
                    continue  # a format with its own rows keeps its fit
                ratio_c = float(r["prefill_512_tokens_per_s"]) / 923.5
                data["formats"][r["pair"]] = {
                    "memory": round(base["memory"] * float(r["effective_bandwidth_vs_f16"]),
                                    DIGITS),
                    "compute": round(base["compute"] * ratio_c, DIGITS)}


def load_data(name: str) -> dict[str, Any]:
    from hwq.profile import load_profile

    return load_profile(PROFILES / f"{name}.yaml").to_dict()


def report() -> dict[str, Any]:
    measured = rows()
    g = graphs()
    out: dict[str, Any] = {}
    for runtime, (name, carriers) in FITTED.items():
        data = load_data(name)
        fit_runtime(runtime, data, g, measured)
        targets = []
        for r in (r for r in measured if r["runtime"] == runtime):
            ctx = int(r["context"])
            model = tokens_per_s(data, g[(r["phase"], ctx)], pair_of(r["pair"]), r["phase"], ctx)
            targets.append({"name": target_name(r), "unit": "tokens/s", "role": "fitted",
                            "model": round(model, 2), "measured": float(r["tokens_per_s"]),
                            "source": r["source"],
                            "rel_error": model / float(r["tokens_per_s"]) - 1})
        out[name] = {"formats": data["formats"], "targets": targets}
        for carrier in carriers:
            cdata = load_data(carrier)
            cdata["formats"] = data["formats"]
            preds = []
            for r in (r for r in measured if r["runtime"] == runtime):
                ctx = int(r["context"])
                preds.append({"name": target_name(r), "unit": "tokens/s", "role": "predicted",
                              "model": round(tokens_per_s(cdata, g[(r["phase"], ctx)],
                                                          pair_of(r["pair"]), r["phase"], ctx),
                                             2)})
            out[carrier] = {"formats": data["formats"], "targets": preds}
    return out


def target_name(r: dict[str, str]) -> str:
    fmt = re.sub(r"[^a-z0-9]+", "_", r["format"].lower()).strip("_")
    return f"llama2_7b_{fmt}_{r['phase']}_{r['context']}"


def write(rep: dict[str, Any]) -> None:
    """Rewrite each profile's `formats` lines and its `calibration` block (the file's tail)."""
    for name, entry in rep.items():
        path = PROFILES / f"{name}.yaml"
        text = path.read_text()
        for pair, eff in entry["formats"].items():
            text = re.sub(rf'^  "{pair}": \{{.*\}}$',
                          f'  "{pair}": {{memory: {eff["memory"]}, compute: {eff["compute"]}}}',
                          text, flags=re.M)
        text = text.split("calibration:\n")[0].rstrip("\n") + "\n" + calibration_block(name,
                                                                                     entry)
        path.write_text(text)


def calibration_block(name: str, entry: dict[str, Any]) -> str:
    runtime = next(r for r, (n, c) in FITTED.items() if n == name or name in c)
    fitted_on, _ = FITTED[runtime]
    carried = name != fitted_on
    lines = ["calibration:"]
    lines.append("  fitted: [" + ", ".join(
        f"formats.{p}.{side}" for p in entry["formats"] for side in ("memory", "compute")
        if runtime == "llamacpp" or side == "memory") + "]")
    if carried:
        lines.append(f"  carried_from: {fitted_on}")
    data = ("torchao Llama-2-7B batch-1 decode on an A100-80GB SXM: bf16, int8 weight-only, "
            "int4 weight-only g64, int8 dynamic (benchmarks/data/llm_measured.csv, a copy of "
            "reference/llm_measured.md); no other GPU's rows" if runtime == "torchao" else
            "llama.cpp Llama-2-7B batch-1 F16 / Q4_0 decode and 512-token prefill on an RTX 4090 "
            "(benchmarks/data/llm_measured.csv) and the one-machine GGUF type ratios "
            "(benchmarks/data/llamacpp_type_ratios.csv), copies of reference/llm_measured.md")
    lines.append(f'  data: "{data}"')
    method = ("benchmarks/calibrate_llm.py: " + (
        "the formats of a100-torchao copied unchanged; the targets are predictions from this "
        "device's datasheet figures, written before any comparison with a measured row"
        if carried else "each row solves its format's efficiency (decode: memory, prefill: "
        "compute) so that the profile's tokens/s of Llama-2-7B from its config equals it"))
    lines.append(f'  method: "{method}"')
    lines.append("  targets:")
    for t in entry["targets"]:
        extra = (f', measured: {t["measured"]}, source: "{t["source"]}"' if "measured" in t
                 else "")
        lines.append(f'    - {{name: {t["name"]}, unit: tokens/s, role: {t["role"]}, '
                     f'model: {t["model"]}{extra}}}')
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the profiles")
    args = parser.parse_args()
    rep = report()
    print(json.dumps(rep, indent=1))
    if args.write:
        write(rep)


if __name__ == "__main__":
    main()

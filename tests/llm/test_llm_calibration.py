"""The LLM-runtime profiles reproduce the rows they were calibrated on (within 10 %, issue 19)
and their calibration blocks state what the cost model gives."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

import hwq
from hwq.llm_phases import tokens_per_s
from hwq.profile_summary import calibration_targets
from tests.llm.llm_configs import LLAMA_2_7B, ROOT

ROWS = ROOT / "benchmarks" / "data" / "llm_measured.csv"
PROFILE = {"torchao": "a100-torchao", "llamacpp": "rtx4090-llamacpp"}


@pytest.fixture(scope="module")
def graphs() -> dict[tuple[str, int], hwq.LayerGraph]:
    model = hwq.load_model(f"hf-config:{LLAMA_2_7B}")
    return {(ph, ctx): hwq.llm_graph(model, ph, ctx)
            for ph, ctx in (("decode", 128), ("prefill", 512))}


def priced(graphs: dict, device: str, pair: str, phase: str, ctx: int) -> float:
    w, a = (int(x) for x in pair.split("x"))
    t = hwq.cost_table(graphs[(phase, ctx)], hwq.load_profile(device), [(w, a)])
    return tokens_per_s(phase, 1, ctx, float(t.values["latency_s"].sum()))


def test_profiles_reproduce_the_given_rows(graphs: dict) -> None:
    with Path(ROWS).open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8
    for r in rows:
        got = priced(graphs, PROFILE[r["runtime"]], r["pair"], r["phase"], int(r["context"]))
        assert abs(got / float(r["tokens_per_s"]) - 1) <= 0.10, (r, got)


@pytest.mark.parametrize("device", ["a100-torchao", "h100-torchao", "rtx4090-llamacpp"])
def test_calibration_targets_are_the_cost_model(graphs: dict, device: str) -> None:
    pairs = {"bf16": "16x16", "int8_weight_only": "8x16", "int4_weight_only_g64": "4x16",
             "int8_dynamic_w8a8": "8x8", "f16": "16x16", "q4_0": "4x16"}
    targets = calibration_targets(hwq.load_profile(device))
    assert targets
    for t in targets:
        stem, phase, ctx = t["name"].removeprefix("llama2_7b_").rsplit("_", 2)
        got = priced(graphs, device, pairs[stem], phase, int(ctx))
        assert t["model"] == pytest.approx(got, abs=0.011), t
    if device == "h100-torchao":
        assert {t["role"] for t in targets} == {"predicted"}
        a100 = hwq.load_profile("a100-torchao")
        assert hwq.load_profile(device).get("formats") == a100.get("formats")

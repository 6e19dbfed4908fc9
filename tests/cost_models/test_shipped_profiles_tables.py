"""Issue 4: every shipped profile prices the zoo's ImageNet networks at its supported pairs, and the
MCU verdict on MobileNet-V2 matches the MCU literature (ImageNet-scale does not fit a 2 MB-flash /
512 KB-SRAM part; a 0.35-width, 96x96 one does)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from click.testing import CliRunner

import hwq
from hwq.cli import cli
from hwq.model_source import load_graph
from hwq.profile import list_profiles

MODELS = ("resnet18", "resnet50", "mobilenet_v2")


@pytest.fixture(scope="module")
def graphs() -> dict:
    return {m: load_graph(m) for m in MODELS}


def supported_pairs(profile) -> list[tuple[int, int]]:
    """Every pair a profile accepts; on an LLM runtime (a profile by pairs, which quantizes
    linear layers only and refuses a quantized conv) the zoo's CNNs price at 16x16."""
    if profile.bits.pairs is not None:
        return [(16, 16)]
    return list(itertools.product(profile.get("bits.weights"), profile.get("bits.activations")))


@pytest.mark.parametrize("name", list_profiles())
def test_profile_prices_zoo_at_supported_pairs(name, graphs):
    profile = hwq.load_profile(name)
    pairs = supported_pairs(profile)
    for model, graph in graphs.items():
        frame = hwq.cost_table(graph, profile, bits=pairs).to_pandas()
        assert len(frame) == len(graph) * len(pairs), (name, model)
        for col in ("cycles", "compute_cycles", "stall_cycles", "latency_s", "energy_pj"):
            values = frame[col].to_numpy(dtype=float)
            assert np.all(np.isfinite(values)) and np.all(values >= 0), (name, model, col)
        assert np.allclose(frame["cycles"], frame["compute_cycles"] + frame["stall_cycles"])
        assert np.allclose(frame["latency_s"], frame["cycles"] / profile.clock_hz)


def cost_json(*args: str) -> dict:
    res = CliRunner().invoke(cli, ["cost", "--device", "stm32h743", "--bits", "8,8", "--json",
                                    *args])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)["totals"]


def test_mobilenet_v2_imagenet_does_not_fit_stm32h743():
    t = cost_json("--model", "mobilenet_v2")
    assert not t["feasible"]
    assert "flash overflow" in t["infeasible_reason"] and "sram overflow" in t["infeasible_reason"]
    profile = hwq.load_profile("stm32h743")
    flash_over = (t["weight_bytes"] + profile.get("memory.runtime_flash_bytes")
                  - profile.get("memory.flash_bytes"))
    assert f"flash overflow {int(flash_over)} B" in t["infeasible_reason"]
    assert t["overflow_bytes"] > flash_over


def test_small_mobilenet_v2_fits_stm32h743():
    t = cost_json("--model", "mobilenet_v2", "--model-arg", "width=0.35",
                  "--input-shape", "1,3,96,96")
    assert t["feasible"] and t["overflow_bytes"] == 0 and t["infeasible_reason"] == ""

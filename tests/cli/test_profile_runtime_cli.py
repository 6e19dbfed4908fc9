"""`hwq profile list` shows each profile's kind and runtime; `hwq profile show` its runtime and
calibration provenance (what was fitted on what, with residuals), as YAML comments and in --json."""

from __future__ import annotations

import json

import yaml
from click.testing import CliRunner

import hwq
from hwq.cli import cli


def run(*args: str):
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.stdout


def test_list_has_kind_and_runtime_columns():
    rows = {r["name"]: r for r in json.loads(run("profile", "list", "--json"))}
    assert rows["stm32l4r5-tflm"]["kind"] == "mcu"
    assert rows["stm32l4r5-tflm"]["runtime"] == "tflm"
    assert rows["stm32h7a3-xcubeai90"]["runtime"] == "x-cube-ai-9.0"
    assert rows["gap8"]["runtime"] == "pulp-nn" and rows["stm32h743"]["runtime"] == "cmsis-nn"
    assert rows["bitfusion"]["runtime"] == "-"  # a kind without runtimes
    header = run("profile", "list").splitlines()[0].split()
    assert header == ["name", "kind", "runtime", "description"]


def test_show_states_the_runtime_and_its_calibration():
    text = run("profile", "show", "stm32u575-xcubeai73")
    assert "# runtime: x-cube-ai-7.3 (named by the profile)" in text
    assert "fitted by benchmarks/calibrate_devices.py" in text
    assert "stm32u575 ic: measured 139.7 ms" in text and "stm32u575 kws: measured 44.2 ms" in text
    assert "power.active_w: fitted" in text and "energy residuals IC" in text
    loaded = yaml.safe_load(text)  # still a loadable profile: the additions are comments
    assert loaded["runtime"] == "x-cube-ai-7.3"
    doc = json.loads(run("profile", "show", "stm32u575-xcubeai73", "--json"))
    assert doc["runtime"]["name"] == "x-cube-ai-7.3" and doc["runtime"]["named"]
    assert len([line for line in doc["runtime"]["provenance"] if "measured" in line]) == 2
    assert set(doc["calibration"]) == {"power.active_w", "memory.runtime_flash_bytes",
                                       "memory.runtime_sram_bytes"}


def test_show_of_a_profile_with_its_own_figures_and_of_another_kind():
    text = run("profile", "show", "stm32h743")
    assert "# runtime: cmsis-nn (named by the profile)" in text
    assert "own cycles_per_mac" in text and "calibrated figures" not in text
    doc = json.loads(run("profile", "show", "bitfusion", "--json"))
    assert doc["runtime"] is None and doc["calibration"] == {}
    assert hwq.load_profile("bitfusion").kind == "bitfusion"

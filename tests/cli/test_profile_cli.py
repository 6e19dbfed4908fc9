"""`hwq profile show`: the resolved profile, then peak MACs/s and energy per MAC per pair."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import hwq
from hwq.cli import cli, main
from hwq.profile import list_profiles
from hwq.profile_summary import summary_pairs

LUT_EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "t4_resnet18_lut.yaml"
TABLE_HEADER = "w_bits  a_bits  peak_macs_per_s  energy_per_mac_pj  total_energy_per_mac_pj"


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize("name", list_profiles())
def test_every_shipped_profile_shows_its_pairs(name):
    profile = hwq.load_profile(name)
    res = run("profile", "show", name, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert {"name", "kind", "sha256", "profile"} <= set(doc)  # the keys it always had
    assert doc["profile"]["name"] == name and doc["sha256"] == profile.sha256
    assert [(p["w_bits"], p["a_bits"]) for p in doc["pairs"]] == summary_pairs(profile)
    for p in doc["pairs"]:
        assert p["peak_macs_per_s"] > 0 and math.isfinite(p["peak_macs_per_s"]), p
        assert p["energy_per_mac_pj"] > 0 and p["total_energy_per_mac_pj"] > 0, p
        assert p["note"] is None
    layer = "linear layer" if profile.bits.pairs is not None else "3x3 conv"  # LLM formats
    assert "synthetic" not in doc["pairs_basis"] and layer in doc["pairs_basis"]

    text = run("profile", "show", name)
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    header = lines.index(f"# {TABLE_HEADER}")
    rows = [line[2:].split() for line in lines[header + 1:]]
    assert [(int(r[0]), int(r[1])) for r in rows] == summary_pairs(profile)
    # the table is YAML comments: stdout still loads as the resolved profile
    assert yaml.safe_load(text.stdout) == json.loads(json.dumps(doc["profile"]))


def test_text_table_shows_the_bitfusion_figures():
    res = run("profile", "show", "bitfusion")
    assert "#      2       2        4.096e+12             0.0287" in res.stdout
    assert "#      8       8         2.56e+11             0.4592" in res.stdout


def test_bits_option_picks_the_pairs():
    doc = json.loads(run("profile", "show", "stripes", "--bits", "8x8,8x4", "--json").stdout)
    a8, a4 = (p["peak_macs_per_s"] for p in doc["pairs"])
    assert a4 == pytest.approx(2 * a8)


def test_lut_profile_shows_its_measured_pairs_and_notes():
    res = run("profile", "show", str(LUT_EXAMPLE))
    assert res.exit_code == 0, res.output
    assert "measured table t4_resnet18_measured.csv" in res.stdout.replace("\n# ", " ")
    assert "not measured: t4_resnet18_measured.csv has no W4A8 row" in res.stdout
    doc = json.loads(run("profile", "show", str(LUT_EXAMPLE), "--json").stdout)
    peaks = {(p["w_bits"], p["a_bits"]): p["peak_macs_per_s"] for p in doc["pairs"]}
    assert peaks[(4, 4)] > peaks[(8, 8)] > 0 and peaks[(4, 8)] is None


def test_bad_bits_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["profile", "show", "bitfusion", "--bits", "8y8"])
    assert exc.value.code == 2
    assert "--bits" in capsys.readouterr().err

"""A device kind is one object registered with one call: a toy kind defined here, in the test
module, validates, prices through `hwq.cost_table` / `hwq.evaluate` and shows in `hwq profile
show`, without touching any other module."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import hwq
from hwq.cli import cli, main
from hwq.cost_models import DeviceKind, Priced, kinds, register_kind, unregister_kind
from hwq.graph import LayerGraph
from hwq.profile_rules import RuleSource
from hwq.profile_schema import POS

MAX_MACS_PER_CYCLE = 65536


def toy_rules(src: RuleSource) -> list[str]:
    value = src.data.get("macs_per_cycle")
    if isinstance(value, int | float) and value > MAX_MACS_PER_CYCLE:
        return [f"{src.at(('macs_per_cycle',))}: macs_per_cycle: expected at most "
                f"{MAX_MACS_PER_CYCLE} (a toy array), found {value}"]
    return []


def toy_price(graph, profile, w_bits, a_bits) -> Priced:
    """cycles = ceil(MACs / macs_per_cycle) at every pair: a constant-throughput device."""
    macs = graph.column("macs").astype(np.float64)
    cycles = np.repeat(np.ceil(macs / float(profile.get("macs_per_cycle")))[:, None],
                       len(w_bits), axis=1)
    return Priced({"cycles": cycles, "compute_cycles": cycles,
                   "stall_cycles": np.zeros_like(cycles),
                   "latency_s": cycles / float(profile.clock_hz)})


TOY = DeviceKind(
    name="constant_throughput",
    properties={"macs_per_cycle": POS},
    price=toy_price,
    rules=toy_rules,
)

PROFILE = """\
schema_version: 1
name: toy
kind: constant_throughput
description: a device that computes 64 MACs per cycle at any width
clock_hz: 100000000
bits: {weights: [4, 8], activations: [4, 8], search_default: [4, 8]}
macs_per_cycle: {macs}
"""


@pytest.fixture
def toy_kind(tmp_cache):
    """The toy kind, registered for one test only (and an empty table cache)."""
    register_kind(TOY)
    yield TOY
    unregister_kind(TOY.name)


def write_profile(tmp_path, macs="64"):
    path = tmp_path / "toy.yaml"
    path.write_text(PROFILE.replace("{macs}", macs))
    return path


def graph() -> LayerGraph:
    return LayerGraph.from_frame(pd.DataFrame([
        dict(name="conv", op="conv", batch=1, in_channels=16, out_channels=32, in_h=8, in_w=8,
             out_h=8, out_w=8, kernel_h=3, kernel_w=3, pad_h=1, pad_w=1),
        dict(name="fc", op="linear", batch=1, in_channels=32, out_channels=10),
    ]))


def exit_code(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_registered_kind_is_listed_and_removed_again(toy_kind):
    assert kinds()[-1] == "constant_throughput"
    assert kinds()[:5] == ("bitfusion", "bit_serial", "gpu", "mcu", "lut")


def test_the_toy_kind_does_not_leak_into_other_tests():
    assert "constant_throughput" not in kinds()


def test_toy_profile_validates_and_bad_values_name_file_line_key(toy_kind, tmp_path, capsys):
    good = write_profile(tmp_path)
    assert hwq.load_profile(good).kind == "constant_throughput"
    assert exit_code("profile", "validate", str(good)) == 0
    negative = write_profile(tmp_path, "-1")
    assert exit_code("profile", "validate", str(negative)) == 2
    err = capsys.readouterr().err
    assert f"{negative}:7: macs_per_cycle: expected a number > 0, found -1" in err
    too_big = write_profile(tmp_path, "100000")
    assert exit_code("profile", "validate", str(too_big)) == 2
    err = capsys.readouterr().err
    assert f"{too_big}:7: macs_per_cycle: expected at most 65536 (a toy array)" in err
    unknown = tmp_path / "unknown_key.yaml"
    unknown.write_text(PROFILE.replace("{macs}", "64") + "lanes: 4\n")
    assert exit_code("profile", "validate", str(unknown)) == 2
    assert f"{unknown}:8: lanes: expected one of the keys" in capsys.readouterr().err


def test_toy_kind_prices_through_cost_table_and_evaluate(toy_kind, tmp_path):
    profile = hwq.load_profile(write_profile(tmp_path))
    g = graph()
    table = hwq.cost_table(g, profile)
    assert table.pairs == [(4, 4), (4, 8), (8, 4), (8, 8)]
    frame = table.to_pandas()
    macs = g.column("macs").astype(np.float64)
    expected = np.ceil(macs / 64)
    assert np.array_equal(frame.loc[frame.w_bits == 8, "cycles"].to_numpy()
                          [frame.loc[frame.w_bits == 8, "a_bits"].to_numpy() == 8], expected)
    assert frame["energy_pj"].isna().all() and frame["feasible"].all()
    again = hwq.cost_table(g, profile)  # a cached table reads back the same
    pd.testing.assert_frame_equal(frame, again.to_pandas())
    totals = hwq.evaluate(table, [hwq.Policy(default=(8, 8)), hwq.Policy(default=(4, 4))])
    assert list(totals["cycles"]) == [expected.sum()] * 2
    assert totals["latency_s"][0] == pytest.approx(expected.sum() / 1e8)
    assert totals["feasible"].all()


def test_toy_kind_shows_in_profile_show(toy_kind, tmp_path):
    path = write_profile(tmp_path)
    res = CliRunner().invoke(cli, ["profile", "show", str(path), "--json"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["kind"] == "constant_throughput" and doc["profile"]["macs_per_cycle"] == 64
    assert [(p["w_bits"], p["a_bits"]) for p in doc["pairs"]] == [
        (4, 4), (4, 8), (8, 4), (8, 8)]
    for pair in doc["pairs"]:
        assert pair["peak_macs_per_s"] == pytest.approx(64 * 1e8)
    text = CliRunner().invoke(cli, ["profile", "show", str(path)], catch_exceptions=False)
    assert text.exit_code == 0 and "kind: constant_throughput" in text.stdout


def test_the_worked_kind_of_the_architecture_doc(tmp_cache, tmp_path):
    """docs/architecture.md's worked kind registers, validates and prices as the text says."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
    python = doc.split("```python\n", 1)[1].split("```", 1)[0]
    profile_text = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {"__name__": "architecture_doc_kind"}
    try:
        exec(compile(python, "docs/architecture.md", "exec"), namespace)
        path = tmp_path / "toy.yaml"
        path.write_text(profile_text)
        table = hwq.cost_table(graph(), hwq.load_profile(path))
        assert np.array_equal(table.values["cycles"][:, 0],
                              np.ceil(graph().column("macs").astype(np.float64) / 64))
        path.write_text(profile_text.replace("macs_per_cycle: 64", "macs_per_cycle: 0"))
        assert exit_code("profile", "validate", str(path)) == 2
        path.write_text(profile_text.replace("macs_per_cycle: 64", "macs_per_cycle: 100000"))
        assert exit_code("profile", "validate", str(path)) == 2
    finally:
        unregister_kind("constant_throughput")

"""hwq.display: cells, units, bit strings and the front table, as every command shows them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hwq.display import (
    RUN_FRONT,
    SEARCH_FRONT,
    bits_summary,
    compact_bits,
    display_mapping,
    display_rows,
    display_unit,
    format_cell,
    format_limit,
    format_mapping,
    format_quantity,
    format_table,
    front_table,
    plain,
    records,
    table_header,
)


def test_plain_values_are_json_ready():
    assert plain(np.float32(1.5)) == 1.5 and plain(math.nan) is None and plain(np.inf) is None
    assert plain({"a": np.int64(2), 3: [np.nan, 1]}) == {"a": 2, "3": [None, 1]}
    df = pd.DataFrame({"x": [1.0, np.nan], "y": ["a", "b"]})
    assert records(df) == [{"x": 1.0, "y": "a"}, {"x": None, "y": "b"}]


def test_cells():
    assert [format_cell(v) for v in (None, True, 3.0, 1234567, 0.123456, [4, 8], "x")] == [
        "-", "yes", "3", "1,234,567", "0.1235", "4;8", "x"
    ]
    lines = format_table([{"name": "a", "n": 1}, {"name": "bb", "n": 1000}])
    assert lines == ["name      n", "a         1", "bb    1,000"]
    assert format_mapping({"a": 1, "long": None}) == ["a     1", "long  -"]


def test_units():
    assert display_unit("latency_s", [2e-3, 3e-3]) == (1e-3, "ms")
    assert display_unit("accuracy") == (0.01, "%")
    assert display_unit("weight_bytes", [4096.0]) == (1024.0, "KiB")
    assert format_quantity("energy_pj", 2.5e6) == "2.5 µJ" and format_quantity("bops", None) == "-"
    assert table_header("peak_activation_bytes", "KiB") == "act_peak_KiB"
    assert table_header("energy_pj", "µJ") == "energy_uJ" and table_header("bops", "G") == "GBOPs"
    assert format_limit("latency_s", 2e-3) == "2ms" and format_limit("weight_bytes", 2048) == "2KiB"
    assert format_limit("bops", 1.5e9) == "1.5e+09"


def test_bits():
    assert compact_bits([8, 4, 16]) == "84(16)"
    assert compact_bits([8, 4, 4, 4], max_layers=3) == "avg 5.00"
    assert bits_summary(np.array([[4, 8], [4, 8], [8, 8]])) == "W4A8x2, W8A8x1"


def _front():
    return pd.DataFrame(
        {
            "policy_id": ["p1", "p2"],
            "species": ["nsga2", "nsga2"],
            "w_bits": [[8, 4], [4, 4]],
            "a_bits": [[8, 8], [8, 8]],
            "accuracy": [0.9, 0.95],
            "latency_s": [2e-3, 3e-3],
            "energy_pj": [2e6, 3e6],
            "weight_bytes": [2048.0, 1024.0],
            "peak_activation_bytes": [1024.0, 1024.0],
            "bops": [2e9, 1e9],
        }
    )


def test_front_table_of_a_run_sorts_by_quality_in_display_units():
    verify = pd.DataFrame({"policy_id": ["p2"], "ptq_accuracy": [0.9], "qat_accuracy": [0.96]})
    rows = front_table(_front(), verify, ["accuracy", "latency_s"], RUN_FRONT)
    assert [r["policy_id"] for r in rows] == ["p2", "p1"]
    assert rows[0] == {
        "policy_id": "p2",
        "species": "nsga2",
        "w_bits": "44",
        "a_bits": "88",
        "accuracy_%": 95.0,
        "latency_ms": 3.0,
        "ptq_accuracy_%": 90.0,
        "qat_accuracy_%": 96.0,
    }
    assert rows[1]["ptq_accuracy_%"] is None


def test_front_table_of_the_search_command_shows_every_cost_in_the_same_units():
    verify = pd.DataFrame({"policy_id": ["p2"], "ptq_accuracy": [0.9], "qat_accuracy": [0.96]})
    rows = front_table(_front(), verify, [], SEARCH_FRONT)
    assert list(rows[0]) == [
        "policy_id", "w_bits", "a_bits", "accuracy_%", "latency_ms", "energy_uJ", "weight_KiB",
        "act_peak_KiB", "GBOPs", "ptq_accuracy_%", "qat_accuracy_%",
    ]
    assert [r["policy_id"] for r in rows] == ["p1", "p2"]  # the front's order
    assert rows[0]["latency_ms"] == 2.0 and rows[0]["GBOPs"] == 2.0 and rows[0]["weight_KiB"] == 2.0
    assert rows[0]["energy_uJ"] == 2.0 and rows[0]["accuracy_%"] == 90.0
    assert rows[0]["qat_accuracy_%"] is None and rows[1]["qat_accuracy_%"] == 96.0
    run = front_table(_front(), verify, ["accuracy", "latency_s"], RUN_FRONT)
    assert {r["policy_id"]: r["latency_ms"] for r in run} == {
        r["policy_id"]: r["latency_ms"] for r in rows}


def test_a_column_has_one_unit_chosen_by_its_median():
    rows = display_rows([{"latency_s": 9e-4, "n": 1}, {"latency_s": 2e-3, "n": 2},
                         {"latency_s": 3e-3, "n": None}])
    assert rows == [{"latency_ms": 0.9, "n": 1}, {"latency_ms": 2.0, "n": 2},
                    {"latency_ms": 3.0, "n": None}]
    assert display_rows([{"latency_s": 4e-6}, {"latency_s": None}]) == [
        {"latency_us": 4.0}, {"latency_us": None}]
    assert display_rows([{"qat_accuracy": 0.98765, "wall_s": 12.5, "epochs": 2}]) == [
        {"qat_accuracy_%": 98.77, "wall_s": 12.5, "epochs": 2}]
    # a single value alone, or with the unit of the values it is shown with
    assert format_quantity("latency_s", 9e-4) == "900 µs"
    assert format_quantity("latency_s", 9e-4, among=[2e-3, 3e-3]) == "0.9 ms"
    assert format_quantity("bops", 5.805e10) == "58.05 GBOPs"
    assert format_quantity("qat_accuracy", 0.9861) == "98.61 %"


def test_a_mapping_shows_each_quantity_with_its_unit():
    doc = {"macs": 1814073344, "bops": 5.805e10, "weight_bytes": 5839456.0,
           "peak_activation_bytes": 953344.0, "cycles": 2087495, "latency_s": 0.004175,
           "energy_pj": 6.729e9, "overflow_bytes": 0.0, "feasible": True}
    assert display_mapping(doc) == {
        "macs": 1814073344, "BOPs": "58.05 GBOPs", "weight memory": "5.569 MiB",
        "peak activation memory": "931 KiB", "cycles": 2087495, "latency": "4.175 ms",
        "energy": "6.729 mJ", "overflow": "0 B", "feasible": True,
    }


def _cli(capsys, *argv: str) -> str:
    from hwq.cli import main

    capsys.readouterr()
    try:
        main(list(argv))
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    return capsys.readouterr().out


def _table(lines: list[str]) -> list[dict[str, str]]:
    """An emitted text table read back (cells are separated by two spaces or more)."""
    import re

    head = re.split(r"\s{2,}", lines[0].strip())
    return [dict(zip(head, re.split(r"\s{2,}", line.strip()))) for line in lines[1:] if line]


def test_one_front_prints_alike_in_hwq_search_and_hwq_runs_show(tmp_path, capsys):
    from hwq.runs import Run

    out = tmp_path / "run"
    summary = _cli(capsys, "-q", "search", "--device", "bitfusion", "--model", "resnet18",
                   "--sensitivity", "hawq-v3:resnet18", "--bits", "4x4,8x8", "--pin",
                   "first,last=8", "--objectives", "sensitivity,latency,energy",
                   "--generations", "2", "--population", "8", "--seed", "0", "-o", str(out))
    shown = _cli(capsys, "runs", "show", str(out))
    searched = {r["policy_id"]: r for r in _table(summary.splitlines())}
    front_lines = shown.split("\nfront:\n")[1].splitlines()
    listed = {r["policy_id"]: r for r in _table(front_lines)}
    run = Run.open(out)
    headers = [table_header(c, display_unit(c, run.pareto[c])[1])
               for c in ("latency_s", "energy_pj")]
    assert set(searched) == set(listed) == set(run.pareto["policy_id"])
    for pid, row in searched.items():
        for h in headers:  # the same cell text in both commands
            assert row[h] == listed[pid][h], (pid, h)
    lat = run.pareto["latency_s"]
    div, unit = display_unit("latency_s", lat)
    assert f"best latency      {min(lat) / div:.4g} {unit}\n" in shown  # the front column's unit


def test_a_long_policys_mean_weight_bits_leave_out_matmul_rows():
    from hwq.display import compact_bits, weight_layer_mask

    ops = ["embedding", "linear", "matmul", "matmul", "linear"] * 4
    w = [8, 4, 16, 16, 2] * 4  # matmul rows: their second operand's bits, no weights
    mask = weight_layer_mask(ops)
    assert compact_bits(w, 16, mask) == f"avg {(8 + 4 + 2) / 3:.2f}"
    assert compact_bits(w, 16) == f"avg {sum(w) / len(w):.2f}"  # no mask: every row
    assert compact_bits(w[:5], 16, mask[:5]) == "84(16)(16)2"  # short policies are spelled out

"""docs/architecture.md's worked examples run as written: the search algorithm through the one
driver like the shipped ones, the device kind (its module and profile) through validation, cost
tables, evaluation and `hwq profile show`. (The doc marks both blocks not-run for the runner of
tests/doc_blocks.py: they are modules, imported here.)"""

from __future__ import annotations

from pathlib import Path

import pytest

import hwq
from hwq.search.algorithms import SPECS, AlgorithmSpec
from tests.golden.goldens import HAWQ18

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def _block(lang: str, first_line: str) -> str:
    blocks = DOC.read_text().split(f"```{lang}\n")[1:]
    return next(b.split("```", 1)[0] for b in blocks if b.startswith(first_line))


def _algorithm_block() -> str:
    return _block("python", "# search/coordinate.py")


@pytest.fixture
def doc_kind(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tmp_cache):
    """The doc's constant_throughput kind, imported as the plug-in module it shows (registered
    for one test only), and its profile as toy.yaml."""
    import importlib
    import sys

    from hwq.cost_models import unregister_kind

    (tmp_path / "doc_constant_throughput.py").write_text(
        _block("python", "# cost_models/constant_throughput.py"))
    (tmp_path / "toy.yaml").write_text(_block("yaml", "schema_version: 1\nname: toy"))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("doc_constant_throughput")
    yield module, tmp_path / "toy.yaml"
    unregister_kind("constant_throughput")
    sys.modules.pop("doc_constant_throughput", None)


def _exit(argv: list[str]) -> int:
    from hwq.cli import main

    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_the_worked_kind_validates_prices_and_shows(doc_kind, capsys) -> None:
    import numpy as np
    import pandas as pd

    from hwq.graph import LayerGraph

    _, toy = doc_kind
    assert _exit(["profile", "validate", str(toy)]) == 0
    bad = toy.with_name("bad.yaml")
    bad.write_text(toy.read_text().replace("macs_per_cycle: 64", "macs_per_cycle: 100000"))
    capsys.readouterr()
    assert _exit(["profile", "validate", str(bad)]) == 2
    assert f"{bad}:6: macs_per_cycle: expected at most 65536, found 100000" in (
        capsys.readouterr().err)
    graph = LayerGraph.from_frame(pd.DataFrame([
        dict(name="conv", op="conv", batch=1, in_channels=16, out_channels=32, in_h=8, in_w=8,
             out_h=8, out_w=8, kernel_h=3, kernel_w=3, pad_h=1, pad_w=1),
        dict(name="fc", op="linear", batch=1, in_channels=32, out_channels=10),
    ]))
    table = hwq.cost_table(graph, hwq.load_profile(str(toy)))
    cycles = np.ceil(graph.column("macs").astype(np.float64) / 64)
    frame = table.to_pandas()
    assert (frame.groupby("layer", sort=False)["cycles"].max().to_numpy() == cycles).all()
    totals = hwq.evaluate(table, [hwq.Policy(default=(8, 8))])
    assert totals["latency_s"][0] == pytest.approx(cycles.sum() / 1e8)
    assert _exit(["profile", "show", str(toy)]) == 0
    shown = capsys.readouterr().out
    assert "peak_macs_per_s" in shown and "6.4e+09" in shown  # 64 MACs x 100 MHz


def test_the_worked_algorithm_searches_and_logs_like_the_shipped_ones(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import importlib

    # an importable module, as the doc's file would be: checkpoints pickle the algorithm
    (tmp_path / "doc_coordinate.py").write_text(_algorithm_block())
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = importlib.import_module("doc_coordinate").CoordinateSearch
    monkeypatch.setitem(
        SPECS, "coordinate",
        AlgorithmSpec("coordinate", lambda c: cls(int(c.population), seed=int(c.seed))),
    )
    from hwq.model_source import load_graph

    layers = tmp_path / "r18.parquet"
    load_graph("resnet18").to_parquet(layers)
    opts = dict(model=str(layers), algorithm="coordinate", sensitivity=str(HAWQ18),
                objectives="sensitivity,bops", pin="first,last=8", bits="4x4,8x8",
                generations=4, population=8, seed=0, verify_top=0)
    run = hwq.search("bitfusion", output_dir=str(tmp_path / "a"), **opts)
    cands = run.candidates
    assert len(cands) == 32 and set(cands["species"]) == {"coordinate"}
    assert run.meta["evaluations"] == 32 and len(run.species) == 4
    again = hwq.search("bitfusion", output_dir=str(tmp_path / "b"), **opts)
    assert list(again.pareto["policy_id"]) == list(run.pareto["policy_id"])  # seeded

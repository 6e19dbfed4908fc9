"""docs/architecture.md's worked search algorithm runs through the one driver like the shipped
ones (the worked device kind is tested in tests/cost_models/test_register_kind.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

import hwq
from hwq.search.algorithms import SPECS, AlgorithmSpec
from tests.golden.goldens import HAWQ18

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def _algorithm_block() -> str:
    blocks = DOC.read_text().split("```python\n")[1:]
    return next(b.split("```", 1)[0] for b in blocks if b.startswith("# search/coordinate.py"))


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

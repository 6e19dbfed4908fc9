"""Refactorings leave results unchanged: fronts and cost tables against recorded goldens
(tests/golden/goldens.py records them and says when a re-record is allowed)."""

from __future__ import annotations

import pytest

from tests.golden import goldens


@pytest.fixture(scope="module", autouse=True)
def _no_table_cache(monkeypatch_module: pytest.MonkeyPatch) -> None:
    monkeypatch_module.setenv("HWQ_NO_CACHE", "1")


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def r18_layers(tmp_path_factory: pytest.TempPathFactory) -> str:
    from hwq.model_source import load_graph

    path = tmp_path_factory.mktemp("layers") / "resnet18.parquet"
    load_graph("resnet18").to_parquet(path)
    return str(path)


@pytest.mark.parametrize("name", goldens.shipped_profiles())
def test_shipped_profile_table_on_resnet18(name: str, r18_layers: str) -> None:
    found = goldens.profile_table(name, r18_layers)
    assert goldens.compare(found, goldens.load(f"table_{name}")) == []


@pytest.mark.parametrize("name", goldens.llm_runtime_profiles())
def test_llm_runtime_profiles_refuse_resnet18_at_their_quantized_pairs(name: str,
                                                                       r18_layers: str) -> None:
    import hwq
    from hwq.errors import CostModelError

    profile = hwq.load_profile(name)
    with pytest.raises(CostModelError, match=f"runtime {profile.get('runtime')}"):
        goldens.profile_table(name, r18_layers)
    graph = hwq.LayerGraph.read(r18_layers)
    assert hwq.cost_table(graph, profile, [(16, 16)]).values["latency_s"].min() > 0


@pytest.mark.parametrize("algorithm", list(goldens.SENSITIVITY_RUNS))
def test_sensitivity_front(algorithm: str, r18_layers: str, tmp_path) -> None:
    found = goldens.sensitivity_front(algorithm, tmp_path / "run", r18_layers)
    assert goldens.compare(found, goldens.load(f"front_r18_{algorithm}")) == []


def test_default_digits_front(tmp_path) -> None:
    found = goldens.digits_front(tmp_path / "run")
    assert goldens.compare(found, goldens.load("front_digits")) == []

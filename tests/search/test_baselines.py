"""Baselines: the ILP is exact (brute force agrees), the greedy path trades sensitivity for cost,
NSGA-II and random search run on the same problem and logs."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from hwq.errors import UserError
from hwq.search.baselines import greedy_path, solve_ilp
from hwq.search.config import SearchConfig
from hwq.search.prepare import prepare

from .conftest import DEVICE


@pytest.fixture
def digits_sens(tmp_path, digits_graph):
    rng = np.random.default_rng(5)
    rows = []
    for name in digits_graph.names:
        s8 = float(rng.uniform(0.001, 0.01))
        rows += [(name, 8, None, s8), (name, 4, None, s8 * float(rng.uniform(20, 400)))]
    path = tmp_path / "sens.csv"
    pd.DataFrame(rows, columns=["layer", "w_bits", "a_bits", "sensitivity"]).to_csv(
        path, index=False
    )
    return str(path)


def _prep(digits_sens, **kw):
    cfg = dict(
        device=DEVICE,
        model="digits_resnet",
        sensitivity=digits_sens,
        objectives=["sensitivity", "bops"],
        bits="4x4,8x8",
        verify_top=0,
    )
    cfg.update(kw)
    return prepare(SearchConfig(**cfg))


def _brute(problem, budget):
    enc = problem.encoding
    C = np.array(list(itertools.product(range(enc.n_choices), repeat=enc.n_groups)))
    ev = problem.evaluate_pairs(enc.decode_choice_index(C))
    ok = ev.records["bops"].to_numpy() <= budget
    return float(ev.records["sensitivity"].to_numpy()[ok].min())


@pytest.mark.parametrize("r", [0.25, 0.5, 0.75])
def test_ilp_is_exact(digits_sens, r):
    prep = _prep(digits_sens)
    p = prep.problem
    lo = p.evaluate_pairs(np.full((1, len(prep.graph), 2), 4)).records["bops"][0]
    hi = p.evaluate_pairs(np.full((1, len(prep.graph), 2), 8)).records["bops"][0]
    budget = lo + r * (hi - lo)
    choice = solve_ilp(p, {"bops": budget})
    ev = p.evaluate_pairs(prep.encoding.decode_choice_index(choice[None]))
    assert ev.records["bops"][0] <= budget
    assert ev.records["sensitivity"][0] == pytest.approx(_brute(p, budget), rel=1e-9)


def test_greedy_path_trades_sensitivity_for_cost(digits_sens):
    prep = _prep(digits_sens)
    C = greedy_path(prep.problem)
    ev = prep.problem.evaluate_pairs(prep.encoding.decode_choice_index(C))
    bops = ev.records["bops"].to_numpy()
    sens = ev.records["sensitivity"].to_numpy()
    assert (np.diff(bops) < 0).all() and (np.diff(sens) >= -1e-12).all()
    assert (ev.pairs[0] == 8).all() and (ev.pairs[-1] == 4).all()


def test_ilp_and_greedy_need_sensitivity_and_a_budget(tmp_path, digits_sens):
    import hwq.search as hs

    with pytest.raises(UserError, match="one budget"):
        hs(
            device=DEVICE,
            sensitivity=digits_sens,
            objectives="sensitivity,bops",
            bits="4x4,8x8",
            algorithm="ilp",
            output_dir=str(tmp_path / "a"),
            verify_top=0,
        )
    run = hs(
        device=DEVICE,
        sensitivity=digits_sens,
        objectives="sensitivity,bops",
        bits="4x4,8x8",
        algorithm="ilp",
        max="bops=20M",
        output_dir=str(tmp_path / "b"),
        verify_top=0,
    )
    assert len(run.pareto) == 1 and run.meta["algorithm"] == "ilp"
    assert run.pareto["bops"][0] <= 20e6
    run = hs(
        device=DEVICE,
        sensitivity=digits_sens,
        objectives="sensitivity,bops",
        bits="4x4,8x8",
        algorithm="greedy",
        output_dir=str(tmp_path / "c"),
        verify_top=0,
    )
    assert len(run.pareto) >= 2 and set(run.candidates["species"]) == {"greedy"}


@pytest.mark.parametrize("algorithm", ["nsga2", "random"])
def test_population_baselines_share_the_logs(tmp_path, digits_sens, algorithm):
    import hwq.search as hs

    run = hs(
        device=DEVICE,
        sensitivity=digits_sens,
        objectives="sensitivity,bops,latency",
        bits="4x4,8x8",
        algorithm=algorithm,
        generations=3,
        population=10,
        output_dir=str(tmp_path / "r"),
        verify_top=0,
    )
    cand = run.candidates
    assert sorted(cand["generation"].unique()) == [0, 1, 2]
    assert set(cand["species"]) == {algorithm}
    assert list(run.species["species"]) == [algorithm] * 3
    assert run.meta["evaluations"] == len(cand)

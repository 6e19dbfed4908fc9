"""`--algorithm bo`: proposals within the encoding, the BOMP-NAS score on hand values, runs on
the digits task and a sensitivity problem, exact budgets, resume after SIGKILL, the surrogate's
time in meta.json, and the run in `hwq report` / `hwq compare`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import hwq.search as hs
from hwq.runs import Run
from hwq.search.bo import (
    BASE_UNITS,
    Layout,
    biased_random,
    bomp_references,
    bomp_score_np,
    single_changes,
    uniform_w8a8,
)
from hwq.search.config import SearchConfig
from hwq.search.prepare import prepare

from . import bo_helpers, helpers
from .conftest import DEVICE, HAWQ18

ROOT = Path(__file__).resolve().parents[2]
SENSITIVITY_FLAGS = [  # the golden sensitivity problem (tests/golden/goldens.py)
    "--sensitivity", "hawq-v3:resnet18", "--objectives", "sensitivity,bops",
    "--pin", "first,last=8", "--bits", "4x4,8x4,4x8,8x8",
]


# -- candidate sets ----------------------------------------------------------------------------
def test_single_changes_are_every_one_gene_move():
    xl, xu = np.array([0, 0, 0]), np.array([2, 1, 0])
    X = np.array([[1, 0, 0]])
    got = {tuple(r) for r in single_changes(X, xl, xu)}
    assert got == {(0, 0, 0), (2, 0, 0), (1, 1, 0)}


def test_biased_random_reaches_both_ends_within_bounds():
    rng = np.random.default_rng(0)
    xl, xu = np.zeros(30, dtype=np.int64), np.full(30, 2)
    X = biased_random(rng, 500, xl, xu)
    assert X.min() == 0 and X.max() == 2
    mean = X.mean(axis=1)
    assert mean.min() < 0.3 and mean.max() > 1.7  # candidates lean low and high


# -- the BOMP-NAS score ------------------------------------------------------------------------
def test_pool_samples_are_botorchs_one_point_posterior_samples():
    """The pool's samples built once (joint posterior's mean and diagonal, the sampler's Sobol
    draws) are what the acquisition's own posterior call on each candidate samples."""
    import torch
    from botorch.sampling import SobolQMCNormalSampler

    from hwq.search.bo import fit_quality_gp, marginal_samples

    rng = np.random.default_rng(3)
    X = torch.tensor(rng.random((30, 4)))
    y = torch.tensor((X.numpy() @ np.array([1.0, -2.0, 0.5, 0.0]))[:, None])
    gp = fit_quality_gp(X, y)
    pool = torch.tensor(rng.random((7, 4)))
    costs = torch.tensor(rng.random((7, 2)))
    with torch.no_grad():
        post = gp.posterior(pool)
        believed = torch.cat([post.mean.reshape(-1, 1), costs], dim=1)
        std = post.variance.reshape(-1).sqrt()
        got = marginal_samples(believed, std, True, 16, seed=5)
        ref = SobolQMCNormalSampler(torch.Size([16]), seed=5)(gp.posterior(pool.unsqueeze(-2)))
    assert got.shape == (16, 7, 1, 3)
    assert torch.allclose(got[..., 0], ref[..., 0], atol=1e-9)
    assert torch.equal(got[..., 1:], costs[None, :, None, :].expand(16, 7, 1, 2))


def test_bomp_score_matches_the_formula_on_hand_values():
    # outputs: accuracy, weight_bytes, cycles; objectives accuracy, weight_memory, latency
    layout = Layout("accuracy", ["weight_bytes", "cycles"], [(0, 1.0), (1, -1.0), (2, -1.0)], [])
    Z = np.array([[0.9, 1000.0, 5e6], [0.5, 250.0, 1e6]])
    refs = [0.95, math.log10(8 * 2000.0), math.log10(8e6)]
    got = bomp_score_np(Z, layout, refs, [1.0, 8.0, 1.0])
    want = [
        0.9 / 0.95 + math.log10(16000) / math.log10(8000) + math.log10(8e6) / math.log10(5e6),
        0.5 / 0.95 + math.log10(16000) / math.log10(2000) + math.log10(8e6) / math.log10(1e6),
    ]
    assert got == pytest.approx(want, rel=1e-12)


def test_bomp_score_of_a_minimised_quality_is_ref_over_value():
    layout = Layout("sensitivity", ["bops"], [(0, -1.0), (1, -1.0)], [])
    got = bomp_score_np(np.array([[0.2, 1e9]]), layout, [0.05, 10.0], [1.0, 1.0])
    assert got[0] == pytest.approx(0.05 / 0.2 + 10.0 / 9.0, rel=1e-12)


def test_bomp_references_are_the_uniform_w8a8_policy(r18_layers):
    from hwq.policy_eval import evaluate

    prep = prepare(SearchConfig(
        device=DEVICE, model=r18_layers, sensitivity=str(HAWQ18),
        objectives=["sensitivity", "bops", "weight_memory", "latency"], bits="4x4,8x8",
        pin=["first,last=8"], algorithm="bo", bo_mode="bomp", verify_top=0,
    ))
    p = prep.problem
    X8 = uniform_w8a8(p)
    pairs = p.encoding.decode(X8)
    assert (pairs == 8).all()
    costs = evaluate(p.table, pairs)
    sens = float(p.quality.evaluate(pairs, ["x"])[0][0])
    refs = bomp_references(p)
    assert refs[0] == pytest.approx(sens, rel=1e-12)
    assert refs[1] == pytest.approx(math.log10(float(costs["bops"][0])), rel=1e-12)
    assert refs[2] == pytest.approx(math.log10(8 * float(costs["weight_bytes"][0])), rel=1e-12)
    assert refs[3] == pytest.approx(math.log10(float(costs["cycles"][0])), rel=1e-12)
    assert BASE_UNITS["latency"] == ("cycles", 1.0)


# -- proposals respect the encoding --------------------------------------------------------------
@pytest.mark.parametrize("mode", ["ehvi", "bomp"])
def test_proposals_respect_pins_ties_and_allowed_bits(tmp_path, digits_graph, mode):
    allowed = {(2, 4), (4, 4), (4, 8), (8, 8)}  # not a product: the pairs layout
    run = hs(
        device=DEVICE, model="digits_resnet", objectives="accuracy,latency,weight_memory",
        algorithm="bo", bo_mode=mode, bits="2x4,4x4,4x8,8x8", pin="first=8x8",
        tie="same-input", population=6, generations=3, seed=1, verify_top=0,
        output_dir=str(tmp_path / mode), quality=helpers.fake_accuracy,
    )
    from hwq.graph import same_input_groups

    cand = run.candidates
    assert len(cand) == 18 and cand["policy_id"].nunique() == 18
    groups = [sorted(g) for g in same_input_groups(digits_graph) if len(g) > 1]
    assert groups, "digits_resnet has layers reading one tensor"
    for w, a in zip(cand["w_bits"], cand["a_bits"]):
        pairs = list(zip(np.asarray(w).tolist(), np.asarray(a).tolist()))
        assert pairs[0] == (8, 8)
        assert set(pairs) <= allowed
        for g in groups:
            assert len({pairs[i] for i in g}) == 1


# -- budgets: exactly population x generations, every one a new policy ---------------------------
@pytest.mark.parametrize("algorithm", ["nemo", "nsga2", "random", "bo"])
def test_every_algorithm_evaluates_population_times_generations(tmp_path, algorithm):
    # 2x2 pairs on 5 free layers: 1024 policies, small enough for repeats to tempt
    P, G = 8, 3
    run = hs(
        device=DEVICE, model="digits_resnet", objectives="accuracy,bops", algorithm=algorithm,
        bits="4x4,8x8", pin="first,last=8", population=P, generations=G, seed=2,
        verify_top=0, output_dir=str(tmp_path / algorithm), quality=helpers.fake_accuracy,
    )
    cand = run.candidates
    assert run.meta["evaluations"] == P * G == len(cand)
    assert cand.groupby("generation").size().tolist() == [P] * G
    if algorithm != "nemo":  # NEMO may re-propose a policy after its retries (see report)
        assert cand["policy_id"].nunique() == P * G


@pytest.mark.parametrize("algorithm", ["random", "bo"])
def test_an_exhausted_space_still_gets_the_whole_budget(tmp_path, algorithm):
    # 4x4 or 8x8 on 3 free layers: 8 policies, 12 asked for
    run = hs(
        device=DEVICE, model="digits_resnet", objectives="accuracy,bops", algorithm=algorithm,
        bits="4x4,8x8", pin="first,last,layer1.0.conv1,layer1.0.conv2=8", population=4,
        generations=3, seed=0, verify_top=0, output_dir=str(tmp_path / algorithm),
        quality=helpers.fake_accuracy,
    )
    cand = run.candidates
    assert len(cand) == run.meta["evaluations"] == 12
    assert cand["policy_id"].nunique() == 8  # every policy, then repeats to fill the budget


# -- runs on the command line ------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["ehvi", "bomp"])
def test_bo_on_the_digits_task(tmp_path, hwq_cli, mode):
    out = tmp_path / mode
    code, _stdout, err = hwq_cli([
        "search", "--device", DEVICE, "--algorithm", "bo", "--bo-mode", mode,
        "--population", "4", "--generations", "2", "--verify-top", "0", "-o", str(out),
    ])
    assert code == 0, err
    run = Run.open(out)
    assert run.meta["algorithm"] == "bo" and run.meta["evaluations"] == 8
    assert run.candidates["policy_id"].nunique() == 8
    assert run.candidates["accuracy"].between(0, 1).all()
    assert set(run.candidates["species"]) == {"bo"}
    timing = run.meta["timing"]
    assert len(timing["surrogate_wall_s"]) == len(timing["generation_wall_s"]) == 2
    assert all(s <= g for s, g in zip(timing["surrogate_wall_s"], timing["generation_wall_s"]))
    import yaml

    doc = yaml.safe_load((out / "config.yaml").read_text())
    assert doc["search"]["bo_mode"] == mode and doc["resolved"]["bo"]["mode"] == mode


@pytest.mark.parametrize("mode", ["ehvi", "bomp"])
def test_bo_on_a_sensitivity_problem(tmp_path, hwq_cli, r18_layers, mode):
    out = tmp_path / mode
    code, _stdout, err = hwq_cli([
        "search", "--device", DEVICE, "--model", r18_layers, *SENSITIVITY_FLAGS,
        "--algorithm", "bo", "--bo-mode", mode, "--max", "bops=70G",
        "--population", "8", "--generations", "3", "-o", str(out),
    ])
    assert code == 0, err
    run = Run.open(out)
    cand = run.candidates
    assert run.meta["evaluations"] == len(cand) == cand["policy_id"].nunique() == 24
    later = cand[cand["generation"] > 0]  # proposals, unlike the Sobol design, meet the limit
    assert (later["bops"] <= 70e9).all()
    assert (run.pareto["bops"] <= 70e9).all() and len(run.pareto) > 1


def test_bo_resumes_after_sigkill_to_the_same_front(tmp_path, r18_layers):
    full = hs(**bo_helpers.bo_kwargs(r18_layers, str(tmp_path / "full"), DEVICE, "ehvi"),
              quality=helpers.fake_accuracy)
    out = tmp_path / "killed"
    helpers.kill_inside_generation(
        ["tests.search.bo_helpers", r18_layers, str(out), DEVICE, "ehvi"], out, 1, 180)
    assert json.loads((out / "meta.json").read_text())["status"] == "running"
    assert not (out / "candidates" / "part-00003.parquet").exists()
    resumed = hs(device=DEVICE, output_dir=str(out), resume=True, quality=helpers.fake_accuracy)
    assert resumed.meta["status"] == "done"
    cols = ["generation", "species", "policy_id", "accuracy", "latency_s", "weight_bytes"]
    assert resumed.candidates[cols].equals(full.candidates[cols])
    assert resumed.pareto[["policy_id", "accuracy"]].equals(full.pareto[["policy_id", "accuracy"]])
    assert len(resumed.meta["timing"]["surrogate_wall_s"]) == 4


def test_bo_appears_in_report_and_compare(tmp_path, r18_layers):
    from hwq.cli.report_cmd import compare, report
    from tests.run_fixtures import run_cmd

    runs = []
    for algorithm in ("bo", "nsga2"):
        runs.append(hs(
            device=DEVICE, model=r18_layers, sensitivity=str(HAWQ18),
            objectives="sensitivity,bops", bits="4x4,8x8", pin="first,last=8",
            algorithm=algorithm, population=6, generations=2, seed=0, verify_top=0,
            output_dir=str(tmp_path / algorithm),
        ))
    code, out, err = run_cmd(report, [str(runs[0].path), "--json"])
    assert code == 0, err
    html = (runs[0].path / "report" / "index.html").read_text()
    assert "<p>bo, status" in html
    code, out, err = run_cmd(compare, [str(r.path) for r in runs]
                             + ["-o", str(tmp_path / "cmp.png"), "--json"])
    assert code == 0, err
    rows = json.loads(out)["runs"]
    assert [r["run"].split(" / ")[-1] for r in rows] == ["bo", "nsga2"]
    assert all(r["front_size"] > 0 for r in rows)


def test_bad_bo_mode_exits_2(tmp_path, hwq_cli):
    code, _out, err = hwq_cli(["search", "--device", DEVICE, "--algorithm", "bo",
                               "--bo-mode", "qei", "-o", str(tmp_path / "x")])
    assert code == 2 and "--bo-mode" in err

"""`hwq search --algorithm rl`: the digits task and a sensitivity problem through the one
driver, exactly population x generations candidates, the agent's constants in config.yaml,
seeded determinism, resume after SIGKILL to the same front, `hwq report` and `hwq compare`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import hwq.search as hs
from hwq.runs import Run

from . import helpers
from .conftest import DEVICE, HAWQ18

ROOT = Path(__file__).resolve().parents[2]
LOGGED = ["accuracy", "bops", "weight_bytes", "peak_activation_bytes", "latency_s", "energy_pj"]


def sensitivity_args(layers: str, out: Path, *extra: str) -> list[str]:
    """tests/golden/goldens.py's sensitivity problem (HAWQ-V3 ResNet-18, sensitivity and BOPs,
    {4, 8} x {4, 8}, first and last layer at 8 bits)."""
    return ["search", "--device", DEVICE, "--model", layers, "--algorithm", "rl",
            "--sensitivity", str(HAWQ18), "--objectives", "sensitivity,bops",
            "--bits", "4x4,8x4,4x8,8x8", "--pin", "first,last=8", "--seed", "0",
            "--verify-top", "0", "-o", str(out), *extra]


@pytest.fixture(scope="module")
def sens_run(tmp_path_factory, r18_layers):
    from .conftest import run_cli

    out = tmp_path_factory.mktemp("rl") / "r18"
    code, _stdout, err = run_cli(
        sensitivity_args(r18_layers, out, "--population", "8", "--generations", "4")
    )
    assert code == 0, err
    return Run.open(out)


def test_sensitivity_problem_through_the_driver(sens_run):
    run = sens_run
    cand = run.candidates
    assert len(cand) == 8 * 4 and run.meta["evaluations"] == 32
    assert sorted(cand["generation"].unique()) == [0, 1, 2, 3]
    assert set(cand["species"]) == {"rl"} and list(run.species["species"]) == ["rl"] * 4
    assert run.meta["algorithm"] == "rl" and run.meta["status"] == "done"
    w = np.stack(cand["w_bits"].to_numpy())
    assert (w[:, 0] == 8).all() and (w[:, -1] == 8).all()  # pins respected
    assert set(np.unique(w)) <= {4, 8}
    doc = yaml.safe_load((run.path / "config.yaml").read_text())
    assert doc["search"]["rl_agent"] == "ddpg"
    resolved = doc["resolved"]["rl"]
    assert resolved["agent"] == "ddpg" and resolved["warmup_generations"] == 1
    # episodes spread along the front: generation 0's budgets cover the BOPs range
    bops = cand.loc[cand["generation"] == 0, "bops"].to_numpy()
    assert bops.max() > 1.5 * bops.min()


def test_same_seed_same_candidates_and_td3(tmp_path, r18_layers, sens_run, hwq_cli):
    code, _, err = hwq_cli(
        sensitivity_args(r18_layers, tmp_path / "again", "--population", "8",
                         "--generations", "4")
    )
    assert code == 0, err
    again = Run.open(tmp_path / "again")
    assert list(again.candidates["policy_id"]) == list(sens_run.candidates["policy_id"])
    code, _, err = hwq_cli(
        sensitivity_args(r18_layers, tmp_path / "td3", "--population", "6",
                         "--generations", "3", "--rl-agent", "td3")
    )
    assert code == 0, err
    td3 = Run.open(tmp_path / "td3")
    assert len(td3.candidates) == 18 and td3.meta["evaluations"] == 18
    doc = yaml.safe_load((td3.path / "config.yaml").read_text())
    assert doc["resolved"]["rl"]["agent"] == "td3"


def test_digits_accuracy_task(tmp_path, hwq_cli):
    out = tmp_path / "digits"
    code, stdout, err = hwq_cli(["search", "--device", DEVICE, "--algorithm", "rl",
                                 "--population", "6", "--generations", "3", "--verify-top",
                                 "0", "-o", str(out)])
    assert code == 0, err
    run = Run.open(out)
    assert run.meta["objectives"] == ["accuracy", "latency", "energy", "weight_memory"]
    assert len(run.candidates) == 18 and run.meta["evaluations"] == 18
    assert run.pareto["accuracy"].between(0, 1).all() and len(run.pareto) >= 1
    assert "policy_id" in stdout.splitlines()[0]


def test_report_and_compare(tmp_path, sens_run, r18_layers, hwq_cli):
    code, stdout, err = hwq_cli(["report", str(sens_run.path), "-o", str(tmp_path / "rep"),
                                 "--json"])
    assert code == 0, err
    index = Path(json.loads(stdout)["index"]).read_text()
    assert "<p>rl, status" in index
    args = sensitivity_args(r18_layers, tmp_path / "random", "--population", "8",
                            "--generations", "2")
    args[args.index("rl")] = "random"
    code, _, err = hwq_cli(args)
    assert code == 0, err
    code, stdout, err = hwq_cli(["compare", str(sens_run.path), str(tmp_path / "random"),
                                 "-o", str(tmp_path / "cmp.png"), "--json"])
    assert code == 0, err
    rows = json.loads(stdout)["runs"]
    assert [r["run"].rsplit(" / ", 1)[-1] for r in rows] == ["rl", "random"]
    assert rows[0]["evaluations"] == 32 and rows[0]["hypervolume"] > 0


def test_rl_options_are_checked(tmp_path, r18_layers, hwq_cli):
    code, _, err = hwq_cli(sensitivity_args(r18_layers, tmp_path / "x", "--rl-agent", "ppo"))
    assert code == 2 and "ppo" in err


# -- the rollout's parts ------------------------------------------------------------------------
def test_truncated_normal_by_its_inverse_cdf():
    from scipy.stats import norm, truncnorm

    from hwq.search.rl import truncated_normal

    mu = np.array([[0.0, 0.3], [0.9, 1.0]])
    sigma = np.array([[0.5], [0.01]])
    x = truncated_normal(np.random.default_rng(7), mu, sigma)
    u = np.random.default_rng(7).random((2, 2))
    s = np.broadcast_to(sigma, mu.shape)
    lo, hi = norm.cdf(-mu / s), norm.cdf((1 - mu) / s)
    assert np.allclose(x, mu + s * norm.ppf(lo + u * (hi - lo)), rtol=0, atol=1e-12)
    assert ((x >= 0) & (x <= 1)).all()
    # the distribution: 20,000 draws' mean and spread are truncnorm's (seeded, so exact here)
    many = truncated_normal(np.random.default_rng(0), np.full(20000, 0.8), np.array(0.5))
    a, b = (0 - 0.8) / 0.5, (1 - 0.8) / 0.5
    assert abs(many.mean() - truncnorm.mean(a, b, loc=0.8, scale=0.5)) < 0.005
    assert abs(many.std() - truncnorm.std(a, b, loc=0.8, scale=0.5)) < 0.005


def test_actor_actions_are_sb3_predict_on_the_batch(r18_layers):
    from hwq.search.config import SearchConfig
    from hwq.search.prepare import prepare
    from hwq.search.rl import RLSearch, actor_actions

    cfg = SearchConfig(device=DEVICE, model=r18_layers, sensitivity=str(HAWQ18),
                       objectives=["sensitivity", "bops"], bits="4x4,8x8",
                       pin=["first,last=8"], verify_top=0)
    algo = RLSearch(pop_size=5)
    algo.problem = prepare(cfg).problem
    model = algo.agent()
    tab = algo.tables()
    obs = tab.observe(3, np.random.default_rng(1).random((5, 1)),
                      np.random.default_rng(2).random((5, tab.n_budgets)),
                      np.zeros((5, tab.n_groups), dtype=np.int64))
    mu, _ = model.predict(obs, deterministic=True)
    got = actor_actions(model, obs)
    assert got.shape == (5, 1) and np.allclose(got, mu, atol=1e-6)


def test_a_generation_trains_a_fixed_number_of_steps(tmp_path, r18_layers):
    """gradient_steps per generation after the warm-up, whatever the population."""
    import pickle

    for pop in (4, 8):
        out = tmp_path / f"p{pop}"
        hs(**{**kill_kwargs(r18_layers, str(out)), "population": pop, "generations": 3},
           quality=helpers.fake_accuracy)
        algo = pickle.loads((out / "state" / "checkpoint.pkl").read_bytes())["algorithm"]
        assert algo._agent_state["n_updates"] == 3 * algo.params.gradient_steps


# -- resume after SIGKILL --------------------------------------------------------------------------
def kill_kwargs(layers: str, out: str) -> dict:
    return {**helpers.search_kwargs(layers, out, DEVICE), "algorithm": "rl"}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, r18_layers):
    out = tmp_path_factory.mktemp("rl-kill") / "whole"
    return hs(**kill_kwargs(r18_layers, str(out)), quality=helpers.fake_accuracy)


def test_sigkill_then_resume_gives_the_same_front(tmp_path, uninterrupted, r18_layers):
    out = tmp_path / "killed"
    helpers.kill_inside_generation(["tests.search.test_rl", r18_layers, str(out)], out, 2, 240)
    assert json.loads((out / "meta.json").read_text())["status"] == "running"
    assert not (out / "candidates" / "part-00005.parquet").exists()
    resumed = hs(device=DEVICE, output_dir=str(out), resume=True, quality=helpers.fake_accuracy)
    assert resumed.meta["status"] == "done"
    whole = uninterrupted
    cols = ["generation", "species", "policy_id", *LOGGED]
    assert len(resumed.candidates) == 6 * 12
    assert resumed.candidates[cols].equals(whole.candidates[cols])
    assert resumed.pareto[["policy_id", *LOGGED]].equals(whole.pareto[["policy_id", *LOGGED]])
    assert resumed.species.equals(whole.species)


if __name__ == "__main__":  # python -m tests.search.test_rl LAYERS OUT (the run SIGKILL stops)
    hs(**kill_kwargs(sys.argv[1], sys.argv[2]), quality=helpers.slow_accuracy)

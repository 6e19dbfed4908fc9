"""The precision environment `hwq.search.env`: Gymnasium's checker, HAQ's action mapping, pins
and ties, budgets between the cheapest and the dearest policy, HAQ's enforcement (a hand
example and a property on random actions and budgets), the reward formula, and a
stable-baselines3 agent learning on the env directly."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwq.objectives import OBJECTIVES
from hwq.search.config import SearchConfig
from hwq.search.env import EnvTables, PrecisionEnv, Reward, reward_quality
from hwq.search.env_budget import enforce_budgets
from hwq.search.prepare import prepare

from . import helpers
from .conftest import DEVICE, HAWQ18


def _problem(layers: str, quality=None, **kw):
    cfg = dict(device=DEVICE, model=layers, verify_top=0)
    if quality is None:
        cfg.update(sensitivity=str(HAWQ18), objectives=["sensitivity", "bops"],
                   bits="4x4,8x4,4x8,8x8", pin=["first,last=8"])
    cfg.update(kw)
    return prepare(SearchConfig(**cfg), quality=quality).problem


@pytest.fixture(scope="module")
def r18_problem(r18_layers):
    """HAWQ-V3 ResNet-18 sensitivities, product layout {4, 8} x {4, 8}, first/last pinned."""
    return _problem(r18_layers)


@pytest.fixture(scope="module")
def r18_pairs_tied(r18_layers):
    """Pairs layout 4x4, 8x8 with layers reading one tensor tied (HAWQ-V3's setting)."""
    return _problem(r18_layers, bits="4x4,8x8", tie="same-input")


@pytest.fixture(scope="module")
def digits_accuracy():
    """digits_resnet: accuracy (a stand-in function), latency, energy and weight memory."""
    return _problem("digits_resnet", quality=helpers.fake_accuracy,
                    objectives=["accuracy", "latency", "energy", "weight_memory"])


# -- Gymnasium's API ---------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["r18_problem", "r18_pairs_tied", "digits_accuracy"])
def test_env_passes_gymnasium_checker(which, request):
    from gymnasium.utils.env_checker import check_env

    env = PrecisionEnv(request.getfixturevalue(which))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning fails the test
        check_env(env, skip_render_check=True)
    assert env.observation_space.contains(env.reset(seed=1)[0])


def test_episode_walks_the_free_groups_and_decodes_pins_and_ties(r18_pairs_tied):
    p = r18_pairs_tied
    enc = p.encoding
    env = PrecisionEnv(p)
    obs, info = env.reset(seed=0, options={"budget": [1.0]})
    assert env.action_space.shape == (1,) and obs.dtype == np.float32
    steps, done = 0, False
    while not done:
        obs, reward, done, truncated, info = env.step(np.array([1.0], dtype=np.float32))
        assert env.observation_space.contains(obs) and not truncated
        steps += 1
    assert steps == enc.n_groups < len(enc.graph)  # pinned layers skipped, tied ones one step
    pairs = info["pairs"]
    assert tuple(pairs[0]) == (8, 8) and tuple(pairs[-1]) == (8, 8)
    for group in enc.groups:
        assert (pairs[group] == pairs[group[0]]).all()
    assert (pairs == 8).all()  # action 1 everywhere under the dearest budget: all 8 bits
    ev = p.evaluate_pairs(pairs[None])
    assert reward == pytest.approx(-ev.records["sensitivity"][0])  # Reward(): lam 1, ref 0
    assert info["quality"] == pytest.approx(-ev.records["sensitivity"][0])


def test_action_maps_to_the_allowed_widths(r18_problem, r18_pairs_tied):
    tab = EnvTables.of(r18_problem)
    enc = r18_problem.encoding
    a = np.array([[0.0, 0.0], [0.49, 0.5], [1.0, 0.0], [0.999, 1.0]])
    pairs = [enc.choices[c] for c in tab.choose(0, a)]
    assert pairs == [(4, 4), (4, 8), (8, 4), (8, 8)]
    tab2 = EnvTables.of(r18_pairs_tied)
    c = tab2.choose(0, np.array([[0.0], [0.4999], [0.5], [1.0]]))
    assert [r18_pairs_tied.encoding.choices[i] for i in c] == [(4, 4), (4, 4), (8, 8), (8, 8)]


def test_budgets_span_the_cheapest_to_the_dearest_policy(r18_problem, digits_accuracy):
    p = r18_problem
    tab = EnvTables.of(p)
    assert tab.columns == ("bops",) and tab.drawn.tolist() == [True]
    n = len(p.encoding.graph)
    low = np.full((1, n, 2), 4)
    low[0, [0, n - 1]] = 8
    bops = p.evaluate_pairs(np.concatenate([low, np.full((1, n, 2), 8)])).records["bops"]
    assert tab.lo[0] == pytest.approx(bops[0], rel=1e-12)
    assert tab.hi[0] == pytest.approx(bops[1], rel=1e-12)
    B = tab.budgets(np.array([[0.0], [0.25], [1.0]]))[:, 0]
    assert B == pytest.approx([bops[0], bops[0] + 0.25 * (bops[1] - bops[0]), bops[1]])
    # digits: every cost objective is budgeted; the reward objective (accuracy) is not
    tab = EnvTables.of(digits_accuracy)
    assert tab.columns == ("latency_s", "energy_pj", "weight_bytes")
    u = tab.draw_budgets(np.random.default_rng(0), 10)  # a Latin hypercube
    for k in range(3):
        assert sorted(np.floor(u[:, k] * 10).astype(int)) == list(range(10))


def test_a_max_caps_drawn_budgets_and_adds_fixed_ones(r18_layers):
    p = _problem(r18_layers, max=["bops=60G", "latency=1s"])
    tab = EnvTables.of(p)
    assert tab.columns == ("bops", "latency_s")
    assert tab.drawn.tolist() == [True, False]
    B = tab.budgets(np.array([[1.0, 0.0]]))[0]
    assert B[0] == pytest.approx(60e9) and B[0] < 60e9 and B[1] == pytest.approx(1.0)


# -- HAQ's enforcement -------------------------------------------------------------------------
def test_enforcement_by_hand():
    # three groups, choices 0 (4-bit) and 1 (8-bit); all at 8 bits cost 17, the budget is 12
    cost = np.array([[[1.0, 4.0], [2.0, 10.0], [1.0, 3.0]]])
    sens = np.array([[0.5, 0.0], [3.0, 0.0], [0.1, 0.0]])
    feas = np.ones((3, 2), bool)
    out = enforce_budgets(np.array([[1, 1, 1]]), cost, np.array([[12.0]]), np.array([1.0]),
                          sens, feas, np.zeros(3, np.int64))
    # violation 5: group 2 removes 2 for 0.1 (20 per unit), group 0 then the remaining 3 for
    # 0.5 (6 per unit); group 1 (5 for 3.0, then 3 for 3.0) is never the best
    assert out.tolist() == [[0, 1, 0]]
    # within budget: unchanged; an infeasible cheaper choice is never taken
    same = enforce_budgets(np.array([[1, 1, 1]]), cost, np.array([[17.0]]), np.array([1.0]),
                           sens, feas, np.zeros(3, np.int64))
    assert same.tolist() == [[1, 1, 1]]
    feas[2, 0] = False
    out = enforce_budgets(np.array([[1, 1, 1]]), cost, np.array([[12.0]]), np.array([1.0]),
                          sens, feas, np.array([0, 0, 1]))
    assert out.tolist() == [[0, 0, 1]]


@pytest.mark.parametrize("which", ["r18_problem", "r18_pairs_tied", "digits_accuracy"])
def test_enforcement_meets_every_budget(which, request):
    p = request.getfixturevalue(which)
    tab = EnvTables.of(p)
    G, A, K = tab.n_groups, tab.n_actions, tab.n_budgets
    n = len(p.encoding.graph)

    @settings(max_examples=40, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.integers(0, 2**32 - 1), st.integers(1, 6))
    def check(seed, E):
        rng = np.random.default_rng(seed)
        actions = rng.random((E, G, A))
        frac = rng.random((E, K)) ** rng.uniform(0.2, 5.0)  # tight and loose budgets
        choice = np.stack([tab.choose(t, actions[:, t]) for t in range(G)], axis=1)
        final = tab.enforce(choice, frac)
        pairs = p.encoding.decode_choice_index(final)
        records = p.evaluate_pairs(pairs).records
        B = tab.budgets(frac)
        for k, col in enumerate(tab.columns):
            assert (records[col].to_numpy() <= B[:, k] * (1 + 1e-12)).all(), col
        for i, pin in p.encoding.pins.items():
            assert (pairs[:, i] == pin).all()
        assert records["feasible"].all()
        # a policy already within its budgets is left as it was
        before = p.evaluate_pairs(p.encoding.decode_choice_index(choice)).records
        within = np.all([before[c].to_numpy() <= B[:, k] for k, c in enumerate(tab.columns)],
                        axis=0)
        assert (final[within] == choice[within]).all()
        assert pairs.shape == (E, n, 2)

    check()


def test_enforcement_meets_a_max_constraint(r18_layers):
    p = _problem(r18_layers, max=["bops=50G"])
    tab = EnvTables.of(p)
    rng = np.random.default_rng(3)
    E = 16
    choice = np.stack([tab.choose(t, np.ones((E, 2))) for t in range(tab.n_groups)], axis=1)
    final = tab.enforce(choice, rng.random((E, 1)))
    ev = p.evaluate_pairs(p.encoding.decode_choice_index(final))
    assert (ev.records["bops"] <= 50e9).all() and (ev.G <= 0).all()


def test_sensitivity_proxy_without_a_table(digits_accuracy):
    tab = EnvTables.of(digits_accuracy)
    assert not tab.sens_from_table
    w, a = digits_accuracy.encoding.choices[0]
    assert tab.sens[0, 0] == pytest.approx(4.0**-w + 4.0**-a)


# -- the reward ----------------------------------------------------------------------------------
def test_reward_formula_by_hand(r18_problem):
    r = Reward(q_ref=0.9, lam=10.0)(np.array([0.95, 0.5]), np.array([[0.0, -0.2], [0.1, 1.0]]))
    # 10 * 0.05 = 0.5; 10 * (0.5 - 0.9) = -4, minus the violations 0.1 + 1.0
    assert r == pytest.approx([0.5, -5.1])
    assert Reward(0.0, 1.0)(np.array([-1e30]), np.zeros((1, 1))) == pytest.approx([-10.0])
    w = Reward.from_warmup(np.array([1.0, 2.0, 3.0]))
    assert w.q_ref == 2.0 and w.lam == pytest.approx(1.0 / np.sqrt(2.0 / 3.0))
    F = np.array([[0.3, 5.0], [0.1, 9.0]])  # sensitivity (minimised) first
    assert reward_quality(r18_problem, F) == pytest.approx([-0.3, -0.1])
    assert OBJECTIVES["accuracy"][1]  # accuracy enters F negated: its reward quality is itself


# -- any stable-baselines3 off-policy agent learns on the env ------------------------------------
@pytest.mark.parametrize("agent", ["TD3", "SAC"])
def test_a_stable_baselines3_agent_learns_on_the_env(r18_problem, agent):
    import stable_baselines3 as sb3

    env = PrecisionEnv(r18_problem)
    steps = env.tables.n_groups
    model = getattr(sb3, agent)("MlpPolicy", env, learning_starts=steps, batch_size=16,
                                buffer_size=1000, policy_kwargs={"net_arch": [16, 16]},
                                device="cpu", seed=0)
    model.learn(total_timesteps=3 * steps)
    assert model.num_timesteps == 3 * steps
    action, _ = model.predict(env.reset(seed=0)[0], deterministic=True)
    assert env.action_space.contains(action.astype(np.float32))

"""NEMO's local improvement of the archive: the additive model against hand-made additive and
non-additive outputs, the move kernel against a brute-force reference, the proposals, and
what it buys against the ILP optimum."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hwq.search.local_moves import (
    AdditiveModel,
    DecisionArchive,
    LocalImprover,
    best_moves,
    hv_contributions,
)

from .conftest import DEVICE, HAWQ18, HAWQ50


def _additive(rng: np.random.Generator, G: int, K: int, k: int):
    theta = rng.normal(size=(G, K, k))
    C = rng.integers(0, K, size=(80, G))
    Y = theta[np.arange(G)[None, :], C].sum(axis=1)  # [n, k]
    return theta, C, Y


def test_additive_model_is_exact_on_additive_outputs():
    rng = np.random.default_rng(0)
    theta, C, Y = _additive(rng, 6, 3, 2)
    m = AdditiveModel(6, 3, 2)
    m.add(C[:50], Y[:50])
    m.add(C[50:], Y[50:])  # accumulated in two batches
    m.fit()
    assert m.rows == 80
    assert np.allclose(m.r2, 1.0, atol=1e-9)
    # the model's choice values are defined up to a constant per group; the deltas are exact
    delta = m.theta - m.theta[:, :1]
    assert np.allclose(delta, theta - theta[:, :1], atol=1e-9)
    # rows with a stand-in for a non-finite cost are left out
    m.add(C[:1], np.full((1, 2), 1e30))
    assert m.rows == 80


def test_additive_model_reports_a_poor_fit():
    rng = np.random.default_rng(1)
    C = rng.integers(0, 2, size=(200, 5))
    Y = (C.sum(axis=1) % 2).astype(float)[:, None]  # parity: no additive part at all
    m = AdditiveModel(5, 2, 1)
    m.add(C, Y)
    m.fit()
    assert m.r2[0] < 0.1


def _reference(Cp, Yp, theta, Fa, lo, span, n_obj, top):
    """Every single move and swap of each parent, scored in Python (Fa unsorted)."""
    P, G = Cp.shape
    K = theta.shape[1]
    out = []
    for p in range(P):
        singles = [(g, c) for g in range(G) for c in range(K) if c != Cp[p, g]]
        cands = [((g, c), None) for g, c in singles]
        cands += [(a, b) for a, b in itertools.combinations(singles, 2) if a[0] != b[0]]
        scored = []
        for a, b in cands:
            y = Yp[p].copy()
            for mv in (a, b):
                if mv is not None:
                    y += theta[mv[0], mv[1]] - theta[mv[0], Cp[p, mv[0]]]
            if (y[n_obj:] > 1e-12).any():
                continue
            f = (y[:n_obj] - lo) / span
            gain = min(max(Fa[i] - f) for i in range(len(Fa)))
            scored.append(gain)
        out.append(sorted(scored, reverse=True)[:top])
    return out


def test_best_moves_equal_a_brute_force_scoring():
    rng = np.random.default_rng(2)
    G, K = 5, 3
    theta = rng.normal(size=(G, K, 3))  # two objectives and one constraint
    Cp = rng.integers(0, K, size=(4, G))
    Yp = theta[np.arange(G)[None, :], Cp].sum(axis=1)
    Yp[:, 2] = -0.5  # every parent meets the constraint, with a margin of 0.5
    Fa = rng.random((7, 2))
    lo, span = np.zeros(2), np.ones(2)
    order = np.argsort(Fa[:, 0], kind="stable")
    moves, gains = best_moves(Cp, Yp, theta, Fa[order], lo, span, 2, 1000, 4)
    ref = _reference(Cp, Yp, theta, Fa, lo, span, 2, 4)
    for p in range(len(Cp)):
        found = [g for g in gains[p] if np.isfinite(g)]
        assert np.allclose(found, ref[p], atol=1e-12)
        for (g1, c1, g2, c2), gain in zip(moves[p], gains[p]):
            if not np.isfinite(gain):
                continue
            assert c1 != Cp[p, g1] and (g2 < 0 or (g2 != g1 and c2 != Cp[p, g2]))
            # the move's constraint output stays met
            y = Yp[p, 2] + theta[g1, c1, 2] - theta[g1, Cp[p, g1], 2]
            if g2 >= 0:
                y += theta[g2, c2, 2] - theta[g2, Cp[p, g2], 2]
            assert y <= 1e-12


def test_proposals_are_new_and_beyond_the_archive():
    rng = np.random.default_rng(3)
    G, K = 8, 2
    theta, C, Y = _additive(rng, G, K, 2)
    imp = LocalImprover(G, K, 2, 0)
    imp.observe(C, Y, np.zeros((len(C), 0)), np.ones(len(C), bool))
    assert imp.ready and len(imp.archive)
    seen = {tuple(c) for c in C}
    asked: list[tuple] = []

    def is_new(c):
        asked.append(tuple(c))
        if tuple(c) in seen:
            return False
        seen.add(tuple(c))
        return True

    out = imp.propose(5, rng, is_new)
    assert len(out) == 5 and len({tuple(c) for c in out}) == 5
    assert all(tuple(c) in asked for c in out)
    assert not ({tuple(c) for c in out} & {tuple(c) for c in C})
    # the model is exact here: the first proposal (the best predicted move) is truly not
    # dominated by any archive point
    true = theta[np.arange(G)[None, :], out].sum(axis=1)
    dominated = [(imp.archive.F[:, :2] <= f).all(axis=1).any() for f in true]
    assert not dominated[0]


def test_observe_says_which_rows_entered_the_archive():
    imp = LocalImprover(3, 2, 2, 0)
    none = np.zeros((0, 0))
    C = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    F = np.array([[1.0, 3.0], [3.0, 1.0], [2.0, 2.0]])
    entered = imp.observe(C, F, none.reshape(3, 0), np.ones(3, bool))
    assert entered.tolist() == [True, True, True]
    C2 = np.array([[1, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]])
    F2 = np.array([
        [2.0, 2.0],  # repeats an archive vector: not new
        [0.5, 3.0],  # dominates (1, 3): enters
        [2.5, 2.5],  # dominated by (2, 2)
        [1.5, 1.5],  # dominates (2, 2): enters
        [0.1, 0.1],  # would dominate everything, but infeasible
    ])
    feasible = np.array([True, True, True, True, False])
    entered = imp.observe(C2, F2, np.zeros((5, 0)), feasible)
    assert entered.tolist() == [False, True, False, True, False]
    assert sorted(map(tuple, imp.archive.F)) == [(0.5, 3.0), (1.5, 1.5), (3.0, 1.0)]


def test_hv_contributions_two_objectives_by_hand():
    # normalised over the points: x 0, 0.25, 1 and y 1, 0.5, 0; reference 1.1
    F = np.array([[4.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    c = hv_contributions(F)
    # (0, 1): right gap 0.25, up gap 1.1 - 1 = 0.1; (0.25, 0.5): 0.75 x 0.5; (1, 0): 0.1 x 0.5
    assert np.allclose(c, [0.1 * 0.5, 0.25 * 0.1, 0.75 * 0.5])


def test_hv_contributions_three_objectives_by_hand():
    # each point's exclusive volume, counted on a grid of 0.01 cells up to the reference 1.1
    F = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.5, 0.5, 0.5]])
    c = hv_contributions(F)
    h = 0.01
    g = np.arange(h / 2, 1.1, h)
    X, Y, Z = np.meshgrid(g, g, g, indexing="ij")
    P = np.stack([X.ravel(), Y.ravel(), Z.ravel()], axis=1)
    dom = (F[None, :, :] <= P[:, None, :]).all(axis=2)  # [cells, points]
    only = dom & (dom.sum(axis=1) == 1)[:, None]
    grid = only.sum(axis=0) * h**3
    assert np.allclose(c, grid, atol=2e-3)
    # the centre (0.5, 0.5, 0.5): its box 0.6^3 less the corners the others share with it
    # (three 0.6 x 0.1 x 0.1 slabs, by inclusion-exclusion 0.018 - 3 x 0.001 + 0.001)
    assert c[3] == pytest.approx(0.6**3 - 0.016, abs=1e-9)


def test_archive_pick_prefers_large_contributions():
    a = DecisionArchive(2, 2)
    a.set(np.array([[0, 0], [1, 1], [2, 2]]), np.array([[0.0, 1.0], [0.5, 0.45], [1.0, 0.0]]))
    c = a.contributions()
    rng = np.random.default_rng(0)
    pick = a.pick(3000, rng)
    counts = np.bincount(pick, minlength=3) / 3000
    # binary tournament: the largest wins 1 - (2/3)^2 = 5/9 of draws, the smallest 1/9
    order = np.argsort(c)
    assert counts[order[2]] == pytest.approx(5 / 9, abs=0.03)
    assert counts[order[0]] == pytest.approx(1 / 9, abs=0.03)
    a.set(a.C[:2], a.F[:2])  # a new archive: contributions recomputed
    assert len(a.contributions()) == 2


def _hawq_gap(run, hawq_path, ratio: float) -> float:
    import pandas as pd

    from hwq.search.baselines import solve_ilp_arrays

    h = pd.read_csv(hawq_path).set_index("layer")
    names = run.layers.names
    idx = np.array([i for i, n in enumerate(names) if n in h.index])
    layers = [names[i] for i in idx]
    sens = np.stack([h.loc[layers, "hutchinson_trace_per_param"].to_numpy()
                     * h.loc[layers, f"delta_w{b}_sq"].to_numpy() for b in (4, 8)], axis=1)
    macs = h.loc[layers, "macs_per_image"].to_numpy(dtype=float)
    bops = np.stack([macs * 16.0, macs * 64.0], axis=1)
    budget = bops[:, 0].sum() + ratio * (bops[:, 1].sum() - bops[:, 0].sum())
    choice = solve_ilp_arrays(sens, [(bops, budget)])
    opt = sens[np.arange(len(idx)), choice].sum()
    w = np.stack([np.asarray(x) for x in run.pareto["w_bits"]])[:, idx]
    col = (w == 8).astype(int)
    fb = bops[np.arange(len(idx))[None, :], col].sum(axis=1)
    fs = sens[np.arange(len(idx))[None, :], col].sum(axis=1)
    return float((fs[fb <= budget * (1 + 1e-12)].min() - opt) / opt * 100.0)


def _r18_search(tmp_path, r18_layers, **kw):
    import hwq.search as hs

    return hs(device=DEVICE, model=r18_layers, sensitivity=str(HAWQ18),
              objectives="sensitivity,bops", bits="4x4,8x8", pin="first,last=8",
              generations=12, population=20, seed=1, verify_top=0,
              output_dir=str(tmp_path / ("run" + "".join(kw))), **kw)


def test_local_improvement_reaches_the_ilp_optimum_sooner(tmp_path, r18_layers):
    local = _r18_search(tmp_path, r18_layers)
    plain = _r18_search(tmp_path, r18_layers, no_local=True)
    assert local.meta["evaluations"] == plain.meta["evaluations"] == 240
    assert local.candidates["policy_id"].is_unique and plain.candidates["policy_id"].is_unique
    gaps = {r: (_hawq_gap(local, HAWQ18, r), _hawq_gap(plain, HAWQ18, r))
            for r in (0.25, 0.5, 0.75)}
    assert all(g[0] <= g[1] for g in gaps.values()), gaps
    assert sum(g[0] for g in gaps.values()) < sum(g[1] for g in gaps.values()), gaps
    # the ablation's repeats go to random single moves: still labelled local, never guided
    assert local.config["resolved"]["nemo"]["local"] is True
    assert plain.config["resolved"]["nemo"]["local"] is False


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_resnet50_bops_front_within_two_percent_of_the_ilp(tmp_path, seed):
    """Issue 16's target: at 5,000 evaluations every seed's front is within 2 % of the ILP
    optimum at BOPs budgets 0.25 / 0.5 / 0.75."""
    import hwq.search as hs
    from hwq.model_source import load_graph

    layers = tmp_path / "r50.parquet"
    load_graph("resnet50").to_parquet(layers)
    run = hs(device=DEVICE, model=str(layers), sensitivity=str(HAWQ50),
             objectives="sensitivity,bops", bits="4x4,8x8", pin="first,last=8",
             generations=100, population=50, seed=seed, verify_top=0,
             output_dir=str(tmp_path / "run"))
    assert run.meta["evaluations"] == 5000
    for ratio in (0.25, 0.5, 0.75):
        assert _hawq_gap(run, HAWQ50, ratio) <= 2.0


def test_same_seed_same_candidates_whatever_the_thread_count(tmp_path, r18_layers):
    from threadpoolctl import threadpool_limits

    import hwq.search as hs

    opts = dict(device=DEVICE, model=r18_layers, sensitivity=str(HAWQ18),
                objectives="sensitivity,bops", bits="4x4,8x8", pin="first,last=8",
                generations=8, population=20, seed=5, verify_top=0)
    free = hs(output_dir=str(tmp_path / "free"), **opts)
    with threadpool_limits(limits=1):
        one = hs(output_dir=str(tmp_path / "one"), **opts)
    assert (free.species["species"] == "local").any()
    assert (free.species.query("species == 'local'")["size"] > 0).sum() >= 4
    assert list(free.candidates["policy_id"]) == list(one.candidates["policy_id"])

"""NEMO's pieces: species decoding and variation, R2, UCB allocation, and a whole search."""

from __future__ import annotations

import numpy as np
import pytest

from hwq.search.encoding import Encoding
from hwq.search.indicators import nondominated_mask, r2_indicator, weight_vectors
from hwq.search.nemo import allocate, archive_yield, ucb_of
from hwq.search.species import ALL_SPECIES, SpeciesParams, make_species, parse_species

from .conftest import DEVICE, HAWQ18

PRODUCT = [(w, a) for w in (2, 4, 8) for a in (2, 4, 8)]


def test_direct_species_round_and_floor(digits_graph):
    enc = Encoding(digits_graph, PRODUCT)
    rnd, flo = make_species(["direct-round", "direct-floor"], enc, SpeciesParams(), "dataflow")
    genes = np.full((1, enc.n_var), 3.9)
    assert (rnd.decode(genes) == 1).all()  # 3.9 -> nearest width 4 (index 1)
    assert (flo.decode(genes) == 0).all()  # floor -> 2
    genes[:] = 7.0
    assert (rnd.decode(genes) == 2).all() and (flo.decode(genes) == 1).all()
    genes[:] = 8.0
    assert (flo.decode(genes) == 2).all()
    rng = np.random.default_rng(0)
    pop = rnd.init(10, rng)
    kids = rnd.offspring(pop, np.arange(10), 10, rng)
    assert kids.shape == pop.shape
    assert (kids >= rnd.xl - 1e-12).all() and (kids <= rnd.xu + 1e-12).all()


@pytest.mark.parametrize("name", ["gnn-gcn", "gnn-gat", "gnn-unet"])
def test_gnn_species_decode_and_vary(digits_graph, name):
    enc = Encoding(digits_graph, PRODUCT, tie="same-input")
    (sp,) = make_species([name], enc, SpeciesParams(), "dataflow")
    rng = np.random.default_rng(0)
    W = sp.init(6, rng)
    assert W.shape == (6, sp.n_params) and W.dtype == np.float32
    X = sp.decode(W)
    assert X.shape == (6, enc.n_var)
    assert (X >= 0).all() and (X <= enc.xu).all()
    assert np.array_equal(X, sp.decode(W.copy()))  # deterministic argmax
    kids = sp.offspring(W, np.arange(6), 6, rng)
    assert kids.shape == W.shape
    # mutation relative to the weights' magnitude: mostly small relative steps, rare large ones
    rel = []
    for _ in range(20):
        m = sp.revary(W[:1], rng)[0]
        changed = m != W[0]
        rel.append(np.abs(m - W[0])[changed] / np.maximum(np.abs(W[0][changed]), 1e-6))
    rel = np.concatenate(rel)
    assert len(rel) > 0
    assert np.median(rel) < 0.3
    assert np.mean(rel > 2.0) < 0.2


def test_chain_graph_mode(digits_graph):
    from hwq.search.gnn import edge_index

    e = edge_index(digits_graph, "chain")
    n = len(digits_graph)
    assert e.shape == (2, 2 * (n - 1))
    assert edge_index(digits_graph, "dataflow").shape[1] == 2 * len(digits_graph.edges)


def test_species_option_groups():
    assert parse_species("direct") == ["direct-round", "direct-floor"]
    assert parse_species("gnn") == ["gnn-gcn", "gnn-gat", "gnn-unet"]
    assert parse_species("gnn-gcn") == ["gnn-gcn"]
    assert len(parse_species(None)) == 5


def test_r2_indicator():
    w = weight_vectors(2)
    assert r2_indicator(np.zeros((1, 2)), w) == 0.0  # the ideal point itself
    assert r2_indicator(np.zeros((0, 2)), w) == 1.0  # an empty share: the worst
    near = r2_indicator(np.array([[0.1, 0.1]]), w)
    far = r2_indicator(np.array([[0.5, 0.5]]), w)
    both = r2_indicator(np.array([[0.1, 0.1], [0.5, 0.5]]), w)
    assert 0 < near < far and both == pytest.approx(near)
    assert nondominated_mask(np.array([[1, 2], [2, 1], [2, 2]])).tolist() == [True, True, False]


def test_allocation_follows_utility():
    # synthetic species of fixed quality: better R2 (higher utility) gets more members
    evals = np.array([40, 40, 40, 40])
    ucb = ucb_of(np.array([0.9, 0.5, 0.2, 0.1]), evals, 0.5)
    alloc = allocate(40, ucb, 2)
    assert alloc.sum() == 40 and (alloc >= 2).all()
    assert list(alloc) == sorted(alloc, reverse=True) and alloc[0] > alloc[-1]
    # exploration: a species with few evaluations gets a bonus
    ucb2 = ucb_of(np.array([0.5, 0.5]), np.array([100, 5]), 0.5)
    assert ucb2[1] > ucb2[0]
    assert list(allocate(10, np.ones(5), 2)) == [2, 2, 2, 2, 2]


def test_archive_yield_and_discounted_ucb():
    # a species without children yet scores as the best one; rates are hits / pulls
    v = archive_yield(np.array([2.0, 0.0, 0.0]), np.array([10.0, 5.0, 0.0]))
    assert v.tolist() == [0.2, 0.0, 0.2]
    # discounted counts below one count as one evaluation in the exploration term
    ucb = ucb_of(np.array([0.2, 0.0, 0.1]), np.array([10.0, 0.5, 4.0]), 0.1)
    total = 10.0 + 1.0 + 4.0
    want = np.array([1.0, 0.0, 0.5]) + 0.1 * np.sqrt(np.log(total) / np.array([10.0, 1.0, 4.0]))
    assert np.allclose(ucb, want, rtol=0, atol=1e-12)


def _entered_by_hand(cands, objectives):
    """Per candidate, whether it entered the archive: feasible, a new objective vector, and
    not dominated by any candidate evaluated up to its generation (those before it in its
    batch included)."""
    F = cands[objectives].to_numpy(dtype=float)
    feasible = cands["feasible"].to_numpy()
    out = np.zeros(len(cands), bool)
    for g in sorted(cands["generation"].unique()):
        upto = np.flatnonzero((cands["generation"] <= g).to_numpy() & feasible)
        for i in np.flatnonzero((cands["generation"] == g).to_numpy() & feasible):
            others = F[upto[upto != i]]
            earlier = upto[upto < i]
            dominated = ((others <= F[i]).all(axis=1) & (others < F[i]).any(axis=1)).any()
            repeat = (F[earlier] == F[i]).all(axis=1).any()
            out[i] = not dominated and not repeat
    return out


def test_nemo_search_species_mechanics(tmp_path, r18_layers):
    import hwq.search as hs

    run = hs(
        device=DEVICE,
        model=r18_layers,
        sensitivity=str(HAWQ18),
        objectives="sensitivity,bops",
        bits="4x4,8x8",
        pin="first,last=8",
        generations=8,
        population=25,
        seed=3,
        output_dir=str(tmp_path / "run"),
        verify_top=0,
    )
    every = run.species
    names = {"direct-round", "direct-floor", "gnn-gcn", "gnn-gat", "gnn-unet"}
    assert set(every["species"]) == names | {"local"}
    # population x generations candidates, every one a new policy
    cands = run.candidates
    assert len(cands) == run.meta["evaluations"] == 8 * 25 and cands["policy_id"].is_unique
    counts = cands.groupby(["generation", "species"]).size()
    per_gen = every.set_index(["generation", "species"])["size"]
    assert (per_gen[per_gen > 0] == counts.reindex(per_gen[per_gen > 0].index)).all()
    assert (every.groupby("generation")["size"].sum() == 25).all()
    sp = every[every["species"] != "local"]
    # every species contributes to the front in some generation
    assert (sp.groupby("species")["front_members"].max() > 0).all()
    # sizes change, and follow the UCB score: the discounted share of each species' children
    # that entered the archive (recomputed here from the candidates) plus the exploration term
    sizes = sp.pivot(index="generation", columns="species", values="size")
    assert sizes.nunique().max() > 1
    order = list(ALL_SPECIES)  # the default species, in their order
    cands = cands.reset_index(drop=True)
    entered = _entered_by_hand(cands, ["sensitivity", "bops"])
    hits, pulls = np.zeros(5), np.zeros(5)
    ucb = sp.pivot(index="generation", columns="species", values="ucb")[order]
    for g in sorted(cands["generation"].unique()):
        mine = cands["generation"] == g
        made = cands[mine].groupby("species").size().reindex(order, fill_value=0).to_numpy()
        hit = cands[mine & entered].groupby("species").size().reindex(order, fill_value=0)
        hits = 0.8 * hits + hit.to_numpy()
        pulls = 0.8 * pulls + made
        want = ucb_of(archive_yield(hits, pulls), pulls, 0.1)
        assert np.allclose(ucb.loc[g].to_numpy(), want, rtol=0, atol=1e-9), g
    agree = [
        np.corrcoef(ucb.loc[g].to_numpy(), sizes.loc[g + 1, order].to_numpy())[0, 1]
        for g in sizes.index[:-1]
        if ucb.loc[g].std() > 0 and sizes.loc[g + 1].std() > 0
    ]
    assert np.mean(agree) > 0.3
    # the archive is non-dominated and feasible
    front = run.pareto
    assert front["feasible"].all()
    F = front[["sensitivity", "bops"]].to_numpy()
    assert nondominated_mask(F).all()
    assert front["policy_id"].is_unique


def test_direct_genes_of_round_trip(digits_graph):
    enc = Encoding(digits_graph, PRODUCT)
    rng = np.random.default_rng(2)
    X = rng.integers(enc.xl, enc.xu + 1, size=(30, enc.n_var))
    for sp in make_species(["direct-round", "direct-floor"], enc, SpeciesParams(), "dataflow"):
        assert np.array_equal(sp.decode(sp.genes_of(X)), X)


def test_ablations_fixed_sizes_one_species_chain(tmp_path, r18_layers):
    import hwq.search as hs

    common = dict(
        device=DEVICE,
        model=r18_layers,
        sensitivity=str(HAWQ18),
        objectives="sensitivity,bops",
        bits="4x4,8x8",
        pin="first,last=8",
        generations=4,
        population=15,
        verify_top=0,
    )
    fixed = hs(**common, fixed_sizes=True, output_dir=str(tmp_path / "fixed"))
    sizes = fixed.species.pivot(index="generation", columns="species", values="size")
    # equal slots (3 of 15 each; from generation 3 on, 12 of 15 while the local improvement
    # takes 3): a species makes at most its slots, the children that repeat a policy go to
    # local moves, and every generation evaluates the whole population
    assert (sizes.drop(columns="local") <= 3).all().all()
    assert (sizes.sum(axis=1) == 15).all()
    assert (sizes.loc[3:, "local"] >= 3).all()
    one = hs(
        **common,
        species="gnn-unet",
        graph="chain",
        gnn_features="graph",
        output_dir=str(tmp_path / "one"),
    )
    assert set(one.candidates["species"]) <= {"gnn-unet", "local"}
    assert one.candidates["policy_id"].is_unique
    assert one.config["resolved"]["nemo"]["graph_mode"] == "chain"

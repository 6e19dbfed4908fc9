"""NEMO — neuroevolution-enhanced multi-objective optimisation (Miret et al., GECCO 2022) as a
pymoo `Algorithm`.

The population (`pop_size`, the total over species) is split into structurally distinct species
(`hwq.search.species`): direct-search species and GNN species. One generation:

1. every species s breeds `alloc[s]` offspring from its own members only (binary tournament on
   the global order, then the species' own crossover and mutation; a GNN species decodes all
   its children in one batched pass); children that decode to an already evaluated policy (or
   one bred this generation) are varied again together, at most `dedup_retries` times;
2. the local improvement (`hwq.search.local_moves`) adds `n_local` candidates, and takes the
   place of every child that still repeats a policy: so each generation evaluates exactly
   `pop_size` new policies, `pop_size` x generations in all;
3. the offspring of all species and the local moves are evaluated together (the problem is
   vectorised); every evaluation feeds the local improvement's additive model and archive;
4. the species' pool (survivors + offspring; local moves set aside, so that the species compete
   among themselves) is ranked as one population by constrained non-dominated sorting with
   crowding distance;
5. each species' share of that first front is scored with the R2 indicator against the ideal
   point (objectives normalised to [0, 1] over the pool's feasible members; Das-Dennis weight
   vectors; an empty share scores 1.0, the worst) and reported (`r2`);
6. species are resized by UCB (after CERL's rule) on a utility v: by default (`utility`
   ``yield``) the share of the species' evaluated children that entered the archive (a new
   objective vector no evaluated policy dominates), counts discounted by `discount` a
   generation (discounted UCB, Garivier & Moulines 2011); ``share`` (v = 1 - R2) and
   ``contribution`` score what a species holds, survivors included, so a species living on
   old front members kept its slots while adding nothing (digits, 100 x 50: direct-floor held
   ~18 of 100 slots for 15 generations and none of its ~200 children entered the archive;
   NEMO's median hypervolume at 5,000 fell behind NSGA-II's). v is rescaled to [0, 1] over
   the species (best 1, worst 0), ``ucb_s = v_s + ucb_c * sqrt(ln(sum_k y_k) / y_s)`` with
   y_s the (discounted) evaluations of species s, and the population less the next
   generation's local moves is shared out as `min_size` each plus the rest in proportion to
   ucb (largest remainder, deterministic where CERL samples a roulette wheel). CERL normalises
   v by its sum, which with five species lets the exploration term swamp the utility and
   freezes the sizes; the range rescaling keeps sizes following v. `fixed_sizes` keeps equal
   sizes (ablation);
7. each species keeps its best `alloc[s]` members by the global order (local moves are not
   members of any species: what they find lives on in the archives).

Two hwq extensions (NEMO is silent about both):

* migrants (`migrants`, 0 turns it off): each generation a direct species also draws `migrants`
  members of the archive (every non-dominated policy evaluated, found by any species or local
  move; binary tournaments on each member's exclusive hypervolume contribution, the volume
  only it dominates, `local_moves.hv_contributions`) into its parents, ranked first (their
  decisions are exactly representable as direct genes), so that SBX and polynomial mutation
  refine what the GNN species and the local moves found; GNN species breed only from their
  own members;
* local improvement of the archive (`local`, `--no-local` turns it off): once its additive model
  has seen twice as many policies as it has (group, choice) values, `local_share` of every
  generation are the best predicted single-layer moves and swaps of archive members. On table
  objectives (sensitivities, BOPs, memory) the model is exact, and this is what brings every
  seed's front to the integer-program optimum (benchmarks/search_quality.py; tests in
  tests/search/test_nemo_local.py). The candidates are logged as species `local`, with a
  `local` row in species.parquet (its share of the whole pool's front; ucb empty).

The global Pareto archive is kept by the driver (every evaluated candidate counts). All
randomness comes from the algorithm's generator, seeded once by pymoo from the run's seed (GNN
initialisation included). The algorithm pickles (without its problem and last offspring) for
checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pymoo.core.algorithm import Algorithm
from pymoo.core.population import Population

from hwq.errors import UserError
from hwq.search.algorithm_base import CheckpointSafe
from hwq.search.indicators import (
    front_stats,
    order_by_rank,
    r2_indicator,
    weight_vectors,
)
from hwq.search.local_moves import LocalImprover
from hwq.search.species import (
    ALL_SPECIES,
    Species,
    SpeciesParams,
    make_species,
    parse_species,
)


@dataclass
class NemoParams:
    """NEMO's own constants (NEMO does not publish them; these are documented defaults)."""

    species: list[str] = field(default_factory=lambda: list(ALL_SPECIES))
    fixed_sizes: bool = False  # ablation: equal species sizes, no UCB
    min_size: int = 1  # smallest species size (a species of one still mutates; 2 was tried:
    # median digits hypervolume 1.1654 vs 1.1730 with 1, benchmarks/search_quality.py seeds 0-4)
    migrants: int = 8  # archive members joining a direct species' parents each generation
    # (an hwq extension: direct species refine what the GNNs and the local moves found; 0 =
    # off). Drawn from other species' first front in the population before, the local moves'
    # finds (most of the digits front at 5,000: 66-88 of ~115 points) never bred, and the front's
    # cheap corner (accuracy < 0.5) stayed thin: NSGA-II's lead there was 70-90 % of its
    # hypervolume lead. Tournaments on crowding distance, not on the hypervolume contribution,
    # left it thin: in four objectives crowding ranks a cheap-corner point worth 0.002 of
    # hypervolume (one policy NSGA-II found on seeds 0 and 3 and NEMO never evaluated) like any
    # other; by contribution, NEMO's digits median at 5,000 over seeds 0-4 went from 1.2643 to
    # 1.26573 (NSGA-II 1.26569: ahead on seeds 0, 2, 4, behind on 1 and 3; 1,000: 1.2527 vs
    # 1.2398), the ILP gaps on both ResNets stayed 0 % (benchmarks/search_budgets.py)
    ucb_c: float = 0.1  # UCB exploration coefficient (0.5 tried: budget followed R2 too slowly)
    utility: str = "yield"  # yield: the discounted share of the species' children that entered
    # the archive; share: 1 - R2 of the species' share of the front; contribution: how much R2
    # worsens without the species' front members (share and contribution score the members a
    # species holds, survivors included, not what it adds: on digits at 100 x 50 direct-floor
    # kept ~18 of 100 slots for 15 generations on old front members while none of its ~200
    # children entered the archive)
    discount: float = 0.8  # yield: weight of a generation's counts one generation later
    # (discounted UCB, Garivier & Moulines 2011: a species' worth changes as the front fills)
    r2_weights: int = 100  # about this many Das-Dennis weight vectors for R2
    local: bool = True  # False (--no-local): no model-guided moves; repeats are replaced by
    # random single-layer moves of archive members
    local_share: float = 0.2  # share of each generation's evaluations given to the local
    # improvement of the archive (hwq.search.local_moves) once its additive model is ready;
    # children that still repeat an evaluated policy are replaced by local moves as well
    local_pairs: int = 32  # swaps are formed among at most this many single moves per parent
    graph_mode: str = "dataflow"  # GNN input edges: dataflow or chain (NEMO's original)
    gnn_features: str = "graph+costs"  # node features: graph (NEMO's shape features) or
    # graph+costs (plus each choice's per-layer costs and sensitivity, gnn.choice_features)
    ops: SpeciesParams = field(default_factory=SpeciesParams)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, config: Any) -> NemoParams:
        """The parameters a search configuration sets (the rest at their defaults)."""
        return cls(
            species=parse_species(config.species),
            fixed_sizes=bool(config.fixed_sizes),
            local=not bool(config.no_local),
            graph_mode=config.graph,
            gnn_features=config.gnn_features,
        )


def allocate(pop_size: int, scores: np.ndarray, min_size: int) -> np.ndarray:
    """Share `pop_size` slots: `min_size` each, the rest in proportion to `scores` (largest
    remainder, ties to the earlier species)."""
    s = len(scores)
    base = np.full(s, min_size, dtype=np.int64)
    rest = pop_size - base.sum()
    scores = np.clip(np.nan_to_num(np.asarray(scores, dtype=np.float64)), 0.0, None)
    share = scores / scores.sum() if scores.sum() > 0 else np.full(s, 1.0 / s)
    exact = share * rest
    floor = np.floor(exact).astype(np.int64)
    left = int(rest - floor.sum())
    order = sorted(range(s), key=lambda i: (-(exact[i] - floor[i]), i))
    for i in order[:left]:
        floor[i] += 1
    return base + floor


LOCAL = "local"  # the species column of the local improvement's candidates


class NEMO(CheckpointSafe, Algorithm):
    """Species-based neuroevolution over direct-search and GNN species (see module doc)."""

    def __init__(self, pop_size: int = 20, params: NemoParams | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.pop_size = int(pop_size)
        self.params = params or NemoParams()
        self.species_list: list[Species] = []
        self.stats: pd.DataFrame = pd.DataFrame()

    # -- set-up ----------------------------------------------------------------------------------
    def _setup(self, problem: Any, **kwargs: Any) -> None:
        p = self.params
        names = list(p.species)
        if self.pop_size < len(names):
            raise UserError(
                f"--population {self.pop_size}: NEMO needs at least one member per species "
                f"({len(names)} species: {', '.join(names)})"
            )
        self.min_size = max(1, min(p.min_size, self.pop_size // len(names)))
        if p.gnn_features not in ("graph", "graph+costs"):
            raise UserError(
                f"--gnn-features: expected graph or graph+costs, found {p.gnn_features!r}"
            )
        extra = None
        if p.gnn_features == "graph+costs" and any(n.startswith("gnn-") for n in names):
            from hwq.search.gnn import choice_features

            extra = choice_features(problem)
        self.species_list = make_species(names, problem.encoding, p.ops, p.graph_mode, extra)
        s = len(self.species_list)
        self.alloc = allocate(self.pop_size, np.ones(s), self.min_size)
        self.evals = np.zeros(s, dtype=np.int64)
        self.hits = np.zeros(s)  # discounted children that entered the archive, per species
        self.pulls = np.zeros(s)  # discounted children evaluated, per species
        self.entered = np.zeros(s + 1, dtype=np.int64)  # the last batch's, species then local
        self.seen: set[bytes] = set()
        self.key_dtype = np.uint8 if int(np.max(problem.xu, initial=0)) < 256 else np.int64
        self.weights = weight_vectors(problem.n_obj, p.r2_weights)
        enc = problem.encoding
        self.local = LocalImprover(enc.n_groups, enc.n_choices, problem.n_obj,
                                   problem.n_ieq_constr - 1, pair_limit=p.local_pairs,
                                   guided=p.local)
        self.n_local = 0  # local moves planned for the next generation

    @property
    def species_names(self) -> list[str]:
        return [sp.name for sp in self.species_list]

    @property
    def group_names(self) -> list[str]:
        """The species, then `local` (the local improvement's moves, `LOCAL`)."""
        return [*self.species_names, LOCAL]

    # -- reporting (hwq.search.algorithms.ReportingAlgorithm) ------------------------------------
    def species_of(self, offspring: Population) -> list[str]:
        names = self.group_names
        return [names[s] for s in offspring.get("species").astype(np.int64)]

    def generation_stats(self, generation: int, offspring: Population) -> pd.DataFrame:
        return self.stats.drop(columns=["next_size"])

    # -- helpers ---------------------------------------------------------------------------------
    def _key(self, x: np.ndarray) -> bytes:
        """A policy's decisions as a compact key (one byte a gene where the genes fit)."""
        return np.asarray(x).astype(self.key_dtype).tobytes()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["off"] = None  # the last offspring: evaluated, in the pool and the archive
        return state

    def _make_pop(
        self, X: np.ndarray, species: np.ndarray, genomes: list[np.ndarray]
    ) -> Population:
        pop = Population.new("X", X)
        pop.set("species", species)
        for ind, g in zip(pop, genomes):
            ind.set("genome", g)
        return pop

    def _breed(
        self,
        s: int,
        n: int,
        parents: np.ndarray | None,
        order_pos: np.ndarray | None,
        taken: set[bytes],
    ) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """n children of species s (decisions X, genomes, and the rows that still repeat a
        policy): all decoded at once; children that repeat an evaluated policy, or one already
        bred this generation (`taken`, updated), are re-varied together, ever more strongly,
        at most `dedup_retries` times."""
        sp = self.species_list[s]
        rng = self.random_state
        if parents is None or len(parents) == 0:
            genomes = sp.init(n, rng)
        else:
            genomes = sp.offspring(parents, order_pos, n, rng)
        X = sp.decode(genomes)

        def repeats(rows: list[int] | range) -> list[int]:
            out = []
            for i in rows:
                k = self._key(X[i])
                if k in self.seen or k in taken:
                    out.append(i)
                else:
                    taken.add(k)
            return out

        dup = repeats(range(n))
        for attempt in range(max(self.params.ops.dedup_retries, 0)):
            if not dup:
                break
            genomes[dup] = sp.revary(genomes[dup], rng, attempt)
            X[dup] = sp.decode(genomes[dup])
            dup = repeats(dup)
        return X, genomes, dup

    # -- pymoo hooks -----------------------------------------------------------------------------
    def _initialize_infill(self) -> Population:
        return self._offspring(first=True)

    def _initialize_advance(self, infills: Population | None = None, **kwargs: Any) -> None:
        self._observe(infills)
        self._select(infills)

    def _infill(self) -> Population:
        return self._offspring(first=False)

    def _parents(self, s: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Species s's parents (genomes) and their order positions; a direct species also
        draws `migrants` archive members (`_migrants`)."""
        sp_of = self.pop.get("species").astype(np.int64)
        pos = self.pop.get("order_pos").astype(np.int64)
        mine = np.flatnonzero(sp_of == s)
        if not len(mine):
            return None, None
        parents = np.stack([self.pop[i].get("genome") for i in mine])
        order = pos[mine]
        sp = self.species_list[s]
        if self.params.migrants > 0 and not sp.is_gnn:
            X = self._migrants(self.params.migrants)
            if len(X):
                parents = np.concatenate([parents, sp.genes_of(X)])
                # archive members are in the first front of every evaluation: ranked first
                order = np.concatenate([order, np.zeros(len(X), dtype=np.int64)])
        return parents, order

    def _migrants(self, k: int) -> np.ndarray:
        """Decisions of k archive members (the local improvement's archive: every feasible,
        mutually non-dominated policy evaluated, whichever species or local move found it),
        each the winner of a binary tournament on its exclusive hypervolume contribution (the
        front's sparse parts and extremes first)."""
        a = self.local.archive
        if not len(a):
            return np.zeros((0, self.problem.n_var), dtype=np.int64)
        pick = a.pick(k, self.random_state)
        return self.problem.encoding.X_from_choice_index(a.C[pick])

    def _offspring(self, first: bool) -> Population:
        """One generation's candidates: every species' children, then the local moves; a
        child that still repeats a policy gives its place to a local move, so that every
        candidate is a new policy."""
        enc = self.problem.encoding
        Xs, species, genomes = [], [], []
        taken: set[bytes] = set()
        dups: list[int] = []
        for s, n in enumerate(self.alloc):
            parents, order = (None, None) if first else self._parents(s)
            X, G, dup = self._breed(s, int(n), parents, order, taken)
            dups += [len(species) + i for i in dup]
            Xs.append(X)
            species += [s] * int(n)
            genomes += list(G)
        X = np.concatenate(Xs)

        def is_new(c: np.ndarray) -> bool:
            k = self._key(enc.X_from_choice_index(c[None, :])[0])
            if k in self.seen or k in taken:
                return False
            taken.add(k)
            return True

        want = len(dups) + (0 if first else int(self.n_local))
        C = self.local.propose(want, self.random_state, is_new)
        moves = enc.X_from_choice_index(C) if len(C) else np.zeros((0, X.shape[1]), np.int64)
        local = len(self.species_list)
        for row, x in zip(dups, moves):  # repeats first, the planned moves after
            X[row] = x
            species[row] = local
            genomes[row] = x.astype(np.float64)
        extra = moves[len(dups):]
        if len(extra):
            X = np.concatenate([X, extra])
            species += [local] * len(extra)
            genomes += list(extra.astype(np.float64))
        pop = self._make_pop(X, np.array(species), genomes)
        self._note(pop)
        return pop

    def _advance(self, infills: Population | None = None, **kwargs: Any) -> None:
        self._observe(infills)
        self._select(Population.merge(self.pop, infills))

    def _observe(self, batch: Population) -> None:
        """Feed an evaluated batch to the local improvement (its model and archive); count,
        per species, the candidates that entered the archive."""
        G = np.asarray(batch.get("G"), dtype=np.float64).reshape(len(batch), -1)
        CV = batch.get("CV").astype(np.float64).reshape(-1)
        entered = self.local.observe(self.problem.encoding.choice_index(batch.get("X")),
                                     batch.get("F").astype(np.float64), G[:, :-1], CV <= 0)
        sp = batch.get("species").astype(np.int64)
        self.entered = np.bincount(sp[entered], minlength=len(self.species_list) + 1)

    def _note(self, pop: Population) -> None:
        for x in pop.get("X"):
            self.seen.add(self._key(x))

    # -- ranking, R2, UCB, survival --------------------------------------------------------------
    def _select(self, pool: Population) -> None:
        """Rank the species' members (local moves set aside: the species compete among
        themselves, so that R2 and UCB follow the species), size the species, keep the
        survivors; the local moves are reported by their share of the whole pool's front."""
        p = self.params
        s_count = len(self.species_list)
        all_of = pool.get("species").astype(np.int64)
        is_local = all_of == s_count
        whole = front_stats(pool.get("F").astype(np.float64),
                            pool.get("CV").astype(np.float64).reshape(-1))
        local_front = whole.front & is_local
        local_r2 = r2_indicator(whole.Fn[local_front], self.weights)
        gen_max = int(np.max(pool.get("n_gen")))
        newest_all = pool.get("n_gen") == gen_max
        local_made = int((is_local & newest_all).sum())
        pool = pool[np.flatnonzero(~is_local)]
        F = pool.get("F").astype(np.float64)
        CV = pool.get("CV").astype(np.float64).reshape(-1)
        sp_of = pool.get("species").astype(np.int64)
        n_gen = pool.get("n_gen")
        fs = front_stats(F, CV)
        rank, front, Fn = fs.rank, fs.front, fs.Fn
        order = order_by_rank(rank, fs.crowd)
        pos = np.empty(len(order), dtype=np.int64)
        pos[order] = np.arange(len(order))
        r2 = np.array(
            [r2_indicator(Fn[front & (sp_of == s)], self.weights) for s in range(s_count)]
        )
        # offspring evaluated this generation, per species (the newest members)
        newest = n_gen == gen_max
        produced = np.array([int(((sp_of == s) & newest).sum()) for s in range(s_count)])
        self.evals += produced
        self.hits = p.discount * self.hits + self.entered[:s_count]
        self.pulls = p.discount * self.pulls + produced
        if p.utility == "yield":
            util = archive_yield(self.hits, self.pulls)
            ucb = ucb_of(util, self.pulls, p.ucb_c)
        elif p.utility == "contribution":
            whole_r2 = r2_indicator(Fn[front], self.weights)
            util = np.array(
                [
                    r2_indicator(Fn[front & (sp_of != s)], self.weights) - whole_r2
                    for s in range(s_count)
                ]
            )
        else:
            util = 1.0 - r2
        if p.utility != "yield":
            ucb = ucb_of(util, self.evals, p.ucb_c)
        # the next generation's local moves, once the local improvement's model is ready
        self.n_local = 0
        if p.local and self.local.ready and p.local_share > 0:
            self.n_local = min(int(round(p.local_share * self.pop_size)),
                               self.pop_size - self.min_size * s_count)
        bred = self.pop_size - self.n_local
        if p.fixed_sizes:
            new_alloc = allocate(bred, np.ones(s_count), self.min_size)
        else:
            new_alloc = allocate(bred, ucb, self.min_size)
        generation = gen_max - 1
        self.stats = pd.DataFrame(
            {
                "generation": generation,
                "species": self.group_names,
                "size": [*produced, local_made],
                "r2": [*r2, local_r2],
                "ucb": [*ucb, np.nan],
                "front_members": [*(int((front & (sp_of == s)).sum()) for s in range(s_count)),
                                  int(local_front.sum())],
                "next_size": [*new_alloc, self.n_local],
            }
        )
        self.alloc = new_alloc
        keep: list[int] = []
        for s in range(s_count):
            mine = np.flatnonzero(sp_of == s)
            mine = mine[np.argsort(pos[mine], kind="stable")]
            keep += list(mine[: max(int(new_alloc[s]), 1)])
        keep = sorted(keep, key=lambda i: pos[i])
        survivors = pool[np.array(keep, dtype=np.int64)]
        survivors.set("order_pos", np.arange(len(keep)))
        survivors.set("rank", rank[keep])
        self.pop = survivors

    def _set_optimum(self) -> None:
        rank = self.pop.get("rank")
        self.opt = self.pop[rank == 0] if rank is not None else self.pop


def species_summary(params: NemoParams) -> str:
    return ", ".join(params.species) + (" (fixed sizes)" if params.fixed_sizes else "")


def archive_yield(hits: np.ndarray, pulls: np.ndarray) -> np.ndarray:
    """Per species, the (discounted) share of its evaluated children that entered the archive;
    a species without children yet scores as well as the best (it is tried, not starved)."""
    hits = np.asarray(hits, dtype=np.float64)
    pulls = np.asarray(pulls, dtype=np.float64)
    seen = pulls > 1e-9
    rate = np.divide(hits, pulls, out=np.zeros_like(hits), where=seen)
    best = rate[seen].max() if seen.any() else 1.0
    return np.where(seen, rate, best)


def ucb_of(utility: np.ndarray, evals: np.ndarray, c: float) -> np.ndarray:
    """UCB score per species: the utility rescaled to [0, 1] over the species (best 1, worst 0;
    all 1 when equal) plus ``c * sqrt(ln(total evaluations) / evaluations of the species)``
    (evaluations may be discounted counts; below one they count as one)."""
    v = np.asarray(utility, dtype=np.float64)
    span = v.max() - v.min()
    v = (v - v.min()) / span if span > 0 else np.ones_like(v)
    evals = np.maximum(np.asarray(evals, dtype=np.float64), 1.0)
    total = max(float(np.sum(evals)), 2.0)
    return v + c * np.sqrt(math.log(total) / evals)

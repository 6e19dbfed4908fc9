"""NEMO's species: how a member is represented, decoded to decisions and varied.

* `DirectSpecies` (``direct-round``, ``direct-floor``) — a real gene per decision, in bit space
  (product layout: a weight gene in [min, max] of the weight widths and an activation gene
  likewise; pairs layout: the index of the pair sorted by cost). Decoded to the nearest allowed
  width (round) or to the largest allowed width not above the gene (floor: a bias towards
  compression). The floor species' genes reach `floor_top` x the last gap above the widest width
  so that the widest width keeps a share. Variation: SBX (bounded) + polynomial mutation (Deb),
  pymoo's operator functions.
* `GNNSpecies` (``gnn-gcn``, ``gnn-gat``, ``gnn-unet``) — the flat weights of a torch-geometric
  network (`hwq.search.gnn`); variation within the species: SSNE-style crossover (rows of each
  weight tensor exchanged between two parents) and mutation relative to the weights' magnitude,
  with rare large ("super") mutations and resets (constants of Intel's ERL/EGRL SSNE, see
  `SpeciesParams`).

Every species draws its randomness from the generator it is handed (the algorithm's, seeded
once). Parents are chosen by binary tournament on the global (rank, crowding) order.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

DIRECT = ("direct-round", "direct-floor")
GNN = ("gnn-gcn", "gnn-gat", "gnn-unet")
ALL_SPECIES = (*DIRECT, *GNN)


@dataclass
class SpeciesParams:
    """Every constant of the species' operators (NEMO does not publish its values)."""

    sbx_eta: float = 3.0  # SBX distribution index (pymoo's integer recipe)
    sbx_prob: float = 0.9  # probability that a mating is crossed
    sbx_prob_var: float = 0.5  # per-gene crossover probability within a crossed mating
    pm_eta: float = 3.0  # polynomial mutation distribution index (pymoo's integer recipe)
    pm_prob_var: float | None = None  # per-gene mutation probability (None: 1 / n_var)
    floor_top: float = 0.5  # floor species: genes reach this fraction of the last gap above max
    gnn_hidden: int = 32  # hidden width of the GNNs
    gnn_cross_prob: float = 0.3  # probability that a GNN child is a crossover of two parents
    gnn_cross_row_frac: float = 0.3  # at most this fraction of a 2-D tensor's rows exchanged
    gnn_cross_1d_prob: float = 0.2  # probability that one entry of a 1-D tensor is exchanged
    gnn_mut_prob: float = 1.0  # probability that a GNN child is mutated
    gnn_mut_frac: float = 0.05  # at most this fraction of a tensor's entries perturbed
    gnn_mut_strength: float = 0.1  # ordinary mutation: w += N(0, (strength * |w|)^2)
    gnn_super_prob: float = 0.05  # probability of a large mutation of an entry
    gnn_super_strength: float = 10.0  # large mutation: w += N(0, (10 * |w|)^2)
    gnn_reset_prob: float = 0.02  # probability of resetting an entry to N(0, reset_std^2)
    gnn_reset_std: float = 0.1
    gnn_bias_scale: float = 0.04  # 1-D tensors (biases) are picked this much less often
    gnn_weight_limit: float = 1e6  # |w| clamp
    dedup_retries: int = 1  # re-vary (more strongly: mutation x4 per try for GNN members, x
    # (try + 1) for direct genes) the children that decode to an evaluated policy, all at once,
    # at most this many times; NEMO gives the place of a child still repeating one to a local
    # move. A GNN child escapes a repeat in ~15 % of tries (ResNet-50, 4x4/8x8), so each
    # further try bought little for a batched decode of the species (10 tries: NEMO 2.6x
    # NSGA-II's wall time; 1 try: 1.35x; the same ILP gaps, all 0 %)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tournament(order_pos: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n winners of binary tournaments; `order_pos[i]` is member i's position (lower = better)."""
    m = len(order_pos)
    a = rng.integers(0, m, size=n)
    b = rng.integers(0, m, size=n)
    return np.where(order_pos[a] <= order_pos[b], a, b)


class Species(Protocol):
    """What NEMO asks of a species: genomes [n, n_genes] (float64), decoded to the encoding's
    integer decisions, and varied within the species."""

    name: str  # one of ALL_SPECIES, logged in the `species` column
    is_gnn: bool  # a GNN species: its genomes are network weights, not decisions

    def init(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n initial genomes."""
        ...

    def decode(self, genomes: np.ndarray) -> np.ndarray:
        """Integer decisions X [n, n_var] of the encoding."""
        ...

    def offspring(
        self, parents: np.ndarray, order_pos: np.ndarray, n: int, rng: np.random.Generator
    ) -> np.ndarray:
        """n child genomes bred from `parents` (tournaments on their `order_pos`)."""
        ...

    def revary(
        self, children: np.ndarray, rng: np.random.Generator, attempt: int = 0
    ) -> np.ndarray:
        """Further variations of children [m, n_genes] that repeat evaluated policies (all at
        once); the variation grows with `attempt` (0, 1, ...)."""
        ...

    def genes_of(self, X: np.ndarray) -> np.ndarray:
        """Genomes that decode exactly to the decisions X (migrants from other species); only
        asked of species whose genomes are decisions (`is_gnn` false)."""
        ...


# -- direct search ---------------------------------------------------------------------------------
class DirectSpecies:
    is_gnn = False

    def __init__(self, name: str, encoding: Any, params: SpeciesParams) -> None:
        if name not in DIRECT:
            raise ValueError(name)
        self.name = name
        self.rounding = "floor" if name.endswith("floor") else "round"
        self.params = params
        self.mode = encoding.mode
        self.n_var = encoding.n_var
        if encoding.mode == "product":
            self.values = [
                encoding.w_choices.astype(np.float64),
                encoding.a_choices.astype(np.float64),
            ]
            per = encoding.n_groups
            self.gene_kind = np.tile([0, 1], per)
        else:
            self.values = [np.arange(len(encoding.choices), dtype=np.float64)]
            self.gene_kind = np.zeros(encoding.n_var, dtype=np.int64)
        lo = np.array([v[0] for v in self.values])
        hi = np.array([v[-1] for v in self.values])
        if self.rounding == "floor":
            gaps = np.array([(v[-1] - v[-2]) if len(v) > 1 else 1.0 for v in self.values])
            hi = hi + params.floor_top * gaps
        self.xl = lo[self.gene_kind].astype(np.float64)
        self.xu = hi[self.gene_kind].astype(np.float64)
        self.xu = np.where(self.xu > self.xl, self.xu, self.xl + 1e-9)

    def init(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.xl + rng.random((n, self.n_var)) * (self.xu - self.xl)

    def decode(self, genomes: np.ndarray) -> np.ndarray:
        g = np.asarray(genomes, dtype=np.float64).reshape(-1, self.n_var)
        X = np.empty(g.shape, dtype=np.int64)
        for k, vals in enumerate(self.values):
            cols = self.gene_kind == k
            x = g[:, cols]
            if self.rounding == "round":
                mids = (vals[1:] + vals[:-1]) / 2.0
                idx = np.searchsorted(mids, x, side="left")
            else:
                idx = np.searchsorted(vals, x + 1e-9, side="right") - 1
            X[:, cols] = np.clip(idx, 0, len(vals) - 1)
        return X

    def genes_of(self, X: np.ndarray) -> np.ndarray:
        """Genes that decode exactly to the integer decisions X (migrants from other species)."""
        X = np.asarray(X, dtype=np.int64).reshape(-1, self.n_var)
        g = np.empty(X.shape, dtype=np.float64)
        for k, vals in enumerate(self.values):
            cols = self.gene_kind == k
            g[:, cols] = vals[np.clip(X[:, cols], 0, len(vals) - 1)]
        return g

    def _mutate(self, X: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
        from pymoo.operators.mutation.pm import mut_pm

        p = self.params
        prob = p.pm_prob_var if p.pm_prob_var is not None else 1.0 / max(self.n_var, 1)
        prob = min(1.0, prob * scale)
        n = len(X)
        return mut_pm(
            X.astype(np.float64),
            self.xl,
            self.xu,
            np.full(n, p.pm_eta),
            np.full(n, prob),
            True,
            random_state=rng,
        )

    def offspring(
        self, parents: np.ndarray, order_pos: np.ndarray, n: int, rng: np.random.Generator
    ) -> np.ndarray:
        from pymoo.operators.crossover.sbx import cross_sbx

        p = self.params
        n_mat = math.ceil(n / 2)
        a = parents[tournament(order_pos, n_mat, rng)]
        b = parents[tournament(order_pos, n_mat, rng)]
        X = np.stack([a, b]).astype(np.float64)
        Q = cross_sbx(
            X,
            self.xl,
            self.xu,
            np.full((n_mat, 1), p.sbx_eta),
            p.sbx_prob_var,
            np.full((n_mat, 1), 0.5),
            random_state=rng,
        )
        crossed = rng.random(n_mat) < p.sbx_prob
        Q[:, ~crossed] = X[:, ~crossed]
        # interleave so that the first n children take one child of each mating first
        children = np.empty((2 * n_mat, self.n_var))
        children[0::2], children[1::2] = Q[0], Q[1]
        return self._mutate(children[:n], rng)

    def revary(
        self, children: np.ndarray, rng: np.random.Generator, attempt: int = 0
    ) -> np.ndarray:
        g = np.asarray(children, dtype=np.float64).reshape(-1, self.n_var)
        return self._mutate(g, rng, float(attempt + 1))


# -- GNN species -----------------------------------------------------------------------------------
class GNNSpecies:
    is_gnn = True

    def __init__(
        self,
        name: str,
        encoding: Any,
        features: np.ndarray,
        edges: np.ndarray,
        params: SpeciesParams,
    ) -> None:
        from hwq.search.gnn import GNNDecoder, tensor_slices

        if name not in GNN:
            raise ValueError(name)
        self.name = name
        self.arch = name.split("-", 1)[1]
        self.params = params
        self.mode = encoding.mode
        self.n_var = encoding.n_var
        if encoding.mode == "product":
            self.n_w, self.n_a = len(encoding.w_choices), len(encoding.a_choices)
            out_dim = self.n_w + self.n_a
        else:
            self.n_w, self.n_a = len(encoding.choices), 0
            out_dim = self.n_w
        self.decoder = GNNDecoder(self.arch, features, edges, out_dim, params.gnn_hidden)
        n_layers = features.shape[0]
        M = np.zeros((encoding.n_groups, n_layers), dtype=np.float32)
        for g, group in enumerate(encoding.groups):
            M[g, group] = 1.0 / len(group)
        self.group_matrix = M
        self.slices = tensor_slices(self.decoder.shapes)
        self.tensor_start = np.array([sl.start for sl, _ in self.slices], dtype=np.int64)
        self.tensor_size = np.array([sl.stop - sl.start for sl, _ in self.slices], dtype=np.int64)
        self.tensor_weight = np.array(
            [1.0 if len(shape) >= 2 else params.gnn_bias_scale for _, shape in self.slices]
        )

    @property
    def n_params(self) -> int:
        return self.decoder.n_params

    def init(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.decoder.init_weights(n, rng)

    def decode(self, genomes: np.ndarray) -> np.ndarray:
        logits = self.decoder.logits(
            np.asarray(genomes, dtype=np.float32).reshape(-1, self.n_params)
        )
        glog = np.einsum("gl,nlo->ngo", self.group_matrix, logits)
        if self.mode == "product":
            X = np.empty((glog.shape[0], self.n_var), dtype=np.int64)
            X[:, 0::2] = np.argmax(glog[:, :, : self.n_w], axis=2)
            X[:, 1::2] = np.argmax(glog[:, :, self.n_w :], axis=2)
            return X
        return np.argmax(glog, axis=2).astype(np.int64)

    # SSNE operators, tensor by tensor, on a batch of flat vectors at once
    def _crossover(
        self, children: np.ndarray, donors: np.ndarray, rng: np.random.Generator
    ) -> None:
        """In place: each child [m, D] takes a few rows of every 2-D tensor (and rarely one
        entry of a 1-D tensor) from its donor."""
        p = self.params
        m = len(children)
        if not m:
            return
        for sl, shape in self.slices:
            if len(shape) >= 2:
                rows = int(shape[0])
                width = int(np.prod(shape[1:]))
                k = rng.integers(0, math.ceil(p.gnn_cross_row_frac * rows) + 1, size=m)
                who = np.repeat(np.arange(m), k)[:, None]
                r = rng.integers(0, rows, size=int(k.sum()))
                cols = sl.start + r[:, None] * width + np.arange(width)[None, :]
                children[who, cols] = donors[who, cols]
            else:
                hit = np.flatnonzero(rng.random(m) < p.gnn_cross_1d_prob)
                i = rng.integers(0, shape[0], size=len(hit))
                children[hit, sl.start + i] = donors[hit, sl.start + i]

    def _mutate(self, W: np.ndarray, rng: np.random.Generator, scale: np.ndarray) -> None:
        """In place: mutate each row of W [m, D] with its strength `scale` [m] (1 ordinary).
        Each tensor of a row is picked with probability 2u·scale (u uniform; 1-D tensors
        `gnn_bias_scale` times less), and then up to `gnn_mut_frac`·scale of its entries are
        perturbed; all rows and tensors at once."""
        p = self.params
        m, t = len(W), len(self.slices)
        if not m:
            return
        scale = np.asarray(scale, dtype=np.float64)
        prob = 2.0 * rng.random((m, t)) * scale[:, None] * self.tensor_weight[None, :]
        hit = rng.random((m, t)) < prob
        frac = np.minimum(1.0, p.gnn_mut_frac * scale)
        high = np.ceil(frac[:, None] * self.tensor_size[None, :]).astype(np.int64) + 1
        k = np.where(hit, rng.integers(0, high), 0).ravel()
        n = int(k.sum())
        if not n:
            return
        who = np.repeat(np.repeat(np.arange(m), t), k)
        tensor = np.repeat(np.tile(np.arange(t), m), k)
        col = self.tensor_start[tensor] + rng.integers(0, self.tensor_size[tensor])
        r = rng.random(n)
        noise = rng.standard_normal(n)
        strength = np.minimum(p.gnn_mut_strength * scale, 1.0)[who]
        cur = W[who, col].astype(np.float64)
        new = np.where(
            r < p.gnn_super_prob,
            cur + noise * p.gnn_super_strength * np.abs(cur),
            np.where(
                r < p.gnn_super_prob + p.gnn_reset_prob,
                noise * p.gnn_reset_std,
                cur + noise * strength * np.abs(cur),
            ),
        )
        W[who, col] = np.clip(new, -p.gnn_weight_limit, p.gnn_weight_limit)

    def offspring(
        self, parents: np.ndarray, order_pos: np.ndarray, n: int, rng: np.random.Generator
    ) -> np.ndarray:
        p = self.params
        out = parents[tournament(order_pos, n, rng)].astype(np.float32)
        if len(parents) > 1:
            crossed = np.flatnonzero(rng.random(n) < p.gnn_cross_prob)
            donors = parents[tournament(order_pos, len(crossed), rng)].astype(np.float32)
            sub = out[crossed]
            self._crossover(sub, donors, rng)
            out[crossed] = sub
        mutated = np.flatnonzero(rng.random(n) < p.gnn_mut_prob)
        sub = out[mutated]
        self._mutate(sub, rng, np.ones(len(mutated)))
        out[mutated] = sub
        return out

    def revary(
        self, children: np.ndarray, rng: np.random.Generator, attempt: int = 0
    ) -> np.ndarray:
        """Mutations of strength 4**attempt of every child (a new array)."""
        out = np.asarray(children, dtype=np.float32).reshape(-1, self.n_params).copy()
        self._mutate(out, rng, np.full(len(out), float(4**attempt)))
        return out

    def genes_of(self, X: np.ndarray) -> np.ndarray:
        raise TypeError(f"{self.name}: a GNN member's weights are not written from decisions")


def make_species(
    names: list[str],
    encoding: Any,
    params: SpeciesParams,
    graph_mode: str,
    extra_features: np.ndarray | None = None,
) -> list[Species]:
    """Species objects of `names`; GNN species read the layer graph's node features plus
    `extra_features` [L, k] (e.g. `choice_features`) when given."""
    out: list[Species] = []
    features = edges = None
    for name in names:
        if name in DIRECT:
            out.append(DirectSpecies(name, encoding, params))
        elif name in GNN:
            if features is None:
                from hwq.search.gnn import edge_index, node_features

                features = node_features(encoding.graph)
                if extra_features is not None and extra_features.size:
                    features = np.concatenate(
                        [features, np.asarray(extra_features, dtype=np.float32)], axis=1
                    )
                edges = edge_index(encoding.graph, graph_mode)
            out.append(GNNSpecies(name, encoding, features, edges, params))
        else:
            from hwq.errors import UserError

            raise UserError(
                f"--species: unknown species {name!r} (known: {', '.join(ALL_SPECIES)})"
            )
    return out


def parse_species(text: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """`all`, `direct`, `gnn`, or a comma list of species names -> species names (no repeats)."""
    from hwq.errors import UserError

    if text is None:
        return list(ALL_SPECIES)
    items = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    out: list[str] = []
    for item in items:
        if not item:
            continue
        group = {"all": ALL_SPECIES, "direct": DIRECT, "gnn": GNN}.get(item, (item,))
        for name in group:
            if name not in ALL_SPECIES:
                raise UserError(
                    f"--species: unknown species {name!r} (known: all, direct, gnn, "
                    f"{', '.join(ALL_SPECIES)})"
                )
            if name not in out:
                out.append(name)
    if not out:
        raise UserError("--species: expected at least one species")
    return out

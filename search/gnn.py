"""Graph neural network policies (torch-geometric) that read the layer graph and emit bit choices.

A GNN species' member is the flat weight vector of one network; the network reads the layer
graph and outputs, for every layer, logits over the weight widths and over the activation widths
(product layout) or over the allowed pairs (pairs layout); argmax decodes the policy (NEMO,
patent: the bit-width with the highest probability is selected). Tied layers average their
logits before the argmax. The networks are defined by torch-geometric (`build_network`, the
reference the tests hold the batched pass to); a search evaluates them for all members of a
call at once in numpy (`GNNDecoder.logits`, `hwq.search.gnn_batched`), initialised as
torch-geometric initialises them (`parameter_layout`), so a NEMO search imports neither
torch-geometric nor torch. All members of a species share one architecture:

* ``gcn``  — GCNConv -> SELU -> GATConv -> SELU -> Linear   (NEMO's "Sequential Graph - GCN")
* ``gat``  — GATConv (2 heads, averaged) -> SELU -> GATConv -> SELU -> Linear
* ``unet`` — GraphUNet (depth 2, TopK pool ratio 0.5) -> SELU -> GATConv -> SELU -> Linear
            (NEMO's "Graph-UNet")

The Linear head reads the graph features together with the node's own input features (a skip
connection), so that a layer's decision can rest on its own costs as well as its context. NEMO
ends with a SELU after the Linear layer; it is monotonic and argmax-invariant except where it
saturates, so it is left out. Hidden width `hidden` (default 32) is a parameter.

Node features (one row per quantizable layer, each numeric column min-max normalised over the
model after log1p): op type one-hot (conv, grouped conv, depthwise conv, linear), in/out
channels, input spatial size, kernel size, stride, groups, weight params, MACs, output elements,
relative position in layer order, reads-the-model-input flag; by default also what every allowed
choice costs the layer for each additive objective (`choice_features`: device latency/energy,
BOPs, weight bytes, and per-layer sensitivity when the quality is a table). Edges: the data
flow between quantizable layers (`graph.edges`) or, with `graph_mode="chain"`, NEMO's original
chain in execution order; both directions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

ARCHS = ("gcn", "gat", "unet")


def node_features(graph: Any) -> np.ndarray:
    """float32 [L, F] normalised node features of a LayerGraph (see module doc)."""
    f = graph.frame
    n = len(f)
    groups = f["groups"].to_numpy()
    inc = f["in_channels"].to_numpy()
    is_linear = (f["op"] == "linear").to_numpy()
    depthwise = (~is_linear) & (groups > 1) & (groups == inc)
    grouped = (~is_linear) & (groups > 1) & ~depthwise
    conv = (~is_linear) & ~depthwise & ~grouped
    onehot = np.stack([conv, grouped, depthwise, is_linear], axis=1).astype(np.float64)
    numeric = np.stack(
        [
            f["in_channels"],
            f["out_channels"],
            f["in_h"].to_numpy() * f["in_w"].to_numpy(),
            f["kernel_h"].to_numpy() * f["kernel_w"].to_numpy(),
            f["stride_h"],
            f["groups"],
            f["weight_params"],
            f["macs"],
            f["out_elems"],
        ],
        axis=1,
    ).astype(np.float64)
    numeric = np.log1p(numeric)
    lo, hi = numeric.min(axis=0), numeric.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    numeric = np.where(hi > lo, (numeric - lo) / span, 0.0)
    pos = (np.arange(n) / max(n - 1, 1))[:, None]
    reads = f["reads_input"].to_numpy().astype(np.float64)[:, None]
    return np.concatenate([onehot, numeric, pos, reads], axis=1).astype(np.float32)


def edge_index(graph: Any, mode: str = "dataflow") -> np.ndarray:
    """int64 [2, E] edges in both directions: the data flow, or a chain in layer order."""
    n = len(graph)
    if mode == "chain":
        src = list(range(n - 1))
        dst = list(range(1, n))
    elif mode == "dataflow":
        index = {name: i for i, name in enumerate(graph.names)}
        pairs = [(index[s], index[d]) for s, d in graph.edges]
        src = [s for s, _ in pairs]
        dst = [d for _, d in pairs]
    else:
        from hwq.errors import UserError

        raise UserError(f"--graph: expected dataflow or chain, found {mode!r}")
    e = np.array([src + dst, dst + src], dtype=np.int64).reshape(2, -1)
    return e


def choice_features(problem: Any) -> np.ndarray:
    """float32 [L, k]: what each allowed choice costs each layer, for every additive objective
    of the problem (BOPs, weight bytes, latency, energy on the device; sensitivity when the
    quality is a per-layer table), as log10 min-max normalised over all layers and choices of
    that objective (so that layers and choices stay comparable). Pinned layers read their
    costs too. An hwq extension of NEMO's shape-only node features (`--gnn-features graph`
    turns it off)."""
    from hwq.objectives import ADDITIVE_COLUMNS, OBJECTIVES

    enc, table = problem.encoding, problem.table
    lut = table.pair_lookup
    k = [int(lut[w, a]) for w, a in enc.choices]
    cols = []
    for name in problem.objectives:
        col = OBJECTIVES[name][0]
        if col not in ADDITIVE_COLUMNS:
            continue
        if col == "sensitivity":
            per_layer = problem.quality.table_values(table) if problem.quality else None
            if per_layer is None:
                continue
            values = per_layer[:, k]
        else:
            values = table.values[col][:, k]
        v = np.where(np.isfinite(values), values, np.nan)
        pos = v[v > 0]
        if not pos.size:
            continue
        floor = pos.min() / 10.0
        lg = np.log10(np.maximum(np.nan_to_num(v, nan=floor), floor))
        lo, hi = lg.min(), lg.max()
        cols.append((lg - lo) / (hi - lo) if hi > lo else np.zeros_like(lg))
    if not cols:
        return np.zeros((len(enc.graph), 0), dtype=np.float32)
    return np.concatenate(cols, axis=1).astype(np.float32)


def build_network(arch: str, in_dim: int, out_dim: int, hidden: int = 32) -> Any:
    import torch
    from torch import nn
    from torch_geometric.nn import GATConv, GCNConv, GraphUNet

    class PolicyGNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            if arch == "gcn":
                # one graph per decoder: the normalised adjacency is computed once
                self.body = GCNConv(in_dim, hidden, cached=True)
            elif arch == "gat":
                self.body = GATConv(in_dim, hidden, heads=2, concat=False)
            elif arch == "unet":
                self.body = GraphUNet(in_dim, hidden, hidden, depth=2, pool_ratios=0.5)
            else:
                raise ValueError(f"unknown GNN architecture {arch!r} (known: {ARCHS})")
            self.att = GATConv(hidden, hidden, heads=1)
            self.head = nn.Linear(hidden + in_dim, out_dim)
            self.act = nn.SELU()

        def forward(self, x: torch.Tensor, ei: torch.Tensor) -> torch.Tensor:
            h = self.act(self.body(x, ei))
            h = self.act(self.att(h, ei))
            return self.head(torch.cat([h, x], dim=1))

    return PolicyGNN()


def parameter_layout(
    arch: str, in_dim: int, out_dim: int, hidden: int = 32
) -> list[tuple[str, tuple[int, ...], float]]:
    """(name, shape, init bound) of every parameter of `build_network(arch, ...)`, in the order
    of its `parameters()` (the flat weight vector's layout). The bound is that of the layer's
    default initialisation, uniform in [-bound, bound] (0: zeros): glorot for the graph
    layers' weights and attention vectors, 1/sqrt(channels) for TopK's projection and for
    torch's Linear head."""
    if arch not in ARCHS:
        raise ValueError(f"unknown GNN architecture {arch!r} (known: {ARCHS})")

    def glorot(shape: tuple[int, ...]) -> float:
        return math.sqrt(6.0 / (shape[-2] + shape[-1]))

    def gcn(prefix: str, fan_in: int, fan_out: int) -> list[tuple[str, tuple[int, ...], float]]:
        return [(f"{prefix}.bias", (fan_out,), 0.0),
                (f"{prefix}.lin.weight", (fan_out, fan_in), glorot((fan_out, fan_in)))]

    def gat(prefix: str, fan_in: int, heads: int) -> list[tuple[str, tuple[int, ...], float]]:
        att, lin = (1, heads, hidden), (heads * hidden, fan_in)
        return [(f"{prefix}.att_src", att, glorot(att)), (f"{prefix}.att_dst", att, glorot(att)),
                (f"{prefix}.bias", (hidden,), 0.0), (f"{prefix}.lin.weight", lin, glorot(lin))]

    if arch == "gcn":
        body = gcn("body", in_dim, hidden)
    elif arch == "gat":
        body = gat("body", in_dim, 2)
    else:
        u = "body"
        body = [*gcn(f"{u}.down_convs.0", in_dim, hidden),
                *gcn(f"{u}.down_convs.1", hidden, hidden),
                *gcn(f"{u}.down_convs.2", hidden, hidden)]
        body += [(f"{u}.pools.{i}.select.weight", (1, hidden), 1.0 / math.sqrt(hidden))
                 for i in range(2)]
        body += [*gcn(f"{u}.up_convs.0", hidden, hidden), *gcn(f"{u}.up_convs.1", hidden, hidden)]
    fan = hidden + in_dim
    head = [("head.weight", (out_dim, fan), 1.0 / math.sqrt(fan)),
            ("head.bias", (out_dim,), 1.0 / math.sqrt(fan))]
    return [*body, *gat("att", hidden, 1), *head]


class GNNDecoder:
    """Evaluates flat weight vectors of one architecture on one layer graph -> choice logits,
    all vectors of a call in one batched numpy pass (`hwq.search.gnn_batched`); the dense
    adjacency and the node features are built once, here."""

    def __init__(
        self,
        arch: str,
        features: np.ndarray,
        edges: np.ndarray,
        out_dim: int,
        hidden: int = 32,
    ) -> None:
        from hwq.search.gnn_batched import BatchedNetwork, DenseGraph

        self.arch = arch
        self.features = np.asarray(features, dtype=np.float32)
        self.edges = np.asarray(edges, dtype=np.int64)
        self.out_dim = int(out_dim)
        self.hidden = int(hidden)
        self.layout = parameter_layout(arch, self.features.shape[1], self.out_dim, self.hidden)
        self.shapes: list[tuple[int, ...]] = [shape for _, shape, _ in self.layout]
        self.n_params = int(sum(int(np.prod(s)) for s in self.shapes))
        graph = DenseGraph(self.edges, self.features.shape[0])
        self.batched = BatchedNetwork(
            arch, self.features, graph, [(name, shape) for name, shape, _ in self.layout]
        )

    def reference_network(self) -> Any:
        """The torch-geometric network of this architecture (what the batched pass computes)."""
        return build_network(self.arch, self.features.shape[1], self.out_dim, self.hidden)

    def init_weights(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """float32 [n, D]: the layers' default initialisation (`parameter_layout`), drawn from
        `rng`."""
        parts = []
        for _, shape, bound in self.layout:
            size = int(np.prod(shape))
            parts.append(rng.uniform(-bound, bound, size=(n, size)) if bound > 0
                         else np.zeros((n, size)))
        return np.concatenate(parts, axis=1).astype(np.float32)

    def logits(self, weights: np.ndarray) -> np.ndarray:
        """float32 [n, L, out_dim] for flat weight vectors [n, D], in one batched pass."""
        W = np.asarray(weights, dtype=np.float32).reshape(-1, self.n_params)
        if not len(W):
            return np.zeros((0, self.features.shape[0], self.out_dim), dtype=np.float32)
        return self.batched.forward(W)


def tensor_slices(shapes: Sequence[tuple[int, ...]]) -> list[tuple[slice, tuple[int, ...]]]:
    out, start = [], 0
    for s in shapes:
        size = int(np.prod(s))
        out.append((slice(start, start + size), tuple(s)))
        start += size
    return out

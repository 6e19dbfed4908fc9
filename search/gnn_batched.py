"""The GNN species' networks (`hwq.search.gnn.build_network`) evaluated for many flat weight
vectors at once, in numpy: one forward pass per species and generation instead of one
torch-geometric call per member, and no torch at all on this path.

The layer graph is small (tens to hundreds of layers), so its adjacency is held dense and built
once per decoder (`DenseGraph`): GCN's symmetric normalisations (self-loop fill 1, and 2 for
the Graph-UNet's "improved" convolutions), GAT's neighbourhoods with one self loop each, and
the Graph-UNet's first augmented adjacency ((A + I)^2 without its diagonal). A member's weights
are views into the batch [n, D] in the order of `hwq.search.gnn.parameter_layout` (that of
torch-geometric's `parameters()`), and every layer is a batched matrix product over members:

* GCNConv: ``Â (X Wᵀ) + b`` with Â = D^-1/2 (A + fill I) D^-1/2 (existing self loops kept);
* GATConv: per head, scores ``LeakyReLU_0.2(a_src·h_j + a_dst·h_i)`` softmaxed over i's
  neighbours j (self loop included, each edge counted as often as it occurs), heads averaged
  (``concat=False``) or kept (one head), plus the bias;
* GraphUNet (depth 2, TopK pooling): per member the top ceil(N/2) nodes by
  ``tanh(x·p / |p|)`` (ties to the earlier node), their features scaled by the score, the
  augmented adjacency restricted to them, and unpooling by scatter into zeros plus the skip.

The same mathematics as torch-geometric's layers (tests/search/test_nemo_gnn.py compares the
logits with the layers' own); only the order of floating-point sums differs. BLAS runs on one
thread inside a pass, so a seed gives the same logits whatever the machine's thread count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numba import njit

from hwq.search.blas_threads import one_blas_thread

# members per pass are chunked so that a dense [members, heads, N, N] attention tensor stays
# below this many elements
ATTENTION_ELEMENTS = 1 << 23
def _offdiag(a: np.ndarray) -> np.ndarray:
    out = np.array(a, copy=True)
    idx = np.arange(out.shape[-1])
    out[..., idx, idx] = 0.0
    return out


def gcn_normalised(a: np.ndarray, fill: float) -> np.ndarray:
    """D^-1/2 (A + self loops) D^-1/2 of dense [..., dst, src] edge weights: nodes without a
    self loop get one of weight `fill` (torch-geometric's add_remaining_self_loops), degrees
    are the summed incoming weights."""
    a = np.array(a, copy=True)
    idx = np.arange(a.shape[-1])
    diag = a[..., idx, idx]
    a[..., idx, idx] = np.where(diag != 0, diag, a.dtype.type(fill))
    deg = a.sum(axis=-1)
    dinv = np.where(deg > 0, 1.0 / np.sqrt(np.where(deg > 0, deg, 1.0)), 0.0).astype(a.dtype)
    return dinv[..., :, None] * a * dinv[..., None, :]


def augmented(a: np.ndarray) -> np.ndarray:
    """(A + I)^2 without its diagonal (the Graph-UNet's augment_adj), of [..., N, N]."""
    loops = _offdiag(a)
    idx = np.arange(a.shape[-1])
    loops[..., idx, idx] = 1.0
    return _offdiag(np.matmul(loops, loops))


class DenseGraph:
    """The dense adjacency forms every architecture reads, built once from `edges` [2, E]
    (source row 0, destination row 1) over `n` nodes; float32 matrices [dst, src]."""

    def __init__(self, edges: np.ndarray, n: int) -> None:
        e = np.asarray(edges, dtype=np.int64).reshape(2, -1)
        counts = np.zeros((n, n), dtype=np.float64)
        np.add.at(counts, (e[1], e[0]), 1.0)
        self.n = int(n)
        self.gcn = gcn_normalised(counts, 1.0).astype(np.float32)
        self.gcn_improved = gcn_normalised(counts, 2.0).astype(np.float32)
        att = _offdiag(counts)
        att[np.arange(n), np.arange(n)] = 1.0
        self.att = att.astype(np.float32)
        dst, src = np.nonzero(att)  # row-major: grouped by the receiving node
        self.att_indptr = np.searchsorted(dst, np.arange(n + 1)).astype(np.int64)
        self.att_indices = src.astype(np.int64)
        self.att_weights = att[dst, src].astype(np.float32)
        self.augmented = augmented(counts).astype(np.float32)


@njit(cache=True)
def _selu(x: np.ndarray) -> np.ndarray:
    """SELU of a float32 array (a new array)."""
    alpha, scale = np.float32(1.6732632423543772), np.float32(1.0507009873554805)
    out = np.empty_like(x)
    xf, of = x.ravel(), out.ravel()
    for i in range(xf.size):
        v = xf[i]
        of[i] = scale * v if v > 0 else scale * alpha * np.float32(np.expm1(max(v, -80.0)))
    return out


@njit(cache=True)
def _attend(
    h: np.ndarray,  # float32 [n, N, H, C] transformed features
    a_dst: np.ndarray,  # float32 [n, N, H] score halves of the receiving node
    a_src: np.ndarray,  # float32 [n, N, H] score halves of the sending node
    indptr: np.ndarray,  # CSR of the neighbourhoods: node i reads indices[indptr[i]:indptr[i+1]]
    indices: np.ndarray,
    weights: np.ndarray,  # float32, how often each edge occurs
) -> np.ndarray:
    """GAT's aggregation [n, N, H, C]: per head, LeakyReLU (slope 0.2) of a_dst[i] + a_src[j],
    softmax over i's neighbours j (an edge counted as often as it occurs), the weighted sum of
    their features."""
    n, N, H, C = h.shape
    out = np.zeros((n, N, H, C), dtype=np.float32)
    e = np.empty(indices.size, dtype=np.float32)
    for b in range(n):
        for k in range(H):
            for i in range(N):
                lo, hi = indptr[i], indptr[i + 1]
                m = np.float32(-np.inf)
                for t in range(lo, hi):
                    v = a_dst[b, i, k] + a_src[b, indices[t], k]
                    v = v if v > 0 else np.float32(0.2) * v
                    e[t] = v
                    if v > m:
                        m = v
                total = np.float32(0.0)
                for t in range(lo, hi):
                    # exp(-80) ~ 2e-35 adds nothing to a sum holding 1; the clip keeps exp off
                    # float32's slow subnormal range
                    v = weights[t] * np.float32(np.exp(max(e[t] - m, np.float32(-80.0))))
                    e[t] = v
                    total += v
                inv = np.float32(1.0) / (total + np.float32(1e-16))
                for t in range(lo, hi):
                    w = e[t] * inv
                    j = indices[t]
                    for c in range(C):
                        out[b, i, k, c] += w * h[b, j, k, c]
    return out


class BatchedNetwork:
    """`build_network(arch, in_dim, out_dim, hidden)` as batched dense mathematics: `forward`
    maps weights [n, D] to logits [n, N, out_dim] on the node features [N, F]."""

    def __init__(
        self,
        arch: str,
        features: np.ndarray,
        graph: DenseGraph,
        layout: Sequence[tuple[str, tuple[int, ...]]],
    ) -> None:
        self.arch = arch
        self.features = np.asarray(features, dtype=np.float32)
        self.graph = graph
        self.slots: dict[str, tuple[int, int, tuple[int, ...]]] = {}
        start = 0
        for name, shape in layout:
            size = int(np.prod(shape))
            self.slots[name] = (start, start + size, tuple(shape))
            start += size
        self.n_params = start

    def chunk(self) -> int:
        """Members per pass (dense attention memory bound)."""
        heads = 2 if self.arch == "gat" else 1
        return max(1, ATTENTION_ELEMENTS // max(heads * self.graph.n * self.graph.n, 1))

    def forward(self, weights: np.ndarray) -> np.ndarray:
        """float32 [n, N, out] for weights [n, D]."""
        W = np.ascontiguousarray(weights, dtype=np.float32)
        step = self.chunk()
        with one_blas_thread(), np.errstate(over="ignore", invalid="ignore"):
            outs = [self._forward(W[lo : lo + step]) for lo in range(0, len(W), step)]
        return np.concatenate(outs) if outs else np.zeros((0, self.graph.n, 0), np.float32)

    # -- the network -----------------------------------------------------------------------------
    def _p(self, W: np.ndarray, name: str) -> np.ndarray:
        lo, hi, shape = self.slots[name]
        return W[:, lo:hi].reshape(W.shape[0], *shape)

    def _forward(self, W: np.ndarray) -> np.ndarray:
        g = self.graph
        x = self.features
        if self.arch == "gcn":
            h = self._gcn(W, "body", x, g.gcn)
        elif self.arch == "gat":
            h = self._gat(W, "body", x, heads=2)
        else:
            h = self._unet(W, x)
        h = _selu(h)
        h = _selu(self._gat(W, "att", h, heads=1))
        xb = np.broadcast_to(x, (W.shape[0], *x.shape))
        head_w = self._p(W, "head.weight")
        out = np.matmul(np.concatenate([h, xb], axis=2), head_w.transpose(0, 2, 1))
        return out + self._p(W, "head.bias")[:, None]

    def _gcn(self, W: np.ndarray, prefix: str, x: np.ndarray, a_hat: np.ndarray) -> np.ndarray:
        h = np.matmul(x, self._p(W, f"{prefix}.lin.weight").transpose(0, 2, 1))
        return np.matmul(a_hat, h) + self._p(W, f"{prefix}.bias")[:, None]

    def _gat(self, W: np.ndarray, prefix: str, x: np.ndarray, heads: int) -> np.ndarray:
        n = W.shape[0]
        nodes = x.shape[-2]
        lin = self._p(W, f"{prefix}.lin.weight")  # [n, heads * C, F]
        h = np.matmul(x, lin.transpose(0, 2, 1)).reshape(n, nodes, heads, -1)  # [n, N, H, C]
        a_src = (h * self._p(W, f"{prefix}.att_src")).sum(-1)  # [n, N, H]
        a_dst = (h * self._p(W, f"{prefix}.att_dst")).sum(-1)
        g = self.graph
        out = _attend(np.ascontiguousarray(h), np.ascontiguousarray(a_dst),
                      np.ascontiguousarray(a_src), g.att_indptr, g.att_indices, g.att_weights)
        out = out.mean(axis=2) if heads > 1 else out[:, :, 0]  # [n, N, C]
        return out + self._p(W, f"{prefix}.bias")[:, None]

    def _pool(
        self, W: np.ndarray, k: int, x: np.ndarray, adj: np.ndarray, p_name: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """TopK pooling of every member: (pooled features, restricted adjacency, node order)."""
        p = self._p(W, p_name)[:, 0]  # [n, C]
        norm = np.sqrt((p * p).sum(axis=1, keepdims=True))
        score = np.tanh((x * p[:, None]).sum(-1) / norm)  # [n, N]
        perm = np.argsort(-score, axis=1, kind="stable")[:, :k]
        xs = np.take_along_axis(x, perm[:, :, None], axis=1)
        xs = xs * np.take_along_axis(score, perm, axis=1)[:, :, None]
        a = adj if adj.ndim == 3 else np.broadcast_to(adj, (x.shape[0], *adj.shape))
        rows = np.take_along_axis(a, perm[:, :, None], axis=1)
        sub = np.take_along_axis(rows, perm[:, None, :], axis=2)
        return xs, sub, perm

    def _unet(self, W: np.ndarray, x: np.ndarray) -> np.ndarray:
        g = self.graph
        pre = "body"
        x0 = np.maximum(self._gcn(W, f"{pre}.down_convs.0", x, g.gcn_improved), 0.0)
        k1 = math.ceil(0.5 * x0.shape[1])
        x1, a1, perm1 = self._pool(W, k1, x0, g.augmented, f"{pre}.pools.0.select.weight")
        norm1 = gcn_normalised(a1, 2.0)
        x1 = np.maximum(self._gcn(W, f"{pre}.down_convs.1", x1, norm1), 0.0)
        k2 = math.ceil(0.5 * k1)
        x2, a2, perm2 = self._pool(W, k2, x1, augmented(a1), f"{pre}.pools.1.select.weight")
        x2 = np.maximum(self._gcn(W, f"{pre}.down_convs.2", x2, gcn_normalised(a2, 2.0)), 0.0)
        up = np.zeros_like(x1)
        np.put_along_axis(up, perm2[:, :, None], x2, axis=1)
        h = np.maximum(self._gcn(W, f"{pre}.up_convs.0", x1 + up, norm1), 0.0)
        up = np.zeros_like(x0)
        np.put_along_axis(up, perm1[:, :, None], h, axis=1)
        return self._gcn(W, f"{pre}.up_convs.1", x0 + up, g.gcn_improved)

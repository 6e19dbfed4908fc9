"""The activation tensors of a LayerGraph and when each is resident (DESIGN.md §2, issue 12).

Tensors: the raw output of each layer (`out_elems`, before any pooling that follows it) and each
distinct operand tensor (the set of producing layers, plus the model input, with the elements its
reader sees): every layer's (first) input (`in_elems`) and every matmul's second operand
(`LayerGraph.second_elems()`; both operands of a matmul are activations). A tensor's bits are the
largest bits its readers ask for (or the readers of an add/concat result it is held for); 8 bits
if it reaches no layer. A layer reading a tensor as its (first) input asks for its `a_bits`; a
matmul reading a tensor as its second operand asks for its `w_bits`. So the key and value
projections of attention are stored at the `w_bits` of the scores and context products.

An embedding's input is the model's token ids: like any model input, it is the tensor of
`in_elems` (batch x tokens) elements at its reader's `a_bits`; its output (batch x tokens x
dimension) is an activation like any layer's.

The peak activation memory is the max over layers, in layer order, of (its operand tensors + its
output tensor + every tensor held live across the layer for a later reader or add/concat); a
matmul's live set holds both operands and its output, so attention maps count. This module only
plans; the sum over a batch of policies is a Numba kernel
(`hwq.cost_models.metrics.peak_activation_bytes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwq.graph import LayerGraph

_INPUT = "\0input"
A_SIDE, W_SIDE = 1, 0  # index of a_bits / w_bits in a (w, a) pair


@dataclass(frozen=True)
class ActivationPlan:
    """Whole-array description of the graph's activation tensors.

    Asks: column c of a policy's asks is the bits `pairs[:, ask_layer[c], ask_side[c]]`: the
    a_bits of every layer (c < L), then the w_bits of every matmul row. A tensor's readers are
    indices into the asks."""

    tensor_elems: np.ndarray  # int64 [T]
    reader_ptr: np.ndarray  # int64 [T + 1] CSR into reader_idx
    reader_idx: np.ndarray  # int64 [R] asks deciding each tensor's bits
    live_ptr: np.ndarray  # int64 [L + 1] CSR into live_idx
    live_idx: np.ndarray  # int64 [E] tensors resident while layer i runs
    ask_layer: np.ndarray  # int64 [A] the layer of each ask
    ask_side: np.ndarray  # int64 [A] 1: its a_bits, 0: its w_bits (a matmul's second operand)
    labels: tuple[str, ...]

    @property
    def asks_w_bits(self) -> bool:
        """Whether some tensor is stored at a matmul's w_bits (the graph has matmul rows)."""
        return bool((self.ask_side == W_SIDE).any())

    def peak_bytes(self, a_bits: np.ndarray, w_bits: np.ndarray | None = None) -> np.ndarray:
        """[P] peak activation bytes for int arrays [P, L] of per-layer activation bits and (for
        a graph with matmul rows, whose second operands are stored at their w_bits) weight
        bits."""
        from hwq.cost_models.metrics import peak_activation_bytes

        a = np.asarray(a_bits, dtype=np.int64)
        if w_bits is None:
            if self.asks_w_bits:
                raise ValueError("peak_bytes: the graph has matmul rows, whose second operand "
                                 "is stored at their w_bits; pass w_bits")
            w = np.zeros_like(a)
        else:
            w = np.asarray(w_bits, dtype=np.int64)
        return peak_activation_bytes(
            np.ascontiguousarray(np.stack([w, a], axis=-1)),
            self.ask_layer,
            self.ask_side,
            self.tensor_elems,
            self.reader_ptr,
            self.reader_idx,
            self.live_ptr,
            self.live_idx,
        )


def _csr(lists: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    ptr = np.zeros(len(lists) + 1, dtype=np.int64)
    ptr[1:] = np.cumsum([len(x) for x in lists])
    idx = np.array([v for x in lists for v in x], dtype=np.int64)
    return ptr, idx


def _operands(graph: LayerGraph) -> tuple[list[tuple[int, int, frozenset[str], int]], np.ndarray]:
    """(layer, ask, producers, elements) of every operand a layer reads, in layer order (a
    matmul's first operand, then its second), and the matmul rows (whose w_bits are asks L...)."""
    n = len(graph)
    reads_input = graph.column("reads_input")
    in_elems = graph.column("in_elems")
    second_elems = graph.second_elems()
    matmuls = np.flatnonzero(graph.column("op") == "matmul").astype(np.int64)
    second_ask = {int(i): n + m for m, i in enumerate(matmuls)}
    out: list[tuple[int, int, frozenset[str], int]] = []
    for i, ins in enumerate(graph.inputs):
        key = frozenset(ins) | ({_INPUT} if reads_input[i] or not ins else set())
        out.append((i, i, key, int(in_elems[i])))
        if i in second_ask:
            second = graph.second_inputs[i]
            out.append((i, second_ask[i], frozenset(second) or frozenset({_INPUT}),
                        int(second_elems[i])))
    return out, matmuls


def plan_activations(graph: LayerGraph) -> ActivationPlan:
    n = len(graph)
    index = {name: i for i, name in enumerate(graph.names)}
    out_elems = graph.column("out_elems")
    operands, matmuls = _operands(graph)

    # distinct operand tensors: (producer set, elements) -> the layers reading it, their asks
    keys: list[frozenset[str]] = []
    key_elems: list[int] = []
    key_readers: list[list[int]] = []
    key_asks: list[list[int]] = []
    lookup: dict[tuple[frozenset[str], int], int] = {}
    layer_keys: list[list[int]] = [[] for _ in range(n)]
    for i, ask, key, elems in operands:
        k = lookup.setdefault((key, elems), len(keys))
        if k == len(keys):
            keys.append(key)
            key_elems.append(elems)
            key_readers.append([])
            key_asks.append([])
        key_readers[k].append(i)
        key_asks[k].append(ask)
        if k not in layer_keys[i]:
            layer_keys[i].append(k)

    def formed(key: frozenset[str]) -> int:
        producers = [index[s] for s in key if s != _INPUT]
        return max(producers) if producers else -1

    key_formed = [formed(k) for k in keys]
    # end (in half steps): last reader, or just after the formation of a superset it is held for
    key_end2: list[int] = []
    key_bits_asks: list[list[int]] = []
    for k, key in enumerate(keys):
        end2 = 2 * max(key_readers[k])
        asks = set(key_asks[k])
        for k2, key2 in enumerate(keys):
            if key < key2 and key_formed[k2] > key_formed[k]:
                end2 = max(end2, 2 * key_formed[k2] + 1)
                asks.update(key_asks[k2])
        key_end2.append(end2)
        key_bits_asks.append(sorted(asks))

    # raw outputs: held from the layer until the first operand tensor containing it is formed
    raw_asks: list[list[int]] = [[] for _ in range(n)]
    raw_end: list[int] = list(range(n))
    for j, name in enumerate(graph.names):
        containing = [k for k, key in enumerate(keys) if name in key]
        for k in containing:
            raw_asks[j].extend(key_asks[k])
        if containing:
            raw_end[j] = max(j, min(key_formed[k] for k in containing))

    elems = [int(e) for e in out_elems] + key_elems
    readers = [sorted(set(r)) for r in raw_asks] + key_bits_asks
    labels = tuple(f"out:{nm}" for nm in graph.names) + tuple(
        "in:" + "+".join(sorted(s if s != _INPUT else "<input>" for s in k)) for k in keys
    )
    live: list[list[int]] = []
    for i in range(n):
        at = [i, *(n + k for k in layer_keys[i])]  # its output, its operands
        at += [j for j in range(n) if j < i <= raw_end[j]]
        at += [
            n + k
            for k in range(len(keys))
            if k not in layer_keys[i] and 2 * key_formed[k] < 2 * i < key_end2[k]
        ]
        live.append(at)
    reader_ptr, reader_idx = _csr(readers)
    live_ptr, live_idx = _csr(live)
    ask_layer = np.concatenate([np.arange(n, dtype=np.int64), matmuls])
    ask_side = np.concatenate([np.full(n, A_SIDE, dtype=np.int64),
                               np.full(len(matmuls), W_SIDE, dtype=np.int64)])
    return ActivationPlan(
        np.asarray(elems, dtype=np.int64), reader_ptr, reader_idx, live_ptr, live_idx,
        ask_layer, ask_side, labels,
    )

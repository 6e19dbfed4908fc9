"""The activation tensors of a LayerGraph and when each is resident (DESIGN.md §2).

Tensors: the raw output of each layer (`out_elems`, before any pooling that follows it) and each
distinct input tensor (the set of producing layers, plus the model input, with the reader's
`in_elems`). A tensor's bits are the largest activation bits of the layers that read it (or read
an add/concat result it is held for); 8 bits if it reaches no layer. The peak activation memory is
the max over layers, in layer order, of (input tensor + output tensor + every tensor held live
across the layer for a later add/concat). This module only plans; the sum is a Numba kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwq.graph import LayerGraph

_INPUT = "\0input"


@dataclass(frozen=True)
class ActivationPlan:
    tensor_elems: np.ndarray
    reader_ptr: np.ndarray
    reader_idx: np.ndarray
    live_ptr: np.ndarray
    live_idx: np.ndarray
    labels: tuple[str, ...]

    def peak_bytes(self, a_bits: np.ndarray) -> np.ndarray:
        """[P] peak activation bytes for an int array [P, L] of per-layer activation bits."""
        from hwq.cost_models.metrics import peak_activation_bytes

        return peak_activation_bytes(
            np.ascontiguousarray(a_bits, dtype=np.int64),
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


def plan_activations(graph: LayerGraph) -> ActivationPlan:
    n = len(graph)
    index = {name: i for i, name in enumerate(graph.names)}
    reads_input = graph.column("reads_input")
    in_elems = graph.column("in_elems")
    out_elems = graph.column("out_elems")

    # distinct input tensors: (producer set, elements) -> readers
    keys: list[frozenset[str]] = []
    key_elems: list[int] = []
    key_readers: list[list[int]] = []
    lookup: dict[tuple[frozenset[str], int], int] = {}
    layer_key: list[int] = []
    for i, ins in enumerate(graph.inputs):
        key = frozenset(ins) | ({_INPUT} if reads_input[i] or not ins else set())
        k = lookup.setdefault((key, int(in_elems[i])), len(keys))
        if k == len(keys):
            keys.append(key)
            key_elems.append(int(in_elems[i]))
            key_readers.append([])
        key_readers[k].append(i)
        layer_key.append(k)

    def formed(key: frozenset[str]) -> int:
        producers = [index[s] for s in key if s != _INPUT]
        return max(producers) if producers else -1

    key_formed = [formed(k) for k in keys]
    # end (in half steps): last reader, or just after the formation of a superset it is held for
    key_end2: list[int] = []
    key_bits_readers: list[list[int]] = []
    for k, key in enumerate(keys):
        end2 = 2 * max(key_readers[k])
        readers = set(key_readers[k])
        for k2, key2 in enumerate(keys):
            if key < key2 and key_formed[k2] > key_formed[k]:
                end2 = max(end2, 2 * key_formed[k2] + 1)
                readers.update(key_readers[k2])
        key_end2.append(end2)
        key_bits_readers.append(sorted(readers))

    # raw outputs: held from the layer until the first input tensor containing it is formed
    raw_readers: list[list[int]] = [[] for _ in range(n)]
    raw_end: list[int] = list(range(n))
    for j, name in enumerate(graph.names):
        containing = [k for k, key in enumerate(keys) if name in key]
        for k in containing:
            raw_readers[j].extend(key_readers[k])
        if containing:
            raw_end[j] = max(j, min(key_formed[k] for k in containing))

    elems = [int(e) for e in out_elems] + key_elems
    readers = [sorted(set(r)) for r in raw_readers] + key_bits_readers
    labels = tuple(f"out:{nm}" for nm in graph.names) + tuple(
        "in:" + "+".join(sorted(s if s != _INPUT else "<input>" for s in k)) for k in keys
    )
    live: list[list[int]] = []
    for i in range(n):
        at = [i, n + layer_key[i]]  # its output, its input
        at += [j for j in range(n) if j < i <= raw_end[j]]
        at += [
            n + k
            for k in range(len(keys))
            if k != layer_key[i] and 2 * key_formed[k] < 2 * i < key_end2[k]
        ]
        live.append(at)
    reader_ptr, reader_idx = _csr(readers)
    live_ptr, live_idx = _csr(live)
    return ActivationPlan(
        np.asarray(elems, dtype=np.int64), reader_ptr, reader_idx, live_ptr, live_idx, labels
    )

"""Decisions <-> per-layer (w_bits, a_bits) pairs, with pinned and tied layers.

A search decides one bit pair per *group* of layers: a group is one layer, or the layers tied
together (`--tie same-input`: layers that read the same tensor share their bits, as in HAWQ-V3).
Pinned layers (`--pin first,last=8`) take no decision; `first` and `last` are the first and last
*weight* layers (conv, linear or embedding), never a matmul row (a product of two activations).

Two decision layouts, chosen from the allowed pairs:

* ``product`` — the allowed pairs are every combination of a set of weight widths and a set of
  activation widths (the profile's `search_default`, e.g. {2,4,8} x {2,4,8}): two integer genes
  per group, the index of the weight width and of the activation width (ascending). Weights and
  activations are searched separately, as NEMO does.
* ``pairs`` — any other list (e.g. `--bits 4x4,8x8`): one integer gene per group, the index into
  the pairs sorted by (w*a, w, a), i.e. by increasing cost.

`choices` lists the pair of every per-group choice index (product: ``wi * n_a + ai``), the
common currency of the ILP and the greedy search.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from hwq.errors import UserError
from hwq.graph import LayerGraph, same_input_groups
from hwq.policy import check_bits

Pair = tuple[int, int]
WEIGHT_OPS: tuple[str, ...] = ("conv", "linear", "embedding")


def weight_layers(graph: LayerGraph) -> list[int]:
    """Indices of the layers that hold weights (conv, linear, embedding), in layer order."""
    return [i for i, op in enumerate(graph.column("op")) if op in WEIGHT_OPS]


def parse_pin_specs(specs: Iterable[str], graph: LayerGraph) -> dict[int, Pair]:
    """`--pin` values -> {layer index: (w, a)}.

    A spec is ``NAMES=BITS``: NAMES a comma-separated list of layer names or `first` / `last`
    (the first and last weight layer: conv, linear or embedding, never a matmul), BITS either
    ``8`` (W8A8) or ``WxA`` (``4x8``). A NAMES without ``=BITS`` pins at W8A8. Repeatable; a
    layer pinned twice to different bits is an error.
    """
    names = graph.names
    weights = weight_layers(graph)
    out: dict[int, Pair] = {}
    for spec in specs:
        text = spec.strip()
        if not text:
            continue
        if "=" in text:
            who, bits = text.rsplit("=", 1)
        else:
            who, bits = text, "8"
        bits = bits.strip()
        m = re.fullmatch(r"(\d+)(?:[xX](\d+))?", bits)
        if not m:
            raise UserError(
                f"--pin {spec}: expected NAMES=BITS with BITS like 8 or 4x8 (weights first), "
                f"found {bits!r}"
            )
        w = check_bits(int(m.group(1)), f"--pin {spec}: w_bits")
        a = check_bits(int(m.group(2) or m.group(1)), f"--pin {spec}: a_bits")
        for raw in who.split(","):
            name = raw.strip()
            if not name:
                continue
            if name in ("first", "last"):
                if not weights:
                    raise UserError(f"--pin {spec}: {name}: the model has no weight layer "
                                    "(conv, linear or embedding) to pin; name the layers")
                idx = weights[0] if name == "first" else weights[-1]
            elif name in names:
                idx = names.index(name)
            else:
                raise UserError(
                    f"--pin {spec}: layer {name!r} is not in the model (use first, last or one of "
                    f"{', '.join(names[:6])}{', ...' if len(names) > 6 else ''})"
                )
            if idx in out and out[idx] != (w, a):
                raise UserError(
                    f"--pin: layer {names[idx]} pinned twice, to W{out[idx][0]}A{out[idx][1]} "
                    f"and W{w}A{a}"
                )
            out[idx] = (w, a)
    return out


def tie_groups(graph: LayerGraph, tie: str | None) -> list[list[int]]:
    """Layer groups that share their bits: `none` (every layer alone) or `same-input`."""
    if tie in (None, "", "none"):
        return [[i] for i in range(len(graph))]
    if tie == "same-input":
        groups = same_input_groups(graph)
        return sorted((sorted(g) for g in groups), key=lambda g: g[0])
    raise UserError(f"--tie: expected none or same-input, found {tie!r}")


def _is_product(pairs: Sequence[Pair]) -> tuple[bool, list[int], list[int]]:
    ws = sorted({w for w, _ in pairs})
    as_ = sorted({a for _, a in pairs})
    return set(pairs) == {(w, a) for w in ws for a in as_}, ws, as_


@dataclass
class Encoding:
    """The decision space of a search over `graph` with `pairs`, `pins` and tie `groups`."""

    graph: LayerGraph
    pairs: list[Pair]
    pins: dict[int, Pair] = field(default_factory=dict)
    tie: str = "none"

    def __post_init__(self) -> None:
        if not self.pairs:
            raise UserError("bits: expected at least one (w_bits, a_bits) pair")
        self.pairs = list(dict.fromkeys((int(w), int(a)) for w, a in self.pairs))
        n = len(self.graph)
        product, ws, as_ = _is_product(self.pairs)
        self.mode = "product" if product else "pairs"
        if product:
            self.w_choices = np.array(ws, dtype=np.int64)
            self.a_choices = np.array(as_, dtype=np.int64)
            self.choices: list[Pair] = [(w, a) for w in ws for a in as_]
        else:
            ordered = sorted(self.pairs, key=lambda p: (p[0] * p[1], p[0], p[1]))
            self.w_choices = np.array([p[0] for p in ordered], dtype=np.int64)
            self.a_choices = np.array([p[1] for p in ordered], dtype=np.int64)
            self.choices = ordered
        # tie groups; a group with a pinned member is pinned as a whole
        pins = dict(self.pins)
        free: list[list[int]] = []
        for group in tie_groups(self.graph, self.tie):
            pinned = {pins[i] for i in group if i in pins}
            if len(pinned) > 1:
                names = ", ".join(self.graph.names[i] for i in group)
                raise UserError(f"--pin: tied layers {names} are pinned to different bits")
            if pinned:
                pair = pinned.pop()
                for i in group:
                    pins[i] = pair
            else:
                free.append(group)
        self.pins = pins
        self.groups: list[list[int]] = free
        self.layer_group = np.full(n, -1, dtype=np.int64)
        for g, group in enumerate(free):
            self.layer_group[group] = g
        self.base = np.zeros((n, 2), dtype=np.int64)  # pinned pairs; free layers overwritten
        for i, (w, a) in pins.items():
            self.base[i] = (w, a)
        self.free_layers = np.flatnonzero(self.layer_group >= 0)
        self.choice_pairs = np.array(self.choices, dtype=np.int64).reshape(-1, 2)

    def with_pins(self, extra: Mapping[int, Pair]) -> Encoding:
        """The same decision space with `extra` layers pinned too (a tied group with one of them
        pinned as a whole)."""
        return Encoding(self.graph, self.pairs, {**self.pins, **extra}, self.tie)

    def widest_pair(self) -> Pair:
        """The allowed pair of the most bits (w x a, then w, then a)."""
        return max(self.choices, key=lambda p: (p[0] * p[1], p[0], p[1]))

    # -- sizes -----------------------------------------------------------------------------------
    @property
    def n_groups(self) -> int:
        return len(self.groups)

    @property
    def genes_per_group(self) -> int:
        return 2 if self.mode == "product" else 1

    @property
    def n_var(self) -> int:
        return self.n_groups * self.genes_per_group

    @property
    def n_choices(self) -> int:
        return len(self.choices)

    @property
    def xl(self) -> np.ndarray:
        return np.zeros(self.n_var, dtype=np.int64)

    @property
    def xu(self) -> np.ndarray:
        if self.mode == "product":
            per = np.array([len(self.w_choices) - 1, len(self.a_choices) - 1], dtype=np.int64)
            return np.tile(per, self.n_groups)
        return np.full(self.n_var, len(self.choices) - 1, dtype=np.int64)

    def all_pairs(self) -> list[Pair]:
        """Every pair a policy of this encoding can hold (choices plus pinned pairs)."""
        return list(dict.fromkeys([*self.choices, *sorted(set(self.pins.values()))]))

    # -- conversions -----------------------------------------------------------------------------
    def choice_index(self, X: np.ndarray) -> np.ndarray:
        """int64 [P, G]: the index into `choices` of every group's decision."""
        X = np.asarray(X)
        X = np.rint(X).astype(np.int64).reshape(X.shape[0], self.n_var)
        if self.mode == "product":
            wi = np.clip(X[:, 0::2], 0, len(self.w_choices) - 1)
            ai = np.clip(X[:, 1::2], 0, len(self.a_choices) - 1)
            return wi * len(self.a_choices) + ai
        return np.clip(X, 0, len(self.choices) - 1)

    def X_from_choice_index(self, C: np.ndarray) -> np.ndarray:
        C = np.asarray(C, dtype=np.int64).reshape(-1, self.n_groups)
        if self.mode == "product":
            n_a = len(self.a_choices)
            X = np.empty((C.shape[0], self.n_var), dtype=np.int64)
            X[:, 0::2] = C // n_a
            X[:, 1::2] = C % n_a
            return X
        return C.copy()

    def decode_choice_index(self, C: np.ndarray) -> np.ndarray:
        """int64 [P, L, 2] per-layer pairs from per-group choice indices [P, G]."""
        C = np.asarray(C, dtype=np.int64).reshape(-1, self.n_groups)
        out = np.broadcast_to(self.base, (C.shape[0], *self.base.shape)).copy()
        if self.n_groups:
            g = self.layer_group[self.free_layers]
            out[:, self.free_layers, :] = self.choice_pairs[C[:, g]]
        return out

    def decode(self, X: np.ndarray) -> np.ndarray:
        """int64 [P, L, 2] per-layer (w, a) pairs from decisions X [P, n_var]."""
        return self.decode_choice_index(self.choice_index(X))

    def encode(self, pairs: np.ndarray) -> np.ndarray:
        """Decisions X [P, n_var] of per-layer pairs [P, L, 2] (a group reads its first layer).

        A pair outside the choices, or a pinned layer off its pin, is an error naming the layer.
        """
        arr = np.asarray(pairs, dtype=np.int64).reshape(-1, len(self.graph), 2)
        lut = {p: k for k, p in enumerate(self.choices)}
        C = np.empty((arr.shape[0], self.n_groups), dtype=np.int64)
        names = self.graph.names
        for p in range(arr.shape[0]):
            for i, pair in self.pins.items():
                if tuple(arr[p, i]) != pair:
                    raise UserError(
                        f"policy {p}: layer {names[i]} is pinned to W{pair[0]}A{pair[1]}, "
                        f"found W{arr[p, i, 0]}A{arr[p, i, 1]}"
                    )
            for g, group in enumerate(self.groups):
                first = tuple(int(v) for v in arr[p, group[0]])
                if first not in lut:
                    raise UserError(
                        f"policy {p}: layer {names[group[0]]}: W{first[0]}A{first[1]} is not an "
                        f"allowed pair ({', '.join(f'{w}x{a}' for w, a in self.choices)})"
                    )
                C[p, g] = lut[first]
        return self.X_from_choice_index(C)

    def describe(self) -> Mapping[str, object]:
        return {
            "mode": self.mode,
            "pairs": [f"{w}x{a}" for w, a in self.choices],
            "groups": [[self.graph.names[i] for i in g] for g in self.groups],
            "pins": {self.graph.names[i]: f"{w}x{a}" for i, (w, a) in sorted(self.pins.items())},
            "n_var": self.n_var,
        }

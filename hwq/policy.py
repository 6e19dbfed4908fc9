"""Per-layer precision policies: (weight bits, activation bits) for every quantizable layer.

The activation bits of a layer are those of the tensor it reads (its input). A policy is portable
JSON (DESIGN.md §9) and is addressed by layer name, so it applies to any model with those layers.

A `matmul` row (a product of two activations, e.g. attention scores q.k^T and context p.v) has no
weights: its `a_bits` are its first operand's bits and its `w_bits` its second operand's (both
are activations, stored at those bits in the activation plan; weight bytes 0, BOPs = MACs x w x
a). An `embedding` row's `w_bits` are its table's (weight bytes = rows x dimension x w_bits / 8).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hwq.errors import UserError

if TYPE_CHECKING:
    from hwq.graph import LayerGraph

VALID_BITS: frozenset[int] = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 16, 32})
SCHEMA_VERSION = 1


def check_bits(bits: int, where: str) -> int:
    """Return `bits` as int if policies accept it (1–8, or 16/32 for "not quantized")."""
    try:
        value = int(bits)
    except (TypeError, ValueError):
        raise UserError(f"{where}: expected bits 1-8, 16 or 32, found {bits!r}") from None
    if value != bits or value not in VALID_BITS:
        raise UserError(f"{where}: expected bits 1-8, 16 or 32, found {bits!r}")
    return value


BITS_BOUND = 33  # bit-widths index arrays of this size (0..32)


def pair_lookup(pairs: Iterable[Sequence[int]]) -> np.ndarray:
    """int64 [33, 33]: index k of (w, a) in `pairs`, -1 where `pairs` lacks it (the one
    definition of the pair index every table, sensitivity source and kernel reads)."""
    lut = np.full((BITS_BOUND, BITS_BOUND), -1, dtype=np.int64)
    for k, (w, a) in enumerate(pairs):
        lut[int(w), int(a)] = k
    return lut


def policy_id_from_pairs(pairs: Iterable[Sequence[int]]) -> str:
    """First 12 hex digits of sha256 of the compact JSON list of per-layer [w, a] pairs."""
    text = json.dumps([[int(w), int(a)] for w, a in pairs], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class Policy:
    """Weight and activation bits per layer name, with a default for unnamed layers."""

    def __init__(
        self,
        w_bits: Mapping[str, int] | None = None,
        a_bits: Mapping[str, int] | None = None,
        default: tuple[int, int] = (8, 8),
        *,
        device: str | None = None,
        graph_hash: str | None = None,
        predicted: Mapping[str, Any] | None = None,
    ) -> None:
        self.default = (
            check_bits(default[0], "default.w_bits"),
            check_bits(default[1], "default.a_bits"),
        )
        self.w_bits = {k: check_bits(v, f"layer {k}: w_bits") for k, v in (w_bits or {}).items()}
        self.a_bits = {k: check_bits(v, f"layer {k}: a_bits") for k, v in (a_bits or {}).items()}
        self.device = device
        self.graph_hash = graph_hash
        self.predicted = dict(predicted or {})

    # -- queries ---------------------------------------------------------------------------------
    def layer_names(self) -> set[str]:
        return set(self.w_bits) | set(self.a_bits)

    def bits(self, layer: str) -> tuple[int, int]:
        return self.w_bits.get(layer, self.default[0]), self.a_bits.get(layer, self.default[1])

    def check_layers(self, names: Iterable[str]) -> None:
        """Raise a UserError naming every policy layer the model does not have."""
        known = set(names)
        unknown = sorted(self.layer_names() - known)
        if unknown:
            raise UserError(f"policy names layer(s) the model does not have: {', '.join(unknown)}")

    def pairs(self, names: Sequence[str]) -> list[tuple[int, int]]:
        """(w, a) per layer in the given (layer) order; unknown policy layers are an error."""
        self.check_layers(names)
        return [self.bits(n) for n in names]

    def to_array(self, graph: LayerGraph) -> np.ndarray:
        """int64 [L, 2] of (w, a) in the graph's layer order."""
        return np.asarray(self.pairs(graph.names), dtype=np.int64).reshape(len(graph), 2)

    def id(self, graph: LayerGraph) -> str:
        return policy_id_from_pairs(self.pairs(graph.names))

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def uniform(cls, w: int, a: int) -> Policy:
        return cls(default=(w, a))

    @classmethod
    def from_array(cls, graph: LayerGraph, pairs: np.ndarray | Sequence[Sequence[int]]) -> Policy:
        arr = np.asarray(pairs)
        if arr.shape != (len(graph), 2):
            raise UserError(
                f"policy array has shape {tuple(arr.shape)}, expected ({len(graph)}, 2) "
                f"for a graph of {len(graph)} layers"
            )
        names = graph.names
        return cls(
            w_bits={n: int(arr[i, 0]) for i, n in enumerate(names)},
            a_bits={n: int(arr[i, 1]) for i, n in enumerate(names)},
            graph_hash=graph.graph_hash,
        )

    # -- JSON ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        layers: dict[str, dict[str, int]] = {}
        for name in sorted(self.layer_names()):
            w, a = self.bits(name)
            layers[name] = {"w_bits": w, "a_bits": a}
        out: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "default": {"w_bits": self.default[0], "a_bits": self.default[1]},
            "layers": layers,
        }
        if self.graph_hash is not None:
            out["graph_hash"] = self.graph_hash
        if self.device is not None:
            out["device"] = self.device
        if self.predicted:
            out["predicted"] = self.predicted
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_json(cls, text: str, source: str = "policy") -> Policy:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{source}:{exc.lineno}: not valid JSON: {exc.msg}") from None
        if not isinstance(doc, dict):
            raise UserError(f"{source}: expected a JSON object, found {type(doc).__name__}")
        version = doc.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise UserError(f"{source}: schema_version: expected 1, found {version!r}")
        default = doc.get("default", {"w_bits": 8, "a_bits": 8})
        if not isinstance(default, dict):
            raise UserError(f"{source}: default: expected an object with w_bits and a_bits")
        w_bits: dict[str, int] = {}
        a_bits: dict[str, int] = {}
        layers = doc.get("layers", {})
        if not isinstance(layers, dict):
            raise UserError(f"{source}: layers: expected an object of layer name -> bits")
        for name, spec in layers.items():
            if not isinstance(spec, dict) or not set(spec) <= {"w_bits", "a_bits"}:
                raise UserError(
                    f'{source}: layers.{name}: expected {{"w_bits": int, "a_bits": int}}, '
                    f"found {spec!r}"
                )
            if "w_bits" in spec:
                w_bits[name] = check_bits(spec["w_bits"], f"{source}: layers.{name}.w_bits")
            if "a_bits" in spec:
                a_bits[name] = check_bits(spec["a_bits"], f"{source}: layers.{name}.a_bits")
        return cls(
            w_bits,
            a_bits,
            default=(
                check_bits(default.get("w_bits", 8), f"{source}: default.w_bits"),
                check_bits(default.get("a_bits", 8), f"{source}: default.a_bits"),
            ),
            device=doc.get("device"),
            graph_hash=doc.get("graph_hash"),
            predicted=doc.get("predicted"),
        )

    @classmethod
    def read(cls, path: str) -> Policy:
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise UserError(f"{path}: cannot read policy file: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise UserError(f"{path}: expected a UTF-8 policy JSON file, found a byte that is not "
                            f"UTF-8 text at byte {exc.start}") from None
        return cls.from_json(text, source=str(path))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Policy) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Policy(default={self.default}, layers={len(self.layer_names())})"


PolicyLike = Policy | Sequence[Sequence[int]] | np.ndarray


def policy_pairs(policy: PolicyLike, names: Sequence[str]) -> list[tuple[int, int]]:
    """(w_bits, a_bits) per layer of `names` from a Policy or a per-layer list/array [L, 2];
    UserError naming the layer for unknown layers, bad bits or a wrong length."""
    names = list(names)
    if isinstance(policy, Policy):
        return policy.pairs(names)
    arr = np.asarray(policy, dtype=object)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise UserError(
            f"policy: expected one (w_bits, a_bits) pair per layer, found shape {arr.shape}"
        )
    if len(arr) != len(names):
        if len(arr) < len(names):
            where = f"no bits for layer {names[len(arr)]!r}"
            if len(names) - len(arr) > 1:
                where += f" (and {len(names) - len(arr) - 1} more after it)"
        else:
            where = f"{len(arr) - len(names)} pair(s) after the last layer {names[-1]!r}"
        raise UserError(
            f"policy has {len(arr)} (w_bits, a_bits) pairs but the model has {len(names)} "
            f"quantizable layers: {where}"
        )
    return [
        (check_bits(w, f"layer {n}: w_bits"), check_bits(a, f"layer {n}: a_bits"))
        for n, (w, a) in zip(names, arr.tolist())
    ]

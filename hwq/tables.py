"""CostTable: costs of every layer at every requested (w_bits, a_bits) pair on one device."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from hwq import __version__, cache
from hwq.activations import ActivationPlan, plan_activations
from hwq.allowed_bits import check_pairs
from hwq.atomic import write_atomic
from hwq.cost_models.kind import PRICED_COLUMNS, kind
from hwq.errors import UserError
from hwq.graph import LayerGraph
from hwq.policy import check_bits, pair_lookup
from hwq.profile import DeviceProfile

log = logging.getLogger("hwq.cost")

SCHEMA_VERSION = 1
# The device-independent columns, then those a kind's cost model fills (NaN where it has none).
COLUMNS: tuple[str, ...] = (
    "layer", "w_bits", "a_bits", "macs", "bops", "weight_bytes", *PRICED_COLUMNS, "feasible",
)
VALUE_COLUMNS: tuple[str, ...] = COLUMNS[3:-1]


@dataclass
class CostTable:
    """Per (layer, pair) costs. `values[col]` is float64 [L, K] over layers and `pairs`."""

    graph: LayerGraph
    profile: DeviceProfile
    pairs: list[tuple[int, int]]
    values: dict[str, np.ndarray]
    feasible: np.ndarray  # bool [L, K]
    details: dict[str, np.ndarray] = field(default_factory=dict)
    detail_labels: dict[str, Sequence[str]] = field(default_factory=dict)

    @property
    def batch(self) -> int:
        return int(self.graph.column("batch")[0]) if len(self.graph) else 1

    @cached_property
    def activation_plan(self) -> ActivationPlan:
        return plan_activations(self.graph)

    @cached_property
    def pair_lookup(self) -> np.ndarray:
        """int64 [33, 33]: index of (w, a) in `pairs`, -1 where the table lacks it."""
        return pair_lookup(self.pairs)

    @cached_property
    def stacked(self) -> np.ndarray:
        """float64 [C, L, K] of VALUE_COLUMNS, the operand of the Numba gather."""
        return np.ascontiguousarray(np.stack([self.values[c] for c in VALUE_COLUMNS]))

    @cached_property
    def stacked_lkc(self) -> np.ndarray:
        """float64 [L, K, C] of VALUE_COLUMNS, the layout of the fused policy kernel."""
        return np.ascontiguousarray(self.stacked.transpose(1, 2, 0))

    def to_pandas(self) -> pd.DataFrame:
        n, k = len(self.graph), len(self.pairs)
        data: dict[str, object] = {
            "layer": np.repeat(np.asarray(self.graph.names, dtype=object), k),
            "w_bits": np.tile(np.array([w for w, _ in self.pairs], dtype=np.int64), n),
            "a_bits": np.tile(np.array([a for _, a in self.pairs], dtype=np.int64), n),
        }
        for col in VALUE_COLUMNS:
            data[col] = self.values[col].reshape(-1)
        data["feasible"] = self.feasible.reshape(-1)
        for col, arr in self.details.items():
            labels = self.detail_labels.get(col)
            flat = arr.reshape(-1)
            if labels is not None:
                data[col] = np.asarray(labels, dtype=object)[flat.astype(np.int64)]
            else:
                data[col] = flat
        return pd.DataFrame(data)

    def metadata(self) -> dict[str, str]:
        return {
            "hwq.schema_version": str(SCHEMA_VERSION),
            "hwq.kind": "costs",
            "hwq.profile_sha256": self.profile.sha256,
            "hwq.graph_hash": self.graph.graph_hash,
            "hwq.device": self.profile.name,
            "hwq.device_kind": self.profile.kind,
        }

    def to_parquet(self, path: str | os.PathLike[str]) -> None:
        import pyarrow as pa

        from hwq.parquet_io import write_table_atomic

        table = pa.Table.from_pandas(self.to_pandas(), preserve_index=False)
        write_table_atomic(table, path, self.metadata())


def _check_pairs(pairs: Iterable[Sequence[int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for pair in pairs:
        if len(pair) != 2:
            raise UserError(f"bits: expected (w_bits, a_bits) pairs, found {pair!r}")
        w = check_bits(pair[0], f"bits {tuple(pair)}: w_bits")
        a = check_bits(pair[1], f"bits {tuple(pair)}: a_bits")
        out.append((w, a))
    if not out:
        raise UserError("bits: expected at least one (w_bits, a_bits) pair")
    return list(dict.fromkeys(out))


def cost_table(
    graph: LayerGraph,
    profile: DeviceProfile,
    bits: Sequence[Sequence[int]] | None = None,
    batch: int | None = None,
    *,
    bops_max: bool = False,
) -> CostTable:
    """Price every layer of `graph` at every pair of `bits` (default: the profile's defaults).

    A table priced before (same graph hash, profile sha256, pairs) is read back from the
    persistent cache without importing Numba; `HWQ_NO_CACHE=1` turns that off.
    """
    if batch is not None:
        graph = graph.with_batch(int(batch))
    pairs = _check_pairs(bits if bits is not None else profile.default_pairs())
    check_pairs(profile, pairs)
    path = _cache_path(graph, profile, pairs, bops_max)
    if path is not None and path.is_file():
        hit = _read_cached(path, graph, profile, pairs)
        if hit is not None:
            return hit
    table = _price(graph, profile, pairs, bops_max)
    if path is not None:
        _write_cached(path, table)
    return table


def _cache_path(
    graph: LayerGraph, profile: DeviceProfile, pairs: list[tuple[int, int]], bops_max: bool
) -> Path | None:
    """Where this table is cached, or None when caching is off (or the kind is not cacheable:
    it reads a file the profile's sha256 does not cover)."""
    device_kind = kind(profile.kind)
    if cache.disabled() or not device_kind.cacheable:
        return None
    key = json.dumps([SCHEMA_VERSION, __version__, _cost_models_digest(),
                      _module_digest(getattr(device_kind.price, "__module__", "")),
                      graph.graph_hash, profile.sha256, pairs, bops_max], separators=(",", ":"))
    return cache.cache_dir() / "tables" / f"{hashlib.sha256(key.encode()).hexdigest()}.npz"


@lru_cache(maxsize=1)
def _cost_models_digest() -> str:
    """sha256 of the cost models' sources: a changed model never serves an old cached table."""
    root = Path(__file__).resolve().parent.parent / "cost_models"
    spec = importlib.util.find_spec("hwq.cost_models")
    if spec is not None and spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
    digest = hashlib.sha256()
    for f in sorted(root.glob("*.py")):
        digest.update(f.name.encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()


@lru_cache(maxsize=256)
def _module_digest(module_name: str) -> str:
    """sha256 of the module that prices a kind: a plug-in kind outside `cost_models/` changed
    since never serves an old cached table either."""
    path = getattr(sys.modules.get(module_name), "__file__", None)
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else ""


def _read_cached(
    path: Path, graph: LayerGraph, profile: DeviceProfile, pairs: list[tuple[int, int]]
) -> CostTable | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            values = {c: npz[f"v_{c}"] for c in VALUE_COLUMNS}
            feasible = npz["feasible"]
            details = {k[2:]: npz[k] for k in npz.files if k.startswith("d_")}
            labels = json.loads(str(npz["labels"]))
    except (OSError, KeyError, ValueError):
        return None  # a damaged entry is priced again and overwritten
    return CostTable(graph, profile, pairs, values, feasible, details, labels)


def _write_cached(path: Path, table: CostTable) -> None:
    arrays = {f"v_{c}": table.values[c] for c in VALUE_COLUMNS}
    arrays.update({f"d_{c}": v for c, v in table.details.items()})
    arrays["feasible"] = table.feasible
    arrays["labels"] = np.array(json.dumps({k: list(v) for k, v in table.detail_labels.items()}))
    try:
        write_atomic(path, lambda fh: np.savez(fh, **arrays), fsync=False)
    except OSError as exc:  # a read-only cache costs speed, never the result
        log.debug("cost table cache not written: %s", exc)


def _price(
    graph: LayerGraph, profile: DeviceProfile, pairs: list[tuple[int, int]], bops_max: bool
) -> CostTable:
    from hwq.cost_models.metrics import layer_bops, layer_weight_bytes

    w = np.array([p[0] for p in pairs], dtype=np.int64)
    a = np.array([p[1] for p in pairs], dtype=np.int64)
    n, k = len(graph), len(pairs)
    macs = graph.column("macs").astype(np.int64)
    values: dict[str, np.ndarray] = {
        "macs": np.repeat(macs.astype(np.float64)[:, None], k, axis=1),
        "bops": layer_bops(macs, w, a, bops_max),
        "weight_bytes": layer_weight_bytes(graph.column("weight_params").astype(np.int64), w),
    }
    device_kind = kind(profile.kind)
    priced = device_kind.price(graph, profile, w, a)
    for col in PRICED_COLUMNS:
        values[col] = (np.asarray(priced.values[col], dtype=np.float64) if col in priced.values
                       else np.full((n, k), np.nan))
    feasible = (np.ones((n, k), dtype=bool) if priced.feasible is None
                else np.asarray(priced.feasible, dtype=bool))
    undeclared = set(priced.details) - set(device_kind.columns)
    if undeclared:
        raise TypeError(f"device kind {profile.kind}: price returned undeclared detail columns "
                        f"{sorted(undeclared)} (declare them in its DeviceKind.columns)")
    details = dict(priced.details)
    if priced.bits_per_weight is not None:  # formats that store scales beside the weights
        bpw = np.asarray(priced.bits_per_weight, dtype=np.float64)
        params = graph.column("weight_params").astype(np.float64)[:, None]
        values["weight_bytes"] = np.where(params > 0, params * np.nan_to_num(bpw) / 8.0, 0.0)
        details = {"bits_per_weight": bpw, **details}
    return CostTable(graph, profile, pairs, values, feasible, details,
                     dict(priced.detail_labels))

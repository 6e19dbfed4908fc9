"""The contract of a device kind: one `DeviceKind` object per `cost_models/<kind>.py`.

A kind declares, in one place, everything the rest of hwq needs to know about it:

* `properties` / `optional` / `file_keys`: the JSON schema of its own profile keys (added to the
  common keys of `hwq.profile_schema`), which of them may be left out, and which name a file
  (resolved relative to the profile file that set it);
* `rules`: the semantic checks a schema cannot say, returning `FILE:LINE: key.path: expected ...`
  problems (helpers in `hwq.profile_rules`);
* `param_names` / `params`: its flat float64 parameter vector, by name, from a profile;
* `price(graph, profile, w_bits, a_bits) -> Priced`: the costs of every layer at every pair;
* `network_terms`: optional whole-network feasibility of policy batches (MCU flash/SRAM fit);
* `cacheable`: whether a priced table may be cached by (graph, profile sha256, pairs) alone (a
  kind that reads a file the sha256 does not cover is not);
* `columns`: its own detail columns in a CostTable, beyond the common ones;
* `measured_pairs` / `summary`: hooks of a measured kind (`lut`): the pairs its table measured
  (its widths and default pairs when the profile lists none) and its own `hwq profile show` figures;
* `runtime`: for a kind whose figures belong to a runtime (mcu), which runtime a profile prices
  with and where its figures come from (`hwq profile list` / `show`).

A kind registers itself with `register_kind(KIND)` at the end of its module; the shipped kinds are
imported on first lookup (`SHIPPED_MODULES`). Importing a kind's module must stay light (no Numba,
no compiling): profile validation and cached tables use it; kernels are imported inside `price`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from hwq.errors import UserError
from hwq.profile_schema import kind_schema

if TYPE_CHECKING:
    from hwq.graph import LayerGraph
    from hwq.profile import DeviceProfile
    from hwq.profile_rules import RuleSource
    from hwq.tables import CostTable

# The CostTable columns a kind may fill (DESIGN.md §9; NaN where it fills none), in table order.
PRICED_COLUMNS: tuple[str, ...] = (
    "cycles", "compute_cycles", "stall_cycles", "latency_s", "energy_pj", "energy_core_pj",
    "energy_sram_pj", "energy_dram_pj", "dram_read_bits", "dram_write_bits",
)
# Modules of the shipped kinds, imported (so that they register) on the first lookup.
SHIPPED_MODULES: tuple[str, ...] = ("bitfusion", "bit_serial", "gpu", "mcu", "lut")


@dataclass(frozen=True)
class Priced:
    """What a kind's `price` returns: float64 [L, P] arrays over layers and pairs.

    `values`: any of PRICED_COLUMNS; `feasible`: bool [L, P] (None: all feasible); `details`: the
    kind's own columns; `detail_labels`: for a detail column holding codes, the label of each code.
    """

    values: Mapping[str, np.ndarray]
    feasible: np.ndarray | None = None
    details: Mapping[str, np.ndarray] = field(default_factory=dict)
    detail_labels: Mapping[str, Sequence[str]] = field(default_factory=dict)

    @classmethod
    def from_columns(cls, columns: Mapping[str, np.ndarray],
                     detail_labels: Mapping[str, Sequence[str]] | None = None,
                     feasible: np.ndarray | None = None) -> Priced:
        """Split a kernel's named outputs into CostTable values and the kind's details."""
        return cls({c: v for c, v in columns.items() if c in PRICED_COLUMNS}, feasible,
                   {c: v for c, v in columns.items() if c not in PRICED_COLUMNS},
                   dict(detail_labels or {}))


class Pricer(Protocol):
    def __call__(self, graph: LayerGraph, profile: DeviceProfile, w_bits: np.ndarray,
                 a_bits: np.ndarray) -> Priced: ...


class Rules(Protocol):
    def __call__(self, src: RuleSource) -> list[str]: ...


class Params(Protocol):
    def __call__(self, profile: DeviceProfile) -> np.ndarray: ...


@dataclass(frozen=True)
class NetworkFit:
    """Whole-network feasibility of P policies: feasible bool [P], a reason per policy ('' when
    it fits) and the evaluate columns the terms add (e.g. `overflow_bytes`, float [P])."""

    feasible: np.ndarray
    reasons: Sequence[str]
    columns: Mapping[str, np.ndarray] = field(default_factory=dict)


class NetworkTerms(Protocol):
    def __call__(self, table: CostTable, policies: np.ndarray,
                 peak_activation_bytes: np.ndarray) -> NetworkFit: ...


@dataclass(frozen=True)
class PairFigures:
    """A kind's own `hwq profile show` figures of one pair (None where it has none)."""

    peak_macs_per_s: float | None
    energy_per_mac_pj: float | None
    total_energy_per_mac_pj: float | None
    note: str | None = None


@dataclass(frozen=True)
class KindSummary:
    """How a kind's figures were obtained (`basis`) and the figures, one per requested pair."""

    basis: str
    figures: Sequence[PairFigures]


@dataclass(frozen=True)
class RuntimeInfo:
    """The runtime a profile's figures belong to: `name`, whether the profile names it (else it
    is the kind's documented default), and `provenance`: lines saying where the figures come from
    (what was fitted on what, with its residuals), for `hwq profile show`."""

    name: str
    named: bool
    provenance: tuple[str, ...] = ()


class Summarizer(Protocol):
    def __call__(self, profile: DeviceProfile,
                 pairs: Sequence[tuple[int, int]]) -> KindSummary: ...


@dataclass(frozen=True)
class DeviceKind:
    """One device kind: its profile keys, rules, parameters and cost model (module docstring)."""

    name: str
    properties: Mapping[str, Any]
    price: Pricer
    optional: tuple[str, ...] = ()
    file_keys: tuple[tuple[str, ...], ...] = ()
    rules: Rules | None = None
    param_names: tuple[str, ...] = ()
    params: Params | None = None
    network_terms: NetworkTerms | None = None
    cacheable: bool = True
    columns: tuple[str, ...] = ()
    measured_pairs: Callable[[DeviceProfile], frozenset[tuple[int, int]]] | None = None
    summary: Summarizer | None = None
    runtime: Callable[[DeviceProfile], RuntimeInfo] | None = None

    def schema(self) -> dict[str, Any]:
        """The JSON schema of this kind's profiles: the common keys plus its own."""
        return kind_schema(self.properties, self.optional)

    def problems(self, src: RuleSource) -> list[str]:
        """The kind's semantic problems of a profile (after its schema passed or not)."""
        return self.rules(src) if self.rules is not None else []


_KINDS: dict[str, DeviceKind] = {}
_shipped_loaded = False


def _load_shipped() -> None:
    global _shipped_loaded
    if not _shipped_loaded:
        _shipped_loaded = True
        for module in SHIPPED_MODULES:
            importlib.import_module(f"hwq.cost_models.{module}")


def register_kind(kind: DeviceKind) -> DeviceKind:
    """Make `kind` known to profiles, cost tables, evaluation and `hwq profile` (returns it)."""
    known = _KINDS.get(kind.name)
    if known is not None and known is not kind:
        raise ValueError(f"device kind {kind.name!r} is already registered")
    _KINDS[kind.name] = kind
    return kind


def unregister_kind(name: str) -> None:
    """Forget a registered kind (a plug-in's tests clean up with it)."""
    _KINDS.pop(name, None)


def kinds() -> tuple[str, ...]:
    """The names of the registered kinds: the shipped ones first (in SHIPPED_MODULES order; a
    shipped kind's module is named after it), then the others in the order they registered."""
    _load_shipped()
    shipped = [name for name in SHIPPED_MODULES if name in _KINDS]
    return (*shipped, *(name for name in _KINDS if name not in SHIPPED_MODULES))


def find_kind(name: object) -> DeviceKind | None:
    """The registered kind of that name, or None."""
    _load_shipped()
    return _KINDS.get(name) if isinstance(name, str) else None


def kind(name: str) -> DeviceKind:
    """The registered kind of that name; a UserError listing the registered kinds otherwise."""
    found = find_kind(name)
    if found is None:
        raise UserError(f"unknown device kind {name!r}: expected one of {', '.join(kinds())}")
    return found

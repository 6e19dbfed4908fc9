"""MCU runtimes: what one inference engine achieves per kernel class on one core (issue 17).

The `mcu` kind prices a layer with figures of the runtime that runs it (TFLite Micro's reference
kernels, CMSIS-NN, X-CUBE-AI, Plumerai, ...). A runtime's figures belong to a core, not to a
board: every board with that core (Cortex-M4, M7, M33) shares them, and the board contributes only
its clock, its flash (wait states, line width) and its average power. The figures of every
(runtime, core) live in one table, `mcu_runtimes.yaml` beside this module, written by
`benchmarks/calibrate_devices.py --write` from the measured MLPerf Tiny rows in
`benchmarks/data/mlperf_tiny_rows.csv`; each entry says whether it was fitted on measured rows
(with its residuals) or derived from fitted entries. This module reads and validates that table
(no Numba, no torch: profile validation imports it).

Per (runtime, core): `cycles_per_mac` of the four kernel classes (`conv`, `depthwise`,
`pointwise`, `fc`) for int8 weights and activations, and `glue_cycles_per_element`: the cycles
spent per output element of every layer outside its MAC loop (requantisation, bias, activation,
and the elementwise adds and pooling between layers), the "glue" of the network. Per runtime:
`int4_weight_unpack_overhead` (w4a8 cycles = w8a8 cycles x it, where the runtime has int4-weight
kernels; none: int4 weights compute at int8 speed and are only stored at 4 bits).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

# The runtimes a profile may name, and the one assumed when it names none (the library the mcu
# kind modelled before runtimes existed; a profile with its own cycles_per_mac keeps them).
RUNTIMES: tuple[str, ...] = ("tflm", "cmsis-nn", "x-cube-ai-7.3", "x-cube-ai-9.0", "plumerai",
                             "pulp-nn")
DEFAULT_RUNTIME = "cmsis-nn"
# The cores a profile may name (`ri5cy`: GAP8's RISC-V cluster, priced by its own figures).
CORES: tuple[str, ...] = ("cortex-m4", "cortex-m7", "cortex-m33", "ri5cy")
# The kernel classes, in the order of the kind's per-layer codes.
KERNEL_CLASSES: tuple[str, ...] = ("conv", "depthwise", "pointwise", "fc")
TABLE_FILE = "mcu_runtimes.yaml"

_POS = {"type": "number", "exclusiveMinimum": 0}
_NONNEG = {"type": "number", "minimum": 0}


def _obj(props: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": props, "additionalProperties": False,
            "required": [k for k in props if k not in optional]}


_RESIDUAL = _obj({"board": {"type": "string"}, "network": {"type": "string"},
                  "measured_ms": _POS, "predicted_ms": _POS, "residual": {"type": "number"}})
_ENTRY = _obj({
    "cycles_per_mac": _obj({c: _POS for c in KERNEL_CLASSES}),
    "glue_cycles_per_element": _NONNEG,
    "basis": {"enum": ["fitted", "derived"]},
    "source": {"type": "string", "minLength": 1},
    "residuals": {"type": "array", "items": _RESIDUAL},
}, optional=("residuals",))
_RUNTIME = _obj({
    "description": {"type": "string", "minLength": 1},
    "int4_weight_unpack_overhead": {"type": ["number", "null"], "minimum": 1},
    "sources": {"type": "object", "additionalProperties": {"type": "string", "minLength": 1}},
    "class_ratios": _obj({c: _POS for c in KERNEL_CLASSES}),
    "glue_macs_per_element": _POS,
    "cores": {"type": "object", "propertyNames": {"enum": list(CORES)},
              "additionalProperties": _ENTRY},
})
SCHEMA: dict[str, Any] = {
    **_obj({
        "schema_version": {"const": 1},
        "description": {"type": "string"},
        "runtimes": {"type": "object", "propertyNames": {"enum": list(RUNTIMES)},
                     "additionalProperties": _RUNTIME},
    }),
    "$schema": "https://json-schema.org/draft/2020-12/schema",
}


@dataclass(frozen=True)
class Residual:
    """One measured row an entry was fitted on: the fitted model's prediction against it."""

    board: str
    network: str
    measured_ms: float
    predicted_ms: float
    residual: float  # predicted / measured - 1


@dataclass(frozen=True)
class RuntimeEntry:
    """The figures of one runtime on one core (int8; see the module docstring)."""

    runtime: str
    core: str
    cycles_per_mac: Mapping[str, float]
    glue_cycles_per_element: float
    int4_weight_unpack_overhead: float | None
    basis: str  # fitted | derived
    source: str
    residuals: tuple[Residual, ...] = ()


@dataclass(frozen=True)
class RuntimeTable:
    description: str
    entries: Mapping[tuple[str, str], RuntimeEntry]
    runtime_descriptions: Mapping[str, str]

    def entry(self, runtime: str, core: str) -> RuntimeEntry | None:
        return self.entries.get((runtime, core))

    def cores_of(self, runtime: str) -> tuple[str, ...]:
        return tuple(c for c in CORES if (runtime, c) in self.entries)


def table_path() -> Path:
    return Path(str(resources.files("hwq.cost_models"))) / TABLE_FILE


def problems(document: Any) -> list[str]:
    """Every schema problem of a runtime-table document (empty when valid)."""
    validator = Draft202012Validator(SCHEMA)
    return [f"{'.'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}"
            for e in sorted(validator.iter_errors(document), key=lambda e: list(e.path))]


def parse(document: Mapping[str, Any]) -> RuntimeTable:
    """A validated table from its document (ValueError listing the problems otherwise)."""
    found = problems(document)
    if found:
        raise ValueError(f"{TABLE_FILE}: " + "; ".join(found))
    entries: dict[tuple[str, str], RuntimeEntry] = {}
    descriptions: dict[str, str] = {}
    for runtime, spec in document["runtimes"].items():
        descriptions[runtime] = spec["description"]
        overhead = spec.get("int4_weight_unpack_overhead")
        for core, e in spec["cores"].items():
            entries[(runtime, core)] = RuntimeEntry(
                runtime, core, dict(e["cycles_per_mac"]), float(e["glue_cycles_per_element"]),
                None if overhead is None else float(overhead), e["basis"], e["source"],
                tuple(Residual(**r) for r in e.get("residuals", ())))
    return RuntimeTable(document.get("description", ""), entries, descriptions)


@lru_cache(maxsize=1)
def runtime_table() -> RuntimeTable:
    """The shipped table (read once)."""
    return parse(yaml.safe_load(table_path().read_text(encoding="utf-8")))

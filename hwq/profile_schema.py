"""JSON schemas (Draft 2020-12) of device profiles: the keys every kind shares and the building
blocks the kinds' own schemas use (each kind declares its keys in `cost_models/<kind>.py`).
Units are in key names.

Numbers: sizes, clocks, bandwidths, counts, cycles, times, core energies and powers must be > 0.
Zero is allowed only where it means something: a buffer's per-bit read or write energy (an access
whose cost is counted elsewhere, or deliberately left out of an ablation) and a GPU's idle power
(power-gated when idle). docs/profiles.md lists every key of every kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

POS: dict[str, Any] = {"type": "number", "exclusiveMinimum": 0}
NONNEG: dict[str, Any] = {"type": "number", "minimum": 0}
POSINT: dict[str, Any] = {"type": "integer", "exclusiveMinimum": 0}
FRACTION: dict[str, Any] = {"type": "number", "exclusiveMinimum": 0, "maximum": 1}
BIT_VALUES = [1, 2, 3, 4, 5, 6, 7, 8, 16, 32]
BITS_LIST: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"enum": BIT_VALUES}}


def obj(props: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """A mapping with exactly these keys (all required except `optional`)."""
    return {"type": "object", "properties": props, "additionalProperties": False,
            "required": [k for k in props if k not in optional]}


BUFFER = obj({"size_bytes": POSINT, "read_pj_per_bit": NONNEG, "write_pj_per_bit": NONNEG})
OFFCHIP = obj({"bandwidth_bits_per_cycle": POS, "energy_pj_per_bit": POS})
CORE = obj({"energy_pj_per_cycle": POS})
TEXT: dict[str, Any] = {"type": "string", "minLength": 1}
# A calibrated profile's provenance (a kind adds it to its keys as `calibration`; the rules are
# hwq.profile_rules.calibration_problems, `hwq profile show` prints the targets with residuals):
# which keys were fitted, on what data, how; `carried_from` names the profile whose fitted values
# a profile reuses on another device. Each target is one figure of a network: `measured` (with
# its `source`) for a fitted or held-out row, absent for a prediction made before any comparison;
# `model` is what the profile prices it at (tests hold it to the cost model).
CALIBRATION_TARGET = obj({"name": TEXT, "unit": TEXT, "role": {"enum": ["fitted", "held_out",
                                                                       "predicted"]},
                          "model": POS, "measured": POS, "source": TEXT},
                         optional=("measured", "source"))
CALIBRATION = obj({"fitted": {"type": "array", "minItems": 1, "items": TEXT}, "data": TEXT,
                   "method": TEXT, "carried_from": TEXT,
                   "targets": {"type": "array", "items": CALIBRATION_TARGET}},
                  optional=("carried_from", "targets"))

COMMON: dict[str, Any] = {
    "schema_version": {"const": 1},
    "name": {"type": "string", "minLength": 1},
    "kind": {"type": "string"},
    "description": {"type": "string"},
    "clock_hz": POS,
    "bits": obj({"weights": BITS_LIST, "activations": BITS_LIST, "search_default": BITS_LIST}),
    "sources": {"type": "object", "additionalProperties": {"type": "string", "minLength": 1}},
    "extends": {"type": "string"},
}
COMMON_OPTIONAL = ("description", "sources", "extends")


def kind_schema(properties: Mapping[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """The schema of one kind: the common keys plus the kind's own, nothing else."""
    props = {**COMMON, **properties}
    optional = COMMON_OPTIONAL + optional
    schema = obj(props, optional=optional)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def common_schema() -> dict[str, Any]:
    """The keys every kind shares, other keys allowed: checked when `kind` itself is wrong."""
    schema: dict[str, Any] = {"type": "object", "properties": dict(COMMON),
                              "required": ["schema_version", "name"]}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema

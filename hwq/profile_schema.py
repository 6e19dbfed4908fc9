"""JSON schemas (Draft 2020-12) of the device profile kinds. Units are in key names."""

from __future__ import annotations

from typing import Any

POS: dict[str, Any] = {"type": "number", "exclusiveMinimum": 0}
NONNEG: dict[str, Any] = {"type": "number", "minimum": 0}
POSINT: dict[str, Any] = {"type": "integer", "exclusiveMinimum": 0}
BIT_VALUES = [1, 2, 3, 4, 5, 6, 7, 8, 16, 32]
BITS_LIST: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"enum": BIT_VALUES}}


def obj(props: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": props, "additionalProperties": False,
            "required": [k for k in props if k not in optional]}


BUFFER = obj({"size_bytes": POSINT, "read_pj_per_bit": NONNEG, "write_pj_per_bit": NONNEG})

COMMON: dict[str, Any] = {
    "schema_version": {"const": 1},
    "name": {"type": "string", "minLength": 1},
    "kind": {"type": "string"},
    "description": {"type": "string"},
    "clock_hz": POS,
    "bits": obj({"weights": BITS_LIST, "activations": BITS_LIST, "search_default": BITS_LIST}),
    "sources": {"type": "object", "additionalProperties": {"type": "string"}},
    "extends": {"type": "string"},
}
COMMON_OPTIONAL = ("description", "sources", "extends")

KIND_PROPERTIES: dict[str, dict[str, Any]] = {
    "bitfusion": {
        "array": obj({"rows": POSINT, "cols": POSINT, "max_bits": POSINT, "min_bits": POSINT,
                      "partial_sum_bits": POSINT}),
        "buffers": obj({"wbuf": BUFFER, "ibuf": BUFFER, "obuf": BUFFER}),
        "offchip": obj({"bandwidth_bits_per_cycle": POS, "energy_pj_per_bit": NONNEG}),
        "core": obj({"energy_pj_per_cycle": NONNEG}),
    },
    "bit_serial": {
        "compute": obj(
            {
                "law": {"enum": ["serial_activations", "serial_weights", "serial_both",
                                 "binary_matrix"]},
                "fc_law": {"enum": ["serial_activations", "serial_weights", "serial_both",
                                    "binary_matrix", "parallel"]},
                "lanes": POSINT,
                "parallel_bits": POSINT,
                "bits_per_cycle": POSINT,
                "binary_array": obj({"dm": POSINT, "dk": POSINT, "dn": POSINT}),
            },
            optional=("fc_law", "bits_per_cycle", "binary_array", "lanes"),
        ),
        "buffers": {"type": "object", "additionalProperties": BUFFER, "minProperties": 1},
        "offchip": obj({"bandwidth_bytes_per_cycle": POS, "energy_pj_per_bit": NONNEG}),
        "core": obj({"energy_pj_per_lane_cycle": NONNEG}),
    },
    "gpu": {
        "sm_count": POSINT,
        "tensor_core": obj({"fp16_ops_per_s": POS, "int8_ops_per_s": POS, "int4_ops_per_s": POS},
                           optional=("int4_ops_per_s",)),
        "gemm_tile": obj({"m": POSINT, "n": POSINT, "k": POSINT}),
        "memory": obj({"dram_bytes_per_s": POS, "l2_bytes": POSINT, "dram_pj_per_bit": NONNEG}),
        "launch_overhead_s": POS,
        "efficiency": {"type": "object", "maxProperties": 3, "minProperties": 1,
                       "additionalProperties": {"type": "number", "exclusiveMinimum": 0,
                                                "maximum": 1}},
        "power": obj({"idle_w": NONNEG, "max_w": POS}),
        "fallback": obj({"int4": {"enum": ["int8", "fp16"]},
                         "below_int4": {"enum": ["int4", "int8", "fp16"]}}, optional=("int4",)),
    },
    "mcu": {
        "cores": POSINT,
        "cycles_per_mac": {
            "type": "object", "required": ["w8a8"], "minProperties": 1,
            "propertyNames": {"pattern": "^w[1-8]a[1-8]$"},
            "additionalProperties": obj({"conv": POS, "depthwise": POS, "pointwise": POS,
                                         "fc": POS}),
        },
        "unpack_overhead": {"type": "number", "minimum": 1},
        "memory": obj({"flash_bytes": POSINT, "sram_bytes": POSINT, "runtime_flash_bytes": POSINT,
                       "runtime_sram_bytes": POSINT}),
        "power": obj({"active_w": POS}),
    },
    "lut": {"table": {"type": "string", "minLength": 1}},
}
# A lut profile may omit `bits`: the widths default to those measured in its table.
KIND_OPTIONAL: dict[str, tuple[str, ...]] = {
    "lut": ("clock_hz", "bits"),
    "mcu": ("unpack_overhead",),
}
KINDS = tuple(KIND_PROPERTIES)


def schema_for(kind: str) -> dict[str, Any]:
    props = {**COMMON, **KIND_PROPERTIES[kind]}
    optional = COMMON_OPTIONAL + KIND_OPTIONAL.get(kind, ())
    schema = obj(props, optional=optional)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema

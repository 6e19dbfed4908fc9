"""JSON schemas (Draft 2020-12) of the device profile kinds. Units are in key names.

Numbers: sizes, clocks, bandwidths, counts, cycles, times, core energies and powers must be > 0.
Zero is allowed only where it means something: a buffer's per-bit read or write energy (an access
whose cost is counted elsewhere, or deliberately left out of an ablation) and a GPU's idle power
(power-gated when idle). docs/profiles.md lists every key of every kind.
"""

from __future__ import annotations

from typing import Any

POS: dict[str, Any] = {"type": "number", "exclusiveMinimum": 0}
NONNEG: dict[str, Any] = {"type": "number", "minimum": 0}
POSINT: dict[str, Any] = {"type": "integer", "exclusiveMinimum": 0}
FRACTION: dict[str, Any] = {"type": "number", "exclusiveMinimum": 0, "maximum": 1}
BIT_VALUES = [1, 2, 3, 4, 5, 6, 7, 8, 16, 32]
BITS_LIST: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"enum": BIT_VALUES}}
LAWS = ["serial_activations", "serial_weights", "serial_both", "binary_matrix"]
GPU_PRECISIONS = ["int4", "int8", "fp16"]


def obj(props: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """A mapping with exactly these keys (all required except `optional`)."""
    return {"type": "object", "properties": props, "additionalProperties": False,
            "required": [k for k in props if k not in optional]}


BUFFER = obj({"size_bytes": POSINT, "read_pj_per_bit": NONNEG, "write_pj_per_bit": NONNEG})
LAYER_CYCLES = obj({"conv": POS, "depthwise": POS, "pointwise": POS, "fc": POS})

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

KIND_PROPERTIES: dict[str, dict[str, Any]] = {
    "bitfusion": {
        "array": obj({"rows": POSINT, "cols": POSINT, "max_bits": POSINT, "min_bits": POSINT,
                      "partial_sum_bits": POSINT}),
        "buffers": obj({"wbuf": BUFFER, "ibuf": BUFFER, "obuf": BUFFER}),
        "offchip": obj({"bandwidth_bits_per_cycle": POS, "energy_pj_per_bit": POS}),
        "core": obj({"energy_pj_per_cycle": POS}),
    },
    "bit_serial": {
        "compute": obj(
            {
                "law": {"enum": LAWS},
                "fc_law": {"enum": [*LAWS, "parallel"]},
                "lanes": POSINT,
                "parallel_bits": POSINT,
                "bits_per_cycle": POSINT,
                "binary_array": obj({"dm": POSINT, "dk": POSINT, "dn": POSINT}),
            },
            # lanes + parallel_bits (serial laws) or binary_array (binary_matrix): semantic rule
            optional=("fc_law", "lanes", "parallel_bits", "bits_per_cycle", "binary_array"),
        ),
        "buffers": obj({"weights": BUFFER, "activations": BUFFER, "outputs": BUFFER},
                       optional=("outputs",)),
        "offchip": obj({"bandwidth_bits_per_cycle": POS, "energy_pj_per_bit": POS}),
        "core": obj({"energy_pj_per_cycle": POS}),
    },
    "gpu": {
        "sm_count": POSINT,
        "tensor_core": obj({"fp16_ops_per_s": POS, "int8_ops_per_s": POS, "int4_ops_per_s": POS},
                           optional=("int4_ops_per_s",)),
        "cuda_core": obj({"fp32_ops_per_s": POS}),
        "gemm_tile": obj({"m": POSINT, "n": POSINT, "k": {"anyOf": [
            POSINT, obj({"int4": POSINT, "int8": POSINT, "fp16": POSINT}, optional=("int4",))]}}),
        "memory": obj({"dram_bytes_per_s": POS, "l2_bytes": POSINT, "dram_pj_per_bit": POS}),
        "launch_overhead_s": POS,
        "efficiency": obj({"compute": FRACTION, "memory": FRACTION,
                           "overlap": {"type": "number", "minimum": 0, "maximum": 1}}),
        "power": obj({"idle_w": NONNEG, "max_w": POS}),
        "fallback": obj({"int4": {"enum": GPU_PRECISIONS[1:]},
                         "below_int4": {"enum": GPU_PRECISIONS}}, optional=("int4", "below_int4")),
    },
    "mcu": {
        "cores": POSINT,
        "cycles_per_mac": {
            "type": "object", "required": ["w8a8"],
            "propertyNames": {"pattern": "^w[1-8]a[1-8]$"},
            "additionalProperties": LAYER_CYCLES,
        },
        "int4_weight_unpack_overhead": {"type": "number", "minimum": 1},
        "memory": obj({"flash_bytes": POSINT, "sram_bytes": POSINT, "runtime_flash_bytes": POSINT,
                       "runtime_sram_bytes": POSINT}),
        "power": obj({"active_w": POS}),
    },
    "lut": {"table": {"type": "string", "minLength": 1}},
}
# Optional keys per kind. A lut profile may omit `bits`: its widths are those its table measured.
KIND_OPTIONAL: dict[str, tuple[str, ...]] = {
    "gpu": ("cuda_core", "fallback"),
    "mcu": ("int4_weight_unpack_overhead",),
    "lut": ("clock_hz", "bits"),
}
KINDS = tuple(KIND_PROPERTIES)
# Keys whose value names a file, resolved relative to the profile file that set it.
FILE_KEYS: tuple[tuple[str, ...], ...] = (("table",),)


def schema_for(kind: str) -> dict[str, Any]:
    """The schema of one kind: the common keys plus the kind's sections, nothing else."""
    props = {**COMMON, **KIND_PROPERTIES[kind]}
    optional = COMMON_OPTIONAL + KIND_OPTIONAL.get(kind, ())
    schema = obj(props, optional=optional)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def common_schema() -> dict[str, Any]:
    """The keys every kind shares, other keys allowed: checked when `kind` itself is wrong."""
    schema: dict[str, Any] = {"type": "object", "properties": dict(COMMON),
                              "required": ["schema_version", "name"]}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema

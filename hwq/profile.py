"""Device profiles: YAML files validated by a typed schema plus semantic rules (DESIGN.md §3).

Every problem of a file is reported together, one line each: `FILE:LINE: key.path: expected ...,
found ...`. `extends: NAME_OR_PATH` starts from another profile and overrides keys.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from hwq.errors import ProfileError
from hwq.profile_schema import BIT_VALUES, KINDS, schema_for
from hwq.yaml_lines import load_with_lines

_MISSING = object()
_TYPE_NAMES = {"number": "a number", "integer": "an integer", "string": "a string",
               "object": "a mapping", "array": "a list", "boolean": "true or false"}


def _shipped_dir() -> Path:
    return Path(str(resources.files("hwq.device_profiles")))


def list_profiles() -> list[str]:
    """Names of the shipped profiles, sorted."""
    return sorted(p.stem for p in _shipped_dir().glob("*.yaml"))


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class Bits:
    weights: tuple[int, ...]
    activations: tuple[int, ...]
    search_default: tuple[int, ...]

    def __getitem__(self, key: str) -> tuple[int, ...]:
        return getattr(self, key)


@dataclass(frozen=True)
class DeviceProfile:
    """A validated, frozen device profile."""

    data: Mapping[str, Any]
    path: Path | None = None
    _plain: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def kind(self) -> str:
        return str(self.data["kind"])

    @property
    def description(self) -> str:
        return str(self.data.get("description", ""))

    @property
    def clock_hz(self) -> float | None:
        value = self.data.get("clock_hz")
        return None if value is None else float(value)

    @cached_property
    def bits(self) -> Bits:
        b = self.data.get("bits")
        if b is None:  # a lut profile without `bits`: the widths its table measured
            return _table_bits(self.resolve_path(str(self.data["table"])))
        return Bits(tuple(b["weights"]), tuple(b["activations"]), tuple(b["search_default"]))

    @property
    def sources(self) -> Mapping[str, str]:
        return self.data.get("sources", MappingProxyType({}))

    @cached_property
    def sha256(self) -> str:
        text = json.dumps(self._plain, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key_path: str, default: Any = _MISSING) -> Any:
        node: Any = self.data
        for part in key_path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                if default is _MISSING:
                    raise KeyError(f"profile {self.name}: no key {key_path}")
                return default
            node = node[part]
        return node

    def to_yaml(self) -> str:
        return yaml.safe_dump(self._plain, sort_keys=False, default_flow_style=None)

    def default_pairs(self) -> list[tuple[int, int]]:
        d = self.bits.search_default
        return [(w, a) for w in d for a in d]

    def resolve_path(self, rel: str | os.PathLike[str]) -> Path:
        p = Path(rel)
        if p.is_absolute() or self.path is None:
            return p
        return self.path.parent / p


def _table_bits(path: Path) -> Bits:
    """Widths measured in a lut table (columns w_bits, a_bits); search_default = both sides'."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq  # lazy: only lut profiles with Parquet tables need it

        cols = pq.read_table(path, columns=["w_bits", "a_bits"]).to_pydict()
        w_col, a_col = cols["w_bits"], cols["a_bits"]
    else:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        w_col = [r["w_bits"] for r in rows]
        a_col = [r["a_bits"] for r in rows]
    weights = tuple(sorted({int(float(v)) for v in w_col}))
    acts = tuple(sorted({int(float(v)) for v in a_col}))
    return Bits(weights, acts, tuple(b for b in weights if b in acts))


# -- loading and validation ---------------------------------------------------------------------
def _dotted(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, int | float):
        return f"{value!r}"
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


class _Resolved:
    """Merged data of a profile and its `extends` chain, with each key's FILE:LINE."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.where: dict[tuple[Any, ...], str] = {}
        self.problems: list[str] = []
        self.root = "profile"
        self.broken = False  # the extends chain could not be resolved: skip the schema checks

    def at(self, path: tuple[Any, ...]) -> str:
        for n in range(len(path), 0, -1):
            if path[:n] in self.where:
                return self.where[path[:n]]
        return f"{self.root}:1"


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _locate(ref: str, relative_to: Path | None) -> Path | None:
    if ref in list_profiles():
        return _shipped_dir() / f"{ref}.yaml"
    p = Path(ref)
    if not p.is_absolute() and relative_to is not None:
        p = relative_to.parent / p
    return p if p.is_file() else None


def _resolve(path: Path, chain: tuple[Path, ...] = ()) -> _Resolved:
    res = _Resolved()
    res.root = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        res.problems.append(f"{path}:1: cannot read the profile: {exc.strerror}")
        return res
    data, lines, problems = load_with_lines(text, str(path))
    res.problems.extend(problems)
    if data is None:
        return res
    if not isinstance(data, dict):
        res.problems.append(f"{path}:1: (top level): expected a mapping, found {_describe(data)}")
        return res
    here = {k: f"{path}:{v}" for k, v in lines.items()}
    ref = data.get("extends")
    if ref is not None:
        line = here.get(("extends",), f"{path}:1")
        base_path = _locate(str(ref), path) if isinstance(ref, str) else None
        seen = [p.resolve() for p in (*chain, path)]
        if base_path is None:
            res.broken = True
            res.problems.append(
                f"{line}: extends: expected a shipped profile name ({', '.join(list_profiles())})"
                f" or a profile path, found {_describe(ref)}"
            )
        elif base_path.resolve() in seen:
            res.broken = True
            cycle = [*seen[seen.index(base_path.resolve()):], base_path.resolve()]
            res.problems.append(
                f"{line}: extends: expected no cycle, found "
                + " -> ".join(c.name for c in cycle)
            )
        else:
            base = _resolve(base_path, (*chain, path))
            res.problems.extend(base.problems)
            res.broken = base.broken or not base.data
            res.where.update(base.where)
            merged = _merge(base.data, {k: v for k, v in data.items() if k != "extends"})
            res.where.update(here)
            res.data = merged
            return res
    res.where.update(here)
    res.data = {k: v for k, v in data.items() if k != "extends"}
    return res


def _number_hint(value: Any) -> str:
    """For a number YAML 1.1 read as text (`500e6`): how to write it so it reads as a number."""
    if not isinstance(value, str):
        return ""
    try:
        number = float(value.replace("_", ""))
    except ValueError:
        return ""
    if number != number or number in (float("inf"), float("-inf")):
        return ""
    mantissa, exponent = f"{number:.6e}".split("e")
    mantissa = mantissa.rstrip("0")
    mantissa += "0" if mantissa.endswith(".") else ""
    scientific = f"{mantissa}e{int(exponent):+d}"
    plain = str(int(number)) if number == int(number) and abs(number) < 1e18 else repr(number)
    return f" (write {plain} or {scientific})"


def _schema_problems(res: _Resolved) -> list[str]:
    data = res.data
    kind = data.get("kind")
    out: list[str] = []
    if kind not in KINDS:
        where = res.at(("kind",))
        found = _describe(kind) if "kind" in data else "nothing"
        out.append(f"{where}: kind: expected one of {', '.join(KINDS)}, found {found}")
        return out
    validator = Draft202012Validator(schema_for(str(kind)))
    for err in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.path))):
        path = tuple(err.absolute_path)
        v, val = err.validator, err.instance
        if v == "additionalProperties":
            allowed = set(err.schema.get("properties", {}))
            for extra in sorted(set(val) - allowed):
                out.append(f"{res.at((*path, extra))}: {_dotted((*path, extra))}: expected one "
                           f"of the keys {', '.join(sorted(allowed))}, found unknown key "
                           f"{extra!r}")
            continue
        if v == "required":
            missing = err.message.split("'")[1] if "'" in err.message else err.message
            out.append(f"{res.at(path)}: {_dotted((*path, missing))}: expected a value, "
                       "found nothing (required key missing)")
            continue
        where, dotted = res.at(path), _dotted(path)
        if v == "type":
            types = err.validator_value if isinstance(err.validator_value, list) else [
                err.validator_value]
            expected = " or ".join(_TYPE_NAMES.get(t, t) for t in types)
            hint = _number_hint(val) if "number" in types or "integer" in types else ""
            out.append(f"{where}: {dotted}: expected {expected}, found {_describe(val)}{hint}")
        elif v in ("exclusiveMinimum", "minimum"):
            op = ">" if v == "exclusiveMinimum" else ">="
            out.append(f"{where}: {dotted}: expected a number {op} {err.validator_value}, "
                       f"found {_describe(val)}")
        elif v in ("enum", "const"):
            options = err.validator_value if v == "enum" else [err.validator_value]
            out.append(f"{where}: {dotted}: expected one of {', '.join(map(str, options))}, "
                       f"found {_describe(val)}")
        elif v == "minItems":
            out.append(f"{where}: {dotted}: expected a non-empty list, found an empty list")
        elif v in ("maxProperties", "minProperties"):
            bound = "at most" if v == "maxProperties" else "at least"
            out.append(
                f"{where}: {dotted}: expected {bound} {err.validator_value} keys, "
                f"found {len(val)} ({', '.join(map(str, val))})"
            )
        elif v == "maximum":
            out.append(
                f"{where}: {dotted}: expected a number <= {err.validator_value}, "
                f"found {_describe(val)}"
            )
        elif v == "propertyNames":
            out.append(f"{where}: {dotted}: expected kernel names like w8a8 or w4a8, "
                       f"found {_describe(val)}")
        else:
            out.append(f"{where}: {dotted}: expected {v} {err.validator_value}, "
                       f"found {_describe(val)}")
    return out


def _semantic_problems(res: _Resolved) -> list[str]:
    data = res.data
    out: list[str] = []
    bits = data.get("bits")
    if isinstance(bits, dict):
        default = bits.get("search_default")
        for side in ("weights", "activations"):
            allowed = bits.get(side)
            if isinstance(default, list) and isinstance(allowed, list) and allowed:
                extra = [b for b in default if b not in allowed and b in BIT_VALUES]
                if extra:
                    out.append(f"{res.at(('bits', 'search_default'))}: bits.search_default: "
                               f"expected widths listed in bits.{side}, found {extra}")
    if data.get("kind") == "bitfusion":
        arr = data.get("array")
        if isinstance(arr, dict):
            lo, hi = arr.get("min_bits"), arr.get("max_bits")
            if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
                out.append(f"{res.at(('array', 'min_bits'))}: array.min_bits: expected at most "
                           f"array.max_bits ({hi}), found {lo}")
    if data.get("kind") == "bit_serial":
        comp = data.get("compute")
        if isinstance(comp, dict):
            if comp.get("law") == "binary_matrix" and "binary_array" not in comp:
                out.append(f"{res.at(('compute',))}: compute.binary_array: expected dm, dk, dn "
                           "for the binary_matrix law, found nothing")
            if comp.get("law") != "binary_matrix" and "lanes" not in comp:
                out.append(f"{res.at(('compute',))}: compute.lanes: expected the number of "
                           "bit-serial lanes, found nothing")
    if data.get("kind") == "gpu" and isinstance(data.get("tensor_core"), dict):
        widths = [b for side in ("weights", "activations")
                  for b in (bits or {}).get(side, []) if isinstance(b, int)]
        fallback = data.get("fallback")
        if ("int4_ops_per_s" not in data["tensor_core"] and any(b <= 4 for b in widths)
                and not (isinstance(fallback, dict) and "int4" in fallback)):
            out.append(
                f"{res.at(('fallback',))}: fallback.int4: expected int8 or fp16 (the device has "
                "no tensor_core.int4_ops_per_s but bits lists widths <= 4), found nothing"
            )
    if data.get("kind") == "lut" and isinstance(data.get("table"), str):
        out += _table_problems(res)
    sources = data.get("sources")
    if isinstance(sources, dict):
        for key in sources:
            node: Any = data
            for part in str(key).split("."):
                node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
            if node is _MISSING:
                out.append(f"{res.at(('sources', key))}: sources.{key}: expected the key path "
                           f"of a figure in this profile, found {key!r}, which does not exist")
    return out


def _table_problems(res: _Resolved) -> list[str]:
    """A lut table must exist (relative to the profile file, as resolve_path) and be CSV/Parquet."""
    where = res.at(("table",))
    ref = str(res.data["table"])
    table = Path(ref)
    if not table.is_absolute():
        table = Path(res.root).parent / table
    if table.suffix.lower() not in (".csv", ".parquet"):
        return [f"{where}: table: expected a .csv or .parquet file, found {ref!r}"]
    if not table.is_file():
        return [f"{where}: table: expected an existing file (relative to the profile), "
                f"found {ref!r}, which does not exist ({table})"]
    if "bits" in res.data:
        return []
    try:
        _table_bits(table)
    except (KeyError, ValueError, OSError) as exc:
        return [f"{where}: table: expected columns w_bits and a_bits (the profile has no "
                f"`bits`), found a table that cannot give them ({exc!r})"]
    return []


def _load_checked(path: Path) -> tuple[_Resolved, list[str]]:
    res = _resolve(path)
    problems = list(res.problems)
    if res.data and not res.broken:
        problems += _schema_problems(res) + _semantic_problems(res)
    elif not problems:
        problems.append(f"{path}:1: (top level): expected a profile mapping, found nothing")
    return res, sorted(dict.fromkeys(problems), key=_problem_order)


def _problem_order(problem: str) -> tuple[str, int]:
    m = re.match(r"(.*?):(\d+): ", problem)
    return (m.group(1), int(m.group(2))) if m else (problem, 0)


def validate_file(path: str | os.PathLike[str]) -> list[str]:
    """Every problem of the profile at `path` (empty when it is valid)."""
    p = Path(path)
    if not p.is_file():
        return [f"{p}:1: no such profile file"]
    return _load_checked(p)[1]


def load_profile(name_or_path: str | os.PathLike[str]) -> DeviceProfile:
    """A shipped profile by name, or a YAML file by path; raises ProfileError listing problems."""
    ref = str(name_or_path)
    if ref in list_profiles():
        path = _shipped_dir() / f"{ref}.yaml"
    else:
        path = Path(ref)
        if not path.is_file():
            raise ProfileError(
                f"unknown device {ref!r}: not a shipped profile ({', '.join(list_profiles())}) "
                "and not a profile file"
            )
    res, problems = _load_checked(path)
    if problems:
        raise ProfileError(problems)
    return DeviceProfile(_freeze(res.data), path, _thaw(res.data))

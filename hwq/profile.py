"""Device profiles: YAML files validated by a typed schema plus semantic rules (DESIGN.md §3).

Every problem of a file is reported together, one line each: `FILE:LINE: key.path: expected ...,
found ...`. `extends: NAME_OR_PATH` starts from another profile and overrides keys.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators

from hwq.cost_models.kind import find_kind, kind, kinds
from hwq.errors import ProfileError
from hwq.profile_rules import bits_problems, dotted, finite_problems
from hwq.profile_schema import common_schema
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
    """A validated, frozen device profile: `load_profile` makes one.

    `data` is the resolved profile (after `extends`), read-only all the way down; `sha256` hashes
    it as canonical JSON. Two profiles are equal when their data and path are.
    """

    data: Mapping[str, Any]
    path: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", _freeze(self.data))

    def __hash__(self) -> int:
        return hash((self.sha256, self.path))

    def to_dict(self) -> dict[str, Any]:
        """A mutable deep copy of the resolved profile (plain dicts and lists)."""
        return _thaw(self.data)

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
        if b is None:  # a measured kind's profile without `bits`: the widths it measured
            measured = self._measured_pairs
            if measured is None:
                raise ProfileError(f"profile {self.name}: no bits and no measured pairs")
            return _measured_bits(measured)
        return Bits(tuple(b["weights"]), tuple(b["activations"]), tuple(b["search_default"]))

    @property
    def sources(self) -> Mapping[str, str]:
        return self.data.get("sources", MappingProxyType({}))

    @cached_property
    def sha256(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key_path: str, default: Any = _MISSING) -> Any:
        """The value at a dotted key path (`buffers.wbuf.size_bytes`); KeyError or `default`."""
        node: Any = self.data
        for part in key_path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                if default is _MISSING:
                    raise KeyError(f"profile {self.name}: no key {key_path}")
                return default
            node = node[part]
        return node

    def to_yaml(self) -> str:
        """The resolved profile as YAML (loads back to the same sha256)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def default_pairs(self) -> list[tuple[int, int]]:
        """All (w_bits, a_bits) combinations of bits.search_default, weights first (w-major); for
        a measured kind (lut) only those it measured (when it measured any of them)."""
        d = self.bits.search_default
        pairs = [(w, a) for w in d for a in d]
        measured = self._measured_pairs
        if measured is not None:
            return [p for p in pairs if p in measured] or pairs
        return pairs

    @cached_property
    def _measured_pairs(self) -> frozenset[tuple[int, int]] | None:
        """The pairs a measured kind's profile measured (read once per profile); else None."""
        hook = kind(self.kind).measured_pairs
        return None if hook is None else hook(self)

    def resolve_path(self, rel: str | os.PathLike[str]) -> Path:
        """A path a profile names, relative to the profile file (absolute paths unchanged)."""
        p = Path(rel)
        if p.is_absolute() or self.path is None:
            return p
        return self.path.parent / p


def _measured_bits(pairs: frozenset[tuple[int, int]]) -> Bits:
    """Widths of measured pairs; search_default = the widths on both sides."""
    weights = tuple(sorted({w for w, _ in pairs}))
    acts = tuple(sorted({a for _, a in pairs}))
    return Bits(weights, acts, tuple(b for b in weights if b in acts))


# -- loading and validation ---------------------------------------------------------------------
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


def _merge(base: dict[str, Any], over: Mapping[str, Any],
           removed: list[tuple[str, ...]], at: tuple[str, ...] = ()) -> dict[str, Any]:
    """Deep merge of `over` onto `base`; a key set to null (`~`) in `over` removes it."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
            removed.append((*at, k))
        elif isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v, removed, (*at, k))
        else:
            out[k] = copy.deepcopy(v)
    return out


def _drop_sources_of(data: dict[str, Any], removed: list[tuple[str, ...]]) -> dict[str, Any]:
    """Removing a key through `extends` also removes the sources that cite it."""
    sources = data.get("sources")
    if not removed or not isinstance(sources, dict):
        return data
    data["sources"] = {k: v for k, v in sources.items()
                       if not any(tuple(str(k).split("."))[:len(r)] == r for r in removed)}
    return data


def _locate(ref: str, relative_to: Path | None) -> Path | None:
    if ref in list_profiles():
        return _shipped_dir() / f"{ref}.yaml"
    p = Path(ref)
    if not p.is_absolute() and relative_to is not None:
        p = relative_to.parent / p
    return p if p.is_file() else None


def _rebase_files(data: dict[str, Any], base: Path, child: Path) -> dict[str, Any]:
    """A relative file a base profile names stays that file when another directory extends it."""
    if base.resolve().parent == child.resolve().parent:
        return data
    out = copy.deepcopy(data)
    file_keys = dict.fromkeys(k for name in kinds() for k in kind(name).file_keys)
    for key_path in file_keys:
        node: Any = out
        for part in key_path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        value = node.get(key_path[-1]) if isinstance(node, dict) else None
        if isinstance(value, str) and not Path(value).is_absolute():
            target = base.resolve().parent / value
            node[key_path[-1]] = Path(os.path.relpath(target, child.resolve().parent)).as_posix()
    return out


def text_line_of(data: bytes, offset: int) -> int:
    """The 1-based line of byte `offset` in `data`."""
    return data.count(b"\n", 0, offset) + 1


def _resolve(path: Path, chain: tuple[Path, ...] = ()) -> _Resolved:
    """Parse `path` and its `extends` chain into merged data with each key's FILE:LINE."""
    res = _Resolved()
    res.root = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        res.problems.append(f"{path}:1: (file): expected a readable file, found {exc.strerror}")
        return res
    except UnicodeDecodeError as exc:
        line = text_line_of(path.read_bytes(), exc.start)
        res.problems.append(f"{path}:{line}: (file): expected a UTF-8 YAML profile, found a "
                            f"byte that is not UTF-8 text (0x{exc.object[exc.start]:02x} at "
                            f"byte {exc.start})")
        return res
    data, lines, problems = load_with_lines(text, str(path))
    res.problems.extend(problems)
    if data is None:
        return res
    if not isinstance(data, dict):
        res.problems.append(f"{path}:1: (top level): expected a mapping, found {_describe(data)}")
        return res
    here = {k: f"{path}:{v}" for k, v in lines.items()}
    own = {k: v for k, v in data.items() if k != "extends"}
    res.where.update(here)
    if data.get("extends") is None:  # a null here is a value, reported by the schema
        res.data = own
        return res
    _extend(res, data["extends"], here.get(("extends",), f"{path}:1"), path, chain)
    res.where.update(here)  # this file's lines win over its base's
    removed: list[tuple[str, ...]] = []
    res.data = _drop_sources_of(_merge(res.data, own, removed), removed)
    return res


def _extend(res: _Resolved, ref: Any, line: str, path: Path, chain: tuple[Path, ...]) -> None:
    """Start `res` from the base profile `ref` names, or record why that is impossible."""
    base_path = _locate(ref, path) if isinstance(ref, str) else None
    seen = [p.resolve() for p in (*chain, path)]
    if base_path is None:
        res.broken = True
        res.problems.append(f"{line}: extends: expected a shipped profile name "
                            f"({', '.join(list_profiles())}) or a profile path, found "
                            f"{_describe(ref)}")
    elif base_path.resolve() in seen:
        res.broken = True
        cycle = [*seen[seen.index(base_path.resolve()):], base_path.resolve()]
        res.problems.append(f"{line}: extends: expected no cycle, found "
                            + " -> ".join(c.name for c in cycle))
    else:
        base = _resolve(base_path, (*chain, path))
        res.problems.extend(base.problems)
        res.broken = base.broken or not base.data
        res.where.update(base.where)
        res.data = _rebase_files(base.data, base_path, path)


def _number_hint(value: Any) -> str:
    """How to write a value so YAML reads the number meant: `500e6` -> 500000000 or 5.0e+8."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e18:
        return f" (write {int(value)})"
    if not isinstance(value, str):
        return ""
    try:
        number = float(value.replace("_", ""))
    except ValueError:
        return ""
    if not math.isfinite(number):
        return ""
    mantissa, exponent = f"{number:.6e}".split("e")
    mantissa = mantissa.rstrip("0")
    mantissa += "0" if mantissa.endswith(".") else ""
    scientific = f"{mantissa}e{int(exponent):+d}"
    plain = str(int(number)) if number == int(number) and abs(number) < 1e18 else repr(number)
    return f" (write {plain} or {scientific})"


def _is_strict_int(checker: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


# Counts and sizes are written as integers: jsonschema's default would accept 16.0.
_Validator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_strict_int),
)


def _schema_problems(res: _Resolved) -> list[str]:
    data = res.data
    device_kind = find_kind(data.get("kind"))
    if device_kind is not None:
        schema = device_kind.schema()
        out: list[str] = []
    else:  # still check the keys every kind shares
        schema = common_schema()
        found = _describe(data["kind"]) if "kind" in data else "nothing"
        out = [f"{res.at(('kind',))}: kind: expected one of {', '.join(kinds())}, found {found}"]
        out += _unknown_keys_of_any_kind(res)
    errors = sorted(_Validator(schema).iter_errors(data), key=lambda e: list(map(str, e.path)))
    for err in errors:
        if device_kind is None and list(err.absolute_path) == ["kind"]:
            continue
        out += _error_messages(err, res)
    return out


def _unknown_keys_of_any_kind(res: _Resolved) -> list[str]:
    """Top-level keys that neither the common schema nor any registered kind declares: a
    profile whose `kind` is wrong still hears about its other misspelt keys."""
    known = set(common_schema()["properties"])
    for name in kinds():
        known |= set(kind(name).properties)
    return [f"{res.at((key,))}: {key}: expected a key of the common profile keys "
            f"({', '.join(sorted(common_schema()['properties']))}) or of a device kind "
            f"({', '.join(kinds())}), found unknown key {key!r}"
            for key in sorted(map(str, set(res.data) - known))]


def _error_messages(err: Any, res: _Resolved) -> list[str]:
    """FILE:LINE: key.path: expected ..., found ... for one jsonschema error."""
    path = tuple(err.absolute_path)
    v, val = err.validator, err.instance
    if v == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        return [f"{res.at((*path, extra))}: {dotted((*path, extra))}: expected one of the keys "
                f"{', '.join(allowed)}, found unknown key {extra!r}"
                for extra in sorted(set(val) - set(allowed))]
    if "propertyNames" in err.schema_path:  # the bad name is a key of the mapping at `path`
        what = err.schema.get("description", f"a key matching {err.schema.get('pattern')}")
        return [f"{res.at((*path, val))}: {dotted((*path, val))}: expected {what}, "
                f"found {val!r}"]
    if v == "anyOf" and err.context:  # e.g. a number or a mapping: the branch of the value's type
        branches: dict[Any, list[Any]] = {}
        for sub in err.context:
            branches.setdefault(sub.schema_path[0], []).append(sub)
        typed = [subs for subs in branches.values()
                 if not any(s.validator == "type" and not s.path for s in subs)]
        if len(typed) == 1:
            return [m for sub in typed[0] for m in _error_messages(sub, res)]
        kinds_of = [s.validator_value for subs in branches.values() for s in subs
                    if s.validator == "type" and not s.path]
        if not typed and kinds_of:
            expected = " or ".join(_TYPE_NAMES.get(t, t) for t in kinds_of)
            return [f"{res.at(path)}: {dotted(path)}: expected {expected}, found {_describe(val)}"]
    if v == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        return [f"{res.at((*path, missing))}: {dotted((*path, missing))}: expected a value, "
                "found nothing (required key missing)"]
    return [f"{res.at(path)}: {dotted(path)}: {_expected_found(err)}"]


def _expected_found(err: Any) -> str:
    v, val, bound = err.validator, err.instance, err.validator_value
    if v == "type":
        types = bound if isinstance(bound, list) else [bound]
        expected = " or ".join(_TYPE_NAMES.get(t, t) for t in types)
        hint = _number_hint(val) if {"number", "integer"} & set(types) else ""
        return f"expected {expected}, found {_describe(val)}{hint}"
    if v in ("exclusiveMinimum", "minimum", "maximum"):
        op = {"exclusiveMinimum": ">", "minimum": ">=", "maximum": "<="}[v]
        return f"expected a number {op} {bound}, found {_describe(val)}"
    if v in ("enum", "const"):
        options = bound if v == "enum" else [bound]
        return f"expected one of {', '.join(map(str, options))}, found {_describe(val)}"
    if v == "minItems":
        return "expected a non-empty list, found an empty list"
    if v == "minLength":
        return f"expected a non-empty text, found {_describe(val)}"
    return f"expected {v} {bound}, found {_describe(val)}"


def _semantic_problems(res: _Resolved) -> list[str]:
    """Rules a schema cannot say: cross-key constraints, finiteness, sources that exist, and the
    kind's own rules."""
    out = finite_problems(res, res.data) + bits_problems(res) + _sources_problems(res)
    device_kind = find_kind(res.data.get("kind"))
    return out + (device_kind.problems(res) if device_kind is not None else [])


def _sources_problems(res: _Resolved) -> list[str]:
    sources, out = res.data.get("sources"), []
    if not isinstance(sources, dict):
        return out
    for key in sources:
        node: Any = res.data
        for part in str(key).split("."):
            node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
        if node is _MISSING or str(key).split(".")[0] in ("sources", "extends"):
            out.append(f"{res.at(('sources', key))}: sources.{key}: expected the key path "
                       f"of a figure in this profile, found {key!r}, which does not exist")
    return out


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
        return [f"{p}:1: (file): expected a profile YAML file, found nothing at this path"]
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
    return DeviceProfile(res.data, path)

"""Semantic rules shared by the device kinds: the checks a JSON schema cannot say.

A rule reads a `RuleSource` (the merged data of a profile and its `extends` chain, with each key's
FILE:LINE) and returns problem strings `FILE:LINE: key.path: expected ..., found ...`. The
validator in `hwq.profile` runs the common rules here on every profile and then the kind's own
`rules` (declared in its `cost_models/<kind>.py`), which may use the helpers here too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

from hwq.profile_schema import BIT_VALUES


class RuleSource(Protocol):
    """What a rule sees of a profile being validated."""

    @property
    def data(self) -> dict[str, Any]:
        """The merged profile (after `extends`), as plain dicts and lists."""
        ...

    @property
    def root(self) -> str:
        """The path of the profile file being validated."""
        ...

    def at(self, path: tuple[Any, ...]) -> str:
        """`FILE:LINE` of the key path (or of its nearest ancestor that has a line)."""
        ...


def dotted(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def int_at(data: Mapping[str, Any], *path: str) -> int | None:
    """The integer at a key path, or None where there is none (or it is not an integer)."""
    node: Any = data
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, int) and not isinstance(node, bool) else None


def widths(data: Mapping[str, Any]) -> dict[str, list[int]]:
    """The valid widths listed under bits.weights / activations / search_default."""
    bits = data.get("bits")
    if not isinstance(bits, dict):
        return {}
    return {side: [b for b in bits[side] if b in BIT_VALUES and not isinstance(b, bool)]
            for side in ("weights", "activations", "search_default")
            if isinstance(bits.get(side), list)}


def finite_problems(src: RuleSource, node: Any, path: tuple[Any, ...] = ()) -> list[str]:
    """Every NaN or infinity under `node`."""
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in finite_problems(src, v, (*path, k))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in finite_problems(src, v, (*path, i))]
    if isinstance(node, float) and not math.isfinite(node):
        return [f"{src.at(path)}: {dotted(path)}: expected a finite number, found {node}"]
    return []


def bits_problems(src: RuleSource) -> list[str]:
    """bits.search_default lists only widths that bits.weights and bits.activations list."""
    listed = widths(src.data)
    default = listed.get("search_default", [])
    out = []
    for side in ("weights", "activations"):
        extra = [b for b in default if side in listed and listed[side] and b not in listed[side]]
        if extra:
            out.append(f"{src.at(('bits', 'search_default'))}: bits.search_default: expected "
                       f"widths listed in bits.{side}, found {extra}")
    return out


def max_width_problems(src: RuleSource, limit: int, why: str) -> list[str]:
    """Widths a kind's cost model cannot price are refused in the profile already."""
    out = []
    for side, listed in widths(src.data).items():
        over = sorted({b for b in listed if b > limit})
        if over:
            out.append(f"{src.at(('bits', side))}: bits.{side}: expected widths <= {limit} "
                       f"({why}), found {over}")
    return out


def calibration_problems(src: RuleSource) -> list[str]:
    """A `calibration` block (hwq.profile_schema.CALIBRATION) names fitted keys the profile has,
    and a target is measured exactly when it is not a prediction."""
    cal = src.data.get("calibration")
    if not isinstance(cal, dict):
        return []
    out = []
    for i, key in enumerate(cal.get("fitted") or []):
        node: Any = src.data
        for part in str(key).split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None or str(key).split(".")[0] == "calibration":
            out.append(f"{src.at(('calibration', 'fitted', i))}: calibration.fitted[{i}]: "
                       f"expected the key path of a figure in this profile, found {key!r}")
    for i, target in enumerate(cal.get("targets") or []):
        if not isinstance(target, dict):
            continue
        predicted, measured = target.get("role") == "predicted", "measured" in target
        if predicted == measured:
            want = "no measured value (a prediction)" if predicted else "a measured value"
            out.append(f"{src.at(('calibration', 'targets', i))}: calibration.targets[{i}]: "
                       f"expected {want} for role {target.get('role')}, found "
                       f"{'one' if measured else 'none'}")
    return out

"""Rendering results on stdout: aligned text tables or one JSON document."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np


def _plain(value: Any) -> Any:
    t = type(value)
    if t is str or t is int or t is bool or value is None:  # the common cells, first
        return value
    if t is float:
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(v) for v in value]
    return value


def emit_json(doc: Any) -> None:
    json.dump(_plain(doc), sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")


def records(df: Any) -> list[dict[str, Any]]:
    return [_plain(r) for r in df.to_dict("records")]


def _fmt(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == int(value) and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list):
        return ";".join(map(str, value))
    return str(value)


def emit_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> None:
    if not rows:
        sys.stdout.write("(no rows)\n")
        return
    for line in format_table(rows, columns):
        sys.stdout.write(line + "\n")


def format_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    fmt: Callable[[Any], str] | None = None,
) -> list[str]:
    """Aligned text lines (header first): numbers right-aligned, text left-aligned."""
    cols = list(columns or rows[0].keys())
    show = fmt or _fmt
    plain = [[_plain(r.get(c)) for c in cols] for r in rows]
    cells = [[show(v) for v in row] for row in plain]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    numeric = [all(_is_num(row[i]) for row in plain) for i in range(len(cols))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)
        ).rstrip()

    return [line(cols)] + [line(row) for row in cells]


def _is_num(v: Any) -> bool:
    v = _plain(v)
    return v is None or (isinstance(v, int | float) and not isinstance(v, bool))


def emit_mapping(doc: Mapping[str, Any]) -> None:
    width = max((len(k) for k in doc), default=0)
    for k, v in doc.items():
        sys.stdout.write(f"{k.ljust(width)}  {_fmt(v)}\n")

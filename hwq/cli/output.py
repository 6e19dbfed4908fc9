"""Rendering results on stdout: aligned text tables or one JSON document (formatted by
`hwq.display`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from hwq.display import format_mapping, format_table, plain


def emit_json(doc: Any) -> None:
    json.dump(plain(doc), sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")


def emit_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> None:
    if not rows:
        sys.stdout.write("(no rows)\n")
        return
    for line in format_table(rows, columns):
        sys.stdout.write(line + "\n")


def emit_mapping(doc: Mapping[str, Any]) -> None:
    for line in format_mapping(doc):
        sys.stdout.write(line + "\n")

"""Atomic Parquet writes with hwq's key/value metadata (DESIGN.md §6)."""

from __future__ import annotations

import os
from collections.abc import Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from hwq.atomic import write_atomic


def write_table_atomic(
    table: pa.Table, path: str | os.PathLike[str], metadata: Mapping[str, str]
) -> None:
    """Write `table` with `metadata` merged into its schema, under a temporary name, then rename.

    A reader never sees a half-written file: the rename is atomic on one file system.
    """
    merged = dict(table.schema.metadata or {})
    merged.update({k.encode(): str(v).encode() for k, v in metadata.items()})
    table = table.replace_schema_metadata(merged)
    write_atomic(path, lambda fh: pq.write_table(table, fh))


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    meta = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items() if k.decode().startswith("hwq.")}

"""The `lut` kind: a device described by a measured table (layer shape, batch, bits -> latency,
energy), for users who measured their own hardware.

The table (CSV or Parquet, path relative to the profile file) has one row per measurement with the
key columns `KEY_COLUMNS` and the values `latency_s` and, optionally, `energy_pj`. An optional
`layer` column names the measured layer: a graph layer of that name (and the same shape) takes
that row; other layers match by shape, where repeated measurements of one shape count at their
median. A layer whose (shape, batch, w_bits, a_bits) is not in the table is an error naming the
layer: a measured table is never extrapolated. `cycles` stay NaN (the kind has no clock model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwq.errors import CostModelError, UserError

KEY_COLUMNS: tuple[str, ...] = (
    "op", "in_channels", "out_channels", "in_h", "in_w", "kernel_h", "kernel_w", "stride_h",
    "stride_w", "groups", "batch", "w_bits", "a_bits",
)

Lookup = dict[tuple[Any, ...], tuple[float, float]]
_TABLES: dict[tuple[str, float], tuple[Lookup, Lookup]] = {}


def read_table(path: Path) -> tuple[Lookup, Lookup]:
    """(by layer name + key, by key) -> (latency_s, energy_pj); memoised per file and mtime."""
    if not path.is_file():
        raise UserError(f"{path}: the lut profile's table does not exist")
    memo_key = (str(path), path.stat().st_mtime)
    if memo_key in _TABLES:
        return _TABLES[memo_key]
    df = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    missing = [c for c in (*KEY_COLUMNS, "latency_s") if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    energy = df["energy_pj"] if "energy_pj" in df.columns else pd.Series(np.nan, index=df.index)
    names = df["layer"].astype(str) if "layer" in df.columns else None
    by_name: Lookup = {}
    samples: dict[tuple[Any, ...], list[tuple[float, float]]] = {}
    for i, row in enumerate(df[list(KEY_COLUMNS)].itertuples(index=False)):
        key = (str(row[0]), *(int(v) for v in row[1:]))
        value = (float(df["latency_s"].iat[i]), float(energy.iat[i]))
        if names is not None:
            named = (names.iat[i], *key)
            if named in by_name:
                raise UserError(f"{path}: row {i + 2}: duplicate measurement for {named}")
            by_name[named] = value
        samples.setdefault(key, []).append(value)
    by_shape: Lookup = {
        k: (float(np.median([v[0] for v in vs])), float(np.median([v[1] for v in vs])))
        for k, vs in samples.items()
    }
    _TABLES[memo_key] = (by_name, by_shape)
    return by_name, by_shape


def price(graph: Any, profile: Any, w_bits: np.ndarray, a_bits: np.ndarray) -> dict[str, Any]:
    by_name, by_shape = read_table(profile.resolve_path(profile.get("table")))
    frame = graph.frame
    n, k = len(graph), len(w_bits)
    latency = np.empty((n, k))
    energy = np.empty((n, k))
    shape_cols = list(KEY_COLUMNS[:-2])
    for i, row in enumerate(frame[shape_cols].itertuples(index=False)):
        shape = (str(row[0]), *(int(v) for v in row[1:]))
        for j in range(k):
            key = (*shape, int(w_bits[j]), int(a_bits[j]))
            hit = by_name.get((graph.names[i], *key)) or by_shape.get(key)
            if hit is None:
                raise CostModelError(
                    f"layer {graph.names[i]}: no measurement at W{w_bits[j]}A{a_bits[j]}, "
                    f"batch {shape[-1]} in the table of profile {profile.name}"
                )
            latency[i, j], energy[i, j] = hit
    return {"latency_s": latency, "energy_pj": energy}

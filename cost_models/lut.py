"""The `lut` kind: a device described by a measured table (layer shape, batch, bits -> latency,
energy), for users who measured their own hardware.

The table (CSV or Parquet, path relative to the profile file) has one row per measurement with the
key columns `KEY_COLUMNS` and the values `latency_s` and, optionally, `energy_pj`. An optional
`layer` column names the measured layer: a graph layer of that name (and the same shape) takes
that row; other layers match by shape, where repeated measurements of one shape count at their
median. A layer whose (shape, batch, w_bits, a_bits) is not in the table is an error naming the
layer: a measured table is never extrapolated. `cycles` stay NaN (the kind has no clock model).

Every op is looked up the same way, by its LayerGraph columns: a `matmul` row (two activations)
by op `matmul`, in_channels = K, out_channels = N, in_h = M rows, in_w = kernel = stride = 1,
groups = products per sample, batch = samples, and its pair (w_bits = the second operand's bits);
an `embedding` row by op `embedding`, in_channels = number of embeddings, out_channels = dimension,
in_h = tokens per sample. A table without a single row of a layer's op is an error naming the
layer and saying the table has no measurements of that op (a lookup or an attention product is
never free, so it is never priced as 0).

A lut profile may omit `bits`: its widths and default pairs are those its table measured
(`measured_pairs`). Its priced tables are not cached (the profile's sha256 does not cover the
table file), and `hwq profile show` reports the table's own figures (`summarize`).

Network terms (optional `network:` key, what `hwq measure` fits on whole-network runs): the
time a whole network spends outside its layers (pooling, elementwise adds, activations, copies),

* `glue_s_per_element: {WxA: seconds}` — per output element of each layer at its pair, added to
  the layer's `latency_s` (and shown as the detail column `glue_s`); it may be negative, where
  isolated layers carry more per-call overhead than they do inside a network;
* `boundary_s_per_element: seconds` — per input element of a layer whose producer layer (a graph
  edge) runs at another pair (a quantize/dequantize at a precision change), added to
  `hwq.evaluate`'s `latency_s` by the kind's `network_terms`; searches that sum per-layer costs
  (ILP, greedy) do not see it;
* `run_s: seconds` — the runtime's own cost of one run of the network (what `hwq measure`
  subtracted from every single-layer time, since each held it once), added once per policy to
  `hwq.evaluate`'s `latency_s`.

An optional `measurement:` mapping (free text per key) records where and how the table was
measured (`hwq measure` writes machine, cpu, cpu_flags, runtime, threads, date and command);
its one key with a meaning, `int8_outputs: requantized | float`, says how the runtime runs int8
layers: `requantized` (each int8 layer's output requantized to 8 bits, as onnxruntime's
quantize_static networks run) makes the fake-quant model of a search or export on the profile
requantize them too (`hwq.quant.output_quant`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hwq.cost_models.kind import (
    DeviceKind,
    KindSummary,
    NetworkFit,
    PairFigures,
    Priced,
    register_kind,
)
from hwq.errors import CostModelError, UserError
from hwq.profile_rules import RuleSource

if TYPE_CHECKING:
    from hwq.graph import LayerGraph
    from hwq.profile import DeviceProfile
    from hwq.tables import CostTable

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
    import pandas as pd  # lazy: validating a lut profile needs no pandas

    df = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    missing = [c for c in (*KEY_COLUMNS, "latency_s") if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    energy = df["energy_pj"] if "energy_pj" in df.columns else pd.Series(np.nan, index=df.index)
    # a blank `layer` cell measures a shape, like a table without the column
    names = (df["layer"].fillna("").astype(str).str.strip() if "layer" in df.columns
             else None)
    by_name: Lookup = {}
    samples: dict[tuple[Any, ...], list[tuple[float, float]]] = {}
    for i, row in enumerate(df[list(KEY_COLUMNS)].itertuples(index=False)):
        key = (str(row[0]), *(int(v) for v in row[1:]))
        value = (float(df["latency_s"].iat[i]), float(energy.iat[i]))
        if names is not None and names.iat[i]:
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


def price(graph: LayerGraph, profile: DeviceProfile, w_bits: np.ndarray,
          a_bits: np.ndarray) -> Priced:
    by_name, by_shape = read_table(profile.resolve_path(profile.get("table")))
    frame = graph.frame
    n, k = len(graph), len(w_bits)
    latency = np.empty((n, k))
    energy = np.empty((n, k))
    shape_cols = list(KEY_COLUMNS[:-2])
    measured_ops = {key[0] for key in by_shape}
    for i, row in enumerate(frame[shape_cols].itertuples(index=False)):
        shape = (str(row[0]), *(int(v) for v in row[1:]))
        if shape[0] not in measured_ops:
            raise CostModelError(
                f"layer {graph.names[i]}: the table of profile {profile.name} has no {shape[0]} "
                f"measurements (it measures {', '.join(sorted(measured_ops)) or 'nothing'}): add "
                f"rows with op={shape[0]} ({_OP_KEYS.get(shape[0], 'its shape columns')}) for "
                "this layer's shape, batch and bits"
            )
        for j in range(k):
            key = (*shape, int(w_bits[j]), int(a_bits[j]))
            hit = by_name.get((graph.names[i], *key)) or by_shape.get(key)
            if hit is None:
                raise CostModelError(
                    f"layer {graph.names[i]}: no measurement at W{w_bits[j]}A{a_bits[j]}, "
                    f"batch {shape[-1]} in the table of profile {profile.name}"
                )
            latency[i, j], energy[i, j] = hit
    glue = glue_per_element(profile, w_bits, a_bits)
    glue_s = graph.column("out_elems").astype(np.float64)[:, None] * glue[None, :]
    return Priced({"latency_s": latency + glue_s, "energy_pj": energy}, None,
                  {"glue_s": glue_s})


def pair_key(w: int, a: int) -> str:
    """A pair as the `network:` terms key it: `WxA`."""
    return f"{int(w)}x{int(a)}"


def glue_per_element(profile: DeviceProfile, w_bits: np.ndarray,
                     a_bits: np.ndarray) -> np.ndarray:
    """float64 [pairs]: the profile's glue seconds per output element at each pair (0 without)."""
    terms = (profile.get("network", None) or {}).get("glue_s_per_element") or {}
    return np.array([float(terms.get(pair_key(w, a), 0.0)) for w, a in zip(w_bits, a_bits)],
                    dtype=np.float64)


def boundary_elements(graph: LayerGraph, policies: np.ndarray) -> np.ndarray:
    """float64 [P]: per policy [P, L, 2], the input elements of layers fed by a producer layer
    at another pair (each graph edge whose two ends differ counts its consumer's input)."""
    index = {n: i for i, n in enumerate(graph.names)}
    edges = [(index[s], index[d]) for s, d in graph.edges if s in index and d in index]
    if not edges or not len(policies):
        return np.zeros(len(policies))
    src, dst = (np.array(v, dtype=np.int64) for v in zip(*edges))
    differs = (policies[:, src, :] != policies[:, dst, :]).any(axis=-1)  # [P, E]
    return differs.astype(np.float64) @ graph.column("in_elems").astype(np.float64)[dst]


def network_terms(table: CostTable, policies: np.ndarray,
                  peak_activation_bytes: np.ndarray) -> NetworkFit:
    """`latency_s` = the layers' sum + boundary_s_per_element x the input elements at precision
    changes + run_s (no column without these terms); every policy fits."""
    n = len(policies)
    fit = NetworkFit(np.ones(n, dtype=bool), [""] * n)
    terms = table.profile.get("network", None) or {}
    per_element = float(terms.get("boundary_s_per_element") or 0.0)
    run_s = float(terms.get("run_s") or 0.0)
    if not (per_element or run_s):
        return fit
    lat = table.values["latency_s"]
    idx = table.pair_lookup[policies[..., 0], policies[..., 1]]  # [P, L]
    layers = lat[np.arange(lat.shape[0])[None, :], idx].sum(axis=1)
    extra = boundary_elements(table.graph, policies) * per_element if per_element else 0.0
    return NetworkFit(fit.feasible, fit.reasons, {"latency_s": layers + extra + run_s})


NETWORK = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "glue_s_per_element": {
            "type": "object",
            "propertyNames": {"pattern": "^[0-9]+x[0-9]+$"},
            "additionalProperties": {"type": "number"},
        },
        "boundary_s_per_element": {"type": "number", "minimum": 0},
        "run_s": {"type": "number", "minimum": 0},
    },
}

# Where and how the table was measured (`hwq measure`: machine, cpu, cpu_flags, runtime,
# threads, date, command, timing, ...): free text per key.
# `int8_outputs` is the one key hwq reads (hwq.quant.int8_outputs): `requantized` where the
# measured runtime requantizes every int8 layer's output to 8 bits (fully integer networks)
MEASUREMENT = {"type": "object", "additionalProperties": {"type": "string"},
               "properties": {"int8_outputs": {"enum": ["requantized", "float"]}}}

# How a row of each op is keyed (the shape columns a user measures it with).
_OP_KEYS = {
    "matmul": "in_channels = K, out_channels = N, in_h = M rows, groups = products per sample, "
              "batch = samples; w_bits = the second operand's bits",
    "embedding": "in_channels = number of embeddings, out_channels = dimension, in_h = tokens "
                 "per sample, batch = samples",
}


def table_pairs(path: Path) -> set[tuple[int, int]]:
    """The (w_bits, a_bits) pairs a lut table measured."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq  # lazy: only lut profiles with Parquet tables need it

        cols = pq.read_table(path, columns=["w_bits", "a_bits"]).to_pydict()
        w_col, a_col = cols["w_bits"], cols["a_bits"]
    else:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        w_col = [r["w_bits"] for r in rows]
        a_col = [r["a_bits"] for r in rows]
    return {(int(float(w)), int(float(a))) for w, a in zip(w_col, a_col)}


def measured_pairs(profile: DeviceProfile) -> frozenset[tuple[int, int]]:
    """The pairs the profile's table measured."""
    return frozenset(table_pairs(profile.resolve_path(str(profile.get("table")))))


def rules(src: RuleSource) -> list[str]:
    """The table must exist (relative to the profile file, as resolve_path) and be CSV/Parquet."""
    if not isinstance(src.data.get("table"), str):
        return []
    where = src.at(("table",))
    ref = str(src.data["table"])
    table = Path(ref)
    if not table.is_absolute():
        table = Path(src.root).parent / table
    if table.suffix.lower() not in (".csv", ".parquet"):
        return [f"{where}: table: expected a .csv or .parquet file, found {ref!r}"]
    if not table.is_file():
        return [f"{where}: table: expected an existing file (relative to the profile), "
                f"found {ref!r}, which does not exist ({table})"]
    if "bits" in src.data:
        return []
    try:
        table_pairs(table)
    except (KeyError, ValueError, OSError) as exc:
        return [f"{where}: table: expected columns w_bits and a_bits (the profile has no "
                f"`bits`), found a table that cannot give them ({exc!r})"]
    return []


# -- hwq profile show: the table's own rows --------------------------------------------------------
def summarize(profile: DeviceProfile, pairs: Sequence[tuple[int, int]]) -> KindSummary:
    """Per pair the fastest measured shape: MACs / latency_s and energy_pj / MACs of that shape
    (repeated measurements of a shape at their median, as `price` reads them); MACs come from the
    shape like any layer's, the output size at padding (kernel - 1) // 2 since the table has none.
    A pair the table does not measure gets a note instead of numbers."""
    table_path = profile.resolve_path(str(profile.get("table")))
    _, by_shape = read_table(table_path)
    basis = (
        f"measured table {table_path.name}: per pair its fastest measured shape, peak = MACs / "
        "latency_s, total_energy_per_mac = energy_pj / MACs (MACs from the shape, output size "
        "at padding (kernel - 1) // 2)"
    )
    keys = list(by_shape)
    best: dict[tuple[int, int], tuple[float, float]] = {}  # pair -> (MACs/s, pJ/MAC)
    for key, m in zip(keys, _shape_macs(keys)):
        latency, energy = by_shape[key]
        if not (latency > 0 and m > 0):
            continue
        pair = (int(key[-2]), int(key[-1]))
        rate = m / latency
        if pair not in best or rate > best[pair][0]:
            best[pair] = (rate, energy / m)
    out: list[PairFigures] = []
    for w, a in pairs:
        if (w, a) not in best:
            out.append(PairFigures(None, None, None,
                                   f"not measured: {table_path.name} has no W{w}A{a} row"))
            continue
        rate, pj = best[(w, a)]
        note = None if math.isfinite(pj) else "the table has no energy_pj"
        out.append(PairFigures(rate, None, pj if math.isfinite(pj) else None, note))
    return KindSummary(basis, out)


def _shape_macs(keys: list[tuple[Any, ...]]) -> list[float]:
    """MACs of each measured shape, derived by LayerGraph.from_frame like any layer's."""
    if not keys:
        return []
    import pandas as pd

    from hwq.graph import LayerGraph

    rows = []
    for i, key in enumerate(keys):
        rec = dict(zip(KEY_COLUMNS, key))
        row: dict[str, Any] = {
            "name": f"row{i}", "op": rec["op"], "batch": rec["batch"],
            "in_channels": rec["in_channels"], "out_channels": rec["out_channels"],
            "groups": rec["groups"],
        }
        if rec["op"] in ("linear", "matmul", "embedding"):  # tokens (M rows) in in_h
            row["out_h"] = row["in_h"] = rec["in_h"]
        else:
            for ax in ("h", "w"):
                k, s, size = rec[f"kernel_{ax}"], rec[f"stride_{ax}"], rec[f"in_{ax}"]
                pad = (k - 1) // 2
                row[f"kernel_{ax}"], row[f"stride_{ax}"], row[f"pad_{ax}"] = k, s, pad
                row[f"in_{ax}"] = size
                row[f"out_{ax}"] = max((size + 2 * pad - k) // s + 1, 1)
        rows.append(row)
    graph = LayerGraph.from_frame(pd.DataFrame(rows), source="lut table")
    return [float(m) for m in graph.column("macs")]


KIND = register_kind(DeviceKind(
    name="lut",
    properties={"table": {"type": "string", "minLength": 1}, "network": NETWORK,
                "measurement": MEASUREMENT},
    optional=("clock_hz", "bits", "network", "measurement"),
    file_keys=(("table",),),
    price=price,
    rules=rules,
    cacheable=False,
    measured_pairs=measured_pairs,
    summary=summarize,
    network_terms=network_terms,
    columns=("glue_s",),
))

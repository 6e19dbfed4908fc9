"""LayerGraph: one row per quantizable layer, in execution order, plus data-flow edges.

It is plain data (pandas/pyarrow): it saves to and loads from Parquet and CSV and builds from a
table of layer shapes, so cost queries never need torch. `hwq.trace` (hwq.tracing) builds one from
a PyTorch model.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwq.errors import UserError

# 2: rows are found by what they compute; `batch` is always samples (a linear layer's tokens are
#    in_h/out_h); ops `matmul` (two activations) and `embedding`; a matmul's `second_inputs`.
# 1: a linear layer's `batch` held samples x tokens; conv and linear only.
SCHEMA_VERSION = 2

SHAPE_COLUMNS: tuple[str, ...] = (
    "name",
    "op",
    "batch",
    "in_channels",
    "out_channels",
    "in_h",
    "in_w",
    "out_h",
    "out_w",
    "kernel_h",
    "kernel_w",
    "stride_h",
    "stride_w",
    "pad_h",
    "pad_w",
    "groups",
    "macs",
    "weight_params",
    "in_elems",
    "out_elems",
    "reads_input",
)
INT_COLUMNS: tuple[str, ...] = tuple(
    c for c in SHAPE_COLUMNS if c not in ("name", "op", "reads_input")
)
OPS: tuple[str, ...] = ("conv", "linear", "matmul", "embedding")
# Data-flow columns beside the shape columns: producers of a layer's (first) input, and of a
# matmul's second operand (empty for every other op).
FLOW_COLUMNS: tuple[str, ...] = ("inputs", "second_inputs")


@dataclass(frozen=True)
class UnsupportedLayer:
    """A layer hwq does not model: listed and warned about, never silently dropped."""

    name: str
    type: str
    macs: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "macs": self.macs, "reason": self.reason}


def _as_inputs(value: Any) -> tuple[str, ...]:
    """Normalise an `inputs` cell (list, tuple, numpy array, ';'-joined string, NaN) to names."""
    if value is None:
        return ()
    if isinstance(value, float) and np.isnan(value):
        return ()
    if isinstance(value, str):
        return tuple(p for p in value.split(";") if p)
    return tuple(str(v) for v in value)


@dataclass(frozen=True)
class LayerGraph:
    """Quantizable layers of a model (columns of DESIGN.md §9) with their data flow.

    `coverage` (from `hwq.trace`; None for a table built by hand) says how much of the model's
    aten-level compute the rows account for: `{reference_macs, graph_macs, unsupported_macs,
    fraction}`."""

    frame: pd.DataFrame
    inputs: tuple[tuple[str, ...], ...]
    specialised: bool = False
    unsupported: tuple[UnsupportedLayer, ...] = ()
    model: str | None = None
    coverage: dict[str, Any] | None = None
    second_inputs: tuple[tuple[str, ...], ...] = ()
    _index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._index.update({n: i for i, n in enumerate(self.frame["name"])})
        if len(self.second_inputs) != len(self.frame):
            object.__setattr__(self, "second_inputs", ((),) * len(self.frame))

    # -- basic views -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.frame)

    @property
    def names(self) -> list[str]:
        return list(self.frame["name"])

    def index_of(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise UserError(f"layer {name!r} is not in the graph") from None

    @property
    def edges(self) -> list[tuple[str, str]]:
        """(src, dst) pairs between quantizable layers, in layer order of dst (a matmul's
        first operand's producers, then its second operand's)."""
        out = []
        for dst, ins, second in zip(self.names, self.inputs, self.second_inputs):
            out += [(src, dst) for src in ins]
            out += [(src, dst) for src in second if src not in ins]
        return out

    def second_elems(self) -> np.ndarray:
        """[L] elements of each matmul's second operand as the product reads it (batch x groups x
        K x N, broadcasts included); 0 for every other op."""
        f = self.frame
        n = (f["batch"] * f["groups"] * f["in_channels"] * f["out_channels"]).to_numpy()
        return np.where(f["op"].to_numpy() == "matmul", n, 0).astype(np.int64)

    def column(self, name: str) -> np.ndarray:
        return self.frame[name].to_numpy()

    @property
    def graph_hash(self) -> str:
        """sha256 of the shape columns in layer order as canonical JSON (survives CSV/Parquet);
        computed once per graph (a graph's frame is not changed after construction)."""
        if "graph_hash" in self._memo:
            return str(self._memo["graph_hash"])
        records = []
        for row in self.frame[list(SHAPE_COLUMNS)].itertuples(index=False):
            rec = dict(zip(SHAPE_COLUMNS, row))
            for c in INT_COLUMNS:
                rec[c] = int(rec[c])
            rec["reads_input"] = bool(rec["reads_input"])
            rec["name"] = str(rec["name"])
            rec["op"] = str(rec["op"])
            records.append(rec)
        text = json.dumps(records, sort_keys=True, separators=(",", ":"))
        self._memo["graph_hash"] = hashlib.sha256(text.encode()).hexdigest()
        return str(self._memo["graph_hash"])

    def totals(self) -> dict[str, int]:
        return {
            "layers": len(self),
            "macs": int(self.frame["macs"].sum()),
            "weight_params": int(self.frame["weight_params"].sum()),
        }

    def with_batch(self, batch: int) -> LayerGraph:
        """The same graph priced at another batch size (MACs and elements scale with it)."""
        if batch <= 0:
            raise UserError(f"batch: expected a positive integer, found {batch}")
        df = self.frame.copy()
        old = df["batch"].to_numpy()
        for col in ("macs", "in_elems", "out_elems"):
            df[col] = df[col].to_numpy() // old * batch
        df["batch"] = batch
        coverage = None
        if self.coverage is not None and len(old):
            scale = batch / int(old[0])
            coverage = dict(self.coverage)
            for key in ("reference_macs", "graph_macs", "unsupported_macs"):
                coverage[key] = int(round(coverage[key] * scale))
        return LayerGraph(df, self.inputs, self.specialised, self.unsupported, self.model,
                          coverage, self.second_inputs)

    # -- frames ----------------------------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        df = self.frame[list(SHAPE_COLUMNS)].copy()
        df["inputs"] = [list(i) for i in self.inputs]
        df["second_inputs"] = [list(i) for i in self.second_inputs]
        return df

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        specialised: bool = False,
        unsupported: Iterable[UnsupportedLayer | Mapping[str, Any]] = (),
        model: str | None = None,
        source: str = "layer table",
        coverage: Mapping[str, Any] | None = None,
    ) -> LayerGraph:
        """Build from a table of layer shapes; derives MACs, params and element counts.

        Required columns: `name`, `op`, `in_channels`, `out_channels`; conv layers also need
        `out_h` and `kernel_h`. Everything else has a default (square kernels and outputs,
        stride 1, padding 0, groups 1, batch 1; a plain chain when there is no `inputs` column).
        """
        rows = _complete_rows(df, source)
        frame = pd.DataFrame(rows, columns=list(SHAPE_COLUMNS))
        for c in INT_COLUMNS:
            frame[c] = frame[c].astype(np.int64)
        frame["reads_input"] = frame["reads_input"].astype(bool)
        names = list(frame["name"])
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise UserError(f"{source}: duplicate layer names: {', '.join(dup)}")
        known = set(names)
        if "inputs" in df.columns:
            inputs = tuple(_as_inputs(v) for v in df["inputs"])
            for name, ins in zip(names, inputs):
                for src in ins:
                    if src not in known:
                        raise UserError(
                            f"{source}: layer {name}: input {src!r} is not a layer of the table"
                        )
        else:
            inputs = tuple(() if i == 0 else (names[i - 1],) for i in range(len(names)))
        ops = list(frame["op"])
        if "second_inputs" in df.columns:
            second = tuple(_as_inputs(v) if op == "matmul" else ()
                           for v, op in zip(df["second_inputs"], ops))
            for name, ins in zip(names, second):
                for src in ins:
                    if src not in known:
                        raise UserError(f"{source}: layer {name}: second input {src!r} is not "
                                        "a layer of the table")
        else:
            second = tuple(ins if op == "matmul" else () for ins, op in zip(inputs, ops))
        if "reads_input" not in df.columns:
            frame["reads_input"] = [len(ins) == 0 for ins in inputs]
        unsup = tuple(
            u if isinstance(u, UnsupportedLayer) else UnsupportedLayer(**dict(u))
            for u in unsupported
        )
        return cls(frame, inputs, bool(specialised), unsup, model,
                   dict(coverage) if coverage is not None else None, second)

    # -- files -----------------------------------------------------------------------------------
    def metadata(self) -> dict[str, str]:
        return {
            "hwq.schema_version": str(SCHEMA_VERSION),
            "hwq.kind": "layers",
            "hwq.graph_hash": self.graph_hash,
            "hwq.specialised": json.dumps(self.specialised),
            "hwq.unsupported": json.dumps([u.to_dict() for u in self.unsupported]),
            "hwq.model": self.model or "",
            "hwq.coverage": json.dumps(self.coverage),
        }

    def to_parquet(self, path: str | os.PathLike[str]) -> None:
        import pyarrow as pa

        from hwq.parquet_io import write_table_atomic

        table = pa.Table.from_pandas(self.to_frame(), preserve_index=False)
        write_table_atomic(table, path, self.metadata())

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        df = self.to_frame()
        df["inputs"] = [";".join(i) for i in self.inputs]
        df["second_inputs"] = [";".join(i) for i in self.second_inputs]
        from hwq.atomic import write_text_atomic

        write_text_atomic(path, df.to_csv(index=False))

    def save(self, path: str | os.PathLike[str]) -> None:
        if str(path).lower().endswith(".csv"):
            self.to_csv(path)
        else:
            self.to_parquet(path)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> LayerGraph:
        """Read a layer table from Parquet (with hwq metadata when present) or CSV."""
        p = Path(path)
        if not p.is_file():
            raise UserError(f"{p}: no such layer file")
        if p.suffix.lower() == ".csv":
            try:
                df = pd.read_csv(p, keep_default_na=False,
                                 na_values={"inputs": [], "second_inputs": []})
            except (pd.errors.ParserError, UnicodeDecodeError) as exc:
                raise UserError(f"{p}: not a readable CSV layer table: {exc}") from None
            return cls.from_frame(df, model=p.stem, source=str(p))
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(p)
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise UserError(f"{p}: not a readable Parquet layer table: {exc}") from None
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        _check_version(p, meta.get("hwq.schema_version"))
        df = table.to_pandas()
        graph = cls.from_frame(
            df,
            specialised=json.loads(meta.get("hwq.specialised", "false")),
            unsupported=json.loads(meta.get("hwq.unsupported", "[]")),
            model=meta.get("hwq.model") or p.stem,
            source=str(p),
            coverage=json.loads(meta.get("hwq.coverage", "null")),
        )
        return graph


_OLD_VERSION_SAID: set[str] = set()


def _check_version(path: Path, version: str | None) -> None:
    """Refuse a layer file of a newer schema; load one of version 1 with its old meaning (its
    rows as written, MACs included; a linear row's `batch` counted samples x tokens there, so
    `batch=N` scales it as rows), saying so once per process."""
    if version is None:
        return
    try:
        v = int(version)
    except ValueError:
        raise UserError(f"{path}: hwq.schema_version: expected an integer, "
                        f"found {version!r}") from None
    if v > SCHEMA_VERSION:
        raise UserError(f"{path}: hwq.schema_version {v}: this hwq reads layer files up to "
                        f"version {SCHEMA_VERSION}; upgrade hwq")
    if v < SCHEMA_VERSION and "v1" not in _OLD_VERSION_SAID:
        _OLD_VERSION_SAID.add("v1")
        import logging

        logging.getLogger("hwq.graph").warning(
            "%s: a layer file of schema version %d, read with its old meaning (a linear row's "
            "batch counts samples x tokens, no matmul or embedding rows); re-trace the model "
            "for version %d", path, v, SCHEMA_VERSION)


def _int_cell(row: Mapping[str, Any], key: str, default: int | None, where: str) -> int:
    value = row.get(key, default)
    if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
        if default is None:
            raise UserError(f"{where}: column {key!r}: expected an integer, found nothing")
        value = default
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: column {key!r}: expected an integer, found {value!r}") from None
    if not as_float.is_integer():
        raise UserError(f"{where}: column {key!r}: expected an integer, found {value!r}")
    return int(as_float)


def _complete_rows(df: pd.DataFrame, source: str) -> list[dict[str, Any]]:
    missing = [c for c in ("name", "op", "in_channels", "out_channels") if c not in df.columns]
    if missing:
        raise UserError(f"{source}: missing column(s) {', '.join(missing)}")
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(df.to_dict("records")):
        name = str(raw["name"])
        where = f"{source}: row {i + 1} (layer {name})"
        op = str(raw["op"])
        if op not in OPS:
            raise UserError(f"{where}: column 'op': expected one of {', '.join(OPS)}, found {op!r}")
        ic = _int_cell(raw, "in_channels", None, where)
        oc = _int_cell(raw, "out_channels", None, where)
        batch = _int_cell(raw, "batch", 1, where)
        groups = _int_cell(raw, "groups", 1, where)
        if op in ("linear", "matmul", "embedding"):  # tokens (matmul: M rows) in in_h/out_h
            oh = _int_cell(raw, "out_h", 1, where)
            ih = _int_cell(raw, "in_h", oh, where)
            kh = kw = ow = sh = sw = iw = 1
            ph = pw = 0
        else:
            oh = _int_cell(raw, "out_h", None, where)
            ow = _int_cell(raw, "out_w", oh, where)
            kh = _int_cell(raw, "kernel_h", None, where)
            kw = _int_cell(raw, "kernel_w", kh, where)
            sh = _int_cell(raw, "stride_h", _int_cell(raw, "stride", 1, where), where)
            sw = _int_cell(raw, "stride_w", sh, where)
            ph = _int_cell(raw, "pad_h", 0, where)
            pw = _int_cell(raw, "pad_w", ph, where)
            ih = _int_cell(raw, "in_h", (oh - 1) * sh + kh - 2 * ph, where)
            iw = _int_cell(raw, "in_w", (ow - 1) * sw + kw - 2 * pw, where)
        for key, val in (
            ("in_channels", ic),
            ("out_channels", oc),
            ("batch", batch),
            ("groups", groups),
            ("out_h", oh),
            ("out_w", ow),
            ("kernel_h", kh),
            ("kernel_w", kw),
            ("stride_h", sh),
            ("stride_w", sw),
            ("in_h", ih),
            ("in_w", iw),
        ):
            if val <= 0:
                raise UserError(
                    f"{where}: column {key!r}: expected a positive integer, found {val}"
                )
        if ph < 0 or pw < 0:
            raise UserError(f"{where}: padding must be >= 0, found {ph},{pw}")
        if op in ("conv", "linear") and (ic % groups or oc % groups):
            raise UserError(
                f"{where}: groups={groups} must divide in_channels={ic} and out_channels={oc}"
            )
        if op == "matmul":  # groups products of [M, K] x [K, N] per sample, no weights
            params, macs_default = 0, batch * groups * oh * ic * oc
            in_default, out_default = batch * groups * ih * ic, batch * groups * oh * oc
        elif op == "embedding":  # a table of ic rows of oc values, looked up for oh tokens
            params, macs_default = ic * oc, 0
            in_default, out_default = batch * ih, batch * oh * oc
        else:
            params = oc * (ic // groups) * kh * kw
            macs_default = batch * oh * ow * params
            in_default, out_default = batch * ic * ih * iw, batch * oc * oh * ow
        row = {
            "name": name,
            "op": op,
            "batch": batch,
            "in_channels": ic,
            "out_channels": oc,
            "in_h": ih,
            "in_w": iw,
            "out_h": oh,
            "out_w": ow,
            "kernel_h": kh,
            "kernel_w": kw,
            "stride_h": sh,
            "stride_w": sw,
            "pad_h": ph,
            "pad_w": pw,
            "groups": groups,
            "macs": _int_cell(raw, "macs", macs_default, where),
            "weight_params": _int_cell(raw, "weight_params", params, where),
            "in_elems": _int_cell(raw, "in_elems", in_default, where),
            "out_elems": _int_cell(raw, "out_elems", out_default, where),
            "reads_input": bool(raw.get("reads_input", False)) if "reads_input" in raw else False,
        }
        if isinstance(raw.get("reads_input"), str):
            row["reads_input"] = raw["reads_input"].strip().lower() in ("true", "1", "yes")
        out.append(row)
    return out


def same_input_groups(graph: LayerGraph) -> list[list[int]]:
    """Indices of layers that read the same tensor: the same producers of each operand, the same
    model-input flag and element count (q, k and v projections; gate and up projections). A
    matmul's second operand is part of what it reads, so it never ties with the projections
    that feed it."""
    groups: dict[tuple[Sequence[str], Sequence[str], bool, int], list[int]] = {}
    rows = zip(graph.inputs, graph.second_inputs, graph.column("reads_input"),
               graph.column("in_elems"))
    for i, (ins, second, reads, elems) in enumerate(rows):
        key = (tuple(sorted(ins)), tuple(sorted(second)), bool(reads), int(elems))
        groups.setdefault(key, []).append(i)
    return list(groups.values())

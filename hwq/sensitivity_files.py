"""Sensitivity files (DESIGN.md §4): per-layer, per-bit sensitivities read from and written to
CSV or Parquet, and their lookup for policies. Reading a file needs no torch.

Two formats are read: the long table `layer, w_bits, a_bits, sensitivity` (`a_bits` may be empty:
then the sensitivity depends on the weight bits only), and a HAWQ-V3 table as published
(`layer, hutchinson_trace_per_param, delta_w<b>_sq, ...`; sensitivity at b bits =
`hutchinson_trace_per_param x delta_wb_sq`). A policy's proxy is the sum over its layers.
Measuring a table on a model is `hwq.quant.sensitivity`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwq.atomic import write_atomic
from hwq.errors import UserError
from hwq.policy import BITS_BOUND, VALID_BITS, PolicyLike, policy_pairs

LONG_COLUMNS = ("layer", "w_bits", "a_bits", "sensitivity")
_HAWQ_DELTA = re.compile(r"^delta_w(\d+)_sq$")


# The published HAWQ-V3 sensitivities of ImageNet ResNet-18/50 (Dong et al., repository
# Zhen-Dong/HAWQ, ILP.ipynb), shipped with the package: `--sensitivity hawq-v3:resnet18`.
PUBLISHED_DIR = Path(__file__).resolve().parent / "sensitivity_tables"
PUBLISHED: dict[str, Path] = {
    name: PUBLISHED_DIR / f"hawq_v3_sensitivity_{name}.csv" for name in ("resnet18", "resnet50")
}
PUBLISHED_PREFIX = "hawq-v3:"


def resolve_sensitivity_file(spec: str | Path) -> Path:
    """The file of a `--sensitivity` value: a path, or `hawq-v3:NAME` for a shipped table."""
    text = str(spec)
    if not text.startswith(PUBLISHED_PREFIX):
        return Path(spec)
    name = text[len(PUBLISHED_PREFIX):]
    if name not in PUBLISHED:
        raise UserError(
            f"--sensitivity {text}: hwq ships the HAWQ-V3 tables of "
            f"{', '.join(PUBLISHED_PREFIX + n for n in PUBLISHED)}"
        )
    return PUBLISHED[name]


class SensitivityTable:
    """Per-layer, per-bit sensitivities: a long frame `layer, w_bits, a_bits, sensitivity`
    (`a_bits` missing = depends on the weight bits only). 16/32 bits (not quantized) count 0."""

    def __init__(
        self,
        frame: pd.DataFrame,
        source: str = "measured",
        tie_groups: Mapping[str, str] | None = None,
    ) -> None:
        df = frame.loc[:, list(LONG_COLUMNS)].copy()
        df["layer"] = df["layer"].astype(str)
        df["w_bits"] = df["w_bits"].astype("int64")
        df["a_bits"] = df["a_bits"].astype("Int64")
        df["sensitivity"] = df["sensitivity"].astype("float64")
        self.frame = df.reset_index(drop=True)
        self.source = source
        self.tie_groups = dict(tie_groups or {})

    @property
    def layers(self) -> list[str]:
        return list(dict.fromkeys(self.frame["layer"]))

    def __len__(self) -> int:
        return len(self.frame)

    # -- files ---------------------------------------------------------------------------------
    @classmethod
    def read(cls, path: str | Path) -> SensitivityTable:
        """A long table (`layer,w_bits,a_bits,sensitivity`) or a HAWQ-V3 table (`layer,
        hutchinson_trace_per_param, delta_w<b>_sq, ...`), CSV or Parquet; or `hawq-v3:NAME`,
        the published HAWQ-V3 table of a model that ships with hwq (`PUBLISHED`)."""
        file = resolve_sensitivity_file(path)
        if not file.is_file():
            raise UserError(f"{file}: sensitivity file not found")
        try:
            if file.suffix.lower() == ".parquet":
                df = pd.read_parquet(file)
                first_line = 0
            else:
                df = pd.read_csv(file, dtype={"layer": str}, keep_default_na=True)
                first_line = 2
        except Exception as exc:
            raise UserError(f"{file}: cannot read sensitivity table: {exc}") from exc
        cols = set(df.columns)
        if {"layer", "w_bits", "sensitivity"} <= cols:
            return cls._from_long(df, file, first_line)
        if {"layer", "hutchinson_trace_per_param"} <= cols and any(
            _HAWQ_DELTA.match(c) for c in df.columns
        ):
            return cls._from_hawq(df, file, first_line)
        raise UserError(
            f"{file}: expected columns layer,w_bits,a_bits,sensitivity (a_bits may be empty) or a "
            f"HAWQ-V3 table (layer,hutchinson_trace_per_param,delta_w8_sq,delta_w4_sq,...), "
            f"found {', '.join(map(str, df.columns))}"
        )

    @classmethod
    def _from_long(cls, df: pd.DataFrame, file: Path, first: int) -> SensitivityTable:
        if "a_bits" not in df.columns:
            df = df.assign(a_bits=pd.NA)
        problems = []
        seen: dict[tuple[str, int, Any], int] = {}
        for i, row in enumerate(df.itertuples(index=False)):
            where = f"{file}:{first + i}" if first else f"{file}: row {i}"
            layer = str(row.layer)
            w = _bits_cell(row.w_bits, where, layer, "w_bits", problems, required=True)
            a = _bits_cell(row.a_bits, where, layer, "a_bits", problems, required=False)
            try:
                s = float(row.sensitivity)
                if math.isnan(s):
                    raise ValueError
            except (TypeError, ValueError):
                problems.append(
                    f"{where}: layer {layer}: sensitivity: expected a number, "
                    f"found {row.sensitivity!r}"
                )
            key = (layer, w, a)
            if key in seen and w is not None:
                a_text = "-" if a is None else a
                problems.append(f"{where}: layer {layer}: duplicate row for w{w} a{a_text}")
            seen.setdefault(key, i)
        layers_both = {}
        for layer, _w, a in seen:
            layers_both.setdefault(layer, set()).add(a is None)
        for layer, kinds in layers_both.items():
            if len(kinds) > 1:
                problems.append(
                    f"{file}: layer {layer}: rows with and without a_bits; use one or the other"
                )
        if problems:
            raise UserError("\n".join(problems))
        return cls(df, source=str(file))

    @classmethod
    def _from_hawq(cls, df: pd.DataFrame, file: Path, first: int) -> SensitivityTable:
        rows = []
        problems = []
        deltas = {int(m.group(1)): c for c in df.columns if (m := _HAWQ_DELTA.match(c))}
        for b in deltas:
            if b not in VALID_BITS:
                problems.append(f"{file}: column delta_w{b}_sq: {b} bits is out of range 1-8")
        ties: dict[str, str] = {}
        for i, row in enumerate(df.to_dict("records")):
            layer = str(row["layer"])
            where = f"{file}:{first + i}" if first else f"{file}: row {i}"
            try:
                trace = float(row["hutchinson_trace_per_param"])
            except (TypeError, ValueError):
                problems.append(f"{where}: layer {layer}: hutchinson_trace_per_param: not a number")
                continue
            for b, col in sorted(deltas.items()):
                try:
                    delta = float(row[col])
                except (TypeError, ValueError):
                    problems.append(f"{where}: layer {layer}: {col}: not a number")
                    continue
                rows.append((layer, b, pd.NA, trace * delta))
            tie = row.get("tie_group")
            if isinstance(tie, str) and tie.strip():
                ties[layer] = tie.strip()
        if problems:
            raise UserError("\n".join(problems))
        frame = pd.DataFrame(rows, columns=list(LONG_COLUMNS))
        return cls(frame, source=str(file), tie_groups=ties)

    def to_frame(self) -> pd.DataFrame:
        return self.frame.copy()

    def save(self, path: str | Path) -> None:
        """CSV or Parquet (by suffix), in the long format that `read` reads back."""
        file = Path(path)
        if file.suffix.lower() == ".parquet":
            write_atomic(file, lambda fh: self.frame.to_parquet(fh, index=False))
        else:
            write_atomic(file, lambda fh: fh.write(self.frame.to_csv(index=False).encode()))

    # -- lookups -------------------------------------------------------------------------------
    def check(self, layer_names: Sequence[str], pinned: Iterable[str] = ()) -> None:
        """UserError naming file layers the model lacks and model layers missing from the table
        that are not pinned."""
        names, known = set(layer_names), set(self.layers)
        extra = [n for n in self.layers if n not in names]
        if extra:
            raise UserError(f"{self.source}: layer(s) the model does not have: {', '.join(extra)}")
        missing = [n for n in layer_names if n not in known and n not in set(pinned)]
        if missing:
            raise UserError(
                f"{self.source}: no sensitivity for layer(s) {', '.join(missing)}; a layer missing "
                "from the table must be pinned (e.g. --pin first,last=8)"
            )

    def lookup(self, layer_names: Sequence[str], pinned: Iterable[str] = ()) -> np.ndarray:
        """float64 [L, 33, 33]: sensitivity of layer l at (w, a); NaN where the table has no
        value; 0 for unquantized (16/32) widths and for pinned layers missing from the table."""
        self.check(layer_names, pinned)
        index = {n: i for i, n in enumerate(layer_names)}
        out = np.full((len(layer_names), BITS_BOUND, BITS_BOUND), np.nan)
        known = set(self.layers)
        for n, i in index.items():
            if n not in known:
                out[i] = 0.0
        for b1 in (16, 32):
            for b2 in (16, 32):
                out[:, b1, b2] = 0.0
        f = self.frame
        weight_only = f["a_bits"].isna().to_numpy()
        li = f["layer"].map(index).to_numpy()
        wb = f["w_bits"].to_numpy()
        sv = f["sensitivity"].to_numpy()
        for k in np.flatnonzero(weight_only):
            out[li[k], wb[k], :] = sv[k]
        ab = f["a_bits"].to_numpy(dtype=float, na_value=np.nan)
        for k in np.flatnonzero(~weight_only):
            out[li[k], wb[k], int(ab[k])] = sv[k]
        weight_only_layers = set(f.loc[weight_only, "layer"])
        for n in weight_only_layers:  # the weights alone decide: unquantized weights cost 0
            out[index[n], [16, 32], :] = 0.0
        return out

    def proxy_many(
        self,
        policies: np.ndarray | Sequence[PolicyLike],
        layer_names: Sequence[str],
        pinned: Iterable[str] = (),
    ) -> np.ndarray:
        """Sum of per-layer sensitivities of each policy (an int array [P, L, 2] in layer order,
        or a list of policies)."""
        arr = _policy_array(policies, layer_names)
        table = self.lookup(layer_names, pinned)
        L = len(layer_names)
        vals = table[np.arange(L)[None, :], arr[..., 0], arr[..., 1]]  # [P, L]
        bad = np.argwhere(np.isnan(vals))
        if len(bad):
            p, layer = bad[0]
            w, a = arr[p, layer]
            raise UserError(
                f"{self.source}: no sensitivity for layer {layer_names[layer]} at "
                f"w_bits={w}, a_bits={a}"
            )
        return vals.sum(1)

    def proxy(
        self, policy: PolicyLike, layer_names: Sequence[str], pinned: Iterable[str] = ()
    ) -> float:
        return float(self.proxy_many([policy], layer_names, pinned)[0])


def _bits_cell(
    value: Any, where: str, layer: str, col: str, problems: list[str], required: bool
) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        if required:
            problems.append(f"{where}: layer {layer}: {col}: expected bits 1-8, 16 or 32, found ''")
        return None
    try:
        b = int(value)
        if b != float(value) or b not in VALID_BITS:
            raise ValueError
    except (TypeError, ValueError):
        problems.append(
            f"{where}: layer {layer}: {col}: expected bits 1-8, 16 or 32, found {value!r}"
        )
        return None
    return b


def _policy_array(policies: Any, layer_names: Sequence[str]) -> np.ndarray:
    if isinstance(policies, np.ndarray) and policies.ndim == 3:
        arr = policies.astype(np.int64)
        if arr.shape[1:] != (len(layer_names), 2):
            raise UserError(
                f"policy array has shape {arr.shape}, expected (P, {len(layer_names)}, 2)"
            )
        bad = ~np.isin(arr, sorted(VALID_BITS))
        if bad.any():
            p, layer, side = np.argwhere(bad)[0]
            raise UserError(
                f"layer {layer_names[layer]}: {'wa'[side]}_bits: expected bits 1-8, 16 or 32, "
                f"found {arr[p, layer, side]}"
            )
        return arr
    return np.array([policy_pairs(p, layer_names) for p in policies], dtype=np.int64).reshape(
        -1, len(layer_names), 2
    )

"""How hwq shows values to people: plain (JSON-ready) values, cell formatting, display units,
compact bit strings and the front table.

One place for it, below the CLI: the command-line commands, the report and the comparison
(`hwq.report`, `hwq.compare`), run summaries and the search's messages all format through here,
so a number reads the same everywhere. Torch-free; pandas only for the front table's input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hwq.objectives import OBJECTIVES, QUALITY_OBJECTIVES


# -- plain values and cells ------------------------------------------------------------------------
def plain(value: Any) -> Any:
    """`value` as plain Python (JSON-ready): numpy scalars unwrapped, NaN/inf as None, mappings
    and sequences converted element by element."""
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
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [plain(v) for v in value]
    return value


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of a DataFrame as plain dicts (see `plain`)."""
    return [plain(r) for r in df.to_dict("records")]


def format_cell(value: Any) -> str:
    """One table cell: `-` for missing, yes/no, integers (and integral floats) with thousands
    separators, other floats to 4 significant digits, lists `;`-joined."""
    value = plain(value)
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


def is_numeric(value: Any) -> bool:
    """Whether a cell is a number (or missing): such columns are right-aligned."""
    v = plain(value)
    return v is None or (isinstance(v, int | float) and not isinstance(v, bool))


def format_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    fmt: Callable[[Any], str] | None = None,
) -> list[str]:
    """Aligned text lines (header first): numbers right-aligned, text left-aligned."""
    cols = list(columns or rows[0].keys())
    show = fmt or format_cell
    cells_plain = [[plain(r.get(c)) for c in cols] for r in rows]
    cells = [[show(v) for v in row] for row in cells_plain]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    numeric = [all(is_numeric(row[i]) for row in cells_plain) for i in range(len(cols))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)
        ).rstrip()

    return [line(cols)] + [line(row) for row in cells]


def format_mapping(doc: Mapping[str, Any]) -> list[str]:
    """`key  value` lines, keys padded to one width."""
    width = max((len(k) for k in doc), default=0)
    return [f"{k.ljust(width)}  {format_cell(v)}" for k, v in doc.items()]


# -- units -----------------------------------------------------------------------------------------
# The one unit rule for people (files and JSON keep the logged base units: seconds, picojoules,
# bytes, counts, accuracy as a fraction): a quantity is shown in the step of its ladder that puts
# the median of the values shown together (a table column, or a single value alone) between 1 and
# 1000 (1024 for bytes), to 4 significant digits; accuracies in %. A table names the unit in its
# header (`latency_ms`), a single value after the number (`7.448 ms`). Every command formats
# through `display_unit`, so one value of one run prints alike in `hwq search`, `hwq runs show`,
# the report, `hwq compare` and `hwq cost`.

# (divisor, unit) ladders from the logged unit (seconds, picojoules, bytes, counts), largest first
TIME_LADDER = ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns"))
ENERGY_LADDER = ((1e12, "J"), (1e9, "mJ"), (1e6, "µJ"), (1e3, "nJ"), (1.0, "pJ"))
BYTES_LADDER = ((1024.0**3, "GiB"), (1024.0**2, "MiB"), (1024.0, "KiB"), (1.0, "B"))
COUNT_LADDER = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""))
LADDERS: dict[str, tuple[tuple[float, str], ...]] = {
    "latency_s": TIME_LADDER,
    "energy_pj": ENERGY_LADDER,
    "weight_bytes": BYTES_LADDER,
    "peak_activation_bytes": BYTES_LADDER,
    "bops": COUNT_LADDER,
}
# any other column by its unit suffix (`energy_core_pj`, `overflow_bytes`, `wall_s`)
SUFFIX_LADDERS = (("_s", TIME_LADDER), ("_pj", ENERGY_LADDER), ("_bytes", BYTES_LADDER))
PERCENT = (0.01, "%")

LABELS = {
    "accuracy": "accuracy",
    "sensitivity": "sensitivity",
    "perplexity": "perplexity",
    "weight_bytes": "weight memory",
    "peak_activation_bytes": "peak activation memory",
    "bops": "BOPs",
    "latency_s": "latency",
    "energy_pj": "energy",
}


def ladder_of(column: str) -> tuple[tuple[float, str], ...] | None:
    """The unit ladder of a logged column (None: not a scaled quantity)."""
    if column in LADDERS:
        return LADDERS[column]
    return next((lad for suffix, lad in SUFFIX_LADDERS if column.endswith(suffix)), None)


def is_accuracy(column: str) -> bool:
    """Accuracies (`accuracy`, `qat_accuracy`, ...) are fractions shown in %."""
    return column == "accuracy" or column.endswith("_accuracy")


def is_quantity(column: str) -> bool:
    """Whether `column` is shown in a display unit (a cost, a time, a size or an accuracy)."""
    return is_accuracy(column) or column == "sensitivity" or ladder_of(column) is not None


def display_unit(column: str, values: Any = None) -> tuple[float, str]:
    """(divisor, unit) to show `column` in: accuracy in %, times/energies/sizes/BOPs in the step
    that puts the median of `values` between 1 and 1000 (or 1024)."""
    if is_accuracy(column):
        return PERCENT
    if column == "sensitivity":
        return 1.0, "a.u."
    ladder = ladder_of(column)
    if ladder is None:
        return 1.0, ""
    arr = np.asarray(values if values is not None else [], dtype=np.float64).reshape(-1)
    arr = np.abs(arr[np.isfinite(arr) & (arr != 0)])
    typical = float(np.median(arr)) if len(arr) else ladder[-1][0]
    for div, unit in ladder:
        if typical >= div:
            return div, unit
    return ladder[-1]


def in_unit(value: float, divisor: float) -> float:
    """`value` in the unit of `divisor`, to 4 significant digits (a number for tables)."""
    return float(f"{value / divisor:.4g}")


def format_quantity(column: str, value: float | None, among: Any = None) -> str:
    """`value` of `column` with its unit, e.g. `1.234 ms`, `58.05 GBOPs`, `98.6 %`; the unit is
    the one `among` (the values it is shown with, e.g. its column of the front) is shown in,
    else its own. `-` when missing."""
    value = plain(value)
    if value is None:
        return "-"
    div, unit = display_unit(column, [value] if among is None else among)
    if column == "bops":
        unit += "BOPs"
    return f"{value / div:.4g} {unit}".strip()


def format_limit(column: str, value: float) -> str:
    """`value` of `column` written as a CLI limit is (`2ms`, `1.5uJ`, `256KiB`; others plain),
    in its display unit."""
    div, unit = display_unit(column, [value])
    if ladder_of(column) is None or column == "bops" or not unit:
        return f"{value:.6g}"
    return f"{value / div:.4g}{unit.replace('µ', 'u')}"


def axis_label(column: str, unit: str) -> str:
    label = LABELS.get(column, column)
    if column == "bops":
        return f"{unit}BOPs" if unit else "BOPs"
    return f"{label} [{unit}]" if unit else label


def table_header(column: str, unit: str) -> str:
    """A column header with its unit, ASCII only: `latency_ms`, `act_peak_KiB`, `GBOPs`,
    `qat_accuracy_%`."""
    if is_accuracy(column):
        return f"{column}_%"
    if column == "bops":
        return f"{unit}BOPs"
    if not unit or unit == "a.u.":
        return column
    base = column.rsplit("_", 1)[0] if column.endswith(("_s", "_pj", "_bytes")) else column
    base = {"weight": "weight", "peak_activation": "act_peak"}.get(base, base)
    return f"{base}_{unit.replace('µ', 'u')}"


def mapping_label(column: str) -> str:
    """A quantity's name beside its value (`latency`, `weight memory`, `qat_accuracy`)."""
    if column in LABELS:
        return LABELS[column]
    ladder_suffix = next((s for s, _ in SUFFIX_LADDERS if column.endswith(s)), None)
    return column[: -len(ladder_suffix)] if ladder_suffix else column


def display_rows(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Rows for a table: each quantity column in its display unit (chosen over the column) under
    a header naming the unit; other columns as they are. `columns` picks and orders them."""
    cols = list(columns if columns is not None else (rows[0].keys() if rows else []))
    units = {
        c: display_unit(c, [r.get(c) if plain(r.get(c)) is not None else np.nan for r in rows])
        for c in cols
        if is_quantity(c)
    }
    out = []
    for r in rows:
        row: dict[str, Any] = {}
        for c in cols:
            v = plain(r.get(c))
            if c in units:
                div, unit = units[c]
                row[table_header(c, unit)] = None if v is None else in_unit(float(v), div)
            else:
                row[c] = v
        out.append(row)
    return out


def display_mapping(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A `key  value` document for people: each quantity as `value unit` under its label."""
    return {
        (mapping_label(k) if is_quantity(k) else k): (
            format_quantity(k, v) if is_quantity(k) else v
        )
        for k, v in doc.items()
    }


# -- bits ------------------------------------------------------------------------------------------
def compact_bits(values: Iterable[Any], max_layers: int | None = None,
                 mean_over: Sequence[bool] | None = None) -> str:
    """Per-layer bits as one string, `8448` (a width of 10 or more in parentheses); with
    `max_layers`, a longer policy shows as its mean (`avg 5.25`), over the layers `mean_over`
    marks when given (the weight layers, for weight bits: a matmul row's "weight" bits are its
    second operand's)."""
    vals = [int(v) for v in values]
    if max_layers is not None and len(vals) > max_layers:
        if mean_over is not None and len(mean_over) == len(vals) and any(mean_over):
            vals = [v for v, keep in zip(vals, mean_over) if keep]
        return f"avg {sum(vals) / len(vals):.2f}"
    return "".join(str(v) if v < 10 else f"({v})" for v in vals)


def bits_summary(pairs: np.ndarray) -> str:
    """`W4A8x3, W8A8x2` style summary of a policy's per-layer pairs, most frequent first."""
    keys = [f"W{int(w)}A{int(a)}" for w, a in np.asarray(pairs).reshape(-1, 2)]
    counts: dict[str, int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    return ", ".join(f"{k}x{n}" for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def weight_layer_mask(ops: Iterable[Any]) -> list[bool]:
    """True for every layer that holds weights (not a matmul row), from the graph's `op` column."""
    return [str(op) != "matmul" for op in ops]


# -- the front table -------------------------------------------------------------------------------
# the costs `hwq search` prints beside the run's quality, in this order
SUMMARY_COSTS = ("latency_s", "energy_pj", "weight_bytes", "peak_activation_bytes", "bops")


@dataclass(frozen=True)
class FrontStyle:
    """How `front_table` lays a front out (its units are always those of `display_unit`).

    `all_costs`: the quality and every cost of SUMMARY_COSTS the front logged (else the run's
    objectives); `species`: a species column; `sort`: best quality first; `max_bits_layers`:
    longer policies show their mean bits.
    """

    all_costs: bool = False
    species: bool = True
    sort: bool = True
    max_bits_layers: int | None = None


RUN_FRONT = FrontStyle()  # `hwq runs show`, the HTML report
SEARCH_FRONT = FrontStyle(all_costs=True, species=False, sort=False, max_bits_layers=16)
QUALITY_COLUMNS = tuple(OBJECTIVES[o][0] for o in QUALITY_OBJECTIVES)
VERIFIED_COLUMNS = ("ptq_accuracy", "qat_accuracy")


def front_table(
    front: pd.DataFrame,
    verify: pd.DataFrame,
    objective_columns: Sequence[str],
    style: FrontStyle = RUN_FRONT,
    weight_layers: Sequence[bool] | None = None,
) -> list[dict[str, Any]]:
    """The front as display rows: id, (species,) bits, objective values in display units (one
    unit per column, chosen over this front), and the verification accuracies in % when there
    are any. `objective_columns` are the logged columns of the run's objectives, in order;
    `weight_layers` marks the graph's weight layers (a mean of w_bits is taken over them)."""
    if style.all_costs:
        shown = [c for c in (*QUALITY_COLUMNS, *SUMMARY_COSTS) if c in front.columns]
    else:
        shown = [c for c in objective_columns if c in front.columns]
    quality = next((c for c in (objective_columns or shown) if c in QUALITY_COLUMNS), None)
    if style.sort and quality is not None and len(front):
        front = front.sort_values(quality, ascending=quality != "accuracy", kind="stable")
    vmap = {r["policy_id"]: r for r in verify.to_dict("records")} if len(verify) else {}
    rows: list[dict[str, Any]] = []
    for _, r in front.iterrows():
        row: dict[str, Any] = {"policy_id": r["policy_id"]}
        if style.species and "species" in r:
            row["species"] = r["species"]
        row["w_bits"] = compact_bits(r["w_bits"], style.max_bits_layers, weight_layers)
        row["a_bits"] = compact_bits(r["a_bits"], style.max_bits_layers)
        row.update({c: r[c] for c in shown})
        if vmap:
            v = vmap.get(r["policy_id"]) or {}
            row.update({k: v.get(k) for k in VERIFIED_COLUMNS})
        rows.append(row)
    return display_rows(rows)

"""The objectives table (DESIGN.md §4): every objective's name, the column it is logged under and
whether it is maximised — the one definition the search, verification, reports and comparisons
read. Torch- and pandas-free."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# objective name -> (logged column, maximised?)
OBJECTIVES: dict[str, tuple[str, bool]] = {
    "accuracy": ("accuracy", True),
    "sensitivity": ("sensitivity", False),
    "perplexity": ("perplexity", False),
    "weight_memory": ("weight_bytes", False),
    "activation_memory": ("peak_activation_bytes", False),
    "bops": ("bops", False),
    "latency": ("latency_s", False),
    "energy": ("energy_pj", False),
}
QUALITY_OBJECTIVES: tuple[str, ...] = ("accuracy", "sensitivity", "perplexity")
COST_OBJECTIVES: tuple[str, ...] = tuple(k for k in OBJECTIVES if k not in QUALITY_OBJECTIVES)
# cost columns every search logs (all come from one `hwq.evaluate` call)
COST_COLUMNS: tuple[str, ...] = tuple(OBJECTIVES[k][0] for k in COST_OBJECTIVES)
# columns that add up over layers (so an ILP, a greedy path or a lower bound can use them)
ADDITIVE_COLUMNS: tuple[str, ...] = ("sensitivity", "weight_bytes", "bops", "latency_s",
                                     "energy_pj")
COLUMN_TO_OBJECTIVE: dict[str, str] = {col: name for name, (col, _) in OBJECTIVES.items()}


def column(name: str) -> str:
    """The logged column of objective `name`."""
    return OBJECTIVES[name][0]


def minimised(frame: Mapping[str, Any], names: Sequence[str]) -> np.ndarray:
    """float64 [N, len(names)]: the objectives of `frame`'s rows, all as minimised values
    (a maximised objective enters negated)."""
    cols = []
    for name in names:
        col, maximise = OBJECTIVES[name]
        v = np.asarray(frame[col], dtype=np.float64)
        cols.append(-v if maximise else v)
    n = len(np.asarray(frame[OBJECTIVES[names[0]][0]])) if names else 0
    return np.stack(cols, axis=1) if cols else np.zeros((n, 0))

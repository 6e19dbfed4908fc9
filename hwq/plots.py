"""Plotting helpers shared by the report and the comparison: matplotlib without a display,
species colours that read alike across plots, and a front's 2-D staircase."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def pyplot() -> Any:
    """`matplotlib.pyplot` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def species_colours(names: Sequence[str]) -> dict[str, Any]:
    """One colour per name (sorted, so the same names get the same colours in every plot)."""
    cmap = pyplot().get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {s: cmap(i % cmap.N) for i, s in enumerate(sorted(names))}


def staircase(xs: np.ndarray, ys: np.ndarray, maximise: bool) -> np.ndarray:
    """Points of (x ascending) that are non-dominated in this 2-D projection."""
    keep = np.zeros(len(xs), dtype=bool)
    best = -np.inf if maximise else np.inf
    for i in range(len(xs)):
        if (maximise and ys[i] > best) or (not maximise and ys[i] < best):
            keep[i] = True
            best = ys[i]
    return keep

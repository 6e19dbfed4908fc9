"""The machine's speed during a measurement, watched through one reference layer timed beside
every group of layers (and beside the whole networks).

A shared or virtual machine changes speed over seconds to minutes (another process on the host,
frequency scaling): a layer's time is then no more repeatable than the machine. The reference
layer, the same kernel timed in every group, shows by how much: its times' spread over the
groups is reported in the profile and warned of when large. The times are not scaled by it:
on a quiet machine the reference's own noise (a few percent per group) would be added to every
layer, and its speed and a layer's do not move together at that scale (measured: docs/measure.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hwq.measure.shapes import LayerShape, graph_shapes

if TYPE_CHECKING:
    from hwq.graph import LayerGraph
    from hwq.measure.backend import MeasureBackend

FP32 = (32, 32)


@dataclass(frozen=True)
class SpeedReference:
    """The reference layer's times over a measurement's groups: their median and `drift` =
    max / min - 1."""

    shape: LayerShape
    pair: tuple[int, int]
    median_s: float
    groups: int
    drift: float

    def label(self) -> str:
        return f"{self.shape.label()} at W{self.pair[0]}A{self.pair[1]}"


def choose_reference(graph: LayerGraph, pairs: Sequence[tuple[int, int]],
                     backend: MeasureBackend) -> tuple[LayerShape, tuple[int, int]] | None:
    """The graph's layer of most MACs (the longest kernel: least timer and overhead noise) at
    fp32 when requested, else at the first requested pair the backend runs; None when the
    backend runs none of its layers."""
    shapes = graph_shapes(graph)
    order = np.argsort(-np.asarray(graph.column("macs"), dtype=np.float64), kind="stable")
    ranked = sorted(pairs, key=lambda p: p != FP32)
    for i in order:
        for pair in ranked:
            if backend.why_not(shapes[i].op, pair) is None:
                return shapes[i], pair
    return None


def speed_of(rows: Sequence[dict[str, Any]], shape: LayerShape,
             pair: tuple[int, int]) -> SpeedReference:
    """The reference's times over the groups the rows were timed in (`reference_s`, one value
    per group)."""
    refs = np.asarray([float(r["reference_s"]) for r in rows], dtype=np.float64)
    groups = np.unique(refs[refs > 0])
    if not len(groups):
        return SpeedReference(shape, pair, 0.0, 0, 0.0)
    return SpeedReference(shape, pair, float(np.median(groups)), len(groups),
                          float(groups.max() / groups.min() - 1))

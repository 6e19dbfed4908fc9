"""Fitting the `lut` kind's network terms on whole-network runs (see cost_models/lut.py):

* `run_s`: the runtime's own cost of one run (an empty model's time), which `hwq measure`
  subtracted from every single-layer time and a whole network pays once;
* per pair P measured uniformly, `glue_s_per_element[P]` = (measured network time - the sum of
  its isolated layers at P - run_s) / the network's output elements (sum over layers of
  `out_elems`);
* `boundary_s_per_element` = (measured time of the boundary policy (alternating pairs) - its
  layers and glue) / its boundary elements (`hwq.cost_models.lut.boundary_elements`), at least 0.

Each term is one equation in one unknown: exactly the measured time of the network it is fitted
on; the other policies are predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwq.cost_models.lut import boundary_elements, pair_key
from hwq.graph import LayerGraph


@dataclass(frozen=True)
class NetworkTermsFit:
    """The fitted terms: glue seconds per output element by `WxA`, boundary seconds per element
    (None: not fitted)."""

    glue_s_per_element: dict[str, float]
    boundary_s_per_element: float | None
    run_s: float = 0.0

    def to_profile(self) -> dict[str, object]:
        out: dict[str, object] = {"glue_s_per_element": dict(self.glue_s_per_element)}
        if self.boundary_s_per_element is not None:
            out["boundary_s_per_element"] = self.boundary_s_per_element
        if self.run_s:
            out["run_s"] = self.run_s
        return out


def layers_sum(layer_latency: np.ndarray, pairs: list[tuple[int, int]],
               policy: np.ndarray) -> float:
    """Sum over layers of the isolated latency [L, K] at each layer's pair of `policy` [L, 2]."""
    col = [pairs.index((int(w), int(a))) for w, a in policy]
    return float(layer_latency[np.arange(len(col)), col].sum())


def glue_sum(graph: LayerGraph, glue: dict[str, float], policy: np.ndarray) -> float:
    per = np.array([glue.get(pair_key(w, a), 0.0) for w, a in policy])
    return float((graph.column("out_elems").astype(np.float64) * per).sum())


def fit_glue(graph: LayerGraph, layer_latency: np.ndarray, pairs: list[tuple[int, int]],
             uniform_measured: dict[tuple[int, int], float],
             run_s: float = 0.0) -> dict[str, float]:
    """glue_s_per_element per uniformly measured pair (`run_s`: the one run's own cost)."""
    elems = float(graph.column("out_elems").astype(np.float64).sum())
    out = {}
    for pair, measured in uniform_measured.items():
        policy = np.tile(np.array(pair, dtype=np.int64), (len(graph), 1))
        rest = layers_sum(layer_latency, pairs, policy) + run_s
        out[pair_key(*pair)] = (measured - rest) / elems
    return out


def fit_boundary(graph: LayerGraph, layer_latency: np.ndarray, pairs: list[tuple[int, int]],
                 glue: dict[str, float], policy: np.ndarray, measured: float,
                 run_s: float = 0.0) -> float | None:
    """boundary_s_per_element from one mixed policy's measured time (None: it has no
    boundary)."""
    elems = float(boundary_elements(graph, policy[None])[0])
    if elems <= 0:
        return None
    rest = layers_sum(layer_latency, pairs, policy) + glue_sum(graph, glue, policy) + run_s
    return max(0.0, (measured - rest) / elems)

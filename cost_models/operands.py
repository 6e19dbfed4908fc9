"""What a row reads and writes, by op: the one definition every kind prices from (issue 12).

* `conv` / `linear`: the weight operand is the stored weights (`weight_params` values at w_bits),
  the first operand the input activation (`in_elems` at a_bits).
* `matmul` (two activations): the second operand takes the weights' place (its bits are the row's
  w_bits) but is an activation read from memory, never a stored weight (`weight_params` is 0, so
  weight bytes and flash count nothing for it): `LayerGraph.second_elems()` = batch·groups·K·N
  values; the first operand `in_elems` = batch·groups·M·K at a_bits. It is batch·groups
  independent GEMMs of M×K×N (`gemms`).
* `embedding`: a lookup reads the looked-up rows, batch·tokens·dimension (= `out_elems`) values at
  w_bits, not the whole table and not its integer ids; MACs 0. The table's footprint (flash,
  weight bytes) is its `weight_params` like any weight.

Every row writes `out_elems` values, as the kind writes any layer's output. Importing this module
stays light (numpy only), like the kinds' own modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from hwq.graph import LayerGraph

# Op codes of the kernels' arrays: the index of the op in hwq.graph.OPS (tests check the order).
CONV, LINEAR, MATMUL, EMBEDDING = range(4)


def op_codes(graph: LayerGraph) -> np.ndarray:
    """int64 [L]: each row's op as its index in `hwq.graph.OPS` (CONV, LINEAR, MATMUL,
    EMBEDDING)."""
    import pandas as pd

    from hwq.graph import OPS

    return pd.Categorical(graph.frame["op"], categories=OPS).codes.astype(np.int64)


def weight_operand_elems(graph: LayerGraph) -> np.ndarray:
    """float64 [L]: values read in the weights' role at w_bits (weights; a matmul's second
    operand; an embedding's looked-up rows)."""
    op = op_codes(graph)
    f = graph.frame
    out = f["weight_params"].to_numpy(dtype=np.float64).copy()
    out[op == MATMUL] = graph.second_elems().astype(np.float64)[op == MATMUL]
    out[op == EMBEDDING] = f["out_elems"].to_numpy(dtype=np.float64)[op == EMBEDDING]
    return out


def first_operand_elems(graph: LayerGraph) -> np.ndarray:
    """float64 [L]: activation values read at a_bits (an embedding's ids count none)."""
    out = graph.frame["in_elems"].to_numpy(dtype=np.float64).copy()
    out[op_codes(graph) == EMBEDDING] = 0.0
    return out


def gemms(graph: LayerGraph) -> np.ndarray:
    """float64 [L]: independent products a row stands for (a matmul: batch·groups; else 1)."""
    f = graph.frame
    n = (f["batch"] * f["groups"]).to_numpy(dtype=np.float64)
    return np.where(op_codes(graph) == MATMUL, n, 1.0)

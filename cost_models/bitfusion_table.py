"""The `bitfusion` kind: maps a LayerGraph onto the reference simulator's layer abstraction and
prices it with the Numba kernels of `bitfusion.py`.

Mapping (reference/bitfusion_model.md §4, DESIGN.md §3): a conv keeps its kernel, output and
stride per axis (square in the reference, independent OH/OW tiles otherwise), `groups` splits it
into independent convs whose costs add, the layer that reads the model input uses im2col, and a
linear layer is K = O = S = 1 with its batch (rows) as the only spatial reuse.
"""

from __future__ import annotations

from typing import Any

import hwq.cost_models.bitfusion as bitfusion
import numpy as np

from hwq.errors import CostModelError

KERNEL_COLUMNS = ("kernel_h", "kernel_w", "out_h", "out_w", "stride_h", "stride_w",
                  "in_channels", "out_channels", "batch", "groups")


def layer_rows(graph: Any) -> np.ndarray:
    """int64 [L, 11] simulator rows of a LayerGraph (see bitfusion.simulate)."""
    frame = graph.frame
    rows = np.stack([frame[c].to_numpy(dtype=np.int64) for c in KERNEL_COLUMNS], axis=1)
    is_fc = (frame["op"] == "linear").to_numpy()
    rows[is_fc, 0:6] = 1
    rows[is_fc, 9] = 1
    im2col = (frame["reads_input"].to_numpy(dtype=bool) & ~is_fc).astype(np.int64)
    return np.ascontiguousarray(np.concatenate([rows, im2col[:, None]], axis=1))


def price(graph: Any, profile: Any, w_bits: np.ndarray, a_bits: np.ndarray) -> dict[str, Any]:
    max_bits = int(profile.get("array.max_bits"))
    for w, a in zip(w_bits, a_bits):
        if not (1 <= w <= max_bits and 1 <= a <= max_bits):
            first = graph.names[0] if len(graph) else "?"
            raise CostModelError(
                f"layer {first}: {profile.name} cannot price W{w}A{a}: its fusion units take "
                f"1-{max_bits} bits per operand (16/32-bit layers must run elsewhere)"
            )
    params = bitfusion.params_from_profile(profile.data)
    rows = layer_rows(graph)
    w_arr = np.asarray(w_bits, dtype=np.int64)
    a_arr = np.asarray(a_bits, dtype=np.int64)
    try:
        out = bitfusion.simulate(rows, w_arr, a_arr, params)
    except ValueError as exc:
        if "no tiling fits" not in str(exc):
            raise
        raise _nothing_fits(graph, profile, rows, w_arr, a_arr, params) from exc
    cols = {name: out[:, :, i] for i, name in enumerate(bitfusion.OUT_COLUMNS)}
    result: dict[str, Any] = dict(cols)
    result["latency_s"] = cols["cycles"] / float(profile.clock_hz)
    result["_labels"] = {"loop_order": bitfusion.LOOP_ORDER_NAMES,
                         "dataflow": ("input_stationary", "output_stationary",
                                      "weight_stationary")}
    return result


def _nothing_fits(graph: Any, profile: Any, rows: np.ndarray, w_bits: np.ndarray,
                  a_bits: np.ndarray, params: np.ndarray) -> CostModelError:
    """A user error naming the first layer and pair no tiling of which fits the buffers."""
    for i, name in enumerate(graph.names):
        for w, a in zip(w_bits, a_bits):
            try:
                bitfusion.simulate(rows[i:i + 1], np.array([w], dtype=np.int64),
                                   np.array([a], dtype=np.int64), params)
            except ValueError:
                return CostModelError(
                    f"layer {name}: no tiling at W{w}A{a} fits the buffers of {profile.name} "
                    "(each tile must fit in half of its buffer): enlarge buffers.wbuf, ibuf or "
                    "obuf"
                )
    return CostModelError(f"{profile.name}: no tiling fits the buffers")

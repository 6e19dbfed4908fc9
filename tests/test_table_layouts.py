"""hwq.table_layouts: cost tables in HAQ's and APQ's lookup-table layouts."""

from __future__ import annotations

import numpy as np
import pandas as pd

import hwq
from hwq.graph import LayerGraph
from hwq.table_layouts import to_apq, to_haq


def _table():
    frame = pd.DataFrame(
        [
            {
                "name": n,
                "op": "conv",
                "batch": 1,
                "in_channels": 16,
                "out_channels": 16,
                "in_h": 8,
                "in_w": 8,
                "out_h": 8,
                "out_w": 8,
                "kernel_h": 3,
                "kernel_w": 3,
                "stride_h": 1,
                "stride_w": 1,
                "pad_h": 1,
                "pad_w": 1,
                "groups": 1,
            }
            for n in ("a", "b")
        ]
    )
    graph = LayerGraph.from_frame(frame)
    return hwq.cost_table(graph, hwq.load_profile("bitfusion"), bits=[(8, 8), (2, 4)])


def test_haq_layout_indexes_bits_from_one_in_milliseconds():
    table = _table()
    arr = to_haq(table)
    assert arr.shape == (2, 8, 8)
    assert np.allclose(arr[:, 7, 7], table.values["latency_s"][:, 0] * 1e3)
    assert np.allclose(arr[:, 1, 3], table.values["latency_s"][:, 1] * 1e3)
    assert np.isnan(arr[:, 0, 0]).all()


def test_apq_layout_shares_a_key_between_layers_of_one_shape():
    doc = to_apq(_table())
    assert sorted(doc) == ["(16, 16, 8, 3, 1, 1, 1)-W2A4", "(16, 16, 8, 3, 1, 1, 1)-W8A8"]
    assert set(doc["(16, 16, 8, 3, 1, 1, 1)-W8A8"]) == {"latency", "energy"}

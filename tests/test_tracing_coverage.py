"""LayerGraph.coverage: the aten-level reference count, its file form and its batch scaling."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import torch
from torch import nn

import hwq
from hwq.graph import LayerGraph
from tests.small_models import WithLSTM


def test_coverage_travels_in_parquet_metadata(tmp_path):
    g = hwq.trace(WithLSTM(), torch.zeros(2, 7, 8))
    path = tmp_path / "lstm.parquet"
    g.save(path)
    meta = pq.read_schema(path).metadata
    assert json.loads(meta[b"hwq.coverage"]) == g.coverage
    back = LayerGraph.read(path)
    assert back.coverage == g.coverage
    assert back.graph_hash == g.graph_hash


def test_hand_built_and_csv_graphs_have_no_coverage(tmp_path):
    g = hwq.trace(WithLSTM(), torch.zeros(2, 7, 8))
    path = tmp_path / "lstm.csv"
    g.save(path)
    assert LayerGraph.read(path).coverage is None
    assert LayerGraph.read(path).graph_hash == g.graph_hash


class Conv3dNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c3 = nn.Conv3d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.c3(x).mean(dim=(2, 3, 4)))


def test_conv3d_counted_unsupported_and_missing(caplog):
    g = hwq.trace(Conv3dNet(), torch.zeros(1, 3, 4, 5, 6))
    c3 = 4 * 5 * 6 * 4 * 3 * 27
    assert [(u.name, u.type, u.macs) for u in g.unsupported] == [("c3", "Conv3d", c3)]
    assert g.names == ["fc"]
    assert g.coverage == {"reference_macs": c3 + 4 * 2, "graph_macs": 4 * 2,
                          "unsupported_macs": c3, "fraction": 8 / (c3 + 8)}
    assert any("missing most in: c3" in r.message for r in caplog.records)


def test_with_batch_scales_coverage_macs_not_the_fraction():
    g = hwq.trace(WithLSTM(), torch.zeros(1, 7, 8))
    g3 = g.with_batch(3)
    for key in ("reference_macs", "graph_macs", "unsupported_macs"):
        assert g3.coverage[key] == 3 * g.coverage[key]
    assert g3.coverage["fraction"] == g.coverage["fraction"]
    assert g3.totals()["macs"] == 3 * g.totals()["macs"]

"""Layer graph extraction: rows, edges, fallbacks and file round trips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from hwq.errors import UserError
from hwq.graph import SHAPE_COLUMNS, LayerGraph
from hwq.tracing import trace
from tests.small_models import Concat, DataDependent, GroupedDepthwise, Residual, WithLSTM


def row(g: LayerGraph, name: str) -> dict:
    return g.to_frame().set_index("name").loc[name].to_dict()


def test_residual_rows_and_edges():
    g = trace(Residual(), torch.zeros(2, 3, 8, 8))
    assert g.names == ["c1", "c2", "c3", "fc"]
    assert not g.specialised
    assert set(g.edges) == {("c1", "c2"), ("c1", "c3"), ("c2", "c3"), ("c3", "fc")}
    c1 = row(g, "c1")
    assert c1["reads_input"] and c1["batch"] == 2
    assert c1["macs"] == 2 * 8 * 8 * 8 * 3 * 3 * 3
    assert c1["weight_params"] == 8 * 3 * 9
    assert (c1["in_elems"], c1["out_elems"]) == (2 * 3 * 64, 2 * 8 * 64)
    assert (c1["pad_h"], c1["pad_w"], c1["kernel_w"], c1["stride_w"]) == (1, 1, 3, 1)
    fc = row(g, "fc")
    assert fc["op"] == "linear" and fc["macs"] == 2 * 512 * 10 and fc["in_elems"] == 2 * 512
    assert (fc["in_h"], fc["out_w"], fc["kernel_h"]) == (1, 1, 1)


def test_grouped_depthwise_and_conv1d():
    g = trace(GroupedDepthwise(), torch.zeros(1, 3, 16, 16))
    grouped, dw, conv1d = row(g, "grouped"), row(g, "dw"), row(g, "conv1d")
    assert grouped["groups"] == 4 and grouped["weight_params"] == 32 * 4 * 9
    assert grouped["macs"] == 8 * 8 * 32 * 4 * 9
    assert dw["groups"] == 32 and dw["weight_params"] == 32 * 9 and dw["macs"] == 64 * 32 * 9
    assert (conv1d["in_h"], conv1d["in_w"], conv1d["kernel_h"], conv1d["kernel_w"]) == (64, 1, 5, 1)
    assert conv1d["macs"] == 64 * 12 * 24 * 5
    assert row(g, "stem")["out_h"] == 8 and row(g, "stem")["stride_h"] == 2
    assert g.edges == [("stem", "grouped"), ("grouped", "dw"), ("dw", "pw"), ("pw", "conv1d"),
                       ("conv1d", "head")]


def test_concat_edges():
    g = trace(Concat(), torch.zeros(1, 3, 4, 4))
    assert set(g.edges) == {("a", "c"), ("b", "c")}
    assert row(g, "a")["reads_input"] and row(g, "b")["reads_input"]
    assert not row(g, "c")["reads_input"] and row(g, "c")["in_channels"] == 10


def test_data_dependent_if_falls_back_to_hooks(caplog):
    g = trace(DataDependent(), torch.ones(1, 3, 6, 6))
    assert g.specialised
    assert g.names == ["a", "b", "fc"]
    assert g.edges == [("a", "b"), ("b", "fc")]
    assert any("specialised" in r.message for r in caplog.records)


def test_lstm_is_reported_unsupported(caplog):
    g = trace(WithLSTM(), torch.zeros(2, 7, 8))
    assert g.names == ["embed", "out"]
    assert [u.name for u in g.unsupported] == ["lstm"]
    u = g.unsupported[0]
    assert u.type == "LSTM" and u.macs == 2 * 7 * 4 * 32 * (16 + 32)
    assert any("lstm" in r.message for r in caplog.records)
    embed = row(g, "embed")  # linear over [2, 7, 8]: 2 samples of 7 tokens
    assert (embed["batch"], embed["in_h"], embed["out_h"]) == (2, 7, 7)
    assert embed["macs"] == 2 * 7 * 8 * 16
    # the LSTM is missing from the graph: coverage says so, and the warning names it
    assert g.coverage["unsupported_macs"] == u.macs
    assert g.coverage["reference_macs"] == 2 * 7 * 8 * 16 + u.macs + 2 * 32 * 3
    assert g.coverage["graph_macs"] == 2 * 7 * 8 * 16 + 2 * 32 * 3
    assert g.coverage["fraction"] < 0.99
    assert any("missing most in: lstm" in r.message for r in caplog.records)


def test_failing_forward_names_the_module():
    from hwq.errors import GraphError

    with pytest.raises(GraphError, match="c1"):
        trace(Residual(), torch.zeros(1, 5, 8, 8))


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_round_trip(tmp_path, suffix):
    g = trace(WithLSTM(), torch.zeros(1, 4, 8))
    g2 = trace(Residual(), torch.zeros(1, 3, 8, 8))
    for graph in (g, g2):
        path = tmp_path / f"layers{suffix}"
        graph.save(path)
        back = LayerGraph.read(path)
        pd.testing.assert_frame_equal(back.to_frame()[list(SHAPE_COLUMNS)],
                                      graph.to_frame()[list(SHAPE_COLUMNS)])
        assert back.edges == graph.edges
        assert back.graph_hash == graph.graph_hash
        if suffix == ".parquet":
            assert back.unsupported == graph.unsupported


def test_from_frame_derives_columns_and_chain():
    df = pd.DataFrame({
        "name": ["conv", "fc"], "op": ["conv", "linear"], "in_channels": [3, 64],
        "out_channels": [16, 10], "out_h": [4, None], "kernel_h": [3, None],
        "stride_h": [2, None], "batch": [4, 4],
    })
    g = LayerGraph.from_frame(df)
    conv = row(g, "conv")
    assert conv["in_h"] == 9 and conv["out_w"] == 4 and conv["kernel_w"] == 3
    assert conv["macs"] == 4 * 16 * 16 * 3 * 9 and conv["reads_input"]
    assert row(g, "fc")["macs"] == 4 * 64 * 10
    assert g.edges == [("conv", "fc")]


@pytest.mark.parametrize(
    ("change", "message"),
    [({"op": ["pool", "linear"]}, "op"), ({"in_channels": [0, 64]}, "in_channels"),
     ({"name": ["x", "x"]}, "duplicate")],
)
def test_from_frame_rejects_bad_rows(change, message):
    base = {"name": ["conv", "fc"], "op": ["conv", "linear"], "in_channels": [3, 64],
            "out_channels": [16, 10], "out_h": [4, 1], "kernel_h": [3, 1]}
    base.update(change)
    with pytest.raises(UserError, match=message):
        LayerGraph.from_frame(pd.DataFrame(base))


def test_with_batch_scales_counts():
    g = trace(Residual(), torch.zeros(1, 3, 8, 8))
    g16 = g.with_batch(16)
    np.testing.assert_array_equal(g16.column("macs"), 16 * g.column("macs"))
    assert g16.edges == g.edges


def _attention_frame():
    import pandas as pd

    # x [2, 16, 64] -> q/k/v projections -> scores (4 heads: [16, 16] x [16, 16]) -> context
    return pd.DataFrame([
        {"name": "emb", "op": "embedding", "batch": 2, "in_channels": 100, "out_channels": 64,
         "out_h": 16, "inputs": ""},
        {"name": "q", "op": "linear", "batch": 2, "in_channels": 64, "out_channels": 64,
         "out_h": 16, "inputs": "emb"},
        {"name": "k", "op": "linear", "batch": 2, "in_channels": 64, "out_channels": 64,
         "out_h": 16, "inputs": "emb"},
        {"name": "v", "op": "linear", "batch": 2, "in_channels": 64, "out_channels": 64,
         "out_h": 16, "inputs": "emb"},
        {"name": "attn.matmul0", "op": "matmul", "batch": 2, "groups": 4, "in_channels": 16,
         "out_channels": 16, "out_h": 16, "inputs": "q", "second_inputs": "k"},
        {"name": "attn.matmul1", "op": "matmul", "batch": 2, "groups": 4, "in_channels": 16,
         "out_channels": 16, "out_h": 16, "inputs": "attn.matmul0", "second_inputs": "v"},
    ])


def test_matmul_and_embedding_rows_derive_their_columns(tmp_path):
    g = LayerGraph.from_frame(_attention_frame())
    f = g.frame.set_index("name")
    assert f.loc["emb", "macs"] == 0 and f.loc["emb", "weight_params"] == 100 * 64
    assert f.loc["emb", "in_elems"] == 2 * 16 and f.loc["emb", "out_elems"] == 2 * 16 * 64
    assert f.loc["q", "macs"] == 2 * 16 * 64 * 64
    assert f.loc["attn.matmul0", "macs"] == 2 * 4 * 16 * 16 * 16
    assert f.loc["attn.matmul0", "weight_params"] == 0
    assert f.loc["attn.matmul0", "in_elems"] == 2 * 4 * 16 * 16
    assert list(g.second_elems()) == [0, 0, 0, 0, 2 * 4 * 16 * 16, 2 * 4 * 16 * 16]
    assert g.second_inputs[4] == ("k",) and g.inputs[4] == ("q",)
    assert ("k", "attn.matmul0") in g.edges and ("v", "attn.matmul1") in g.edges
    for name in ("layers.csv", "layers.parquet"):
        g.save(tmp_path / name)
        back = LayerGraph.read(tmp_path / name)
        assert back.graph_hash == g.graph_hash
        assert back.second_inputs == g.second_inputs and back.inputs == g.inputs
    assert g.with_batch(8).totals()["macs"] == 4 * g.totals()["macs"]


def test_a_matmul_without_second_inputs_reads_its_first_producers():
    df = _attention_frame().drop(columns=["second_inputs"])
    g = LayerGraph.from_frame(df)
    assert g.second_inputs[4] == ("q",) and g.second_inputs[1] == ()


def test_layer_files_of_version_1_load_and_say_so_once(tmp_path, caplog):
    import pyarrow.parquet as pq

    import hwq.graph as graph_mod

    g = LayerGraph.from_frame(_attention_frame().iloc[:4])
    g.save(tmp_path / "v2.parquet")
    table = pq.read_table(tmp_path / "v2.parquet")
    meta = dict(table.schema.metadata)
    meta[b"hwq.schema_version"] = b"1"
    pq.write_table(table.replace_schema_metadata(meta), tmp_path / "v1.parquet")
    graph_mod._OLD_VERSION_SAID.clear()
    with caplog.at_level("WARNING", logger="hwq.graph"):
        a = LayerGraph.read(tmp_path / "v1.parquet")
        LayerGraph.read(tmp_path / "v1.parquet")
    assert a.totals() == g.totals()
    assert sum("schema version 1" in r.getMessage() for r in caplog.records) == 1
    meta[b"hwq.schema_version"] = b"99"
    pq.write_table(table.replace_schema_metadata(meta), tmp_path / "v99.parquet")
    with pytest.raises(UserError, match="version 99"):
        LayerGraph.read(tmp_path / "v99.parquet")

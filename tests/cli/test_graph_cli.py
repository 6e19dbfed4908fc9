"""`hwq graph` end to end with click's runner."""

from __future__ import annotations

import json

import pandas as pd
from click.testing import CliRunner

from hwq.cli import cli


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_graph_json_resnet50():
    res = run("graph", "resnet50", "--json")
    assert res.exit_code == 0
    doc = json.loads(res.stdout)
    assert set(doc) == {"model", "specialised", "totals", "layers", "edges", "unsupported",
                        "coverage"}
    assert doc["totals"]["layers"] == 54 == len(doc["layers"])
    assert doc["totals"]["macs"] == 4_089_184_256
    assert doc["coverage"] == {"reference_macs": 4_089_184_256, "graph_macs": 4_089_184_256,
                               "unsupported_macs": 0, "fraction": 1.0}
    assert abs(doc["totals"]["macs"] / 4.09e9 - 1) < 0.01
    assert doc["specialised"] is False
    assert ["layer1.0.conv3", "layer1.1.conv1"] in doc["edges"]


def test_graph_saves_layer_file_and_reads_it_back(tmp_path):
    out = tmp_path / "r20.parquet"
    res = run("graph", "resnet20", "-o", str(out))
    assert res.exit_code == 0 and out.exists()
    df = pd.read_parquet(out)
    assert len(df) == 22 and "inputs" in df.columns
    res2 = run("graph", str(out), "--json")
    assert json.loads(res2.stdout)["totals"]["layers"] == 22


def test_graph_factory_path_and_model_args():
    res = run("graph", "hwq.models.mobilenet:mobilenet_v2", "--model-arg", "width=0.5",
              "--input-shape", "1,3,96,96", "--json")
    assert res.exit_code == 0
    assert json.loads(res.stdout)["totals"]["layers"] == 53


def test_graph_bad_inputs_exit_2():
    import pytest

    from hwq.cli import main

    for argv in (["graph", "nosuchmodel"], ["graph", "resnet18", "--model-arg", "width"],
                 ["graph", "resnet18", "--input-shape", "1,x"],
                 ["graph", "missing_file.parquet"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2, argv


def test_graph_json_coverage_names_the_lstm():
    res = run("graph", "tests.small_models:WithLSTM", "--input-shape", "2,7,8", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    cov = doc["coverage"]
    lstm = 2 * 7 * 4 * 32 * (16 + 32)
    assert cov["unsupported_macs"] == lstm
    assert cov["reference_macs"] == cov["graph_macs"] + lstm
    assert cov["fraction"] < 0.99
    assert "missing most in: lstm" in res.stderr


def test_graph_text_prints_coverage():
    res = run("graph", "tests.small_models:WithLSTM", "--input-shape", "1,7,8")
    assert res.exit_code == 0, res.output
    ref = 7 * 8 * 16 + 7 * 4 * 32 * (16 + 32) + 32 * 3
    pct = 100 * (7 * 8 * 16 + 32 * 3) / ref
    assert f"# coverage: the layers hold {pct:.2f}% of the model's {ref:,} MACs" in res.stdout
    assert "# unsupported: lstm (LSTM" in res.stdout

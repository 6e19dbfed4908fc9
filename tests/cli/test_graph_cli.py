"""`hwq graph` end to end with click's runner."""

from __future__ import annotations

import json
from functools import cache

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from torch import nn

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


# -- inputs as users have them: token ids, any rank, a Hugging Face factory -----------------------
HF = "tests.hf_factories:roberta"  # 2 layers, hidden 32, 4 heads, FFN 64, vocab 100


@cache
def _roberta_on_64_token_ids():
    return run("graph", HF, "--input-shape", "1,64", "--input-dtype", "int64", "--json")


def test_graph_hugging_face_factory_on_token_ids():
    res = _roberta_on_64_token_ids()
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    linear = [row for row in doc["layers"] if row["op"] == "linear"]
    assert len(linear) == 2 * 6 + 1  # q, k, v, o, intermediate, output per layer; pooler
    assert {row["batch"] for row in doc["layers"]} == {1}
    assert {row["out_h"] for row in linear if row["name"] != "pooler.dense"} == {64}
    per_layer = 4 * 64 * 32 * 32 + 2 * 64 * 32 * 64
    attention = 2 * 4 * 64 * 64 * (8 + 8)  # scores and context of 4 heads of 8, both layers
    assert sum(row["macs"] for row in linear) == 2 * per_layer + 32 * 32
    matmul = [row for row in doc["layers"] if row["op"] == "matmul"]
    assert len(matmul) == 2 * 2 and sum(row["macs"] for row in matmul) == attention
    assert doc["coverage"] == {"reference_macs": 2 * per_layer + 32 * 32 + attention,
                               "graph_macs": 2 * per_layer + 32 * 32 + attention,
                               "unsupported_macs": 0, "fraction": 1.0}
    assert "token ids below embeddings.word_embeddings.num_embeddings = 100" in res.stderr


# the families of tests/hf_factories.py that take one positional input, as the CLI builds it
CLI_FAMILIES = {
    "roberta": ("1,64", "int64"),
    "qwen2": ("1,64", "int64"),
    "swin": ("1,3,32,32", "float32"),
    "deit": ("1,3,32,32", "float32"),
    "wav2vec2": ("1,800", "float32"),
}


@cache
def _family_json(family: str) -> dict:
    if family == "roberta":
        res = _roberta_on_64_token_ids()
    else:
        shape, dtype = CLI_FAMILIES[family]
        res = run("graph", f"tests.hf_factories:{family}", "--input-shape", shape,
                  "--input-dtype", dtype, "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.mark.parametrize("family", CLI_FAMILIES)
def test_graph_json_of_each_family_prints_coverage(family):
    cov = _family_json(family)["coverage"]
    assert set(cov) == {"reference_macs", "graph_macs", "unsupported_macs", "fraction"}
    assert cov["graph_macs"] + cov["unsupported_macs"] == cov["reference_macs"] > 0


@pytest.mark.parametrize("family", CLI_FAMILIES)
def test_graph_json_of_each_family_covers_every_mac(family):
    assert _family_json(family)["coverage"]["fraction"] >= 0.99


def test_graph_float_input_into_an_embedding_names_it(capsys):
    from hwq.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["graph", HF, "--input-shape", "1,16"])
    assert exc.value.code == 2
    assert ("hwq: error: module embeddings.word_embeddings: expected integer token ids, found "
            "float32 input; use --input-dtype int64") in capsys.readouterr().err


class WithConvTranspose(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(torch.relu(self.down(x)))


def test_graph_json_coverage_names_the_conv_transpose():
    res = run("graph", "tests.cli.test_graph_cli:WithConvTranspose", "--input-shape", "2,3,8,8",
              "--json")
    assert res.exit_code == 0, res.output
    cov = json.loads(res.stdout)["coverage"]
    down, up = 2 * 8 * 4 * 4 * 3 * 9, 2 * 8 * 4 * 4 * 4 * 2 * 2
    assert (cov["graph_macs"], cov["unsupported_macs"], cov["reference_macs"]) == (
        down, up, down + up)
    assert cov["fraction"] < 0.99
    assert "missing most in: up (" in res.stderr


def test_graph_five_dimensional_input():
    res = run("graph", "tests.test_tracing_coverage:Conv3dNet", "--input-shape", "1,3,4,5,6",
              "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [u["name"] for u in doc["unsupported"]] == ["c3"]
    assert doc["coverage"]["unsupported_macs"] == 4 * 5 * 6 * 4 * 3 * 27


def test_input_dtype_on_every_command_with_input_shape():
    for command in ("graph", "cost", "table", "search"):
        text = run(command, "--help").stdout
        assert "--input-shape" in text and "--input-dtype" in text, command


def test_cost_on_token_ids():
    res = run("cost", "--device", "bitfusion", "--model", HF, "--input-shape", "2,16",
              "--input-dtype", "INT64", "--bits", "8,8", "--json")
    assert res.exit_code == 0, res.output
    per_layer = 4 * 16 * 32 * 32 + 2 * 16 * 32 * 64 + 4 * 16 * 16 * (8 + 8)  # + attention
    assert json.loads(res.stdout)["totals"]["macs"] == 2 * (2 * per_layer + 32 * 32)

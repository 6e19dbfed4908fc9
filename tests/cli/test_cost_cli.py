"""`hwq cost`, `hwq table` and `hwq profile` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from hwq.cli import cli, main
from hwq.tables import COLUMNS


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def exit_code(*argv: str) -> int:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    return int(exc.value.code)


@pytest.fixture(scope="module")
def r18_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("layers") / "resnet18.parquet"
    assert run("graph", "resnet18", "-o", str(path)).exit_code == 0
    return path


def test_cost_resnet50_w8a8_totals():
    res = run("cost", "--device", "bitfusion", "--model", "resnet50", "--bits", "8,8", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert set(doc) == {"device", "model", "totals"}
    graph = json.loads(run("graph", "resnet50", "--json").stdout)
    macs = graph["totals"]["macs"]
    t = doc["totals"]
    assert t["macs"] == macs
    assert t["bops"] == 64 * macs
    assert t["weight_bytes"] == graph["totals"]["weight_params"]
    assert t["peak_activation_bytes"] > 0 and t["feasible"] is True
    assert t["unsupported_macs"] == 0
    assert t["coverage"] == graph["coverage"] and t["coverage"]["fraction"] == 1.0


def test_cost_json_says_what_the_totals_leave_out():
    args = ("--model", "tests.small_models:WithLSTM", "--input-shape", "1,7,8")
    res = run("cost", "--device", "bitfusion", *args, "--bits", "8,8", "--json", "--batch", "3")
    assert res.exit_code == 0, res.output
    t = json.loads(res.stdout)["totals"]
    lstm = 7 * 4 * 32 * (16 + 32)  # one sample
    assert t["unsupported_macs"] == 3 * lstm
    assert t["macs"] == 3 * (7 * 8 * 16 + 32 * 3)
    assert t["coverage"]["graph_macs"] == t["macs"]
    assert t["coverage"]["reference_macs"] == t["macs"] + 3 * lstm
    assert t["coverage"]["fraction"] < 0.99


def test_cost_per_layer_and_policy_file(tmp_path, r18_file):
    policy = tmp_path / "p.json"
    policy.write_text(json.dumps({"schema_version": 1, "default": {"w_bits": 4, "a_bits": 4},
                                  "layers": {"conv1": {"w_bits": 8, "a_bits": 8}}}))
    res = run("cost", "-d", "bitfusion", "-m", str(r18_file), "--policy", str(policy),
              "--per-layer", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert len(doc["layers"]) == 21
    first = doc["layers"][0]
    assert (first["layer"], first["w_bits"], first["a_bits"]) == ("conv1", 8, 8)
    assert all((r["w_bits"], r["a_bits"]) == (4, 4) for r in doc["layers"][1:])
    assert doc["totals"]["bops"] == pytest.approx(sum(r["bops"] for r in doc["layers"]))


def test_table_outputs(tmp_path, r18_file):
    res = run("table", "--device", "bitfusion", "--model", str(r18_file), "--bits", "8x8,4x4",
              "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert len(rows) == 42 and set(COLUMNS) <= set(rows[0])
    out = tmp_path / "t.parquet"
    assert run("table", "-d", "bitfusion", "-m", str(r18_file), "-o", str(out)).exit_code == 0
    df = pd.read_parquet(out)
    assert list(df.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert len(df) == 21 * 9  # the profile's search_default {2,4,8} squared
    haq = tmp_path / "haq.npy"
    assert run("table", "-d", "bitfusion", "-m", str(r18_file), "--bits", "8x8,2x4",
               "--format", "haq", "-o", str(haq)).exit_code == 0
    arr = np.load(haq)
    assert arr.shape == (21, 8, 8)
    assert np.isfinite(arr[:, 7, 7]).all() and np.isnan(arr[:, 0, 0]).all()
    apq = tmp_path / "apq.json"
    assert run("table", "-d", "bitfusion", "-m", str(r18_file), "--bits", "4x8",
               "--format", "apq", "-o", str(apq)).exit_code == 0
    doc = json.loads(apq.read_text())
    key = "(64, 64, 56, 3, 1, 1, 1)-W4A8"
    assert key in doc and set(doc[key]) == {"latency", "energy"}


def test_layer_file_does_not_import_torch(r18_file):
    code = textwrap.dedent(f"""
        import sys
        from click.testing import CliRunner
        from hwq.cli import cli
        res = CliRunner().invoke(cli, ["cost", "-d", "bitfusion", "-m", {str(r18_file)!r},
                                       "--bits", "4,4", "--json"])
        assert res.exit_code == 0, res.output
        print("torch" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "argv",
    [
        ["cost", "-d", "nosuchdevice", "-m", "resnet18", "--bits", "8,8"],
        ["cost", "-d", "bitfusion", "-m", "nosuchmodel", "--bits", "8,8"],
        ["cost", "-d", "bitfusion", "-m", "resnet18", "--bits", "9,8"],
        ["cost", "-d", "bitfusion", "-m", "resnet18", "--bits", "8"],
        ["cost", "-d", "bitfusion", "-m", "resnet18"],
        ["cost", "-d", "bitfusion", "-m", "resnet18", "--bits", "16,16"],
        ["table", "-d", "bitfusion", "-m", "resnet18", "-o", "x.txt"],
        ["profile", "show", "nosuchdevice"],
    ],
)
def test_bad_input_exits_2(argv, capsys):
    assert exit_code(*argv) == 2
    err = capsys.readouterr().err
    assert "hwq: error:" in err and "Traceback" not in err


def test_unknown_policy_layer_is_named(tmp_path, r18_file, capsys):
    policy = tmp_path / "p.json"
    policy.write_text(json.dumps({"layers": {"conv99": {"w_bits": 4, "a_bits": 4}}}))
    assert exit_code("cost", "-d", "bitfusion", "-m", str(r18_file), "--policy",
                     str(policy)) == 2
    assert "conv99" in capsys.readouterr().err


def test_profile_commands(tmp_path, capsys):
    res = run("profile", "list", "--json")
    names = {p["name"] for p in json.loads(res.stdout)}
    assert {"bitfusion"} <= names
    kinds = {p["kind"] for p in json.loads(res.stdout)}
    assert {"bitfusion", "bit_serial", "gpu", "mcu"} <= kinds
    res = run("profile", "show", "bitfusion", "--json")
    assert json.loads(res.stdout)["profile"]["core"]["energy_pj_per_cycle"] == 235.104
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: 1\nname: x\nkind: nosuchkind\n")
    assert exit_code("profile", "validate", str(bad)) == 2
    assert "bad.yaml:3" in capsys.readouterr().err


def _token_layers(path, unsupported=()):
    """1 sample of 4 tokens: an embedding (32 x 8), q/k/v, attention scores and context (2 heads
    of 4, matmul rows), o and an LM head (8 -> 32), as a layer file."""
    from hwq.graph import LayerGraph
    from tests.token_graphs import token_frame

    df = token_frame()
    LayerGraph.from_frame(df, unsupported=unsupported).save(path)
    return path


def test_batch_of_a_token_graph_means_samples(tmp_path):
    layers = str(_token_layers(tmp_path / "tokens.csv"))
    one_macs = 4 * (4 * 8 * 8 + 8 * 32) + 2 * (2 * 4 * 4 * 4)  # tokens x K x N; heads x M K N
    docs = {}
    for batch in ("1", "4"):
        res = run("cost", "-d", "bitfusion", "-m", layers, "--bits", "8,8", "--json",
                  "--batch", batch)
        assert res.exit_code == 0, res.output
        docs[batch] = json.loads(res.stdout)["totals"]
    one, four = docs["1"], docs["4"]
    assert one["macs"] == one_macs and four["macs"] == 4 * one_macs
    assert four["bops"] == 4 * one["bops"] == 4 * 64 * one_macs
    assert four["weight_bytes"] == one["weight_bytes"] == 32 * 8 + 4 * 64 + 8 * 32  # W8: bytes
    assert four["peak_activation_bytes"] == 4 * one["peak_activation_bytes"]
    # a layer file built by hand has no aten-level count: nothing known to be left out
    assert (four["unsupported_macs"], four["coverage"]) == (0, None)
    res = run("table", "-d", "bitfusion", "-m", layers, "--bits", "8x8", "--batch", "4",
              "--json")
    assert res.exit_code == 0, res.output
    table_macs = {r["layer"]: r["macs"] for r in json.loads(res.stdout)}
    assert table_macs["attn.matmul0"] == 4 * 2 * 4 * 4 * 4 and table_macs["emb"] == 0
    assert table_macs["head"] == 4 * 4 * 8 * 32  # samples x tokens x K x N


def test_unsupported_macs_of_a_file_without_coverage_scale_with_batch(tmp_path):
    lstm = {"name": "lstm", "type": "LSTM", "macs": 1000, "reason": "not modelled"}
    layers = str(_token_layers(tmp_path / "tokens.parquet", [lstm]))
    res = run("cost", "-d", "bitfusion", "-m", layers, "--bits", "8,8", "--json", "--batch", "3")
    assert res.exit_code == 0, res.output
    totals = json.loads(res.stdout)["totals"]
    assert (totals["unsupported_macs"], totals["coverage"]) == (3000, None)


def test_cost_json_coverage_of_a_traced_token_model_scales_with_batch():
    args = ("--model", "tests.test_tracing_patterns:GPT2Block", "--input-shape", "1,5,8")
    docs = {}
    for batch in ("1", "4"):
        res = run("cost", "-d", "bitfusion", *args, "--bits", "8,8", "--json", "--batch", batch)
        assert res.exit_code == 0, res.output
        docs[batch] = json.loads(res.stdout)["totals"]
    one, four = docs["1"], docs["4"]
    assert one["macs"] == 5 * (8 * 24 + 24 * 8 + 8 * 32 + 32 * 8)  # 5 tokens, 1 sample
    assert four["macs"] == 4 * one["macs"]
    assert four["unsupported_macs"] == one["unsupported_macs"] == 0
    assert four["coverage"]["graph_macs"] == four["macs"]
    assert four["coverage"]["reference_macs"] == 4 * one["coverage"]["reference_macs"]
    assert four["coverage"]["fraction"] == one["coverage"]["fraction"] == 1.0

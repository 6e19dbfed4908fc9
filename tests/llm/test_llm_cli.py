"""--phase / --context on graph, cost, table and search; `hwq cost` prints tokens/s (issue 19)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hwq.cli import cli
from hwq.errors import UserError
from tests.llm.llm_configs import write_config


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(write_config(tmp_path_factory.mktemp("cli") / "llama"))


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def refused(res, text: str) -> bool:
    """A user mistake (exit 2 at `hwq`'s main) whose message says `text`."""
    return isinstance(res.exception, UserError) and text in str(res.exception)


def test_cost_prints_tokens_per_second(config_dir: str) -> None:
    args = ("cost", "--device", "a100-torchao", "--model", f"hf-config:{config_dir}",
            "--phase", "decode", "--context", "64", "--bits", "4,16")
    res = run(*args, "--json")
    assert res.exit_code == 0, res.output
    totals = json.loads(res.stdout)["totals"]
    assert totals["tokens_per_second"] == pytest.approx(1 / totals["latency_s"])
    assert totals["feasible"] and totals["overflow_bytes"] == 0
    text = run(*args, "--batch", "4")
    assert text.exit_code == 0, text.output
    line = next(x for x in text.stdout.splitlines() if x.startswith("tokens/s"))
    batched = json.loads(run(*args, "--batch", "4", "--json").stdout)["totals"]
    assert float(line.split()[-1].replace(",", "")) == pytest.approx(
        4 / batched["latency_s"], rel=1e-3)
    prefill = json.loads(run("cost", "--device", "rtx4090-llamacpp", "--model",
                             f"hf-config:{config_dir}", "--phase", "prefill", "--context", "32",
                             "--bits", "16,16", "--json").stdout)["totals"]
    assert prefill["tokens_per_second"] == pytest.approx(32 / prefill["latency_s"])


def test_table_shows_bits_per_weight(config_dir: str, tmp_path: Path) -> None:
    res = run("table", "--device", "rtx4090-llamacpp", "--model", f"hf-config:{config_dir}",
              "--context", "16", "--bits", "16x16,4x16", "--format", "json")
    assert res.exit_code == 0, res.output
    rows = {(r["layer"], r["w_bits"]): r for r in json.loads(res.stdout)}
    down = rows[("model.layers.0.mlp.down_proj", 4)]
    assert down["bits_per_weight"] == 4.5
    assert down["weight_bytes"] == 128 * 64 * 4.5 / 8


def test_graph_phase_and_context(config_dir: str, tmp_path: Path) -> None:
    out = tmp_path / "prefill.parquet"
    res = run("graph", f"hf-config:{config_dir}", "--phase", "prefill", "--context", "8",
              "-o", str(out), "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["model"].endswith("prefill@8") and doc["coverage"]["fraction"] == 1.0
    # a saved LLM graph keeps its phase: tokens/s from the layer file alone
    cost = json.loads(run("cost", "--device", "a100-torchao", "--model", str(out), "--bits",
                          "16,16", "--json").stdout)["totals"]
    assert cost["tokens_per_second"] == pytest.approx(8 / cost["latency_s"])
    bad = run("graph", str(out), "--phase", "decode")
    assert refused(bad, "do not apply to a layer file")
    cnn = run("graph", "resnet18", "--phase", "decode")
    assert refused(cnn, "causal language model")


def test_refusals_exit_2(config_dir: str) -> None:
    res = run("cost", "--device", "a100-torchao", "--model", f"hf-config:{config_dir}",
              "--context", "16", "--bits", "4,8")
    assert refused(res, "4x8 is not a format of device a100-torchao")
    res = run("cost", "--device", "a100-torchao", "--model", f"hf-config:{config_dir}",
              "--context", "100000", "--bits", "16,16")
    assert refused(res, "max_position_embeddings = 256")
    res = run("cost", "--device", "a100-torchao", "--model", "resnet18", "--bits", "8,16")
    assert refused(res, "runtime torchao")


def test_search_takes_phase_and_context(config_dir: str, tmp_path: Path) -> None:
    res = run("search", "--device", "a100-torchao", "--model", f"hf-config:{config_dir}",
              "--phase", "decode", "--context", "32", "--objectives", "latency,weight_memory",
              "--algorithm", "random", "--generations", "1", "--population", "4",
              "--output-dir", str(tmp_path / "run"), "--verify-top", "0")
    assert res.exit_code == 0, res.output
    import hwq

    run_dir = hwq.Run.open(tmp_path / "run")
    assert run_dir.meta["model"] == f"hf-config:{config_dir}" or run_dir.meta
    assert len(run_dir.candidates) == 4

"""A search on a language model end to end: tinylm on a100-torchao at its default formats (its
front, matmul rows kept in float, the exports of a front policy read back), the measured sensitivity
objective, and a user's own causal LM with --weights and --data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hwq
from hwq.cli import cli
from hwq.export.hf_quant_config import read_hf_quant_config
from hwq.export.llama_cpp import match_tensor_types, read_tensor_types, type_bits
from hwq.quant.perplexity import module_pairs, perplexity_objective
from tests.run_fixtures import run_cmd

PROFILE = "a100-torchao"  # an LLM runtime profile: weight-only formats, decode latency


@pytest.fixture(scope="module")
def lm_run(tinylm_trained, tmp_path_factory):
    return hwq.search(PROFILE, "tinylm", tie="same-input", pin="first,last=8x16",
                      generations=3, population=12, seed=0, verify_top=2,
                      output_dir=str(tmp_path_factory.mktemp("lm") / "run"))


def test_search_on_tinylm_measures_perplexity_with_matmuls_in_float(lm_run):
    run = lm_run
    assert run.config["search"]["objectives"] == ["perplexity", "latency", "weight_memory"]
    graph = run.layers
    ops = np.array(graph.column("op"))
    cands = run.candidates
    w = np.stack(cands["w_bits"].to_numpy())
    a = np.stack(cands["a_bits"].to_numpy())
    assert (w[:, ops == "matmul"] == 16).all() and (a == 16).all()
    first, last = graph.names.index("model.embed_tokens"), graph.names.index("lm_head")
    assert (w[:, first] == 8).all() and (w[:, last] == 8).all()
    ppl = cands["perplexity"].to_numpy()
    assert np.isfinite(ppl).all() and (ppl > 1).all()
    front = run.pareto
    assert len(front) >= 2 and front["weight_bytes"].min() < front["weight_bytes"].max()
    assert run.verify is None or not len(run.verify)  # no QAT for a language model
    # measured in the profile's formats (torchao: 4 and 3 bits in groups of 64, zero point)
    assert "torchao's formats" in run.config["resolved"]["quality"]["method"]
    best = front.sort_values("perplexity").iloc[0]
    modules = [n for n, op in zip(graph.names, ops) if op != "matmul"]
    ev = perplexity_objective("tinylm", runtime="torchao", layer_names=modules)
    pairs = module_pairs(graph.names, run.policy(best["policy_id"]).pairs(graph.names), modules)
    assert ev(pairs) == pytest.approx(float(best["perplexity"]), rel=1e-9)
    assert perplexity_objective("tinylm", layer_names=modules)(pairs) != ev(pairs)


def test_front_policy_exports_to_llama_cpp_and_hf_config(lm_run, tmp_path):
    import gguf

    run = lm_run
    pid = run.pareto.sort_values("weight_bytes")["policy_id"].iloc[0]
    names = run.layers.names
    ops = list(run.layers.column("op"))
    pairs = run.policy(pid).pairs(names)
    out = tmp_path / "types.txt"
    code, stdout, err = run_cmd(cli, ["export", str(run.path), "--policy", pid, "--format",
                                      "llama-cpp", "-o", str(out)])
    assert code == 0, err
    assert "architecture" in stdout and "llama" in stdout
    name_map = gguf.TensorNameMap(gguf.MODEL_ARCH.LLAMA, 2)
    tensors = {name_map.get_name(n) + ".weight": p[0]
               for n, op, p in zip(names, ops, pairs) if op != "matmul"}
    matched = match_tensor_types(read_tensor_types(out), list(tensors))
    assert all(len(matched[t]) == 1 and type_bits(matched[t][0]) == b for t, b in tensors.items())
    cfg = tmp_path / "quant.json"
    code, _stdout, err = run_cmd(cli, ["export", str(run.path), "--policy", pid, "--format",
                                       "hf-quant-config", "-o", str(cfg)])
    assert code == 0, err
    weight = [(n, p) for n, op, p in zip(names, ops, pairs) if op != "matmul"]
    assert read_hf_quant_config(cfg, [n for n, _ in weight]) == [
        (16, 16) if w >= 16 else (w, 16) for _, (w, _a) in weight]
    code, _stdout, err = run_cmd(cli, ["export", str(run.path), "--policy", pid, "--format",
                                       "llama-cpp", "--from", "ptq", "-o", str(out)])
    assert code == 2 and "holds bits" in err


def test_sensitivity_objective_is_measured_on_the_language_model(tinylm_trained, tmp_path):
    run = hwq.search(PROFILE, "tinylm", bits="2x16,16x16", tie="same-input",
                     objectives="sensitivity,weight_memory", generations=2, population=8,
                     seed=0, verify_top=0, output_dir=str(tmp_path / "run"))
    sens = run.candidates["sensitivity"].to_numpy()
    w = np.stack(run.candidates["w_bits"].to_numpy())
    assert np.isfinite(sens).all() and sens.max() > 0.05
    # more 2-bit layers, more loss (a sum of per-layer increases, mostly positive)
    assert np.corrcoef((w == 2).sum(axis=1), sens)[0, 1] > 0.5


def test_a_users_causal_lm_with_weights_and_data(tmp_path):
    from tests.llm_search.lm_factories import small_llama

    weights = tmp_path / "small.pt"
    torch.save(small_llama().state_dict(), weights)
    model = "tests.llm_search.lm_factories:small_llama"
    data = "tests.llm_search.lm_factories:token_data"
    ev = perplexity_objective(model, weights=str(weights), data=data)
    assert len(ev.names) == 2 * 7 + 2
    n = len(ev.names)
    fp = ev([(16, 16)] * n)
    assert 200 < fp < 400  # an untrained model: about uniform over 258 byte ids
    assert ev([(2, 16)] * n) != fp
    run = hwq.search(PROFILE, model, weights=str(weights), data=data, input_shape="1,32",
                     input_dtype="int64", bits="4x16,8x16", generations=2, population=6,
                     seed=0, verify_top=0, output_dir=str(tmp_path / "run"))
    assert run.config["search"]["objectives"] == ["perplexity", "latency", "weight_memory"]
    assert np.isfinite(run.candidates["perplexity"]).all()

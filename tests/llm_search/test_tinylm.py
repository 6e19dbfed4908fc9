"""tinylm in the zoo: its architecture by hand, its layer graph, its trained and cached weights."""

from __future__ import annotations

import math

import pytest
import torch

from hwq.model_source import load_graph, natural_input_dtype
from hwq.models import is_causal_lm, is_causal_lm_module, load_model, trained_source
from hwq.models.tinylm import CONFIG, cache_path, load_trained_tinylm

H, L, FF, V = 256, 2, 256, 258
KV = 2 * H // 4  # 2 key/value heads of 64


def test_architecture_by_hand():
    net = load_model("tinylm")
    per_layer = H * H + 2 * H * KV + H * H + 3 * H * FF + 2 * H  # q, k, v, o, gate/up/down, norms
    assert sum(p.numel() for p in net.parameters()) == V * H + L * per_layer + H + V * H
    assert sum(p.numel() for p in net.parameters()) == 919_808
    assert type(net).__name__ == "LlamaForCausalLM"
    assert net.config.num_key_value_heads == 2 and not net.config.tie_word_embeddings
    assert CONFIG["vocab_size"] == V


def test_zoo_knows_it_is_a_trained_causal_lm():
    assert is_causal_lm("tinylm") and not is_causal_lm("digits_resnet")
    assert not is_causal_lm("layers.parquet")
    assert is_causal_lm_module(load_model("tinylm"))
    assert natural_input_dtype("tinylm") == "int64"
    assert natural_input_dtype("digits_resnet") == "float32"
    assert trained_source("tinylm") is not None


def test_graph_rows_weight_layers_and_attention_products():
    g = load_graph("tinylm")
    ops = list(g.column("op"))
    assert ops.count("embedding") == 1 and ops.count("linear") == L * 7 + 1
    assert ops.count("matmul") == 2 * L  # scores and context per layer
    assert g.names[0] == "model.embed_tokens" and g.names[-1] == "lm_head"
    assert "model.layers.0.self_attn.matmul0" in g.names


def test_trained_weights_are_cached_and_learned(tinylm_trained):
    net, info = tinylm_trained
    assert info["recipe_key"] in str(cache_path(0))
    assert cache_path(0).is_file()
    # far below the uniform byte model (perplexity 258) and finite
    assert 1.0 < info["fp_val_perplexity"] < 8.0 and math.isfinite(info["fp_test_perplexity"])
    again, info2 = load_trained_tinylm(0)  # from the cache: the same bits
    for (k, a), (_, b) in zip(net.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    assert info2["fp_val_perplexity"] == info["fp_val_perplexity"]


@pytest.mark.slow
def test_training_is_deterministic(tinylm_trained, tmp_cache):
    """Retrains in an empty cache (minutes): the same bits as the session's cached weights."""
    from hwq.models import tinylm as mod

    cached, _info = tinylm_trained
    mod._MEMO.clear()
    try:
        fresh, info = load_trained_tinylm(0)
    finally:
        mod._MEMO.clear()
    assert str(tmp_cache) in info["cache_file"]
    for (k, a), (_, b) in zip(cached.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), k

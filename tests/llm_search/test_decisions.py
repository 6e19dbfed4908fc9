"""Decisions as LLM runtimes make them: --tie same-input ties q/k/v and gate/up of a Llama, pins
by module name and first/last (the token table and the LM head), and a causal LM's default
objectives."""

from __future__ import annotations

import pytest
import torch
import transformers as hf

import hwq
from hwq.errors import UserError
from hwq.graph import same_input_groups
from hwq.search.config import LM_DEFAULT_OBJECTIVES, SearchConfig
from hwq.search.encoding import Encoding, parse_pin_specs
from hwq.search.prepare import default_objectives

LAYERS = 3


def llama_graph(attn: str = "sdpa"):
    torch.manual_seed(0)
    config = hf.LlamaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=LAYERS,
                            num_attention_heads=4, num_key_value_heads=2, intermediate_size=48,
                            max_position_embeddings=32, use_cache=False,
                            attn_implementation=attn)
    model = hf.LlamaForCausalLM(config).eval()
    return hwq.trace(model, torch.randint(0, 64, (2, 12)))


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_tie_groups_of_a_llama_are_qkv_and_gate_up(attn):
    g = llama_graph(attn)
    tied = [sorted(g.names[i] for i in grp) for grp in same_input_groups(g) if len(grp) > 1]
    expected = []
    for b in range(LAYERS):
        p = f"model.layers.{b}"
        expected.append(sorted(f"{p}.self_attn.{x}_proj" for x in "qkv"))
        expected.append(sorted(f"{p}.mlp.{x}_proj" for x in ("gate", "up")))
    assert sorted(tied) == sorted(expected)
    enc = Encoding(g, [(4, 16), (8, 16), (16, 16)], {}, "same-input")
    # per block: qkv, o, gate+up, down and two matmul rows; plus the embedding and the LM head
    assert enc.n_groups == LAYERS * 6 + 2
    assert len(Encoding(g, [(4, 16), (8, 16)], {}, "none").groups) == len(g)


def test_pins_by_name_and_first_last_are_the_token_table_and_lm_head():
    g = llama_graph()
    names = g.names
    by_name = parse_pin_specs(["model.embed_tokens,lm_head=8x16"], g)
    assert by_name == {names.index("model.embed_tokens"): (8, 16), names.index("lm_head"): (8, 16)}
    assert parse_pin_specs(["first,last=8x16"], g) == by_name
    # a tied group with a pinned member is pinned whole
    enc = Encoding(g, [(4, 16), (8, 16)], parse_pin_specs(["model.layers.0.self_attn.q_proj=8x16"],
                                                          g), "same-input")
    assert enc.pins[names.index("model.layers.0.self_attn.v_proj")] == (8, 16)
    with pytest.raises(UserError, match="not in the model"):
        parse_pin_specs(["model.layers.9.mlp.up_proj=8x16"], g)


def test_a_causal_lm_searches_perplexity_latency_and_weight_memory():
    assert default_objectives(SearchConfig(model="tinylm", device="a100")) == list(
        LM_DEFAULT_OBJECTIVES) == ["perplexity", "latency", "weight_memory"]
    assert default_objectives(SearchConfig(model="digits_resnet", device="a100"))[0] == "accuracy"
    cfg = SearchConfig(model="tinylm", device="a100", sensitivity="s.csv")
    assert default_objectives(cfg) == ["sensitivity", "latency", "weight_memory"]

"""hf-config:/hf: models and hwq.llm_graph against hand formulas (issue 19): per decode step
every linear reads its whole weight for one token per sequence, the attention matmuls read the
context's keys and values (K/V cache: batch x kv_heads x head_dim x context each), the embedding
reads only the looked-up rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import hwq
from hwq.errors import UserError
from hwq.llm_phases import phase_of, tokens_per_s
from hwq.model_source import load_graph
from tests.llm.llm_configs import (
    FFN,
    HEAD_DIM,
    HEADS,
    HIDDEN,
    KV_HEADS,
    LAYERS,
    MAX_POS,
    VOCAB,
    write_config,
)

B, N = 2, 16
KV = KV_HEADS * HEAD_DIM


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("tiny") / "llama")


@pytest.fixture(scope="module")
def tiny(tiny_dir: Path) -> torch.nn.Module:
    return hwq.load_model(f"hf-config:{tiny_dir}")


def linear_macs(tokens: int) -> int:
    """Per layer: q, k, v, o, gate, up, down for `tokens` tokens of each of B sequences."""
    per_token = HIDDEN * HIDDEN * 2 + HIDDEN * KV * 2 + HIDDEN * FFN * 3
    return B * tokens * per_token


def test_config_builds_on_the_meta_device(tiny: torch.nn.Module, tiny_dir: Path) -> None:
    assert {p.device.type for p in tiny.parameters()} == {"meta"}
    file_model = hwq.load_model(f"hf-config:{tiny_dir / 'config.json'}")
    assert type(file_model) is type(tiny)


def test_decode_counts_against_hand_formulas(tiny: torch.nn.Module) -> None:
    g = hwq.llm_graph(tiny, "decode", context=N, batch=B)
    f = g.frame.set_index("name")
    assert phase_of(g) == ("decode", N)
    # every linear: one token per sequence, its whole weight
    lin = f[f["op"] == "linear"]
    assert len(lin) == LAYERS * 7 + 1
    head = HIDDEN * VOCAB
    assert int(lin["macs"].sum()) == LAYERS * linear_macs(1) + B * head
    assert int(lin["weight_params"].sum()) == LAYERS * (2 * HIDDEN * HIDDEN + 2 * HIDDEN * KV
                                                        + 3 * HIDDEN * FFN) + head
    # attention against the context: scores B x heads x hd x N, context B x heads x N x hd
    mm = f[f["op"] == "matmul"]
    assert len(mm) == 2 * LAYERS
    assert (mm["macs"] == B * HEADS * HEAD_DIM * N).all()
    # grouped-query rows: batch x kv_heads products; the second operand is the K (V) cache
    assert (mm["groups"] == KV_HEADS).all() and (mm["out_h"] == HEADS // KV_HEADS).all()
    second = g.second_elems()[g.frame["op"].to_numpy() == "matmul"]
    assert (second == B * KV_HEADS * HEAD_DIM * N).all()
    assert int(g.second_elems().sum()) == 2 * LAYERS * B * N * KV  # the whole K/V cache
    # the embedding reads the looked-up rows only: one token per sequence
    emb = f.loc["model.embed_tokens"]
    assert (emb["op"], emb["macs"], emb["out_elems"]) == ("embedding", 0, B * HIDDEN)
    assert emb["weight_params"] == VOCAB * HIDDEN
    total = LAYERS * (linear_macs(1) + 2 * B * HEADS * HEAD_DIM * N) + B * head
    assert int(f["macs"].sum()) == total
    assert g.coverage is not None and g.coverage["reference_macs"] == total


def test_prefill_counts_against_hand_formulas(tiny: torch.nn.Module) -> None:
    g = hwq.llm_graph(tiny, "prefill", context=N, batch=B)
    f = g.frame.set_index("name")
    assert phase_of(g) == ("prefill", N)
    attention = 2 * B * HEADS * N * HEAD_DIM * N  # scores and context, N queries x N keys
    # generation's prefill computes the logits of the last token only
    assert int(f.loc["lm_head", "macs"]) == B * HIDDEN * VOCAB
    assert int(f["macs"].sum()) == LAYERS * (linear_macs(N) + attention) + B * HIDDEN * VOCAB
    assert int(f.loc["model.embed_tokens", "out_elems"]) == B * N * HIDDEN
    assert int(g.second_elems().sum()) == 2 * LAYERS * B * N * KV


def test_batch_rescales_like_a_traced_batch(tiny: torch.nn.Module) -> None:
    one = hwq.llm_graph(tiny, "decode", context=N, batch=1)
    two = hwq.llm_graph(tiny, "decode", context=N, batch=B)
    assert one.with_batch(B).graph_hash == two.graph_hash


def test_weights_directory_gives_the_config_graph(tmp_path: Path, tiny_dir: Path) -> None:
    from hwq.hf_models import read_config

    torch.manual_seed(0)
    import transformers

    transformers.AutoModelForCausalLM.from_config(read_config(tiny_dir)).save_pretrained(
        tmp_path / "ckpt")
    real = hwq.load_model(f"hf:{tmp_path / 'ckpt'}")
    assert {p.device.type for p in real.parameters()} == {"cpu"}
    meta = hwq.load_model(f"hf-config:{tiny_dir}")
    assert (hwq.llm_graph(real, "decode", 8).graph_hash
            == hwq.llm_graph(meta, "decode", 8).graph_hash)
    assert {p.device.type for p in real.parameters()} == {"cpu"}  # traced on a meta twin


def test_load_graph_defaults_to_decode_at_the_config_context(tiny_dir: Path) -> None:
    g = load_graph(f"hf-config:{tiny_dir}")
    assert phase_of(g) == ("decode", min(MAX_POS, 512))
    assert phase_of(load_graph(f"hf-config:{tiny_dir}", phase="prefill", context=8)) == (
        "prefill", 8)


@pytest.mark.parametrize("kwargs, message", [
    ({"phase": "generate"}, "--phase: expected one of prefill, decode"),
    ({"context": MAX_POS + 1}, f"max_position_embeddings = {MAX_POS}"),
    ({"context": 0}, "--context: expected a positive number"),
])
def test_bad_phase_or_context_is_a_user_error(tiny: torch.nn.Module, kwargs: dict,
                                              message: str) -> None:
    with pytest.raises(UserError, match=message):
        hwq.llm_graph(tiny, **kwargs)


def test_missing_or_bad_config_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no config.json there"):
        hwq.load_model(f"hf-config:{tmp_path}")
    (tmp_path / "config.json").write_text('{"hidden_size": 8}')
    with pytest.raises(UserError, match="config.json: model_type"):
        hwq.load_model(f"hf-config:{tmp_path}")
    write_config(tmp_path)
    with pytest.raises(UserError, match="no \\*.safetensors"):
        hwq.load_model(f"hf:{tmp_path}")


def test_tokens_per_s() -> None:
    assert tokens_per_s("decode", 4, 128, 0.01) == pytest.approx(400.0)
    assert tokens_per_s("prefill", 2, 512, 0.5) == pytest.approx(2048.0)
    assert np.isclose(tokens_per_s("decode", 1, 9, 0.02), 50.0)

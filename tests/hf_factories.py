"""Tiny Hugging Face models built from configs in code (no weights downloaded), one factory per
family, each with the example call the family takes (`EXAMPLES`): a `package.module:factory`
for the CLI (`hwq graph tests.hf_factories:roberta --input-shape 1,64 --input-dtype int64`)
and the models of tests/test_hf_families.py. Every config is 2 layers, hidden 32, so a trace
takes about a second."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import transformers as hf
from torch import nn

VOCAB = 100
HIDDEN = 32
HEADS = 4
FFN = 64
LAYERS = 2
BATCH = 2
TOKENS = 12
DECODER_TOKENS = 8


def t5(attn: str = "sdpa") -> nn.Module:
    """Encoder-decoder: called with input_ids and decoder_input_ids."""
    torch.manual_seed(0)
    config = hf.T5Config(vocab_size=VOCAB, d_model=HIDDEN, d_kv=HIDDEN // HEADS, d_ff=FFN,
                         num_layers=LAYERS, num_decoder_layers=LAYERS, num_heads=HEADS,
                         relative_attention_num_buckets=8, decoder_start_token_id=0,
                         use_cache=False, attn_implementation=attn)
    return hf.T5Model(config).eval()


def roberta(attn: str = "sdpa") -> nn.Module:
    """Encoder with word, position and token-type embeddings and a pooler."""
    torch.manual_seed(0)
    config = hf.RobertaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                              num_attention_heads=HEADS, intermediate_size=FFN,
                              max_position_embeddings=80, attn_implementation=attn)
    return hf.RobertaModel(config).eval()


def qwen2(attn: str = "sdpa") -> nn.Module:
    """Decoder with grouped-query attention (4 query heads, 2 key/value heads), RoPE and an
    LM head tied to the embedding."""
    torch.manual_seed(0)
    config = hf.Qwen2Config(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                            num_attention_heads=HEADS, num_key_value_heads=2,
                            intermediate_size=FFN, max_position_embeddings=80,
                            tie_word_embeddings=True, use_cache=False, attn_implementation=attn)
    return hf.Qwen2ForCausalLM(config).eval()


def swin(attn: str = "sdpa") -> nn.Module:
    """Windowed vision transformer: 4x4 patches, 4x4 windows, a patch merging between stages."""
    torch.manual_seed(0)
    config = hf.SwinConfig(image_size=32, patch_size=4, num_channels=3, embed_dim=16,
                           depths=[2, 2], num_heads=[2, 4], window_size=4, mlp_ratio=2.0,
                           attn_implementation=attn)
    return hf.SwinModel(config).eval()


def deit(attn: str = "sdpa") -> nn.Module:
    """Vision transformer with class and distillation tokens."""
    torch.manual_seed(0)
    config = hf.DeiTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=HIDDEN,
                           num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                           intermediate_size=FFN, attn_implementation=attn)
    return hf.DeiTModel(config).eval()


def wav2vec2(attn: str = "sdpa") -> nn.Module:
    """Speech encoder: a conv feature extractor, a (weight-normed) positional conv, then a
    transformer."""
    torch.manual_seed(0)
    config = hf.Wav2Vec2Config(vocab_size=32, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                               num_attention_heads=HEADS, intermediate_size=FFN,
                               conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3),
                               num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                               attn_implementation=attn)
    return hf.Wav2Vec2Model(config).eval()


def _ids(*shape: int) -> torch.Tensor:
    return torch.randint(0, VOCAB, shape, generator=torch.Generator().manual_seed(1))


def _floats(*shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(1))


# family -> (factory, the example call: positional inputs, keyword inputs)
Example = Callable[[], tuple[tuple[Any, ...], dict[str, Any]]]
EXAMPLES: dict[str, tuple[Callable[..., nn.Module], Example]] = {
    "t5": (t5, lambda: ((), {"input_ids": _ids(BATCH, TOKENS),
                             "decoder_input_ids": _ids(BATCH, DECODER_TOKENS)})),
    "roberta": (roberta, lambda: ((), {"input_ids": _ids(BATCH, TOKENS)})),
    # eager attention: the scores and the context are torch.matmul calls, not sdpa
    "roberta_eager": (partial(roberta, "eager"), lambda: ((), {"input_ids": _ids(BATCH, TOKENS)})),
    "qwen2": (qwen2, lambda: ((), {"input_ids": _ids(BATCH, TOKENS), "use_cache": False})),
    "swin": (swin, lambda: ((_floats(BATCH, 3, 32, 32),), {})),
    "deit": (deit, lambda: ((_floats(BATCH, 3, 32, 32),), {})),
    "wav2vec2": (wav2vec2, lambda: ((_floats(BATCH, 800),), {})),
}

"""Small Llama configs written as config.json files (the hf-config: source) for the LLM tests,
and the shipped Llama-2 configs under docs/examples/."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LLAMA_2_7B = ROOT / "docs" / "examples" / "llama-2-7b"
LLAMA_2_70B = ROOT / "docs" / "examples" / "llama-2-70b"

# a tiny Llama with grouped-query attention: 4 query heads share 2 key/value heads
HIDDEN, LAYERS, HEADS, KV_HEADS, FFN, VOCAB, MAX_POS = 64, 2, 4, 2, 128, 100, 256
HEAD_DIM = HIDDEN // HEADS
TINY = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
    "hidden_size": HIDDEN, "intermediate_size": FFN, "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
    "max_position_embeddings": MAX_POS, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
    "vocab_size": VOCAB,
}


def write_config(directory: Path, config: dict | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config or TINY))
    return directory

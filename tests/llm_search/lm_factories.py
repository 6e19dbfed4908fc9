"""A user's own causal LM and data, as `--model package.module:factory --weights FILE --data
package.module:factory` name them: a small Llama and (train, val, test) token batches [B, T]
(input_ids dicts, as a Hugging Face collator yields them) of the bundled text."""

from __future__ import annotations

import torch
import transformers as hf

from hwq.text_data import CONTEXT, fixed_windows, load_text_splits


def small_llama() -> torch.nn.Module:
    torch.manual_seed(1)
    config = hf.LlamaConfig(vocab_size=258, hidden_size=64, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
                            max_position_embeddings=CONTEXT, use_cache=False,
                            attn_implementation="sdpa")
    return hf.LlamaForCausalLM(config).eval()


def token_data():
    splits = load_text_splits()

    def batches(stream, n):
        w = torch.from_numpy(fixed_windows(stream, n, 32))
        return [{"input_ids": w[i : i + 4]} for i in range(0, n, 4)]

    return batches(splits.train, 16), batches(splits.val, 8), batches(splits.test, 8)

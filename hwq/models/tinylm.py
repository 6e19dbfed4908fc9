"""`tinylm`: a small Hugging Face `LlamaForCausalLM` trained on Python's standard library.

Config (`CONFIG`): hidden 256, 2 layers, 4 attention heads of 64 with 2 key/value heads
(grouped-query attention), intermediate 256 (SiLU-gated MLP), RoPE, RMSNorm, context 128, an
untied LM head, the byte-level vocabulary of `hwq.text_data` (258 ids): 16 weight layers (per
layer q, k, v, o, gate, up, down; the embedding and the LM head), 919,808 parameters. Every
weight row (256 values) is one of GGUF's 256-value k-quant super-blocks, so
every GGUF type applies to every tensor, as in the Llama models llama.cpp quantizes. Module
names are Hugging Face's (`model.layers.0.self_attn.q_proj`, `model.embed_tokens`, `lm_head`),
so GGUF's tensor name map knows them (`hwq export --format llama-cpp`).

`load_trained_tinylm(seed)` trains it on first use on the training split of the stdlib text
(`RECIPE`: AdamW without weight decay, warm-up then cosine to 0, 700 steps of 16 windows: about
four minutes on one core), on one intra-op thread (the
same bits whatever the thread count), and caches the weights with their validation and test
perplexities under the hwq cache directory, keyed by the recipe, the environment (torch and
transformers versions, machine, Python version) and the sha256 of the text, written atomically
under the entry's lock (`hwq.cache.locked`) as `digits_resnet` is.

Why this recipe (docs/llm.md, "What the front's high end is on tinylm"): among the recipes
tried within the training budget, the smallest model trained on the most tokens per parameter,
at a high learning rate decayed to 0, is the most sensitive to its weights' quantization (4 and 3
bits cost measurably, per layer), as a real LLM is; the 4-layer tinylm of 300 steps was not
(its 28 interior layers cost nothing measurable at 3 bits).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwq.cache import cache_dir
from hwq.models.cached_training import trained_state
from hwq.text_data import TEST_WINDOWS, VAL_WINDOWS

log = logging.getLogger("hwq.models.tinylm")

CONFIG: dict[str, Any] = {
    "vocab_size": 258,
    "hidden_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 256,
    "max_position_embeddings": 128,
    "tie_word_embeddings": False,
    "bos_token_id": 256,
    "eos_token_id": 257,
    "use_cache": False,
}
ATTENTION = "sdpa"
CONTEXT = 128

# The training recipe; any change gives a new cache key, so stale weights are never loaded.
RECIPE: dict[str, Any] = {
    "arch": "tinylm-v3",
    "data": "python-stdlib-bytes-sha256-split-v1",
    "steps": 700,
    "batch_size": 16,
    "context": CONTEXT,
    "optimizer": "adamw",
    "lr": 5e-3,
    "betas": (0.9, 0.95),
    "weight_decay": 0.0,
    "warmup": 30,
    "schedule": "cosine",
    "min_lr_ratio": 0.0,  # the cosine ends at lr x this
    "clip": 1.0,
    "threads": 1,
    "eval_windows": (64, 128),  # hwq.text_data VAL_WINDOWS, TEST_WINDOWS of the info's perplexities
}


assert RECIPE["eval_windows"] == (VAL_WINDOWS, TEST_WINDOWS)


def build_tinylm() -> nn.Module:
    """The untrained architecture (seeded by the caller)."""
    import transformers as hf

    from hwq.text_data import VOCAB_SIZE

    assert CONFIG["vocab_size"] == VOCAB_SIZE
    config = hf.LlamaConfig(**CONFIG, attn_implementation=ATTENTION)
    return hf.LlamaForCausalLM(config).eval()


def tinylm(pretrained: bool = False, seed: int = 0) -> nn.Module:
    """The zoo factory. `pretrained=True` returns the trained, cached weights of `seed`."""
    if pretrained:
        return load_trained_tinylm(seed)[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_tinylm()


# -- cache -----------------------------------------------------------------------------------------
def environment() -> dict[str, str]:
    """What besides the recipe decides the trained bits: torch and transformers, the machine
    architecture, and the Python whose stdlib is the text."""
    import transformers

    from hwq.text_data import load_text_splits

    return {"torch": str(torch.__version__), "transformers": str(transformers.__version__),
            "machine": platform.machine(), "python": platform.python_version(),
            "text_sha256": load_text_splits().sha256}


def recipe_key() -> str:
    text = json.dumps({"recipe": RECIPE, "config": CONFIG, "environment": environment()},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cache_path(seed: int = 0) -> Path:
    return cache_dir() / "models" / f"tinylm-seed{int(seed)}-{recipe_key()}.pt"


_MEMO: dict[str, tuple[dict[str, torch.Tensor], dict[str, Any]]] = {}


def load_trained_tinylm(seed: int = 0) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, info) for the trained `tinylm` of `seed`.

    `info`: model, seed, recipe_key, fp_val_perplexity, fp_test_perplexity, train_wall_s,
    cache_file. Trains and caches on first use; later uses load the cached file."""
    seed = int(seed)
    path = cache_path(seed)
    if str(path) not in _MEMO:
        state = trained_state(path, recipe_key(), lambda: _train(seed), "tinylm", seed,
                              " (a few minutes)")
        _MEMO[str(path)] = (state["state_dict"], dict(state["info"]))
    state_dict, info = _MEMO[str(path)]
    model = tinylm()
    model.load_state_dict(state_dict)
    return model.eval(), dict(info, cache_file=str(path))



# -- training --------------------------------------------------------------------------------------
def _lr_at(step: int) -> float:
    base, warm, steps = RECIPE["lr"], RECIPE["warmup"], RECIPE["steps"]
    if step < warm:
        return base * (step + 1) / warm
    t = (step - warm) / max(steps - warm, 1)
    low = RECIPE["min_lr_ratio"]
    return base * (low + (1.0 - low) * 0.5 * (1.0 + math.cos(math.pi * t)))


def _train(seed: int) -> dict[str, Any]:
    from hwq.quant.perplexity import perplexity
    from hwq.text_data import TrainWindows, load_text_splits, text_loaders

    t0 = time.perf_counter()
    splits = load_text_splits()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_tinylm()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    rest = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": RECIPE["weight_decay"]},
         {"params": rest, "weight_decay": 0.0}],
        lr=RECIPE["lr"], betas=RECIPE["betas"],
    )
    windows = TrainWindows(splits.train, RECIPE["batch_size"], RECIPE["steps"], seed,
                           RECIPE["context"])
    model.train()
    for step, x in enumerate(windows):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step)
        logits = model(input_ids=x).logits
        loss = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                           x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), RECIPE["clip"])
        opt.step()
        if step % 60 == 0:
            log.info("tinylm step %d: loss %.3f", step, float(loss))
    model.eval()
    _train_loader, val, test = text_loaders(context=RECIPE["context"])
    info = {
        "model": "tinylm",
        "seed": seed,
        "recipe_key": recipe_key(),
        "fp_val_perplexity": perplexity(model, val),
        "fp_test_perplexity": perplexity(model, test),
        "train_wall_s": time.perf_counter() - t0,
        "python": sys.version.split()[0],
    }
    log.info("tinylm seed %d: test perplexity %.3f in %.1f s", seed, info["fp_test_perplexity"],
             info["train_wall_s"])
    return {"recipe_key": recipe_key(), "state_dict": model.state_dict(), "info": info}

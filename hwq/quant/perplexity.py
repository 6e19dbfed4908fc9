"""Post-training fake-quant perplexity of a causal language model, the `perplexity` objective of
a search (minimised).

A batch is an int64 token-id tensor [B, T] (`hwq.text_data.token_batch`); the model predicts
each row's tokens 1..T-1 from those before, and perplexity = exp(total next-token cross-entropy
/ tokens predicted), over the validation batches.

`PTQPerplexity` quantizes the model's weight modules (every Linear and the embedding tables,
named as the layer graph names them) with `hwq.quant.apply_policy`, calibrates the activation
ranges once on the full-precision model (a policy with `a_bits` >= 16 everywhere is
weight-only: activations stay in float), and memoises each layer's quantized weight per width,
so one policy costs one forward pass over the validation batches; results are cached by policy
id. A layer graph's matmul rows (attention's products of two activations) are no modules:
`module_pairs` accepts them only unquantized (both widths >= 16) and drops them, and
`matmul_pins` pins them there in a search. Calibration and evaluation run on one intra-op
thread, so perplexities do not depend on the thread count.

`perplexity_objective(model, split="test")` measures on the test batches, which no search
sees: how a front's policies are re-measured on held-out text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hwq.errors import UserError
from hwq.quant.apply import WEIGHT_MODULES, quantizable_layers
from hwq.quant.fake_quant import UNQUANTIZED
from hwq.quant.ptq import CachedPTQObjective
from hwq.torch_threads import one_thread

EVAL_SPLITS = ("val", "test")  # what perplexity_objective measures on (a search: val)


def logits_of(model: Any, x: Tensor) -> Tensor:
    """The logits [B, T, V] of a causal LM called on token ids (a Hugging Face output's
    `.logits`, or a plain tensor)."""
    out = model(x)
    logits = getattr(out, "logits", out)
    if not isinstance(logits, Tensor) or logits.dim() != 3:
        raise UserError("a causal language model must return logits [B, T, vocab] (or an output "
                        "with .logits) when called on token ids [B, T]")
    return logits


@torch.no_grad()
def nll_sum(model: Any, batches: Iterable[Any]) -> tuple[float, int]:
    """(total next-token cross-entropy in nats, tokens predicted) over token batches."""
    from hwq.text_data import token_batch

    total, n = 0.0, 0
    for batch in batches:
        x = token_batch(batch)
        logits = logits_of(model, x)
        total += float(F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                       x[:, 1:].reshape(-1), reduction="sum"))
        n += int(x[:, 1:].numel())
    if n == 0:
        raise UserError("perplexity: the evaluation data has no batches")
    return total, n


def perplexity(model: Any, batches: Iterable[Any]) -> float:
    """exp(mean next-token cross-entropy) of `model` over token batches [B, T]."""
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        total, n = nll_sum(model, batches)
    finally:
        model.train(was_training)
    return math.exp(total / n)


def lm_weight_layers(model: nn.Module, example: Tensor | None = None) -> list[str]:
    """The weight modules of a language model (Linear, Conv, Embedding) in execution order."""
    return quantizable_layers(model, example, kinds=WEIGHT_MODULES)


def module_pairs(
    rows: Sequence[str], pairs: Sequence[Sequence[int]], modules: Sequence[str]
) -> list[tuple[int, int]]:
    """The (w, a) pairs of `modules` from a layer graph's `rows` and their `pairs`; the other
    rows (matmul rows: products of two activations) must be unquantized (both widths >= 16)."""
    by_name = {}
    for name, (w, a) in zip(rows, pairs):
        by_name[name] = (int(w), int(a))
    missing = [m for m in modules if m not in by_name]
    if missing:
        raise UserError(f"policy: no bits for layer(s) {', '.join(missing[:4])} of the model")
    wanted = set(modules)
    for name, (w, a) in by_name.items():
        if name not in wanted and (w < UNQUANTIZED or a < UNQUANTIZED):
            raise UserError(
                f"layer {name}: W{w}A{a} on a product of two activations (a matmul row, e.g. "
                "attention scores or context): hwq's perplexity keeps these in float; pin it "
                "to 16x16 (--pin NAME=16x16), as a search does by default"
            )
    return [by_name[m] for m in modules]


class PTQPerplexity(CachedPTQObjective):
    """Post-training fake-quant perplexity of a trained causal LM under a policy.

    `calib`: token batches (the first `calib_batches` are used); `val`: token batches. Layers
    are the model's weight modules (`layer_names`, else Linear/Conv/Embedding modules in
    execution order). Call with a `Policy` or per-layer (w, a) pairs in layer order.
    """

    def __init__(
        self,
        model: nn.Module,
        calib: Any,
        val: Any,
        *,
        calib_batches: int = 4,
        layer_names: Sequence[str] | None = None,
        weight_observer: str = "minmax",
        act_observer: str = "minmax",
        percentile: float = 99.99,
    ) -> None:
        from hwq.text_data import token_batch

        self.val = [token_batch(b, "validation data") for b in val]
        if not self.val:
            raise UserError("perplexity: the validation data has no batches")
        calib_list = []
        for i, b in enumerate(calib):
            if i >= calib_batches:
                break
            calib_list.append(token_batch(b, "calibration data"))
        if not calib_list:
            raise UserError("perplexity: the calibration data has no batches")
        self.calib_batches = calib_list
        if layer_names is None:
            layer_names = lm_weight_layers(model, self.val[0][:1])
        self._quantize(model, layer_names, self.calib_batches, None,
                       weight_observer=weight_observer, act_observer=act_observer,
                       percentile=percentile)
        self.set_pairs([(32, 32)] * len(self.names))

    def _measure(self) -> float:
        total, n = nll_sum(self.qmodel, self.val)
        return math.exp(total / n)

    def perplexity_of_pairs(self, pairs: Sequence[tuple[int, int]]) -> float:
        return self.value_of_pairs(pairs)

    def loss_of_pairs(self, pairs: Sequence[tuple[int, int]], batches: Any = None) -> float:
        """Mean next-token cross-entropy on the calibration batches (or `batches`) under
        `pairs` (what a measured sensitivity compares)."""
        self.set_pairs(pairs)
        with one_thread():
            total, n = nll_sum(self.qmodel, batches if batches is not None
                               else self.calib_batches)
        return total / n


def perplexity_objective(
    model: str,
    *,
    weights: str | None = None,
    data: str | None = None,
    model_args: Mapping[str, Any] | None = None,
    seed: int = 0,
    calib_batches: int = 4,
    layer_names: Sequence[str] | None = None,
    split: str = "val",
) -> PTQPerplexity:
    """The `perplexity` objective of a named causal LM: PTQ perplexity on its validation
    batches (a zoo model that comes trained, or `--weights` with `--data`). `split="test"`
    measures on the test batches instead, which no search sees: what re-measures a front's
    policies on held-out text (the calibration batches are the same)."""
    from hwq.trained import calibration_batches, load_trained

    if split not in EVAL_SPLITS:
        raise UserError(f"perplexity: split must be one of {', '.join(EVAL_SPLITS)}, found "
                        f"{split!r}")
    net, (train, val, test), _ = load_trained(
        model, weights=weights, data=data, model_args=model_args, seed=seed,
        objective="perplexity",
    )
    calib = calibration_batches(model, data, train, calib_batches)
    return PTQPerplexity(net, calib, val if split == "val" else test,
                         calib_batches=calib_batches, layer_names=layer_names)

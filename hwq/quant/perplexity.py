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

Weights are quantized per output channel, symmetric, min-max (`hwq.quant.fake_quant`), unless
the objective is given the weight grids of a runtime (`runtime_grids`, what a search on an LLM
runtime profile passes): each width then in its stored format's own grouping
(`hwq.cost_models.weight_formats`): torchao's 4-, 3-, 2- and 6-bit formats in groups of 64
consecutive weights of a row with a scale and a (float) zero point, min-max over the group
(`quantize_grouped`); its int8 per output channel, symmetric.

`perplexity_objective(model, split="test")` measures on the test batches, which no search
sees: how a front's policies are re-measured on held-out text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hwq.errors import UserError
from hwq.quant.apply import WEIGHT_MODULES, quantizable_layers
from hwq.quant.fake_quant import EPS, UNQUANTIZED, quantize_weight, weight_scale
from hwq.quant.ptq import CachedPTQObjective
from hwq.torch_threads import one_thread

EVAL_SPLITS = ("val", "test")  # what perplexity_objective measures on (a search: val)
EVAL_ROWS = 64  # token rows per forward pass of an evaluation (batches of one length joined)


def joined_batches(batches: Sequence[Tensor], rows: int = EVAL_ROWS) -> list[Tensor]:
    """The same token rows in fewer forward passes: consecutive batches of one length joined
    into batches of up to `rows` rows (one pass over 64 rows is cheaper than four over 16)."""
    out: list[Tensor] = []
    run: list[Tensor] = []
    for b in batches:
        if run and (b.shape[1] != run[0].shape[1] or sum(len(r) for r in run) + len(b) > rows):
            out.append(torch.cat(run))
            run = []
        run.append(b)
    if run:
        out.append(torch.cat(run))
    return out


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


@dataclass(frozen=True)
class WeightGrid:
    """How the weights of one width are quantized: min-max over groups of `group` consecutive
    weights of a row (0: the whole row, i.e. per output channel), symmetric on the narrow signed
    grid, or with a zero point (`zero_point`: 2^bits levels from the group's min to its max, the
    zero point a float, as a format storing a bf16 zero point has it)."""

    group: int = 0
    zero_point: bool = False


PER_CHANNEL = WeightGrid()


def runtime_grids(runtime: str | None) -> dict[int, WeightGrid]:
    """{w_bits: grid} of the stored formats of an LLM runtime (`torchao`, `llamacpp`: their
    group and whether they store a zero point, `hwq.cost_models.weight_formats`); {} for any
    other runtime (every width per output channel, symmetric). A llama.cpp k-quant is
    quantized over its 256-weight super-block (its 16-weight sub-block scales are not modelled:
    pessimistic)."""
    from hwq.cost_models.weight_formats import stored_grids

    return {b: WeightGrid(group, zero_point) for b, (group, zero_point) in
            stored_grids(runtime).items()}


def quantize_grouped(w: Tensor, bits: int, grid: WeightGrid) -> Tensor:
    """`w` [rows, ...] fake-quantized at `bits` on `grid` (no gradient). A row whose length is
    no multiple of the group ends in a shorter group."""
    w = w.detach()
    if grid.group <= 0 and not grid.zero_point:
        return quantize_weight(w, weight_scale(w, bits), bits)
    flat = w.reshape(w.shape[0], -1)
    k = flat.shape[1]
    group = k if grid.group <= 0 else min(int(grid.group), k)
    pad = -k % group
    padded = torch.cat([flat, flat[:, -1:].expand(-1, pad)], 1) if pad else flat
    g = padded.reshape(flat.shape[0], -1, group)
    if grid.zero_point:
        lo, hi = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
        scale = ((hi - lo) / (2**bits - 1)).clamp_min(EPS)
        q = torch.round((g - lo) / scale).clamp_(0, 2**bits - 1) * scale + lo
    else:
        qmax = max(2 ** (bits - 1) - 1, 1)
        scale = (g.abs().amax(-1, keepdim=True) / qmax).clamp_min(EPS)
        q = torch.round(g / scale).clamp_(-qmax, qmax) * scale
    return q.reshape(flat.shape[0], -1)[:, :k].reshape(w.shape)


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
        grids: Mapping[int, WeightGrid] | None = None,
    ) -> None:
        from hwq.text_data import token_batch

        self.grids = {int(b): g for b, g in (grids or {}).items() if g != PER_CHANNEL}
        if self.grids and weight_observer != "minmax":
            raise UserError("perplexity: grouped weight formats are quantized min-max; "
                            f"found weight observer {weight_observer!r}")
        self.val = joined_batches([token_batch(b, "validation data") for b in val])
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

    def set_pairs(self, pairs: Sequence[tuple[int, int]]) -> None:
        """As for every PTQ objective, a width of `grids` quantized on its grid (memoised)."""
        for i, (w, _a) in enumerate(pairs):
            grid = self.grids.get(int(w))
            if grid is not None and (i, int(w)) not in self._w:
                weight = self.layers[i].weight
                self._w[(i, int(w))] = (torch.empty(0), quantize_grouped(weight, int(w), grid))
        super().set_pairs(pairs)

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
    runtime: str | None = None,
) -> PTQPerplexity:
    """The `perplexity` objective of a named causal LM: PTQ perplexity on its validation
    batches (a zoo model that comes trained, or `--weights` with `--data`). `split="test"`
    measures on the test batches instead, which no search sees: what re-measures a front's
    policies on held-out text (the calibration batches are the same). `runtime`: quantize each
    width in that LLM runtime's stored format (`runtime_grids`), as a search on its profile
    does."""
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
                         calib_batches=calib_batches, layer_names=layer_names,
                         grids=runtime_grids(runtime))

"""Measuring per-layer sensitivities on a trained model (DESIGN.md §4): the loss increase when
only one layer is quantized, or HAWQ-V2/V3's Hessian trace x quantization noise. The result is a
`hwq.sensitivity_files.SensitivityTable`, the same object a sensitivity file reads into.

A causal language model (`hwq.models.is_causal_lm`) is measured the same way by loss: the
increase of the mean next-token cross-entropy on its calibration token batches when only that
weight layer (a Linear or the embedding) is quantized (`hwq.quant.perplexity.PTQPerplexity`);
its matmul rows are not listed (a search pins them to the widest pair).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import product
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from hwq.errors import UserError
from hwq.quant.fake_quant import is_quantized, quantize_weight, weight_scale
from hwq.quant.ptq import PTQAccuracy, accuracy_objective
from hwq.sensitivity_files import LONG_COLUMNS, SensitivityTable
from hwq.torch_threads import one_thread

DEFAULT_PAIRS: tuple[tuple[int, int], ...] = tuple(product(range(1, 9), range(1, 9)))


class LossEvaluator(Protocol):
    """What a loss sensitivity asks of an evaluator (`PTQAccuracy`, `PTQPerplexity`)."""

    names: list[str]

    def loss_of_pairs(self, pairs: Sequence[tuple[int, int]]) -> float: ...

    def set_pairs(self, pairs: Sequence[tuple[int, int]]) -> None: ...


def measure_sensitivity(
    evaluator: LossEvaluator,
    pairs: Iterable[tuple[int, int]] = DEFAULT_PAIRS,
    *,
    method: str = "loss",
    hessian_iters: int = 32,
    seed: int = 0,
) -> SensitivityTable:
    """Measure a sensitivity table once on the evaluator's model and calibration batches.

    `loss`: for each layer and (w, a) pair, the increase of the mean cross-entropy on the
    calibration batches when only that layer is quantized (every other layer FP32); can be
    slightly negative. `hessian`: HAWQ-V2/V3, Hutchinson estimate of the trace of the loss
    Hessian w.r.t. the layer's weights per parameter x squared weight quantization error at b
    bits (weights only: `a_bits` empty). Runs on one intra-op thread (`hwq.torch_threads`)."""
    with one_thread():  # the same table whatever the thread count
        return _measure(evaluator, pairs, method, hessian_iters, seed)


def _measure(
    evaluator: LossEvaluator,
    pairs: Iterable[tuple[int, int]],
    method: str,
    hessian_iters: int,
    seed: int,
) -> SensitivityTable:
    pairs = [(int(w), int(a)) for w, a in pairs]
    L = len(evaluator.names)
    if method == "hessian":
        if not isinstance(evaluator, PTQAccuracy):
            raise UserError("hessian sensitivity needs a classifier's PTQAccuracy evaluator")
        return _hessian_sensitivity(evaluator, sorted({w for w, _ in pairs}), hessian_iters, seed)
    if method != "loss":
        raise UserError(f"sensitivity method: expected loss or hessian, found {method!r}")
    fp = [(32, 32)] * L
    base = evaluator.loss_of_pairs(fp)
    rows = []
    for i, name in enumerate(evaluator.names):
        for w, a in pairs:
            cfg = list(fp)
            cfg[i] = (w, a)
            rows.append((name, w, a, evaluator.loss_of_pairs(cfg) - base))
    evaluator.set_pairs(fp)
    return SensitivityTable(pd.DataFrame(rows, columns=list(LONG_COLUMNS)), source="measured")


def _hessian_sensitivity(
    evaluator: PTQAccuracy, w_bits: Sequence[int], iters: int, seed: int
) -> SensitivityTable:
    model = evaluator.qmodel
    evaluator.set_pairs([(32, 32)] * len(evaluator.names))
    params = [layer.weight for layer in evaluator.layers]
    batches = evaluator.calib_batches
    if not batches:
        raise UserError("hessian sensitivity needs labelled calibration batches")
    traces = np.zeros(len(params))
    gen = torch.Generator().manual_seed(seed)
    for p in params:
        p.requires_grad_(True)
    try:
        for x, y in batches:
            loss = F.cross_entropy(model(x), y)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            for _ in range(iters):
                vs = [torch.randint(0, 2, p.shape, generator=gen).float() * 2 - 1 for p in params]
                hv = torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=True)
                traces += np.array([float((h * v).sum()) for h, v in zip(hv, vs)])
        traces /= iters * len(batches)
    finally:
        for p in params:
            p.requires_grad_(False)
    rows = []
    with torch.no_grad():
        for name, p, tr in zip(evaluator.names, params, traces):
            for b in w_bits:
                if not is_quantized(b):
                    continue
                scale = weight_scale(p, b, evaluator.weight_observer, evaluator.percentile)
                delta = float(((quantize_weight(p, scale, b) - p) ** 2).sum())
                rows.append((name, b, pd.NA, tr / p.numel() * delta))
    return SensitivityTable(pd.DataFrame(rows, columns=list(LONG_COLUMNS)), source="hessian")


def sensitivity_objective(
    model: str,
    *,
    sensitivity_file: str | None = None,
    weights: str | None = None,
    data: str | None = None,
    model_args: Mapping[str, Any] | None = None,
    pairs: Iterable[tuple[int, int]] = DEFAULT_PAIRS,
    method: str = "loss",
    seed: int = 0,
    calib_batches: int = 4,
) -> SensitivityTable:
    """The `sensitivity` objective: the table read from `sensitivity_file`, or measured once on
    the trained model (refused without trained weights)."""
    if sensitivity_file is not None:
        return SensitivityTable.read(sensitivity_file)
    from hwq.models import is_causal_lm

    if is_causal_lm(model, dict(model_args or {})):
        if method != "loss":
            raise UserError(f"sensitivity method {method}: a language model's sensitivity is "
                            "measured by loss (the next-token cross-entropy), not hessian")
        from hwq.quant.perplexity import perplexity_objective

        lm = perplexity_objective(model, weights=weights, data=data, model_args=model_args,
                                  seed=seed, calib_batches=calib_batches)
        return measure_sensitivity(lm, pairs, method=method, seed=seed)
    evaluator = accuracy_objective(
        model,
        weights=weights,
        data=data,
        model_args=model_args,
        seed=seed,
        calib_batches=calib_batches,
    )
    return measure_sensitivity(evaluator, pairs, method=method, seed=seed)

"""Post-training fake-quant accuracy, the `accuracy` objective of a search (DESIGN.md §4).

`PTQAccuracy` gives exactly what `apply_policy` + `calibrate` + evaluation give, but calibrates
once (the observers see the FP32 network, so activation ranges do not depend on the policy) and
memoises each layer's quantized weight and activation range per bit-width, so one policy costs
one forward pass over the validation split; results are cached by policy id.
`accuracy_objective(model, ...)` builds it for a model's trained weights and data
(`hwq.trained`), refusing anything but trained weights. Calibration and evaluation run on one
intra-op thread (`hwq.torch_threads`): the same accuracies whatever the thread count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hwq.errors import UserError
from hwq.policy import PolicyLike, policy_id_from_pairs, policy_pairs
from hwq.quant.apply import apply_policy, calibrate, quantizable_layers
from hwq.quant.fake_quant import act_qparams, is_quantized, quantize_weight, weight_scale
from hwq.torch_threads import one_thread
from hwq.trained import calibration_batches, load_trained


def _xy_batches(data: Any) -> list[tuple[Tensor, Tensor]]:
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        return [(data[0], data[1])]
    out = []
    for batch in data:
        if not isinstance(batch, tuple | list) or len(batch) < 2:
            raise UserError("evaluation data must yield (inputs, labels) batches")
        out.append((batch[0], batch[1]))
    if not out:
        raise UserError("the evaluation data has no batches")
    return out


class CachedPTQObjective:
    """What the PTQ objectives share: per-layer pairs of a policy over `names`, the shared
    quantized model configured by `set_layer_pairs`, and one measurement per policy id (cached;
    `evaluations` counts the measured ones). A subclass measures the configured model in
    `_measure` (called on one thread)."""

    names: list[str]
    cache: dict[str, float]
    evaluations: int

    def _quantize(self, model: nn.Module, names: Sequence[str], calib: Any,
                  calib_batches: int | None, *, fold_bn: bool = False,
                  weight_observer: str = "minmax", act_observer: str = "minmax",
                  percentile: float = 99.99, requantize_outputs: bool = False) -> None:
        """Build the one shared quantized model of `names` (frozen, eval), calibrate its
        activation ranges on `calib` while unquantized (full-precision statistics, as
        `calibrate` does) and start empty memos and cache. `requantize_outputs`: every layer
        gets its output quantizer (`hwq.quant.output_quant`), calibrated once, switched on per
        policy where the rule says."""
        self.names = list(names)
        self.weight_observer, self.act_observer = weight_observer, act_observer
        self.percentile = percentile
        self.qmodel = apply_policy(
            model,
            [(32, 32)] * len(self.names),
            fold_bn=fold_bn,
            layer_names=self.names,
            weight_observer=weight_observer,
            act_observer=act_observer,
            percentile=percentile,
            requantize_outputs=requantize_outputs,
        ).eval()
        for p in self.qmodel.parameters():
            p.requires_grad_(False)
        modules = dict(self.qmodel.named_modules())
        self.layers = [modules[n] for n in self.names]
        for layer in self.layers:  # observe while unquantized
            layer.act_quant.bits = 8
        self._outputs: list[Any] = []
        self._readers = np.zeros(0, dtype=np.int64)
        if requantize_outputs:
            from hwq.quant.int8_outputs import OUTPUT_BITS
            from hwq.quant.output_quant import output_quantizers

            self._readers = self.qmodel.hwq_output_sites.readers
            held = output_quantizers(self.qmodel)
            self._outputs = [held.get(n) for n in self.names]
            for q in self._outputs:
                if q is not None:
                    q.bits = OUTPUT_BITS  # calibrated once, at 8 bits
        with one_thread():
            calibrate(self.qmodel, calib, calib_batches)
        self._w: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}
        self._a: dict[tuple[int, int], tuple[float, float, bool]] = {}
        self.cache = {}
        self.evaluations = 0

    def pairs(self, policy: PolicyLike) -> list[tuple[int, int]]:
        return policy_pairs(policy, self.names)

    def policy_id(self, policy: PolicyLike) -> str:
        return policy_id_from_pairs(self.pairs(policy))

    def set_pairs(self, pairs: Sequence[tuple[int, int]]) -> None:
        """Configure the shared quantized model for per-layer (w, a) pairs in layer order."""
        set_layer_pairs(self, pairs)
        if self._outputs:
            from hwq.quant.int8_outputs import OUTPUT_BITS, needs_output_quant

            for q, on in zip(self._outputs, needs_output_quant(pairs, self._readers)):
                if q is not None:
                    q.bits = OUTPUT_BITS if on else 32

    def _measure(self) -> float:
        raise NotImplementedError

    def value_of_pairs(self, pairs: Sequence[tuple[int, int]]) -> float:
        pid = policy_id_from_pairs(pairs)
        hit = self.cache.get(pid)
        if hit is not None:
            return hit
        with one_thread():
            self.set_pairs(pairs)
            value = self._measure()
        self.cache[pid] = value
        self.evaluations += 1
        return value

    def __call__(self, policy: PolicyLike) -> float:
        return self.value_of_pairs(self.pairs(policy))

    def evaluate(self, policies: Iterable[PolicyLike] | np.ndarray) -> np.ndarray:
        """The objective of each policy (a list of policies or an int array [P, L, 2])."""
        return np.array([self(p) for p in policies], dtype=np.float64)


class PTQAccuracy(CachedPTQObjective):
    """Post-training fake-quant accuracy of a trained `model` under a policy (a fraction).

    `calib`: a loader / iterable of batches (the first `calib_batches` are used) or one tensor;
    `val`: (inputs, labels) batches or an `(x, y)` pair of tensors. Call with a `Policy` or a
    per-layer (w, a) list in layer order; `evaluate` takes many (a list or an array [P, L, 2]).
    """

    def __init__(
        self,
        model: nn.Module,
        calib: Any,
        val: Any,
        *,
        calib_batches: int = 4,
        layer_names: Sequence[str] | None = None,
        example_input: Any = None,
        fold_bn: bool = False,
        weight_observer: str = "minmax",
        act_observer: str = "minmax",
        percentile: float = 99.99,
        eval_batch_size: int = 1024,
        requantize_outputs: bool = False,
    ) -> None:
        batches = _xy_batches(val)
        self.val_x = torch.cat([b[0] for b in batches])
        self.val_y = torch.cat([b[1] for b in batches])
        if layer_names is None:
            example = example_input if example_input is not None else self.val_x[:1]
            layer_names = quantizable_layers(model, example)
        self.eval_batch_size = eval_batch_size
        self._quantize(model, layer_names, calib, calib_batches, fold_bn=fold_bn,
                       weight_observer=weight_observer, act_observer=act_observer,
                       percentile=percentile, requantize_outputs=requantize_outputs)
        self.calib_batches = [
            (x, y) for x, y in _pairs_or_none(calib, calib_batches) if y is not None
        ]

    @torch.no_grad()
    def _logits(self, x: Tensor) -> Tensor:
        bs = self.eval_batch_size
        return torch.cat([self.qmodel(x[i : i + bs]) for i in range(0, len(x), bs)])

    def _measure(self) -> float:
        return int((self._logits(self.val_x).argmax(1) == self.val_y).sum()) / len(self.val_y)

    def accuracy_of_pairs(self, pairs: Sequence[tuple[int, int]]) -> float:
        return self.value_of_pairs(pairs)

    def loss_of_pairs(self, pairs: Sequence[tuple[int, int]], batches=None) -> float:
        """Mean cross-entropy on the calibration batches (or `batches`) under `pairs`."""
        batches = batches if batches is not None else self.calib_batches
        if not batches:
            raise UserError("sensitivity needs labelled calibration batches (inputs, labels)")
        self.set_pairs(pairs)
        total, n = 0.0, 0
        with one_thread(), torch.no_grad():
            for x, y in batches:
                total += float(F.cross_entropy(self.qmodel(x), y, reduction="sum"))
                n += int(y.numel())
        return total / n


def set_layer_pairs(ev: Any, pairs: Sequence[tuple[int, int]]) -> None:
    """Configure `ev.layers` (quantized layers of one shared model, calibrated) for per-layer
    (w, a) pairs, memoising each layer's quantized weight (`ev._w`) and activation range
    (`ev._a`) per width under `ev.weight_observer` / `ev.act_observer` / `ev.percentile`."""
    for i, (w, a) in enumerate(pairs):
        layer = ev.layers[i]
        wq, aq = layer.weight_quant, layer.act_quant
        if is_quantized(w):
            key = (i, int(w))
            if key not in ev._w:
                scale = weight_scale(layer.weight, w, ev.weight_observer, ev.percentile)
                ev._w[key] = (scale, quantize_weight(layer.weight, scale, w).detach())
            scale, qweight = ev._w[key]
            wq.set_precomputed(w, scale, qweight, layer.weight)
        else:
            wq.bits = int(w)
        aq.bits = int(a)
        if is_quantized(a) and not aq.stats.empty:  # an embedding reads ids: nothing observed
            key = (i, int(a))
            if key not in ev._a:
                ev._a[key] = act_qparams(aq.stats, a, ev.act_observer, ev.percentile)
            aq.set_qparams(*ev._a[key])


def _pairs_or_none(data: Any, batches: int | None) -> Iterable[tuple[Tensor, Tensor | None]]:
    if isinstance(data, Tensor):
        yield data, None
        return
    for i, batch in enumerate(data):
        if batches is not None and i >= batches:
            break
        if isinstance(batch, tuple | list) and len(batch) >= 2:
            yield batch[0], batch[1]
        else:
            yield batch, None


def accuracy_objective(
    model: str,
    *,
    weights: str | None = None,
    data: str | None = None,
    model_args: Mapping[str, Any] | None = None,
    seed: int = 0,
    calib_batches: int = 4,
    **options: Any,
) -> PTQAccuracy:
    """The `accuracy` objective of a named model: PTQ accuracy on its validation split."""
    net, (train, val, _test), _ = load_trained(
        model, weights=weights, data=data, model_args=model_args, seed=seed
    )
    calib = calibration_batches(model, data, train, calib_batches)
    return PTQAccuracy(net, calib, val, calib_batches=calib_batches, **options)

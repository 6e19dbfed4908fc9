"""Apply a per-layer precision policy to any model by layer name.

`apply_policy(model, policy)` returns a deep copy in which every Conv1d/Conv2d/Linear module is
swapped, in place and under the same qualified name, for a quantized version of itself: its input
passes an activation fake-quantizer at the layer's `a_bits` (the cost model's convention: the
activation bits of a layer are those of the tensor it reads), its weight a per-channel weight
fake-quantizer at `w_bits`. 16 or 32 bits leave that side unquantized. `calibrate` then sets the
activation ranges from a few batches. An `nn.Embedding` named in `layer_names` (a language
model's token table) is quantized the same way, per row of its table; it reads token ids, so its
`a_bits` quantize nothing (the next layer quantizes what it reads). Products of two activations
(attention's matmul rows of a layer graph) are no modules and are never quantized here.

Layer order (for per-layer lists and policy ids) is the order in which the layers run in a forward
pass (`quantizable_layers(model, example_input)`); without an example input it is the order of
`model.named_modules()`, which is the same for models that define layers in execution order.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hwq.errors import UserError
from hwq.policy import PolicyLike, policy_id_from_pairs, policy_pairs
from hwq.quant.fake_quant import ActFakeQuant, WeightFakeQuant, check_observer

log = logging.getLogger("hwq.quant")

QUANTIZABLE = (nn.Conv1d, nn.Conv2d, nn.Linear)
# the weight modules `apply_policy` quantizes when named: the layers above and embedding tables
WEIGHT_MODULES = (*QUANTIZABLE, nn.Embedding)


# -- quantized layers ------------------------------------------------------------------------------
class QuantConv2d(nn.Conv2d):
    weight_quant: WeightFakeQuant
    act_quant: ActFakeQuant

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(self.act_quant(x), self.weight_quant(self.weight), self.bias)


class QuantConv1d(nn.Conv1d):
    weight_quant: WeightFakeQuant
    act_quant: ActFakeQuant

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(self.act_quant(x), self.weight_quant(self.weight), self.bias)


class QuantLinear(nn.Linear):
    weight_quant: WeightFakeQuant
    act_quant: ActFakeQuant

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(self.act_quant(x), self.weight_quant(self.weight), self.bias)


class QuantEmbedding(nn.Embedding):
    """A token table whose rows are fake-quantized (per row); its ids are not activations."""

    weight_quant: WeightFakeQuant
    act_quant: ActFakeQuant

    def forward(self, x: Tensor) -> Tensor:
        return F.embedding(x, self.weight_quant(self.weight), self.padding_idx, self.max_norm,
                           self.norm_type, self.scale_grad_by_freq, self.sparse)


_QUANT_CLASS: dict[type, type] = {
    nn.Conv2d: QuantConv2d,
    nn.Conv1d: QuantConv1d,
    nn.Linear: QuantLinear,
    nn.Embedding: QuantEmbedding,
}
QUANT_LAYERS = (QuantConv2d, QuantConv1d, QuantLinear, QuantEmbedding)


def _quant_class(cls: type) -> type:
    """The quantized class of a layer class; a subclass of Conv/Linear gets its own subclass
    whose forward is the quantized one."""
    if cls in _QUANT_CLASS:
        return _QUANT_CLASS[cls]
    for base, qcls in list(_QUANT_CLASS.items()):
        if issubclass(cls, base):
            new = type(f"Quant{cls.__name__}", (cls,), {"forward": qcls.forward})
            _QUANT_CLASS[cls] = new
            return new
    raise TypeError(f"{cls.__name__} is not a quantizable layer")


def is_quant_layer(module: nn.Module) -> bool:
    return isinstance(module.__dict__.get("_modules", {}).get("weight_quant"), WeightFakeQuant)


# -- layer order and policies ----------------------------------------------------------------------
def quantizable_layers(
    model: nn.Module, example_input: Any = None, kinds: tuple[type, ...] = QUANTIZABLE
) -> list[str]:
    """Names of the Conv1d/Conv2d/Linear modules (`kinds`; `WEIGHT_MODULES` adds embeddings) in
    layer order (execution order when an example input is given, else definition order; layers
    that do not run are appended)."""
    declared = [n for n, m in model.named_modules() if isinstance(m, kinds) and n]
    if example_input is None:
        return declared
    order: list[str] = []
    seen: set[str] = set()
    handles = []
    for name, module in model.named_modules():
        if name in declared:

            def hook(_mod: nn.Module, _args: Any, name: str = name) -> None:
                if name not in seen:
                    seen.add(name)
                    order.append(name)

            handles.append(module.register_forward_pre_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            if isinstance(example_input, tuple | list):
                model(*example_input)
            else:
                model(example_input)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return order + [n for n in declared if n not in seen]


# -- batch-norm folding ----------------------------------------------------------------------------
def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


@torch.no_grad()
def _fold_pair(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> None:
    std = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.affine else torch.ones_like(std)
    beta = bn.bias if bn.affine else torch.zeros_like(std)
    factor = gamma / std
    w = layer.weight
    if isinstance(layer, nn.Linear):
        w.mul_(factor[:, None])
    else:
        w.mul_(factor.reshape(-1, *([1] * (w.dim() - 1))))
    bias = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
    new_bias = beta + (bias - bn.running_mean) * factor
    if layer.bias is None:
        layer.bias = nn.Parameter(new_bias.clone())
    else:
        layer.bias.copy_(new_bias)


def fold_batchnorm(model: nn.Module) -> list[tuple[str, str]]:
    """Fold every BatchNorm that directly follows a conv/linear layer (whose output nothing else
    reads) into that layer, in place, with the running statistics; the BatchNorm becomes
    `nn.Identity`. Returns the folded (layer, batchnorm) name pairs. Needs a model torch.fx can
    trace; otherwise nothing is folded and a warning says so."""
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as exc:  # data-dependent control flow and the like
        log.warning("batch-norm folding skipped: torch.fx cannot trace the model (%s)", exc)
        return []
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs: list[tuple[str, str]] = []
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        bn = modules.get(node.target)
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or bn.running_var is None:
            continue
        prev = node.args[0] if node.args else None
        if not isinstance(prev, torch.fx.Node) or prev.op != "call_module":
            continue
        layer = modules.get(prev.target)
        if (
            isinstance(layer, QUANTIZABLE)
            and len(prev.users) == 1
            and calls[prev.target] == 1
            and calls[node.target] == 1
            and layer.weight.shape[0] == bn.num_features
        ):
            pairs.append((prev.target, node.target))
    for layer_name, bn_name in pairs:
        _fold_pair(modules[layer_name], modules[bn_name])  # type: ignore[arg-type]
        _set_submodule(model, bn_name, nn.Identity())
    return pairs


# -- applying a policy -----------------------------------------------------------------------------
def apply_policy(
    model: nn.Module,
    policy: PolicyLike,
    *,
    fold_bn: bool = False,
    layer_names: Sequence[str] | None = None,
    example_input: Any = None,
    weight_observer: str = "minmax",
    act_observer: str = "minmax",
    learn_scales: bool = False,
    percentile: float = 99.99,
    requantize_outputs: bool = False,
) -> nn.Module:
    """A quantized deep copy of `model` under `policy` (the model itself is not changed).

    `policy` is a `Policy` (by layer name; unknown layers are an error naming them) or one
    (w_bits, a_bits) pair per layer in layer order (`layer_names`, else the execution order on
    `example_input`, else definition order). `fold_bn` folds batch norms into the preceding
    layer first. Activation quantizers need `calibrate(model, data)` before use. The copy carries
    `hwq_layers`, `hwq_pairs`, `hwq_policy_id` and `hwq_settings` (the keyword arguments that
    rebuild it: `fold_bn`, `learn_scales`, the observers and `percentile`, and
    `requantize_outputs` where set). `requantize_outputs` (a device whose int8 layers requantize
    their outputs, `hwq.quant.output_quant`) gives every W8A8 layer whose output no single 8-bit
    input quantizer reads its own 8-bit output quantizer (calibrated by `calibrate`).
    """
    check_observer(weight_observer)
    check_observer(act_observer)
    names = list(layer_names) if layer_names is not None else None
    if names is None:
        names = quantizable_layers(model, example_input)
    modules = dict(model.named_modules())
    for n in names:
        if not isinstance(modules.get(n), WEIGHT_MODULES):
            raise UserError(f"layer {n!r} is not a Conv1d/Conv2d/Linear/Embedding module of the "
                            "model")
    pairs = policy_pairs(policy, names)
    qmodel = copy.deepcopy(model)
    if fold_bn:
        fold_batchnorm(qmodel)
    qmodules = dict(qmodel.named_modules())
    for name, (w_bits, a_bits) in zip(names, pairs):
        layer = qmodules[name]
        if is_quant_layer(layer):
            raise UserError(f"layer {name!r} is already quantized")
        layer.__class__ = _quant_class(type(layer))
        layer.weight_quant = WeightFakeQuant(
            w_bits, weight_observer, learn=learn_scales, percentile=percentile
        )
        layer.act_quant = ActFakeQuant(
            a_bits, act_observer, learn=learn_scales, percentile=percentile, name=name
        )
        layer.weight_quant.init_scale(layer.weight)
    if requantize_outputs:
        from hwq.quant.int8_outputs import needs_output_quant
        from hwq.quant.output_quant import attach_output_quantizers, output_sites

        sites = output_sites(model, names)
        attach_output_quantizers(qmodel, names, sites, needs_output_quant(pairs, sites.readers),
                                 act_observer, percentile)
        qmodel.hwq_output_sites = sites  # traced once: the PTQ objectives switch them per policy
    qmodel.hwq_layers = list(names)
    qmodel.hwq_pairs = list(pairs)
    qmodel.hwq_policy_id = policy_id_from_pairs(pairs)
    qmodel.hwq_settings = {
        "fold_bn": bool(fold_bn),
        "learn_scales": bool(learn_scales),
        "weight_observer": weight_observer,
        "act_observer": act_observer,
        "percentile": float(percentile),
    }
    if requantize_outputs:  # only where set: the files of other devices keep their settings
        qmodel.hwq_settings["requantize_outputs"] = True
    return qmodel


def quant_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The quantized layers of a model returned by `apply_policy`, by name."""
    return {n: m for n, m in model.named_modules() if is_quant_layer(m)}


def _inputs(batch: Any) -> Any:
    if isinstance(batch, tuple | list):
        return batch[0]
    if isinstance(batch, dict):
        for key in ("x", "input", "inputs", "image", "images"):
            if key in batch:
                return batch[key]
        raise UserError(f"calibration batch: a dict without an input key, found {list(batch)}")
    return batch


def iter_batches(data: Any, batches: int | None) -> Iterator[Any]:
    """Inputs of the first `batches` batches of a loader / iterable; a Tensor is one batch."""
    if isinstance(data, Tensor):
        yield data
        return
    for i, batch in enumerate(data):
        if batches is not None and i >= batches:
            break
        yield _inputs(batch)


@torch.no_grad()
def calibrate(model: nn.Module, data: Iterable[Any] | Tensor, batches: int | None = 4) -> nn.Module:
    """Set every activation quantizer's range from the first `batches` batches of `data`.

    As in PyTorch's post-training quantization, the observers see the full-precision network
    (weight quantizers off during calibration), so the ranges do not depend on other layers'
    bits. Returns the model (in the mode it was in)."""
    acts = [m for m in model.modules() if isinstance(m, ActFakeQuant)]
    weights = [m for m in model.modules() if isinstance(m, WeightFakeQuant)]
    if not acts:
        raise UserError("calibrate: the model has no quantized layers (use apply_policy first)")
    was_training = model.training
    saved_bits = [w.bits for w in weights]
    model.eval()
    try:
        for w in weights:
            w.bits = 32
        for a in acts:
            a.reset_stats()
            a.mode = "observe"
        seen = 0
        for x in iter_batches(data, batches):
            model(x)
            seen += 1
        if not seen:
            raise UserError("calibrate: the calibration data has no batches")
    finally:
        for w, b in zip(weights, saved_bits):
            w.bits = b
        for a in acts:
            a.mode = "quant"
        model.train(was_training)
    for a in acts:
        if not a.stats.empty:
            a.finalize()
    return model

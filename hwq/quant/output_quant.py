"""Requantized int8 outputs: the numerics of a runtime that runs every int8 layer fully integer.

onnxruntime's int8 networks (`quantize_static`) requantize every int8 layer's output to 8 bits
(a per-tensor asymmetric u8 scale and zero point calibrated on the float network), so each layer
runs as one fused integer kernel (QLinearConv / QGemm). hwq's fake-quant model quantizes only
layer inputs; a layer whose output (its batch norm folded) feeds, through at most one ReLU /
ReLU6, the 8-bit input quantizer of exactly one other layer is requantized with that quantizer
already (`hwq.export.onnx_integer`). Every other int8 layer (W8A8) — its output meets a residual
add, has two readers, a pool, a float or lower-bit consumer, or is the logits — gets, on a device
whose int8 layers requantize their outputs (`device_requantizes`), its own 8-bit output
quantizer: an `ActFakeQuant` named `<layer>.output` on the module that produces the layer's
output (the layer, or the batch norm that alone reads it), calibrated by `calibrate` with the
other quantizers. The export writes such a layer as QLinearConv / QGemm with that output scale,
followed by DequantizeLinear.

`output_sites(model, names)` finds, once per model (torch.fx), each layer's output module and the
layer that alone reads it; `hwq.quant.int8_outputs.needs_output_quant(pairs, readers)` says, per
policy, which layers get their quantizer at 8 bits (the rest stay at 32: the identity), and
`device_requantizes` which devices do it (torch-free). One definition of the rule for
`apply_policy`, the PTQ objectives and the export.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from hwq.quant.fake_quant import ActFakeQuant
from hwq.quant.int8_outputs import OUTPUT_BITS

log = logging.getLogger("hwq.quant")

_ACTIVATIONS = (nn.ReLU, nn.ReLU6)
_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class OutputSites:
    """Per layer (in `names` order): the module that produces its output (the layer, or the
    batch norm that alone reads it; '' for a layer that gets none, an embedding), and the index
    of the layer whose input quantizer alone reads that output, through at most one ReLU /
    ReLU6 (-1: none)."""

    modules: tuple[str, ...]
    readers: np.ndarray


def output_sites(model: nn.Module, names: Sequence[str]) -> OutputSites:
    """The output module and sole reader of each layer (module doc); a model torch.fx cannot
    trace gives every layer its own output, read by no single layer."""
    import torch

    names = list(names)
    mods = dict(model.named_modules())
    # conv / linear layers only: an embedding reads token ids and writes no integer kernel
    modules = [n if isinstance(mods.get(n), _LAYERS) else "" for n in names]
    readers = np.full(len(names), -1, dtype=np.int64)
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as exc:  # data-dependent control flow and the like
        log.warning("output requantization: torch.fx cannot trace the model (%s): every int8 "
                    "layer gets its own output quantizer", exc)
        return OutputSites(tuple(modules), readers)
    index = {n: i for i, n in enumerate(names)}
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    for node in gm.graph.nodes:
        if node.op != "call_module" or node.target not in index or calls[node.target] != 1 \
                or not modules[index[node.target]]:
            continue
        i = index[node.target]
        out = node
        users = list(out.users)
        if len(users) == 1 and users[0].op == "call_module" and calls[users[0].target] == 1 \
                and isinstance(mods.get(users[0].target), nn.modules.batchnorm._BatchNorm):
            out = users[0]
            modules[i] = str(out.target)
        users = list(out.users)
        if len(users) == 1 and _is_activation(users[0], mods):
            users = list(users[0].users)
        if len(users) == 1 and users[0].op == "call_module" and users[0].target in index \
                and calls[users[0].target] == 1:
            readers[i] = index[users[0].target]
    return OutputSites(tuple(modules), readers)


def _is_activation(node: Any, mods: Mapping[str, nn.Module]) -> bool:
    import torch
    from torch.nn import functional as F

    if node.op == "call_module":
        return isinstance(mods.get(node.target), _ACTIVATIONS)
    if node.op == "call_function":
        return node.target in (torch.relu, F.relu, F.relu6)
    return node.op == "call_method" and node.target == "relu"


class _OutputQuantized:
    """Marker base of the classes `attach_output_quantizers` swaps in."""

    output_quant: ActFakeQuant


_CLASSES: dict[type, type] = {}


def _output_class(cls: type) -> type:
    """`cls` whose forward passes its result through `self.output_quant`."""
    if issubclass(cls, _OutputQuantized):
        return cls
    if cls not in _CLASSES:
        def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
            return self.output_quant(cls.forward(self, *args, **kwargs))

        _CLASSES[cls] = type(f"{cls.__name__}OutputQuant", (cls, _OutputQuantized),
                             {"forward": forward})
    return _CLASSES[cls]


def attach_output_quantizers(qmodel: nn.Module, names: Sequence[str], sites: OutputSites,
                             active: np.ndarray, observer: str = "minmax",
                             percentile: float = 99.99) -> dict[str, str]:
    """Give each layer's output module (`sites`) an `output_quant` (8 bits where `active`, else
    32: the identity), in place; returns layer -> the module holding its quantizer (also kept
    as `qmodel.hwq_output_modules`)."""
    mods = dict(qmodel.named_modules())
    held: dict[str, str] = {}
    for name, module_name, on in zip(names, sites.modules, active):
        if not module_name:
            continue
        module = mods[module_name]
        module.__class__ = _output_class(type(module))
        module.output_quant = ActFakeQuant(OUTPUT_BITS if on else 32, observer,
                                           percentile=percentile, name=f"{name}.output")
        held[name] = module_name
    qmodel.hwq_output_modules = held
    return held


def output_quantizers(qmodel: nn.Module) -> dict[str, ActFakeQuant]:
    """Layer -> its output quantizer (`attach_output_quantizers`; empty for a model without)."""
    held: Mapping[str, str] = getattr(qmodel, "hwq_output_modules", {})
    mods = dict(qmodel.named_modules())
    return {layer: mods[m].output_quant for layer, m in held.items()}


def strip_output_quantizers(model: nn.Module) -> None:
    """Remove every output quantizer (the modules' classes restored), in place."""
    for module in model.modules():
        if isinstance(module, _OutputQuantized):
            del module.output_quant
            module.__class__ = next(b for b in type(module).__bases__
                                    if not issubclass(b, _OutputQuantized))
    if hasattr(model, "hwq_output_modules"):
        del model.hwq_output_modules


def output_qparams(quant: ActFakeQuant) -> dict[str, Any]:
    """The export's parameters of an active output quantizer (else {})."""
    if not quant.active:
        return {}
    return {"out_scale": quant.effective_scale(), "out_zero_point": quant.zero_point_value}

"""Build a LayerGraph from a PyTorch model: torch.fx with shape propagation, or forward hooks.

fx gives the data flow from the graph; where fx cannot trace (data-dependent control flow), a
forward pass on the example input under a TorchFunctionMode records which quantizable layers each
tensor came from, and the graph is marked `specialised` (valid for that input only).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections.abc import Callable
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from hwq.errors import GraphError
from hwq.graph import SHAPE_COLUMNS, LayerGraph, UnsupportedLayer

log = logging.getLogger("hwq.trace")

QUANTIZABLE = (nn.Conv1d, nn.Conv2d, nn.Linear)
UNSUPPORTED_MODULES = (
    nn.RNNBase,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Conv3d,
    nn.MultiheadAttention,
    nn.Bilinear,
)
ACTIVATION_MATMULS = {
    torch.matmul,
    torch.bmm,
    torch.Tensor.matmul,
    torch.Tensor.bmm,
    torch.Tensor.__matmul__,
    torch.einsum,
}
INPUT = "<input>"


# -- rows ------------------------------------------------------------------------------------------
def _pad(value: Any, kernel: int, dilation: int) -> int:
    if isinstance(value, str):
        return 0 if value == "valid" else (dilation * (kernel - 1)) // 2
    return int(value)


def layer_row(
    name: str,
    module: nn.Module,
    in_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    reads_input: bool,
) -> dict[str, Any]:
    """The shape columns of one LayerGraph row from a module and the shapes it saw
    (`LayerGraph.from_frame` derives MACs, weight params and element counts from them)."""
    if isinstance(module, nn.Linear):
        batch = math.prod(in_shape[:-1]) if len(in_shape) > 1 else 1
        ic, oc = module.in_features, module.out_features
        ih = iw = oh = ow = kh = kw = sh = sw = 1
        ph = pw = 0
        groups = 1
        op = "linear"
    else:
        assert isinstance(module, nn.Conv1d | nn.Conv2d)
        spatial = 1 if isinstance(module, nn.Conv1d) else 2
        unbatched = len(in_shape) == spatial + 1
        batch = 1 if unbatched else int(in_shape[0])
        ins, outs = in_shape[-spatial:], out_shape[-spatial:]
        ic, oc, groups = module.in_channels, module.out_channels, module.groups
        k = tuple(module.kernel_size) + (1,) * (2 - spatial)
        s = tuple(module.stride) + (1,) * (2 - spatial)
        d = tuple(module.dilation) + (1,) * (2 - spatial)
        pads = module.padding if isinstance(module.padding, str) else tuple(module.padding)
        if isinstance(pads, str):
            p = tuple(_pad(pads, k[i], d[i]) for i in range(spatial)) + (0,) * (2 - spatial)
        else:
            p = tuple(int(x) for x in pads) + (0,) * (2 - spatial)
        ih, iw = (int(ins[0]), int(ins[1]) if spatial == 2 else 1)
        oh, ow = (int(outs[0]), int(outs[1]) if spatial == 2 else 1)
        kh, kw = k
        sh, sw = s
        ph, pw = p
        op = "conv"
    row = {
        "name": name,
        "op": op,
        "batch": batch,
        "in_channels": ic,
        "out_channels": oc,
        "in_h": ih,
        "in_w": iw,
        "out_h": oh,
        "out_w": ow,
        "kernel_h": kh,
        "kernel_w": kw,
        "stride_h": sh,
        "stride_w": sw,
        "pad_h": ph,
        "pad_w": pw,
        "groups": groups,
        "reads_input": reads_input,
    }
    return row


def unsupported_macs(
    module: nn.Module | None, in_shapes: list[tuple[int, ...]], out_shape: tuple[int, ...] | None
) -> int:
    """Best-effort MAC count of a layer hwq does not model (reported, not priced)."""
    try:
        if isinstance(module, nn.RNNBase):
            gates = {"LSTM": 4, "GRU": 3}.get(module.mode, 1)
            shape = in_shapes[0]
            if len(shape) == 3:
                seq, batch = (shape[1], shape[0]) if module.batch_first else (shape[0], shape[1])
            else:
                seq, batch = shape[0], 1
            dirs = 2 if module.bidirectional else 1
            h = module.hidden_size
            total = 0
            for layer in range(module.num_layers):
                i = module.input_size if layer == 0 else h * dirs
                total += dirs * gates * h * (i + h)
            return int(seq * batch * total)
        if isinstance(module, nn.ConvTranspose1d | nn.ConvTranspose2d | nn.ConvTranspose3d):
            n_in = math.prod(in_shapes[0])
            return int(n_in * module.out_channels // module.groups * math.prod(module.kernel_size))
        if isinstance(module, nn.Conv3d) and out_shape is not None:
            per_out = module.in_channels // module.groups * math.prod(module.kernel_size)
            return int(math.prod(out_shape) * per_out)
        if isinstance(module, nn.MultiheadAttention):
            q = in_shapes[0]
            e = module.embed_dim
            tokens = math.prod(q[:-1])
            seq = q[0] if not module.batch_first else q[1]
            return int(4 * tokens * e * e + 2 * tokens * seq * e)
        if module is None and len(in_shapes) >= 2 and out_shape is not None:
            # matmul between activations: out elements x reduction length
            return int(math.prod(out_shape) * in_shapes[0][-1])
    except (AttributeError, IndexError, TypeError, ValueError):
        pass
    return 0


# -- data flow tracking shared by both tracers -----------------------------------------
class _Flow:
    """Which quantizable layers (or the model input) each value came from."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.inputs: list[tuple[str, ...]] = []
        self.unsupported: list[UnsupportedLayer] = []
        self._calls: dict[str, int] = {}

    def unique(self, name: str) -> str:
        n = self._calls.get(name, 0)
        self._calls[name] = n + 1
        return name if n == 0 else f"{name}@{n}"

    def add_layer(
        self,
        name: str,
        module: nn.Module,
        in_shape: tuple[int, ...],
        out_shape: tuple[int, ...],
        sources: frozenset[str],
    ) -> str:
        name = self.unique(name)
        reads_input = INPUT in sources
        self.rows.append(layer_row(name, module, in_shape, out_shape, reads_input))
        order = {r["name"]: i for i, r in enumerate(self.rows)}
        self.inputs.append(tuple(sorted((s for s in sources if s != INPUT), key=order.get)))
        return name

    def add_unsupported(self, name: str, type_name: str, macs: int, reason: str) -> None:
        self.unsupported.append(UnsupportedLayer(name, type_name, int(macs), reason))

    def graph(self, specialised: bool, model_name: str | None) -> LayerGraph:
        df = pd.DataFrame(self.rows) if self.rows else pd.DataFrame(columns=list(SHAPE_COLUMNS))
        df["inputs"] = [list(i) for i in self.inputs]
        graph = LayerGraph.from_frame(
            df,
            specialised=specialised,
            unsupported=self.unsupported,
            model=model_name,
            source=model_name or "model",
        )
        if self.unsupported:
            names = ", ".join(f"{u.name} ({u.type})" for u in self.unsupported)
            log.warning(
                "hwq does not model %d layer(s), listed as unsupported: %s",
                len(self.unsupported),
                names,
            )
        return graph


def _shape(t: Any) -> tuple[int, ...] | None:
    return tuple(int(s) for s in t.shape) if isinstance(t, torch.Tensor) else None


# -- fx --------------------------------------------------------------------------------------
class _ForwardFailed(Exception):
    """fx traced the model, but its forward pass fails on the example input (a wrong input
    shape): the hooks tracer runs it again to name the module that fails."""


def _trace_fx(model: nn.Module, example: Any, model_name: str | None) -> LayerGraph:
    from torch.fx import symbolic_trace
    from torch.fx.passes.shape_prop import ShapeProp

    gm = symbolic_trace(model)
    args = example if isinstance(example, tuple) else (example,)
    try:
        # ShapeProp prints the traceback of a failing node itself: keep it off the user's stderr
        with contextlib.redirect_stderr(io.StringIO()):
            ShapeProp(gm).propagate(*args)
    except Exception as exc:
        raise _ForwardFailed() from exc
    modules = dict(gm.named_modules())
    flow = _Flow()
    sources: dict[Any, frozenset[str]] = {}

    def meta_shape(node: Any) -> tuple[int, ...] | None:
        tm = node.meta.get("tensor_meta")
        return tuple(int(s) for s in tm.shape) if tm is not None and hasattr(tm, "shape") else None

    for node in gm.graph.nodes:
        arg_nodes = list(node.all_input_nodes)
        merged = frozenset().union(*(sources.get(a, frozenset()) for a in arg_nodes))
        if node.op == "placeholder":
            sources[node] = frozenset({INPUT})
            continue
        if node.op == "get_attr":
            sources[node] = frozenset()
            continue
        if node.op == "call_module":
            mod = modules[node.target]
            if isinstance(mod, QUANTIZABLE):
                in_shape = meta_shape(arg_nodes[0])
                out_shape = meta_shape(node)
                if in_shape is None or out_shape is None:
                    raise GraphError(f"module {node.target}: no tensor shape after propagation")
                name = flow.add_layer(str(node.target), mod, in_shape, out_shape, merged)
                sources[node] = frozenset({name})
                continue
            if isinstance(mod, UNSUPPORTED_MODULES):
                in_shapes = [s for s in (meta_shape(a) for a in arg_nodes) if s]
                flow.add_unsupported(
                    str(node.target),
                    type(mod).__name__,
                    unsupported_macs(mod, in_shapes, meta_shape(node)),
                    "layer type not modelled",
                )
                sources[node] = frozenset()  # a barrier: its readers do not read the model input
                continue
        elif node.op in ("call_function", "call_method"):
            target = node.target
            is_mm = target in ACTIVATION_MATMULS or target in ("matmul", "bmm", "__matmul__")
            if is_mm and sum(1 for a in arg_nodes if sources.get(a)) >= 2:
                in_shapes = [s for s in (meta_shape(a) for a in arg_nodes) if s]
                flow.add_unsupported(
                    node.name,
                    str(getattr(target, "__name__", target)),
                    unsupported_macs(None, in_shapes, meta_shape(node)),
                    "matmul between activations",
                )
        sources[node] = merged
    return flow.graph(False, model_name)


# -- hooks (fallback) --------------------------------------------------------------------
class _ProvenanceMode(TorchFunctionMode):
    """Propagates the set of producing layers through every torch function on tensors."""

    def __init__(self, prov: dict[int, tuple[torch.Tensor, frozenset[str]]]):
        super().__init__()
        self.prov = prov

    def lookup(self, obj: Any) -> frozenset[str]:
        found: set[str] = set()

        def visit(o: Any) -> None:
            if isinstance(o, torch.Tensor):
                entry = self.prov.get(id(o))
                if entry is not None and entry[0] is o:
                    found.update(entry[1])
            elif isinstance(o, list | tuple):
                for x in o:
                    visit(x)
            elif isinstance(o, dict):
                for x in o.values():
                    visit(x)

        visit(obj)
        return frozenset(found)

    def assign(self, obj: Any, src: frozenset[str]) -> None:
        if isinstance(obj, torch.Tensor):
            self.prov[id(obj)] = (obj, src)
        elif isinstance(obj, list | tuple):
            for x in obj:
                self.assign(x, src)

    def __torch_function__(self, func: Callable, types: Any, args: Any = (), kwargs: Any = None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        src = self.lookup((args, kwargs))
        if src:
            self.assign(out, src)
        return out


def _trace_hooks(model: nn.Module, example: Any, model_name: str | None) -> LayerGraph:
    flow = _Flow()
    prov: dict[int, tuple[torch.Tensor, frozenset[str]]] = {}
    mode = _ProvenanceMode(prov)
    stack: list[str] = []
    handles = []
    pending: dict[int, frozenset[str]] = {}

    def pre_hook(name: str) -> Callable:
        def hook(mod: nn.Module, args: tuple) -> None:
            stack.append(name)
            pending[id(mod)] = mode.lookup(args)

        return hook

    def post_hook(name: str) -> Callable:
        def hook(mod: nn.Module, args: tuple, out: Any) -> None:
            stack.pop()
            srcs = pending.pop(id(mod), frozenset())
            if isinstance(mod, QUANTIZABLE):
                in_shape, out_shape = _shape(args[0]), _shape(out)
                if in_shape is not None and out_shape is not None:
                    lname = flow.add_layer(name, mod, in_shape, out_shape, srcs)
                    mode.assign(out, frozenset({lname}))
            elif isinstance(mod, UNSUPPORTED_MODULES):
                in_shapes = [s for s in (_shape(a) for a in args) if s]
                o = out[0] if isinstance(out, tuple) else out
                flow.add_unsupported(
                    name,
                    type(mod).__name__,
                    unsupported_macs(mod, in_shapes, _shape(o)),
                    "layer type not modelled",
                )
                mode.assign(out, frozenset())

        return hook

    for name, mod in model.named_modules():
        if isinstance(mod, QUANTIZABLE + UNSUPPORTED_MODULES) or name == "":
            handles.append(mod.register_forward_pre_hook(pre_hook(name or "<model>")))
            handles.append(mod.register_forward_hook(post_hook(name or "<model>")))
    args = example if isinstance(example, tuple) else (example,)
    try:
        with torch.no_grad(), mode:
            mode.assign(list(args), frozenset({INPUT}))
            model(*args)
    except Exception as exc:  # the user's forward failed: name the innermost module
        where = stack[-1] if stack else "<model>"
        raise GraphError(
            f"module {where}: forward pass on input shape "
            f"{[tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    finally:
        for h in handles:
            h.remove()
    return flow.graph(True, model_name)


def trace(model: nn.Module, example_input: Any, *, model_name: str | None = None) -> LayerGraph:
    """LayerGraph of `model` on `example_input` (a tensor or a tuple of tensors)."""
    if not isinstance(model, nn.Module):
        raise GraphError(f"expected a torch.nn.Module, found {type(model).__name__}")
    was_training = model.training
    model.eval()
    try:
        try:
            return _trace_fx(model, example_input, model_name)
        except GraphError:
            raise
        except _ForwardFailed:  # no fx problem: the forward names its failing module
            return _trace_hooks(model, example_input, model_name)
        except Exception as exc:  # fx cannot trace this model: fall back to hooks
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning(
                "torch.fx could not trace the model (%s); using forward hooks on the "
                "example input: the graph is specialised to that input",
                reason[:200],
            )
            return _trace_hooks(model, example_input, model_name)
    finally:
        model.train(was_training)

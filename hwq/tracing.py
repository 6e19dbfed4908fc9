"""Build a LayerGraph from a PyTorch model: torch.fx with shape propagation, or forward hooks.

Layers are found by what they compute, not by their class (`hwq.tracing_rows.classify`): any
conv1d/conv2d, linear, addmm, matmul/mm or einsum call whose weight operand is a module parameter
(or a tensor computed only from parameters, as a weight-standardised conv computes its weight),
whatever module or function makes the call. fx gives the data flow from the graph; where fx
cannot trace (data-dependent control flow), a forward pass on the example input under a
TorchFunctionMode sees every such call and records which layers each tensor came from, and the
graph is marked `specialised` (valid for that input only). `nn.MultiheadAttention` is one call
site for both tracers (its projections as rows); the transformer modules are traced into, with
their fused eval-mode fast paths disabled. Every graph carries `coverage` against an aten-level
count of the same forward pass (`hwq.coverage`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from hwq.errors import GraphError
from hwq.example_call import ExampleCall, forward_failure
from hwq.graph import SHAPE_COLUMNS, LayerGraph, UnsupportedLayer
from hwq.tracing_rows import (
    INPUT,
    MATMUL_FUNCS,
    bind,
    classify,
    conv_row,
    func_name,
    linear_row,
    mha_rows,
    param_owners,
    pick_owner,
)

log = logging.getLogger("hwq.trace")

QUANTIZABLE = (nn.Conv1d, nn.Conv2d, nn.Linear)
STOCK_FORWARDS = (nn.Conv1d.forward, nn.Conv2d.forward, nn.Linear.forward)
UNSUPPORTED_MODULES = (
    nn.RNNBase,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Conv3d,
    nn.Bilinear,
)
TRANSPARENT_MODULES = (
    nn.Transformer,
    nn.TransformerEncoder,
    nn.TransformerDecoder,
    nn.TransformerEncoderLayer,
    nn.TransformerDecoderLayer,
)
MHA_ARGS = ("query", "key", "value")
ACTIVATION_MATMULS = (*MATMUL_FUNCS, "einsum")
ATTENTION = "scaled_dot_product_attention"

__all__ = ["INPUT", "trace", "trace_fx", "trace_hooks"]


def stock_layer(module: nn.Module) -> bool:
    """A conv/linear whose forward is torch's own (a leaf, read from its attributes)."""
    return isinstance(module, QUANTIZABLE) and type(module).forward in STOCK_FORWARDS


def module_row(module: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
               samples: int) -> dict[str, Any]:
    """The shape columns of a stock conv/linear module from the shapes it saw."""
    if isinstance(module, nn.Linear):
        return linear_row(module.in_features, module.out_features, math.prod(in_shape), samples)
    assert isinstance(module, nn.Conv1d | nn.Conv2d)
    return conv_row(tuple(module.weight.shape), in_shape, out_shape, module.stride,
                    module.padding, module.dilation, module.groups)


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
        if isinstance(module, nn.Bilinear) and out_shape is not None:
            return int(math.prod(out_shape) * module.in1_features * module.in2_features)
        if module is None and len(in_shapes) >= 2 and out_shape is not None:
            # matmul between activations: out elements x reduction length
            return int(math.prod(out_shape) * in_shapes[0][-1])
        if module is None and len(in_shapes) >= 3:  # attention: scores, then context
            (*lead, seq_q, e), k, v = in_shapes[0], in_shapes[1], in_shapes[2]
            return int(math.prod(lead) * seq_q * k[-2] * (e + v[-1]))
    except (AttributeError, IndexError, TypeError, ValueError):
        pass
    return 0


def sample_count(example: Any, example_kwargs: dict[str, Any] | None = None) -> int:
    """`batch` of every row: dim 0 of the first tensor among the positional, then the keyword
    inputs (1 when there is none)."""
    return ExampleCall.of(example, example_kwargs).samples()


# -- data flow tracking shared by both tracers -----------------------------------------
class _Flow:
    """Which weight layers (or the model input) each value came from."""

    def __init__(self, samples: int) -> None:
        self.samples = samples
        self.rows: list[dict[str, Any]] = []
        self.inputs: list[tuple[str, ...]] = []
        self.unsupported: list[UnsupportedLayer] = []
        self._calls: dict[str, int] = {}
        self._order: dict[str, int] = {}

    def unique(self, name: str) -> str:
        n = self._calls.get(name, 0)
        self._calls[name] = n + 1
        return name if n == 0 else f"{name}@{n}"

    def add_row(self, name: str, row: dict[str, Any], sources: frozenset[str]) -> str:
        name = self.unique(name)
        self._order[name] = len(self.rows)
        self.rows.append({"name": name, **row, "reads_input": INPUT in sources})
        order = self._order
        self.inputs.append(tuple(sorted((s for s in sources if s != INPUT), key=order.get)))
        return name

    def add_mha(self, name: str, mod: nn.MultiheadAttention, shapes: list[tuple[int, ...]],
                same: tuple[bool, bool], sources: list[frozenset[str]]) -> str:
        made: list[str] = []
        tokens: dict[int, dict[str, Any]] = {}
        for row_name, row, reads in mha_rows(name, mod.embed_dim, mod._qkv_same_embed_dim,
                                             mod.kdim, mod.vdim, shapes, same, self.samples):
            src = frozenset(made) if reads == 3 else sources[reads]
            made.append(self.add_row(row_name, row, src))
            tokens.setdefault(reads, row)
        q, k = tokens[0], tokens.get(1, tokens[0])
        # scores and context between activations: not rows yet, listed with their MACs
        self.add_unsupported(f"{name}.attention", type(mod).__name__,
                             2 * q["batch"] * q["out_h"] * k["out_h"] * mod.embed_dim,
                             "matmul between activations")
        return made[-1]

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


@contextlib.contextmanager
def fast_paths_disabled() -> Iterator[None]:
    """Transformer and attention modules take their slow, op-by-op path while tracing."""
    mha = torch.backends.mha
    was = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(was)


# -- fx --------------------------------------------------------------------------------------
class _ForwardFailed(Exception):
    """fx traced the model, but its forward pass fails on the example input (a wrong input
    shape): the hooks tracer runs it again to name the module that fails."""


class _Tracer(torch.fx.Tracer):
    """Stock convs/linears, attention and unsupported modules are leaves; subclasses with their
    own forward and the transformer modules are traced into."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, (nn.MultiheadAttention, *UNSUPPORTED_MODULES)):
            return True
        if isinstance(m, QUANTIZABLE):
            return stock_layer(m)
        if isinstance(m, TRANSPARENT_MODULES):
            return False
        return super().is_leaf_module(m, module_qualified_name)


def trace_fx(model: nn.Module, example: Any, model_name: str | None = None, *,
             example_kwargs: dict[str, Any] | None = None) -> LayerGraph:
    """LayerGraph by torch.fx symbolic tracing (raises what fx raises when it cannot trace);
    keyword inputs are bound through the forward's signature."""
    from torch.fx.passes.shape_prop import ShapeProp

    call = ExampleCall.of(example, example_kwargs)
    concrete, args = call.fx_binding(model)
    tracer = _Tracer()
    fx_graph = tracer.trace(model, concrete_args=concrete)
    gm = torch.fx.GraphModule(tracer.root, fx_graph)
    try:
        # ShapeProp prints the traceback of a failing node itself: keep it off the user's stderr
        with torch.no_grad(), fast_paths_disabled(), contextlib.redirect_stderr(io.StringIO()):
            ShapeProp(gm).propagate(*args)
    except Exception as exc:
        raise _ForwardFailed() from exc
    modules = dict(gm.named_modules())
    by_id = param_owners(model.named_parameters(remove_duplicate=False))
    params = {n: by_id[id(p)] for n, p in model.named_parameters(remove_duplicate=False)}
    flow = _Flow(call.samples())
    sources: dict[Any, frozenset[str]] = {}
    derived: dict[Any, str] = {}  # nodes computed only from parameters -> owning module

    def meta_shape(node: Any) -> tuple[int, ...] | None:
        if not isinstance(node, torch.fx.Node):
            return None
        tm = node.meta.get("tensor_meta")
        return tuple(int(s) for s in tm.shape) if tm is not None and hasattr(tm, "shape") else None

    def owner(node: Any) -> str | None:
        return derived.get(node) if isinstance(node, torch.fx.Node) else None

    for node in gm.graph.nodes:
        arg_nodes = list(node.all_input_nodes)
        merged = frozenset().union(*(sources.get(a, frozenset()) for a in arg_nodes))
        if node.op == "placeholder":
            sources[node] = frozenset({INPUT})
            continue
        if node.op == "get_attr":
            sources[node] = frozenset()
            if node.target in params:
                stack = [v[0] for v in node.meta.get("nn_module_stack", {}).values()]
                derived[node] = pick_owner(params[str(node.target)], stack)
            continue
        if node.op == "call_module":
            mod = modules[node.target]
            if stock_layer(mod):
                in_shape, out_shape = meta_shape(arg_nodes[0]), meta_shape(node)
                if in_shape is None or out_shape is None:
                    raise GraphError(f"module {node.target}: no tensor shape after propagation")
                row = module_row(mod, in_shape, out_shape, flow.samples)
                sources[node] = frozenset({flow.add_row(str(node.target), row, merged)})
                continue
            if isinstance(mod, nn.MultiheadAttention):
                a = bind(MHA_ARGS, {}, node.args, node.kwargs)
                qkv = [a.get(k) for k in MHA_ARGS]
                shapes = [meta_shape(x) for x in qkv]
                if any(s is None for s in shapes):
                    raise GraphError(f"module {node.target}: no tensor shape after propagation")
                last = flow.add_mha(str(node.target), mod, shapes,  # type: ignore[arg-type]
                                    (qkv[1] is qkv[0], qkv[2] is qkv[1]),
                                    [sources.get(x, frozenset()) for x in qkv])
                sources[node] = frozenset({last})
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
            call = classify(node.target, node.args, node.kwargs, owner, meta_shape)
            if call is not None:
                in_shape, out_shape = meta_shape(call.activation), meta_shape(node)
                if in_shape is None or out_shape is None:
                    raise GraphError(f"{call.owner}: no tensor shape after propagation")
                if call.unsupported_macs is not None:
                    flow.add_unsupported(flow.unique(call.owner), call.type_name,
                                         call.unsupported_macs(in_shape, out_shape),
                                         "layer type not modelled")
                    sources[node] = frozenset()
                    continue
                row = call.build(in_shape, out_shape, flow.samples)
                sources[node] = frozenset({flow.add_row(call.owner, row, merged)})
                continue
            name = func_name(node.target)
            products = ACTIVATION_MATMULS + (ATTENTION,)
            if name in products and sum(1 for a in arg_nodes if sources.get(a)) >= 2:
                in_shapes = [s for s in (meta_shape(a) for a in arg_nodes) if s]
                if name == ATTENTION:
                    in_shapes, out = in_shapes[:3], None
                else:
                    out = meta_shape(node)
                flow.add_unsupported(
                    node.name,
                    name,
                    unsupported_macs(None, in_shapes, out),
                    "matmul between activations",
                )
        if not merged:
            found = next((derived[a] for a in arg_nodes if a in derived), None)
            if found is not None:
                derived[node] = found
        # a shape or a number (x.size(), x.shape[0]) carries no data from its tensor
        sources[node] = merged if "tensor_meta" in node.meta else frozenset()
    return flow.graph(False, model_name)


# -- hooks (fallback) --------------------------------------------------------------------
class _Provenance:
    """Which layers (or the model input) each live tensor came from, and which tensors are
    computed only from parameters. Tensors are held weakly: tracing keeps none alive."""

    def __init__(self, model: nn.Module, stack: list[str]) -> None:
        self.stack = stack  # the running modules, innermost last
        self.lineage: dict[int, tuple[weakref.ref, frozenset[str]]] = {}
        self.derived: dict[int, tuple[weakref.ref, str]] = {}
        owners = param_owners(model.named_parameters(remove_duplicate=False))
        self.params: dict[int, tuple[torch.Tensor, list[str]]] = {
            id(p): (p, owners[id(p)]) for p in model.parameters()}

    def lookup(self, obj: Any) -> frozenset[str]:
        found: set[str] = set()

        def visit(o: Any) -> None:
            if isinstance(o, torch.Tensor):
                entry = self.lineage.get(id(o))
                if entry is not None and entry[0]() is o:
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
            self.lineage[id(obj)] = (weakref.ref(obj), src)
        elif isinstance(obj, list | tuple):
            for x in obj:
                self.assign(x, src)

    def owner(self, t: Any) -> str | None:
        if not isinstance(t, torch.Tensor):
            return None
        p = self.params.get(id(t))
        if p is not None and p[0] is t:
            return pick_owner(p[1], self.stack)
        d = self.derived.get(id(t))
        return d[1] if d is not None and d[0]() is t else None

    def first_owner(self, obj: Any) -> str | None:
        if isinstance(obj, list | tuple):
            return next((o for o in map(self.first_owner, obj) if o is not None), None)
        if isinstance(obj, dict):
            return self.first_owner(list(obj.values()))
        return self.owner(obj)

    def mark_derived(self, obj: Any, owner: str) -> None:
        if isinstance(obj, torch.Tensor):
            self.derived[id(obj)] = (weakref.ref(obj), owner)
        elif isinstance(obj, list | tuple):
            for x in obj:
                self.mark_derived(x, owner)


class _CallMode(TorchFunctionMode):
    """Sees every torch function call of the forward pass: weight layers become rows, every
    other call propagates lineage."""

    def __init__(self, prov: _Provenance, flow: _Flow, stack: list[str],
                 modules: dict[str, nn.Module]):
        super().__init__()
        self.prov = prov
        self.flow = flow
        self.stack = stack
        self.modules = modules
        self.entry_shapes: dict[str, tuple[int, ...]] = {}  # a stock layer's input, as it came
        self.inside = 0  # > 0 inside a module handled as one call site (attention, unsupported)

    def __torch_function__(self, func: Callable, types: Any, args: Any = (), kwargs: Any = None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        prov = self.prov
        src = prov.lookup((args, kwargs))
        if not self.inside:
            call = classify(func, args, kwargs, prov.owner, _shape)
            if call is not None:
                in_shape, out_shape = _shape(call.activation), _shape(out)
                if in_shape is not None and out_shape is not None:
                    if call.unsupported_macs is not None:
                        self.flow.add_unsupported(self.flow.unique(call.owner), call.type_name,
                                                  call.unsupported_macs(in_shape, out_shape),
                                                  "layer type not modelled")
                        prov.assign(out, frozenset())
                        return out
                    row = self.stock_row(call.owner, out_shape) or call.build(
                        in_shape, out_shape, self.flow.samples)
                    prov.assign(out, frozenset({self.flow.add_row(call.owner, row, src)}))
                    return out
            name = func_name(func)
            if name in ACTIVATION_MATMULS or name == ATTENTION:
                tensors = [a for a in args if isinstance(a, torch.Tensor)]
                if len(args) > 1 and isinstance(args[1], list | tuple):
                    tensors = [a for a in args[1] if isinstance(a, torch.Tensor)]
                if name == ATTENTION:
                    tensors = tensors[:3]
                if sum(1 for t in tensors if prov.lookup(t)) >= 2:
                    where = self.stack[-1] if self.stack else "<model>"
                    shapes = [s for s in map(_shape, tensors) if s is not None]
                    self.flow.add_unsupported(
                        self.flow.unique(f"{where}.{name}"), name,
                        unsupported_macs(None, shapes, None if name == ATTENTION else _shape(out)),
                        "matmul between activations",
                    )
        if src:
            prov.assign(out, src)
        else:
            found = prov.first_owner((args, kwargs))
            if found is not None:
                prov.mark_derived(out, found)
        return out


    def stock_row(self, owner: str, out_shape: tuple[int, ...]) -> dict[str, Any] | None:
        """A stock conv/linear's own call reads as fx reads it: from the module and the input
        it was given (before a padding mode's F.pad)."""
        top = self.stack[-1] if self.stack else None
        mod = self.modules.get(owner)
        if top != owner or mod is None or owner not in self.entry_shapes:
            return None
        return module_row(mod, self.entry_shapes[owner], out_shape, self.flow.samples)


def trace_hooks(model: nn.Module, example: Any, model_name: str | None = None, *,
                example_kwargs: dict[str, Any] | None = None) -> LayerGraph:
    """LayerGraph from one forward pass on the example (the graph is `specialised` to it)."""
    call = ExampleCall.of(example, example_kwargs)
    flow = _Flow(call.samples())
    stack: list[str] = []
    prov = _Provenance(model, stack)
    stock = {n or "<model>": m for n, m in model.named_modules() if stock_layer(m)}
    mode = _CallMode(prov, flow, stack, stock)
    handles = []
    pending: dict[int, tuple[list[Any], list[frozenset[str]]]] = {}

    def pre_hook(name: str) -> Callable:
        def hook(mod: nn.Module, args: tuple, kwargs: dict) -> None:
            stack.append(name)
            if name in stock and args and isinstance(args[0], torch.Tensor):
                mode.entry_shapes[name] = tuple(int(d) for d in args[0].shape)
            if isinstance(mod, (nn.MultiheadAttention, *UNSUPPORTED_MODULES)):
                if mode.inside == 0:
                    if isinstance(mod, nn.MultiheadAttention):
                        a = bind(MHA_ARGS, {}, args, kwargs)
                        qkv = [a.get(k) for k in MHA_ARGS]
                    else:
                        qkv = list(args)
                    pending[id(mod)] = (qkv, [prov.lookup(x) for x in qkv])
                mode.inside += 1

        return hook

    def post_hook(name: str) -> Callable:
        def hook(mod: nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
            stack.pop()
            if not isinstance(mod, (nn.MultiheadAttention, *UNSUPPORTED_MODULES)):
                return
            mode.inside -= 1
            seen = pending.pop(id(mod), None)
            if seen is None:
                return
            qkv, srcs = seen
            o = out[0] if isinstance(out, tuple) else out
            if isinstance(mod, nn.MultiheadAttention):
                shapes = [_shape(x) for x in qkv]
                if any(s is None for s in shapes):
                    return
                last = flow.add_mha(name, mod, shapes,  # type: ignore[arg-type]
                                    (qkv[1] is qkv[0], qkv[2] is qkv[1]), srcs)
                prov.assign(out, frozenset({last}))
                return
            in_shapes = [s for s in (_shape(a) for a in qkv) if s]
            flow.add_unsupported(
                name,
                type(mod).__name__,
                unsupported_macs(mod, in_shapes, _shape(o)),
                "layer type not modelled",
            )
            prov.assign(out, frozenset())

        return hook

    for name, mod in model.named_modules():
        qual = name or "<model>"
        handles.append(mod.register_forward_pre_hook(pre_hook(qual), with_kwargs=True))
        handles.append(mod.register_forward_hook(post_hook(qual), with_kwargs=True))
    try:
        with torch.no_grad(), fast_paths_disabled(), mode:
            prov.assign([*call.args, *call.kwargs.values()], frozenset({INPUT}))
            call.run(model)
    except Exception as exc:  # the user's forward failed: name the innermost module
        where = stack[-1] if stack else "<model>"
        failed = model if where == "<model>" else model.get_submodule(where)
        raise forward_failure(where, failed, call, exc) from None
    finally:
        for h in handles:
            h.remove()
    return flow.graph(True, model_name)


def trace(model: nn.Module, example_input: Any, *, example_kwargs: dict[str, Any] | None = None,
          model_name: str | None = None) -> LayerGraph:
    """LayerGraph of `model` on the call `model(*example_input, **example_kwargs)`, with its
    `coverage` against an aten-level count of the same forward pass.

    `example_input` is a tensor (one positional input) or a tuple of positional inputs (`()`
    for none); `example_kwargs` the keyword inputs of a model called as `model(input_ids=...)`.
    Every row's `batch` is dim 0 of the first tensor among the positional, then the keyword
    inputs."""
    from hwq.coverage import with_coverage

    if not isinstance(model, nn.Module):
        raise GraphError(f"expected a torch.nn.Module, found {type(model).__name__}")
    call = ExampleCall.of(example_input, example_kwargs)
    was_training = model.training
    model.eval()
    try:
        try:
            graph = trace_fx(model, call.args, model_name, example_kwargs=call.kwargs)
        except GraphError:
            raise
        except _ForwardFailed:  # no fx problem: the forward names its failing module
            graph = trace_hooks(model, call.args, model_name, example_kwargs=call.kwargs)
        except Exception as exc:  # fx cannot trace this model: fall back to hooks
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning(
                "torch.fx could not trace the model (%s); using forward hooks on the "
                "example input: the graph is specialised to that input",
                reason[:200],
            )
            graph = trace_hooks(model, call.args, model_name, example_kwargs=call.kwargs)
        return with_coverage(graph, model, call.args, call.kwargs)
    finally:
        model.train(was_training)

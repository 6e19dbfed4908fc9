"""Build a LayerGraph from a PyTorch model: torch.fx with shape propagation, or forward hooks.

Layers are found by what they compute, not by their class (`hwq.tracing_rows.classify`): any
conv1d/conv2d, linear, addmm, matmul/mm, einsum or embedding call whose weight operand is a module
parameter (or a tensor computed only from parameters, as a weight-standardised conv computes its
weight), whatever module or function makes the call; and any product of two activations
(`hwq.tracing_rows.products`: `@`/matmul/mm/bmm/baddbmm/einsum, scaled_dot_product_attention as
scores then context) as `matmul` rows named `<calling module>.matmul<i>` — the calling module is
the innermost module running (fx: the node's `nn_module_stack`; hooks: the module stack), bare
`matmul<i>` in the root's own forward, i counting that module's products through the forward.
A row whose weight parameter an earlier row counted (a tied LM head, a module called again) has
`weight_params` 0. fx gives the data flow from the graph; where fx cannot trace (data-dependent
control flow), a forward pass on the example input under a TorchFunctionMode sees every such call
and records which layers each tensor came from, and the graph is marked `specialised` (valid for
that input only). `nn.MultiheadAttention` is one call site for both tracers (its projections,
scores and context as rows); the transformer modules and `nn.Embedding` are traced into, with
their fused eval-mode fast paths disabled. Every graph carries `coverage` against an aten-level
count of the same forward pass (`hwq.coverage`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import weakref
from collections.abc import Callable, Hashable, Iterator
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from hwq.errors import GraphError
from hwq.example_call import ExampleCall, forward_failure
from hwq.graph import SHAPE_COLUMNS, LayerGraph, UnsupportedLayer
from hwq.tracing_rows import (
    ATTENTION,
    INPUT,
    OPAQUE,
    PRODUCT_FUNCS,
    ROOT,
    Product,
    WeightCall,
    bind,
    classify,
    conv_row,
    func_name,
    linear_row,
    matmul_name,
    matmul_row,
    mha_products,
    mha_rows,
    param_owners,
    pick_owner,
    products,
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
    nn.EmbeddingBag,
)
TRANSPARENT_MODULES = (
    nn.Embedding,
    nn.Transformer,
    nn.TransformerEncoder,
    nn.TransformerDecoder,
    nn.TransformerEncoderLayer,
    nn.TransformerDecoderLayer,
)
MHA_ARGS = ("query", "key", "value")

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
    """Which weight layers (or the model input) each value came from, and the rows in order."""

    def __init__(self, samples: int) -> None:
        self.samples = samples
        self.rows: list[dict[str, Any]] = []
        self.inputs: list[tuple[str, ...]] = []
        self.second: list[tuple[str, ...]] = []
        self.unsupported: list[UnsupportedLayer] = []
        self._calls: dict[str, int] = {}
        self._order: dict[str, int] = {}
        self._matmuls: dict[str | None, int] = {}
        self._weights: set[Hashable] = set()

    def unique(self, name: str) -> str:
        n = self._calls.get(name, 0)
        self._calls[name] = n + 1
        return name if n == 0 else f"{name}@{n}"

    def _producers(self, sources: frozenset[str]) -> tuple[str, ...]:
        """The layers among `sources`, in row order (the model input and opaque values are not
        layers)."""
        order = self._order
        return tuple(sorted((s for s in sources if s in order), key=order.__getitem__))

    def add_row(self, name: str, row: dict[str, Any], sources: frozenset[str],
                second: frozenset[str] = frozenset(), weight: Hashable | None = None) -> str:
        """Append a row; `weight` names its weight parameter: a row whose parameter an earlier
        row counted (a tied LM head, a module called twice) has weight_params 0."""
        name = self.unique(name)
        if weight is not None:
            if weight in self._weights:
                row = {**row, "weight_params": 0}
            self._weights.add(weight)
        self._order[name] = len(self.rows)
        self.rows.append({"name": name, **row, "reads_input": INPUT in sources})
        self.inputs.append(self._producers(sources))
        self.second.append(self._producers(second))
        return name

    def add_products(self, module: str | None, prods: list[Product],
                     sources_of: Callable[[Any], frozenset[str]]) -> str:
        """`matmul` rows named `<module>.matmul<i>` (i counts the module's products over the
        forward pass); returns the last one, which produces the call's output."""
        last = ""
        for p in prods:
            first = frozenset({last}) if p.first is None else sources_of(p.first)
            first = first.union(*(sources_of(x) for x in p.also_first))
            i = self._matmuls.get(module, 0)
            self._matmuls[module] = i + 1
            row = matmul_row(p.lead, p.m, p.k, p.n, self.samples)
            last = self.add_row(matmul_name(module, i), row, first, sources_of(p.second))
        return last

    def add_mha(self, name: str, mod: nn.MultiheadAttention, shapes: list[tuple[int, ...]],
                same: tuple[bool, bool], sources: list[frozenset[str]]) -> str:
        """Projections, scores, context and out_proj of one nn.MultiheadAttention call."""
        made: dict[int, str] = {}
        out: tuple[str, dict[str, Any]] | None = None
        for row_name, row, reads in mha_rows(name, mod.embed_dim, mod._qkv_same_embed_dim,
                                             mod.kdim, mod.vdim, shapes, same, self.samples):
            if reads == 3:
                out = (row_name, row)
                continue
            made[reads] = self.add_row(row_name, row, sources[reads],
                                       weight=(id(mod), row_name, reads))

        def proj(reads: int) -> frozenset[str]:  # the projection row a fused slice belongs to
            return frozenset({made.get(reads) or made.get(1) or made[0]})

        extra = int(mod.bias_k is not None) + int(bool(mod.add_zero_attn))
        prods = mha_products(mod.embed_dim, mod.num_heads, mod.batch_first, extra, shapes[0],
                             shapes[1], proj(0), proj(1), proj(2))
        context = self.add_products(name, prods, lambda src: src)
        assert out is not None
        return self.add_row(out[0], out[1], frozenset({context}), weight=(id(mod), out[0], 3))

    def add_unsupported(self, name: str, type_name: str, macs: int, reason: str) -> None:
        self.unsupported.append(UnsupportedLayer(name, type_name, int(macs), reason))

    def graph(self, specialised: bool, model_name: str | None) -> LayerGraph:
        df = pd.DataFrame(self.rows) if self.rows else pd.DataFrame(columns=list(SHAPE_COLUMNS))
        df["inputs"] = [list(i) for i in self.inputs]
        df["second_inputs"] = [list(i) for i in self.second]
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
    # nodes computed only from parameters -> (the modules owning the parameter, its first owner):
    # the one a call names is the innermost owner running at that call (fx shares one get_attr
    # node between the modules reading a tied parameter)
    derived: dict[Any, tuple[list[str], str]] = {}
    running: list[str] = []  # the module stack of the node being read

    def meta_shape(node: Any) -> tuple[int, ...] | None:
        if not isinstance(node, torch.fx.Node):
            return None
        tm = node.meta.get("tensor_meta")
        return tuple(int(s) for s in tm.shape) if tm is not None and hasattr(tm, "shape") else None

    def owner(node: Any) -> str | None:
        found = derived.get(node) if isinstance(node, torch.fx.Node) else None
        return pick_owner(found[0], running) if found is not None else None

    def weight_key(node: Any) -> str | None:
        found = derived.get(node) if isinstance(node, torch.fx.Node) else None
        return found[1] if found is not None else None

    def source(obj: Any) -> frozenset[str]:
        return sources.get(obj, frozenset()) if isinstance(obj, torch.fx.Node) else frozenset()

    for node in gm.graph.nodes:
        running[:] = [v[0] for v in (node.meta.get("nn_module_stack") or {}).values()]
        arg_nodes = list(node.all_input_nodes)
        merged = frozenset().union(*(sources.get(a, frozenset()) for a in arg_nodes))
        if node.op == "placeholder":
            sources[node] = frozenset({INPUT})
            continue
        if node.op == "get_attr":
            sources[node] = frozenset()
            if node.target in params:
                owners = params[str(node.target)]
                derived[node] = (owners, owners[0])
            continue
        if node.op == "call_module":
            mod = modules[node.target]
            if stock_layer(mod):
                in_shape, out_shape = meta_shape(arg_nodes[0]), meta_shape(node)
                if in_shape is None or out_shape is None:
                    raise GraphError(f"module {node.target}: no tensor shape after propagation")
                row = module_row(mod, in_shape, out_shape, flow.samples)
                owners = by_id.get(id(mod.weight), [str(node.target)])
                name = flow.add_row(str(node.target), row, merged, weight=owners[0])
                sources[node] = frozenset({name})
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
                sources[node] = frozenset({OPAQUE})  # its readers read no layer, nor the input
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
                    sources[node] = frozenset({OPAQUE})
                    continue
                row = call.build(in_shape, out_shape, flow.samples,
                                 INPUT in source(call.activation))
                name = flow.add_row(call.owner, row, merged, weight=weight_key(call.weight))
                sources[node] = frozenset({name})
                continue
            prods = products(node.target, node.args, node.kwargs, lambda n: bool(source(n)),
                             meta_shape)
            if prods is not None:
                module = running[-1] if running else None
                sources[node] = frozenset({flow.add_products(module, prods, source)})
                continue
            name = func_name(node.target)
            if name in PRODUCT_FUNCS and sum(1 for a in arg_nodes if source(a)) >= 2:
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
        # tensors computed only from parameters -> (the modules owning the parameter, its first
        # owner): a call names the innermost owner running at that call, as under fx
        self.derived: dict[int, tuple[weakref.ref, list[str]]] = {}
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

    def owners(self, t: Any) -> list[str] | None:
        """Every module owning the parameter a tensor is (or is computed only from)."""
        if not isinstance(t, torch.Tensor):
            return None
        p = self.params.get(id(t))
        if p is not None and p[0] is t:
            return p[1]
        d = self.derived.get(id(t))
        return d[1] if d is not None and d[0]() is t else None

    def weight(self, t: Any) -> tuple[str, str] | None:
        """(the owner running now, the parameter's first owner) of a parameter-derived tensor."""
        owners = self.owners(t)
        return (pick_owner(owners, self.stack), owners[0]) if owners else None

    def owner(self, t: Any) -> str | None:
        found = self.weight(t)
        return found[0] if found is not None else None

    def weight_key(self, t: Any) -> str | None:
        found = self.weight(t)
        return found[1] if found is not None else None

    def first_owners(self, obj: Any) -> list[str] | None:
        if isinstance(obj, list | tuple):
            return next((o for o in map(self.first_owners, obj) if o is not None), None)
        if isinstance(obj, dict):
            return self.first_owners(list(obj.values()))
        return self.owners(obj)

    def mark_derived(self, obj: Any, owners: list[str]) -> None:
        if isinstance(obj, torch.Tensor):
            self.derived[id(obj)] = (weakref.ref(obj), owners)
        elif isinstance(obj, list | tuple):
            for x in obj:
                self.mark_derived(x, owners)


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
            if call is not None and self.weight_call(call, out, src):
                return out
            prods = products(func, args, kwargs, lambda t: bool(prov.lookup(t)), _shape)
            if prods is not None:
                where = self.stack[-1] if self.stack else None
                prov.assign(out, frozenset({self.flow.add_products(where, prods, prov.lookup)}))
                return out
            name = func_name(func)
            if name in PRODUCT_FUNCS:  # a product of activations hwq cannot read (3 operands)
                tensors = [a for a in args if isinstance(a, torch.Tensor)]
                if len(args) > 1 and isinstance(args[1], list | tuple):
                    tensors = [a for a in args[1] if isinstance(a, torch.Tensor)]
                if name == ATTENTION:
                    tensors = tensors[:3]
                if sum(1 for t in tensors if prov.lookup(t)) >= 2:
                    where = self.stack[-1] if self.stack else ROOT
                    shapes = [s for s in map(_shape, tensors) if s is not None]
                    self.flow.add_unsupported(
                        self.flow.unique(f"{where}.{name}"), name,
                        unsupported_macs(None, shapes, None if name == ATTENTION else _shape(out)),
                        "matmul between activations",
                    )
        if src:
            prov.assign(out, src)
        else:
            found = prov.first_owners((args, kwargs))
            if found is not None:
                prov.mark_derived(out, found)
        return out

    def weight_call(self, call: WeightCall, out: Any, src: frozenset[str]) -> bool:
        """Record a call on a parameter-derived weight (a row, or an unsupported layer);
        False when its shapes are unknown."""
        prov = self.prov
        in_shape, out_shape = _shape(call.activation), _shape(out)
        if in_shape is None or out_shape is None:
            return False
        if call.unsupported_macs is not None:
            self.flow.add_unsupported(self.flow.unique(call.owner), call.type_name,
                                      call.unsupported_macs(in_shape, out_shape),
                                      "layer type not modelled")
            prov.assign(out, frozenset({OPAQUE}))
            return True
        row = self.stock_row(call.owner, out_shape) or call.build(
            in_shape, out_shape, self.flow.samples, INPUT in prov.lookup(call.activation))
        name = self.flow.add_row(call.owner, row, src, weight=prov.weight_key(call.weight))
        prov.assign(out, frozenset({name}))
        return True

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
            prov.assign(out, frozenset({OPAQUE}))

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

"""LayerGraph rows from what a call computes: a conv or linear product whose weight operand is a
module parameter (or a tensor computed only from parameters), whatever module or function calls it.

Both tracers (torch.fx and the hooks fallback) classify calls here, so they find the same layers:
`classify` reads a call's target and arguments through two callbacks (which operand is a
parameter, and an operand's shape) and returns a `WeightCall`, whose `row` builds the shape
columns once the input and output shapes are known.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

INPUT = "<input>"

CONV_FUNCS = {"conv1d": 1, "conv2d": 2}
UNSUPPORTED_FUNCS = ("conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
MATMUL_FUNCS = ("matmul", "__matmul__", "mm", "bmm")
CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
CONV_DEFAULTS = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}
TRANSPOSED_ARGS = ("input", "weight", "bias", "stride", "padding", "output_padding", "groups")


def owner_of(param_name: str) -> str:
    """The qualified name of the module that owns a parameter (the parameter's own name for a
    parameter of the root module; the parametrized module for a parametrization's original)."""
    if param_name.startswith("parametrizations.") or ".parametrizations." in param_name:
        # torch.nn.utils.parametrize (weight_norm, ...): <module>.parametrizations.<p>.original0
        head = ("." + param_name).split(".parametrizations.", 1)[0].lstrip(".")
        return head or param_name.split(".")[1]
    head, _, _ = param_name.rpartition(".")
    return head or param_name


def param_owners(named: Any) -> dict[int, list[str]]:
    """id of each parameter tensor -> every module that owns it (a tied weight has several),
    from `named_parameters(remove_duplicate=False)`."""
    out: dict[int, list[str]] = {}
    for name, p in named:
        owners = out.setdefault(id(p), [])
        if owner_of(name) not in owners:
            owners.append(owner_of(name))
    return out


def pick_owner(owners: Sequence[str], stack: Sequence[str]) -> str:
    """The owner of a (possibly tied) parameter: the innermost running module that owns it,
    else the first owner (so a tied LM head is named by the head that calls it)."""
    for module in reversed(stack):
        if module in owners:
            return module
    return owners[0]


def func_name(target: Any) -> str:
    """A call target's name: an fx method name, or a torch function's `__name__`."""
    return target if isinstance(target, str) else str(getattr(target, "__name__", target))


def bind(names: Sequence[str], defaults: dict[str, Any], args: Sequence[Any],
         kwargs: dict[str, Any]) -> dict[str, Any]:
    out = dict(defaults)
    out.update(zip(names, args))
    out.update({k: v for k, v in kwargs.items() if k in names})
    return out


def _pair(value: Any, n: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    vals = tuple(int(v) for v in value)
    return vals if len(vals) == n else vals * n


def _pad(value: Any, kernel: tuple[int, ...], dilation: tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(value, str):
        if value == "valid":
            return (0,) * len(kernel)
        return tuple((d * (k - 1)) // 2 for k, d in zip(kernel, dilation))
    return _pair(value, len(kernel))


def conv_row(
    weight_shape: tuple[int, ...],
    in_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: int,
) -> dict[str, Any]:
    """Shape columns of a conv1d/conv2d (weight [C_out, C_in/groups, *kernel])."""
    spatial = len(weight_shape) - 2
    batch = 1 if len(in_shape) == spatial + 1 else int(in_shape[0])
    k = tuple(int(x) for x in weight_shape[2:])
    d = _pair(dilation, spatial)
    s = _pair(stride, spatial)
    p = _pad(padding, k, d)
    fill = (1,) * (2 - spatial)
    ins, outs = in_shape[-spatial:], out_shape[-spatial:]
    ic = int(in_shape[-spatial - 1])
    return {
        "op": "conv",
        "batch": batch,
        "in_channels": ic,
        "out_channels": int(weight_shape[0]),
        "in_h": int(ins[0]),
        "in_w": int(ins[1]) if spatial == 2 else 1,
        "out_h": int(outs[0]),
        "out_w": int(outs[1]) if spatial == 2 else 1,
        "kernel_h": (k + fill)[0],
        "kernel_w": (k + fill)[1],
        "stride_h": (s + fill)[0],
        "stride_w": (s + fill)[1],
        "pad_h": (p + (0,) * (2 - spatial))[0],
        "pad_w": (p + (0,) * (2 - spatial))[1],
        "groups": int(groups),
    }


def linear_row(k: int, n: int, in_elems: int, samples: int) -> dict[str, Any]:
    """Shape columns of a product with a [K, N] weight over an input of `in_elems` elements:
    R = in_elems / K rows in all, T = R / samples tokens per sample (`batch` = samples)."""
    rows = max(in_elems // k, 1)
    batch, tokens = (samples, rows // samples) if rows % samples == 0 else (1, rows)
    return {
        "op": "linear", "batch": batch, "in_channels": int(k), "out_channels": int(n),
        "in_h": tokens, "in_w": 1, "out_h": tokens, "out_w": 1, "kernel_h": 1, "kernel_w": 1,
        "stride_h": 1, "stride_w": 1, "pad_h": 0, "pad_w": 0, "groups": 1,
    }


@dataclass(frozen=True)
class WeightCall:
    """A call that multiplies an activation by a parameter-derived weight."""

    owner: str
    activation: Any  # the activation operand (an fx Node or a tensor)
    kind: str  # "conv", "linear" or "unsupported"
    type_name: str
    build: Callable[[tuple[int, ...], tuple[int, ...], int], dict[str, Any]]
    unsupported_macs: Callable[[tuple[int, ...], tuple[int, ...]], int] | None = None


def _einsum_call(eq: str, ops: Sequence[Any], owner: Callable[[Any], str | None],
                 shape: Callable[[Any], tuple[int, ...] | None]) -> WeightCall | None:
    if len(ops) != 2 or "..." in eq or "->" not in eq:
        return None
    lhs, out_spec = eq.replace(" ", "").split("->")
    specs = lhs.split(",")
    owners = [owner(o) for o in ops]
    if len(specs) != 2 or (owners[0] is None) == (owners[1] is None):
        return None
    wi = 0 if owners[0] is not None else 1
    w_spec, x_spec = specs[wi], specs[1 - wi]
    w_shape = shape(ops[wi])
    if w_shape is None or len(w_shape) != len(w_spec):
        return None
    sizes = dict(zip(w_spec, w_shape))
    if set(w_spec) & set(out_spec) & set(x_spec):  # a batched weight: not a plain linear
        return None
    k = math.prod(sizes[c] for c in w_spec if c in x_spec and c not in out_spec)
    n = math.prod(sizes[c] for c in w_spec if c in out_spec)

    def build(in_shape, out_shape, samples):
        x_sizes = dict(zip(x_spec, in_shape))
        elems = k * math.prod(x_sizes[c] for c in x_spec if c in out_spec)
        return linear_row(k, n, elems, samples)

    return WeightCall(str(owners[wi]), ops[1 - wi], "linear", "einsum", build)


def classify(
    target: Any,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    owner: Callable[[Any], str | None],
    shape: Callable[[Any], tuple[int, ...] | None],
) -> WeightCall | None:
    """The weight layer a call computes, or None. conv and linear name their weight argument: a
    parameter-derived weight makes a layer whatever the input (a DETR query embedding is a
    parameter too); a product of two parameter-derived operands computes a weight, not a layer."""
    name = func_name(target)
    if name in CONV_FUNCS:
        a = bind(CONV_ARGS, CONV_DEFAULTS, args, kwargs)
        w = a.get("weight")
        who = owner(w)
        if who is None:
            return None
        w_shape = shape(w)
        if w_shape is None:
            return None

        def build_conv(in_shape, out_shape, samples):
            return conv_row(w_shape, in_shape, out_shape, a["stride"], a["padding"],
                            a["dilation"], int(a["groups"]))

        return WeightCall(who, a.get("input"), "conv", name, build_conv)
    if name in UNSUPPORTED_FUNCS:
        names = CONV_ARGS if name == "conv3d" else TRANSPOSED_ARGS
        a = bind(names, {"groups": 1}, args, kwargs)
        who = owner(a.get("weight"))
        w_shape = shape(a.get("weight"))
        if who is None or w_shape is None:
            return None
        def macs(in_shape, out_shape):
            per = math.prod(w_shape[1:])
            return math.prod(out_shape if name == "conv3d" else in_shape) * per

        return WeightCall(who, a.get("input"), "unsupported", name, lambda i, o, s: {}, macs)
    if name == "linear":
        a = bind(("input", "weight", "bias"), {"bias": None}, args, kwargs)
        who = owner(a.get("weight"))
        w_shape = shape(a.get("weight"))
        if who is None or w_shape is None or len(w_shape) != 2:
            return None
        n, k = int(w_shape[0]), int(w_shape[1])
        return WeightCall(who, a.get("input"), "linear", name,
                          lambda i, o, s: linear_row(k, n, math.prod(i), s))
    if name in MATMUL_FUNCS or name == "addmm":
        ops = list(args[1:3]) if name == "addmm" else list(args[:2])
        if name == "addmm":
            ops = [kwargs.get("mat1", ops[0] if ops else None),
                   kwargs.get("mat2", ops[1] if len(ops) > 1 else None)]
        elif len(ops) < 2:
            ops += [kwargs.get("other")]
        if len(ops) != 2:
            return None
        owners = [owner(o) for o in ops]
        if (owners[0] is None) == (owners[1] is None):
            return None
        if owners[1] is not None:  # x @ W, W [K, N]
            w_shape = shape(ops[1])
            if w_shape is None or len(w_shape) != 2:
                return None
            k, n = int(w_shape[0]), int(w_shape[1])
            return WeightCall(str(owners[1]), ops[0], "linear", name,
                              lambda i, o, s: linear_row(k, n, math.prod(i), s))
        w_shape = shape(ops[0])  # W @ x, W [N, K]
        if w_shape is None or len(w_shape) != 2:
            return None
        n, k = int(w_shape[0]), int(w_shape[1])
        return WeightCall(str(owners[0]), ops[1], "linear", name,
                          lambda i, o, s: linear_row(k, n, math.prod(i), s))
    if name == "einsum" and args and isinstance(args[0], str):
        ops = list(args[1:])
        if len(ops) == 1 and isinstance(ops[0], list | tuple):
            ops = list(ops[0])
        return _einsum_call(args[0], ops, owner, shape)
    return None


def mha_rows(
    name: str,
    embed_dim: int,
    fused: bool,
    kdim: int,
    vdim: int,
    shapes: Sequence[tuple[int, ...]],
    same: tuple[bool, bool],
    samples: int,
) -> list[tuple[str, dict[str, Any], int]]:
    """Projection rows of an nn.MultiheadAttention call: (name, row, which input it reads:
    0 query, 1 key, 2 value, 3 the attention context). `same` = (key is query, value is key).
    A fused in-projection is one layer `<mha>.in_proj` when query, key and value are one tensor;
    for cross-attention its slices are separate calls (`in_proj@1`, ...), as torch computes them."""
    e = embed_dim
    q, k, v = shapes
    out: list[tuple[str, dict[str, Any], int]] = []
    if fused:
        if same[0] and same[1]:
            out.append((f"{name}.in_proj", linear_row(e, 3 * e, math.prod(q), samples), 0))
        else:
            out.append((f"{name}.in_proj", linear_row(e, e, math.prod(q), samples), 0))
            if same[1]:
                out.append((f"{name}.in_proj", linear_row(e, 2 * e, math.prod(k), samples), 1))
            else:
                out.append((f"{name}.in_proj", linear_row(e, e, math.prod(k), samples), 1))
                out.append((f"{name}.in_proj", linear_row(e, e, math.prod(v), samples), 2))
    else:
        out.append((f"{name}.q_proj", linear_row(e, e, math.prod(q), samples), 0))
        out.append((f"{name}.k_proj", linear_row(kdim, e, math.prod(k), samples), 1))
        out.append((f"{name}.v_proj", linear_row(vdim, e, math.prod(v), samples), 2))
    out.append((f"{name}.out_proj", linear_row(e, e, math.prod(q), samples), 3))
    return out

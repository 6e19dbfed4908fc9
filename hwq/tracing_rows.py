"""LayerGraph rows from what a call computes: a conv, linear or embedding whose weight operand is a
module parameter (or a tensor computed only from parameters), whatever module or function calls it,
and a product of two activations (`matmul` rows).

Both tracers (torch.fx and the hooks fallback) classify calls here, so they find the same layers:
`classify` reads a call's target and arguments through two callbacks (which operand is a
parameter, and an operand's shape) and returns a `WeightCall`, whose `build` makes the shape
columns once the input and output shapes are known; `products` reads a product of activations
(matmul/@/mm/bmm/baddbmm/einsum/F.linear between activations, scaled_dot_product_attention) into
`Product`s, whose `matmul_row` makes the columns.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

INPUT = "<input>"
# The output of a layer hwq does not model: an activation, but none of the graph's layers or the
# model input produced it (its readers read neither).
OPAQUE = "<opaque>"
ROOT = "<model>"  # the root module in the hooks tracer's module stack

CONV_FUNCS = {"conv1d": 1, "conv2d": 2}
UNSUPPORTED_FUNCS = ("conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
MATMUL_FUNCS = ("matmul", "__matmul__", "mm", "bmm")
ATTENTION = "scaled_dot_product_attention"
# calls that multiply two activations when neither operand is a parameter
PRODUCT_FUNCS = (*MATMUL_FUNCS, "baddbmm", "addmm", "einsum", "linear", ATTENTION)
SDPA_ARGS = ("query", "key", "value", "attn_mask")
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


def matmul_name(module: str | None, index: int) -> str:
    """`<calling module>.matmul<i>`; a product the root module's own forward computes is
    `matmul<i>` (as a root parameter is named by its own name)."""
    return f"matmul{index}" if module in (None, "", ROOT) else f"{module}.matmul{index}"


def matmul_row(lead: int, m: int, k: int, n: int, samples: int) -> dict[str, Any]:
    """Shape columns of `lead` independent [M, K] x [K, N] products: `batch` = samples and
    `groups` = lead / samples (heads x other leading dims); a single product over rows of all
    samples ([B*T, K] x [K, N]) is M / samples rows per sample."""
    if lead % samples == 0:
        batch, groups = samples, lead // samples
    elif lead == 1 and m % samples == 0:
        batch, groups, m = samples, 1, m // samples
    else:
        batch, groups = 1, lead
    return {
        "op": "matmul", "batch": int(batch), "in_channels": int(k), "out_channels": int(n),
        "in_h": int(m), "in_w": 1, "out_h": int(m), "out_w": 1, "kernel_h": 1, "kernel_w": 1,
        "stride_h": 1, "stride_w": 1, "pad_h": 0, "pad_w": 0, "groups": int(groups),
    }


def embedding_row(num: int, dim: int, ids_shape: tuple[int, ...], samples: int,
                  from_input: bool) -> dict[str, Any]:
    """Shape columns of a lookup in a [num, dim] table. Ids of each sample ([B, T], or ids the
    model input gave, flattened or not) are T = ids / samples tokens per sample; ids shared by
    every sample (positions from arange) are that many tokens per sample."""
    ids = math.prod(ids_shape)
    per_sample = (len(ids_shape) >= 2 and ids_shape[0] == samples) or from_input
    tokens = ids // samples if per_sample and ids % samples == 0 else ids
    return {
        "op": "embedding", "batch": int(samples), "in_channels": int(num),
        "out_channels": int(dim), "in_h": max(int(tokens), 1), "in_w": 1,
        "out_h": max(int(tokens), 1), "out_w": 1, "kernel_h": 1, "kernel_w": 1, "stride_h": 1,
        "stride_w": 1, "pad_h": 0, "pad_w": 0, "groups": 1,
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
    activation: Any  # the activation operand (an fx Node or a tensor); an embedding's ids
    kind: str  # "conv", "linear", "embedding" or "unsupported"
    type_name: str
    # (input shape, output shape, samples, whether the input comes from the model input)
    build: Callable[[tuple[int, ...], tuple[int, ...], int, bool], dict[str, Any]]
    unsupported_macs: Callable[[tuple[int, ...], tuple[int, ...]], int] | None = None
    weight: Any = None  # the weight operand (whose parameter a tied row counts once)


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

    def build(in_shape, out_shape, samples, from_input):
        x_sizes = dict(zip(x_spec, in_shape))
        elems = k * math.prod(x_sizes[c] for c in x_spec if c in out_spec)
        return linear_row(k, n, elems, samples)

    return WeightCall(str(owners[wi]), ops[1 - wi], "linear", "einsum", build, weight=ops[wi])


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

        def build_conv(in_shape, out_shape, samples, from_input):
            return conv_row(w_shape, in_shape, out_shape, a["stride"], a["padding"],
                            a["dilation"], int(a["groups"]))

        return WeightCall(who, a.get("input"), "conv", name, build_conv, weight=w)
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

        return WeightCall(who, a.get("input"), "unsupported", name, lambda *_: {}, macs,
                          a.get("weight"))
    if name == "embedding_bag":  # F.embedding_bag(input, weight, ...): listed, not modelled
        a = bind(("input", "weight"), {}, args, kwargs)
        who = owner(a.get("weight"))
        if who is None:
            return None
        return WeightCall(who, a.get("input"), "unsupported", name, lambda *_: {},
                          lambda i, o: 0, a.get("weight"))
    if name == "embedding":  # F.embedding(input, weight, ...) or torch.embedding(weight, ids)
        a = bind(("input", "weight"), {}, args, kwargs)
        ids, w = a.get("input"), a.get("weight")
        if owner(w) is None:
            b = bind(("weight", "indices"), {}, args, kwargs)
            ids, w = b.get("indices"), b.get("weight")
        who, w_shape = owner(w), shape(w)
        if who is None or w_shape is None or len(w_shape) != 2:
            return None
        num, dim = int(w_shape[0]), int(w_shape[1])
        return WeightCall(who, ids, "embedding", name,
                          lambda i, o, s, inp: embedding_row(num, dim, i, s, inp), weight=w)
    if name == "linear":
        a = bind(("input", "weight", "bias"), {"bias": None}, args, kwargs)
        who = owner(a.get("weight"))
        w_shape = shape(a.get("weight"))
        if who is None or w_shape is None or len(w_shape) != 2:
            return None
        n, k = int(w_shape[0]), int(w_shape[1])
        return WeightCall(who, a.get("input"), "linear", name,
                          lambda i, o, s, _: linear_row(k, n, math.prod(i), s), weight=a["weight"])
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
                              lambda i, o, s, _: linear_row(k, n, math.prod(i), s), weight=ops[1])
        w_shape = shape(ops[0])  # W @ x, W [N, K]
        if w_shape is None or len(w_shape) != 2:
            return None
        n, k = int(w_shape[0]), int(w_shape[1])
        return WeightCall(str(owners[0]), ops[1], "linear", name,
                          lambda i, o, s, _: linear_row(k, n, math.prod(i), s), weight=ops[0])
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


# -- products of two activations -------------------------------------------------------------
@dataclass(frozen=True)
class Product:
    """One product of two activations: `lead` independent [M, K] x [K, N] products. `first` and
    `second` are its operands (fx Nodes, tensors, or for nn.MultiheadAttention the producers
    themselves); `first` None: the previous product's output (attention's context reads the
    scores), joined by the producers of `also_first` (an attention mask added to the scores)."""

    first: Any
    second: Any
    lead: int
    m: int
    k: int
    n: int
    also_first: tuple[Any, ...] = ()


def _matmul_dims(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """(lead, M, K, N) of torch.matmul's broadcasting product of shapes a and b."""
    if not a or not b:
        return None
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    try:
        lead = math.prod(_broadcast(a2[:-2], b2[:-2]))
    except ValueError:
        return None
    return lead, int(a2[-2]), int(a2[-1]), int(b2[-1])


def _broadcast(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    n = max(len(a), len(b))
    a = (1,) * (n - len(a)) + tuple(a)
    b = (1,) * (n - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        if x != y and 1 not in (x, y):
            raise ValueError(f"shapes {a} and {b} do not broadcast")
        out.append(max(x, y))
    return tuple(out)


def einsum_dims(eq: str, a: tuple[int, ...],
                b: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """(lead, M, K, N) of a two-operand einsum: letters in both operands and the output are
    independent products (lead), in both but not the output are reduced (K), in one operand and
    the output are its rows (M, first operand) or columns (N, second). A letter in one operand
    only and not in the output is summed before the product (no MACs). `...` dims are leading
    dims, broadcast as torch.matmul broadcasts them."""
    eq = eq.replace(" ", "")
    lhs, arrow, out = eq.partition("->")
    specs = lhs.split(",")
    if len(specs) != 2:
        return None
    shapes = (a, b)
    n_ell = [len(s) - (len(sp) - 3) if "..." in sp else 0 for sp, s in zip(specs, shapes)]
    width = max(n_ell)
    ell = [chr(0x100 + j) for j in range(width)]
    letters: list[list[str]] = []
    for sp, n in zip(specs, n_ell):
        head, dots, tail = sp.partition("...")
        letters.append(list(head) + (ell[width - n:] if dots else []) + list(tail))
    sizes: dict[str, int] = {}
    for spec, shape in zip(letters, shapes):
        if len(spec) != len(shape):
            return None
        for c, d in zip(spec, shape):
            sizes[c] = max(sizes.get(c, 1), int(d))
    if arrow:
        head, dots, tail = out.partition("...")
        out_letters = set(head) | set(tail) | (set(ell) if dots else set())
    else:  # implicit output: ellipsis dims, then the letters appearing once
        every = letters[0] + letters[1]
        out_letters = set(ell) | {c for c in every if every.count(c) == 1}
    sa, sb = set(letters[0]), set(letters[1])
    if not out_letters <= sa | sb:
        return None
    # `...` dims broadcast as torch.matmul's leading dims do: independent products (lead)
    broadcast = set(ell) & out_letters
    sa, sb = sa | broadcast, sb | broadcast

    def prod(chars: set[str]) -> int:
        return math.prod(sizes[c] for c in chars)

    return (prod(sa & sb & out_letters), prod((sa - sb) & out_letters),
            prod((sa & sb) - out_letters), prod((sb - sa) & out_letters))


def products(
    target: Any,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    active: Callable[[Any], bool],
    shape: Callable[[Any], tuple[int, ...] | None],
) -> list[Product] | None:
    """The products of two activations a call computes (`active`: an operand carries data from
    the model input or a layer), or None: matmul/@/mm/bmm, baddbmm/addmm (their product),
    einsum of two operands, F.linear(x, w) with an activation w, and
    scaled_dot_product_attention (scores q·kᵀ, then context p·v; GQA and broadcast k/v: lead
    = the query's leading dims)."""
    name = func_name(target)
    if name == ATTENTION:
        a = bind(SDPA_ARGS, {"attn_mask": None}, args, kwargs)
        q, k, v = a.get("query"), a.get("key"), a.get("value")
        if sum(1 for t in (q, k, v) if active(t)) < 2:
            return None
        qs, ks, vs = shape(q), shape(k), shape(v)
        if qs is None or ks is None or vs is None or len(qs) < 2:
            return None
        lead, seq_q, e, seq_k = math.prod(qs[:-2]), qs[-2], qs[-1], ks[-2]
        mask = a.get("attn_mask")
        return [Product(q, k, lead, seq_q, e, seq_k),
                Product(None, v, lead, seq_q, seq_k, vs[-1], (mask,) if mask is not None else ())]
    if name in MATMUL_FUNCS:
        ops = [*args[:2]]
        if len(ops) < 2:
            ops += [kwargs.get("other", kwargs.get("mat2"))]
    elif name in ("baddbmm", "addmm"):
        first, second = ("batch1", "batch2") if name == "baddbmm" else ("mat1", "mat2")
        a = bind(("input", first, second), {}, args, kwargs)
        ops = [a.get(first), a.get(second)]
    elif name == "einsum" and args and isinstance(args[0], str):
        ops = list(args[1:])
        if len(ops) == 1 and isinstance(ops[0], list | tuple):
            ops = list(ops[0])
    elif name == "linear":
        a = bind(("input", "weight"), {}, args, kwargs)
        ops = [a.get("input"), a.get("weight")]
    else:
        return None
    if len(ops) != 2 or not all(active(o) for o in ops):
        return None
    sa, sb = shape(ops[0]), shape(ops[1])
    if sa is None or sb is None:
        return None
    if name == "einsum":
        dims = einsum_dims(args[0], sa, sb)
    elif name == "linear":  # x [..., K] by w [N, K]: x @ wᵀ
        dims = _matmul_dims(sa, (sb[-1], sb[0])) if len(sb) == 2 else None
    else:
        dims = _matmul_dims(sa, sb)
    if dims is None:
        return None
    return [Product(ops[0], ops[1], *dims)]


def mha_products(embed_dim: int, heads: int, batch_first: bool, extra_kv: int,
                 q_shape: tuple[int, ...], k_shape: tuple[int, ...], q_src: Any, k_src: Any,
                 v_src: Any) -> list[Product]:
    """nn.MultiheadAttention's scores (M = target length, K = head dim, N = source length) and
    context (M = target length, K = source length, N = head dim), `heads` products per sample;
    `extra_kv` source positions its add_bias_kv / add_zero_attn append."""
    if len(q_shape) == 3:
        n, tq = (q_shape[0], q_shape[1]) if batch_first else (q_shape[1], q_shape[0])
        tk = k_shape[1] if batch_first else k_shape[0]
    else:  # unbatched [L, E]
        n, tq, tk = 1, q_shape[0], k_shape[0]
    d, tk = embed_dim // heads, tk + extra_kv
    return [Product(q_src, k_src, n * heads, tq, d, tk), Product(None, v_src, n * heads, tq, tk, d)]

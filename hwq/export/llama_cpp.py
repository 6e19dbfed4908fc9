"""`hwq export RUN --policy ID --format llama-cpp -o FILE`: a policy as llama.cpp tensor types.

`llama-quantize` mixes GGUF quantization types per tensor with `--tensor-type PATTERN=TYPE`
(repeatable) or `--tensor-type-file FILE` (whitespace-separated `PATTERN=TYPE` items): PATTERN is
a regular expression searched in each GGUF tensor name (`std::regex_search`, ECMAScript; the
pattern is lower-cased), TYPE a ggml type name (case-insensitive), and where several patterns
match one tensor the last one wins. The file written here has one line per weight layer of the
policy (no line for a matmul row: a product of two activations holds no weight), each pattern
anchored on the whole tensor name (`^blk\\.0\\.attn_q\\.weight$=q4_k`), so every tensor is
matched by exactly one line and no line depends on order.

Tensor names come from the `gguf` package's own name map (`gguf.TensorNameMap` of the model's
GGUF architecture, found from its Hugging Face `config.model_type`): `model.layers.0.self_attn.
q_proj` -> `blk.0.attn_q.weight`, `model.embed_tokens` -> `token_embd.weight`, `lm_head` ->
`output.weight`. Types come from `gguf.GGMLQuantizationType` by the layer's weight bits
(`GGUF_TYPES`: 16 f16, 8 q8_0, 6 q6_k, 5 q5_k, 4 q4_k, 3 q3_k, 2 q2_k, 32 f32; `types=` overrides
a width, e.g. {4: "q4_0"}); a k-quant needs rows of whole 256-value super-blocks, so a tensor
whose rows are not falls back to the legacy type of the same bits (q4_0, q5_0) or is refused.
GGUF types store weights only: a policy with quantized activations is refused.

`read_tensor_types(FILE)` reads a file back into (pattern, type) pairs, and `match_tensor_types`
gives every tensor name its matching lines, as llama-quantize applies them.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwq.errors import UserError

# weight bits -> the GGUF type (gguf.GGMLQuantizationType member name)
GGUF_TYPES: dict[int, str] = {32: "F32", 16: "F16", 8: "Q8_0", 6: "Q6_K", 5: "Q5_K", 4: "Q4_K",
                              3: "Q3_K", 2: "Q2_K"}
# a type whose block does not divide a tensor's rows -> the same bits in a 32-value block
SMALL_BLOCK: dict[str, str] = {"Q4_K": "Q4_0", "Q5_K": "Q5_0"}
WEIGHT_OPS = ("conv", "linear", "embedding")


@dataclass(frozen=True)
class TensorType:
    """One weight layer's line: its module, GGUF tensor, type and bits."""

    module: str
    tensor: str
    gguf_type: str  # a gguf.GGMLQuantizationType member name, e.g. Q4_K
    w_bits: int
    params: int

    @property
    def pattern(self) -> str:
        return "^" + re.escape(self.tensor) + "$"

    @property
    def line(self) -> str:
        return f"{self.pattern}={self.gguf_type.lower()}"


def type_bits(gguf_type: str) -> int:
    """The weight bits a GGUF type stands for in `GGUF_TYPES` (q4_0 -> 4, q8_0 -> 8)."""
    name = gguf_type.upper()
    for bits, t in GGUF_TYPES.items():
        if t == name:
            return bits
    m = re.fullmatch(r"[I]?Q(\d)_.*", name)
    if m:
        return int(m.group(1))
    if name in ("F16", "BF16"):
        return 16
    raise UserError(f"GGUF type {gguf_type}: no bit-width known for it")


def bits_per_weight(gguf_type: str) -> float:
    """Stored bits per weight of a GGUF type, block scales included (gguf.GGML_QUANT_SIZES)."""
    import gguf

    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[gguf_type.upper()]]
    return size * 8 / block


def gguf_arch(model_type: str) -> Any:
    """The gguf.MODEL_ARCH of a Hugging Face `config.model_type` (llama -> MODEL_ARCH.LLAMA)."""
    import gguf

    for arch, name in gguf.MODEL_ARCH_NAMES.items():
        if name == model_type:
            return arch
    raise UserError(f"llama-cpp export: the gguf package has no architecture {model_type!r} "
                    "(config.model_type of the model)")


def model_arch(model: str, model_args: Mapping[str, Any] | None = None) -> tuple[str, int]:
    """(config.model_type, num_hidden_layers) of a Hugging Face model named as a search names
    it (a zoo name, package.module:factory)."""
    from hwq.models import load_model

    net = load_model(model, **dict(model_args or {}))
    config = getattr(net, "config", None)
    model_type = getattr(config, "model_type", None)
    if not model_type:
        raise UserError(f"llama-cpp export: model {model} has no Hugging Face config "
                        "(config.model_type): llama.cpp runs Hugging Face architectures")
    return str(model_type), int(getattr(config, "num_hidden_layers", 0) or 0)


def tensor_types(
    names: Sequence[str],
    ops: Sequence[str],
    rows: Sequence[int],
    params: Sequence[int],
    pairs: Sequence[tuple[int, int]],
    model_type: str,
    n_blocks: int,
    types: Mapping[int, str] | None = None,
) -> list[TensorType]:
    """The line of every weight layer (`ops` conv/linear/embedding; matmul rows skipped) with
    `pairs` (w, a) per layer and `rows` the values per tensor row (GGUF's ne[0])."""
    import gguf

    arch = gguf_arch(model_type)
    name_map = gguf.TensorNameMap(arch, max(n_blocks, 1))
    arch_tensors = set(gguf.MODEL_TENSORS[arch])
    table = {**GGUF_TYPES, **{int(b): str(t).upper() for b, t in (types or {}).items()}}
    out: list[TensorType] = []
    for name, op, row, n, (w, a) in zip(names, ops, rows, params, pairs):
        if op not in WEIGHT_OPS:
            if int(w) < 16 or int(a) < 16:
                raise UserError(f"llama-cpp export: {name} is a product of two activations at "
                                f"W{w}A{a}; GGUF types store weights only")
            continue
        if int(a) < 16:
            raise UserError(f"llama-cpp export: layer {name} has a_bits={a}; GGUF types store "
                            "weights only (llama.cpp computes activations itself): export a "
                            "weight-only policy (pairs Wx16)")
        found = name_map.get_type_and_name(name + ".weight", try_suffixes=(".weight",))
        if found is None or found[0] not in arch_tensors:
            raise UserError(f"llama-cpp export: module {name} has no tensor in gguf's {model_type} "
                            "name map (gguf.TensorNameMap)")
        kind = table.get(int(w))
        if kind is None:
            raise UserError(f"llama-cpp export: layer {name}: no GGUF type for {w}-bit weights "
                            f"(known: {', '.join(str(b) for b in sorted(table))})")
        kind = _fitting_type(name, kind, int(row))
        out.append(TensorType(name, found[1], kind, int(w), int(n)))
    return out


def _fitting_type(name: str, kind: str, row: int) -> str:
    import gguf

    block = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[kind]][0]
    if row % block == 0:
        return kind
    small = SMALL_BLOCK.get(kind)
    if small is not None and type_bits(small) == type_bits(kind):
        if row % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[small]][0] == 0:
            return small
    raise UserError(f"llama-cpp export: layer {name}: rows of {row} values are not whole "
                    f"{block}-value blocks of {kind.lower()}, and no {type_bits(kind)}-bit GGUF "
                    "type with smaller blocks fits; choose other bits for it (--pin)")


def write_tensor_types(lines: Sequence[TensorType], out: str | os.PathLike[str]) -> None:
    from hwq.atomic import write_atomic

    text = "".join(t.line + "\n" for t in lines)
    write_atomic(Path(out), lambda fh: fh.write(text.encode()))


def read_tensor_types(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """(pattern, type) of each whitespace-separated `PATTERN=TYPE` item of a tensor-type file,
    as llama-quantize's --tensor-type-file reads it (pattern lower-cased)."""
    items = []
    for item in Path(path).read_text(encoding="utf-8").split():
        pattern, sep, kind = item.partition("=")
        if not sep or not pattern or not kind:
            raise UserError(f"{path}: malformed tensor type {item!r} (expected PATTERN=TYPE)")
        items.append((pattern.lower(), kind))
    return items


def match_tensor_types(
    items: Sequence[tuple[str, str]], tensors: Sequence[str]
) -> dict[str, list[str]]:
    """{tensor name: the types of the items whose pattern `re.search`es it, in file order}
    (llama-quantize applies the last)."""
    compiled = [(re.compile(p), t) for p, t in items]
    return {name: [t for rx, t in compiled if rx.search(name)] for name in tensors}


def export_llama_cpp(run: Any, policy_id: str, out: str | os.PathLike[str],
                     types: Mapping[int, str] | None = None) -> dict[str, Any]:
    """Write policy `policy_id` of the run as `--tensor-type` lines; returns a summary."""
    from hwq.export.model import run_model_options
    from hwq.export.policy_file import run_policy

    graph = run.layers
    names = list(graph.names)
    pairs = run_policy(run, policy_id).pairs(names)
    opts = run_model_options(run)
    model_type, n_blocks = model_arch(opts["model"], opts["model_args"])
    ops = list(graph.column("op"))
    if types is None:
        types = runtime_types(run.path / "profile.yaml")
    lines = tensor_types(names, ops, _row_lengths(graph), list(graph.column("weight_params")),
                         pairs, model_type, n_blocks, types)
    write_tensor_types(lines, out)
    counts = Counter(t.gguf_type.lower() for t in lines)
    total = sum(t.params for t in lines)
    bpw = sum(t.params * bits_per_weight(t.gguf_type) for t in lines) / max(total, 1)
    return {
        "policy_id": policy_id,
        "format": "llama-cpp",
        "file": str(out),
        "architecture": model_type,
        "tensors": len(lines),
        "types": ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())),
        "bits_per_weight": round(bpw, 4),
        "usage": f"llama-quantize --tensor-type-file {out} MODEL-F16.gguf OUT.gguf Q8_0",
    }


def runtime_types(profile_path: str | os.PathLike[str]) -> dict[int, str] | None:
    """The GGUF types the run's profile priced, when its runtime is llama.cpp (its Q4_0 at 4 bits,
    not `GGUF_TYPES`' Q4_K), so that the export deploys what the search costed; None otherwise."""
    if not Path(profile_path).is_file():
        return None
    from hwq.cost_models.weight_formats import storage
    from hwq.profile import load_profile

    runtime = storage(str(load_profile(str(profile_path)).get("runtime") or ""))
    if runtime is None or runtime.name != "llamacpp":
        return None
    return {int(b): f.name.upper() for b, f in runtime.formats.items()}


def _row_lengths(graph: Any) -> list[int]:
    """Values per GGUF tensor row (ne[0]): a linear's input features, an embedding's
    dimension, a conv's input channels x kernel."""
    out = []
    cols = zip(graph.column("op"), graph.column("in_channels"), graph.column("out_channels"),
               graph.column("kernel_h"), graph.column("kernel_w"), graph.column("groups"))
    for op, ic, oc, kh, kw, groups in cols:
        if op == "embedding":
            out.append(int(oc))
        elif op == "conv":
            out.append(int(ic) // max(int(groups), 1) * int(kh) * int(kw))
        else:
            out.append(int(ic))
    return out

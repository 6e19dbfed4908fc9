"""`hwq export RUN --policy ID --format hf-quant-config -o FILE`: a policy as the per-layer
quantization config Hugging Face transformers and vLLM read, in the compressed-tensors layout
(the `quantization_config` of a model's `config.json` that llm-compressor writes, vLLM's
`CompressedTensorsConfig` and transformers' `CompressedTensorsHfQuantizer` load).

The file is a `config.json` fragment, `{"quantization_config": {...}}` (merge it into the
model's config.json): `quant_method: compressed-tensors`, one `config_groups` entry per distinct
(w, a) pair among the quantized layers, whose `targets` are those layers' module names (exact
names: compressed-tensors and vLLM match a target equal to the module name, or a `re:` regex),
whose `weights` are the scheme the search measured: the stored format of the run's LLM runtime
where its profile names one (`weight_grids`: torchao's 4/3/2/6-bit formats in groups of 64 with
a zero point, `strategy: group`, `symmetric: false`), else hwq's fake-quant scheme (`num_bits`
w, int, symmetric, per output channel), and whose `input_activations` are null for weight-only
layers (a >= 16) or `num_bits` a, int, asymmetric, per tensor, static; the layers left in 16 (or
32) bits go to `ignore`. The default is the group holding the most parameters; `format` is
`pack-quantized` for weight-only groups, `int-quantized` for W/A ones (`mixed-precision` when
both occur). vLLM fuses q/k/v and gate/up into one layer and needs one scheme per fused layer:
search with `--tie same-input` for a config vLLM serves.

`read_hf_quant_config(FILE, names)` reloads a file (this fragment or a whole config.json) into
per-layer (w, a) pairs with compressed-tensors' matching rule: the first group a name matches,
16x16 for an ignored or unmatched name.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hwq.errors import UserError

log = logging.getLogger("hwq.export")

WEIGHT_OPS = ("conv", "linear", "embedding")
UNQUANTIZED = 16


def weight_grids(profile_path: str | os.PathLike[str]) -> dict[int, tuple[int, bool]]:
    """{w_bits: (group, zero point)} of the stored formats of the run's LLM runtime (as the
    perplexity objective quantizes them, `stored_grids`); {} where the
    profile names none (per output channel, symmetric)."""
    if not Path(profile_path).is_file():
        return {}
    from hwq.cost_models.weight_formats import stored_grids
    from hwq.profile import load_profile

    return stored_grids(load_profile(str(profile_path)).get("runtime"))


def _weight_scheme(w: int, grids: Mapping[int, tuple[int, bool]]) -> dict[str, Any]:
    group, zero_point = grids.get(w, (0, False))
    return {"num_bits": w, "type": "int", "symmetric": not zero_point,
            "strategy": "group" if group > 0 else "channel",
            "group_size": group if group > 0 else None, "dynamic": False, "observer": "minmax"}


def quantization_config(
    names: Sequence[str], ops: Sequence[str], params: Sequence[int],
    pairs: Sequence[tuple[int, int]], grids: Mapping[int, tuple[int, bool]] | None = None,
) -> dict[str, Any]:
    """The compressed-tensors `quantization_config` of per-layer `pairs` over the weight layers
    (`ops` conv/linear/embedding; a matmul row holds no weight and must be unquantized);
    `grids` (`weight_grids`) the stored format of each width, per output channel if absent."""
    groups: dict[tuple[int, int], list[str]] = {}
    weight_of: dict[tuple[int, int], int] = {}
    ignore: list[str] = []
    for name, op, n, (w, a) in zip(names, ops, params, pairs):
        w, a = int(w), int(a)
        if op not in WEIGHT_OPS:
            if w < UNQUANTIZED or a < UNQUANTIZED:
                raise UserError(f"hf-quant-config export: {name} is a product of two activations "
                                f"at W{w}A{a}; a quantization config quantizes modules only")
            continue
        if w >= UNQUANTIZED:
            if a < UNQUANTIZED:
                raise UserError(f"hf-quant-config export: layer {name}: W{w}A{a} (activations "
                                "quantized, weights not) has no compressed-tensors scheme")
            ignore.append(name)
            continue
        groups.setdefault((w, a), []).append(name)
        weight_of[(w, a)] = weight_of.get((w, a), 0) + int(n)
    order = sorted(groups, key=lambda k: (-weight_of[k], k))
    config_groups = {}
    formats = set()
    for i, (w, a) in enumerate(order):
        fmt = "pack-quantized" if a >= UNQUANTIZED else "int-quantized"
        formats.add(fmt)
        config_groups[f"group_{i}"] = {
            "targets": list(groups[(w, a)]),
            "weights": _weight_scheme(w, grids or {}),
            "input_activations": None if a >= UNQUANTIZED else {
                "num_bits": a, "type": "int", "symmetric": False, "strategy": "tensor",
                "dynamic": False, "observer": "minmax"},
            "output_activations": None,
            "format": fmt,
        }
    return {
        "quant_method": "compressed-tensors",
        "format": formats.pop() if len(formats) == 1 else "mixed-precision",
        "quantization_status": "frozen",
        "config_groups": config_groups,
        "ignore": ignore,
        "kv_cache_scheme": None,
    }


def _matches(name: str, target: str) -> bool:
    """compressed-tensors' `match_name`: a `re:` target matches by `re.match`, any other one
    by equality."""
    if target.startswith("re:"):
        return re.match(target[3:], name) is not None
    return target == name


def read_hf_quant_config(
    path: str | os.PathLike[str], names: Sequence[str]
) -> list[tuple[int, int]]:
    """Per-layer (w, a) of `names` from a compressed-tensors config file (a `{"quantization_
    config": ...}` fragment or a whole config.json): the first group whose targets match a
    name gives its bits (weights' num_bits, input activations' or 16); ignored or unmatched
    names are 16x16."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable JSON quantization config: {exc}") from None
    qc = data.get("quantization_config", data) if isinstance(data, Mapping) else None
    if not isinstance(qc, Mapping) or qc.get("quant_method") != "compressed-tensors":
        raise UserError(f"{path}: expected a compressed-tensors quantization_config")
    groups = qc.get("config_groups") or {}
    ignore = list(qc.get("ignore") or [])
    out = []
    for name in names:
        pair = (UNQUANTIZED, UNQUANTIZED)
        if not any(_matches(name, t) for t in ignore):
            for key, group in groups.items():
                if any(_matches(name, t) for t in group.get("targets") or []):
                    weights = group.get("weights") or {}
                    acts = group.get("input_activations") or {}
                    if "num_bits" not in weights:
                        raise UserError(f"{path}: config_groups.{key}.weights has no num_bits")
                    pair = (int(weights["num_bits"]), int(acts.get("num_bits", UNQUANTIZED)))
                    break
        out.append(pair)
    return out


def _warn_unfused(graph: Any, pairs: Sequence[tuple[int, int]]) -> None:
    """A warning naming layers that read one tensor (q/k/v, gate/up) at different bits: vLLM
    fuses them and needs one scheme per fused layer (`--tie same-input` avoids it)."""
    from hwq.graph import same_input_groups

    for group in same_input_groups(graph):
        if len(group) > 1 and len({tuple(pairs[i]) for i in group}) > 1:
            names = ", ".join(graph.names[i] for i in group)
            log.warning(
                "hf-quant-config: %s read one tensor at different bits; vLLM fuses them and "
                "needs one scheme (search with --tie same-input)", names)


def export_hf_quant_config(run: Any, policy_id: str,
                           out: str | os.PathLike[str]) -> dict[str, Any]:
    """Write policy `policy_id` of the run as a compressed-tensors config; returns a summary."""
    from hwq.atomic import write_atomic
    from hwq.export.policy_file import run_policy

    graph = run.layers
    names = list(graph.names)
    pairs = run_policy(run, policy_id).pairs(names)
    ops = list(graph.column("op"))
    qc = quantization_config(names, ops, list(graph.column("weight_params")), pairs,
                             weight_grids(Path(run.dir) / "profile.yaml"))
    text = json.dumps({"quantization_config": qc}, indent=2) + "\n"
    write_atomic(Path(out), lambda fh: fh.write(text.encode()))
    weight_names = [n for n, op in zip(names, ops) if op in WEIGHT_OPS]
    reread = read_hf_quant_config(out, weight_names)
    wanted = [(min(int(w), UNQUANTIZED), min(int(a), UNQUANTIZED))
              for (w, a), op in zip(pairs, ops) if op in WEIGHT_OPS]
    if wanted != reread:  # written as read: never expected
        raise RuntimeError(f"{out}: the written config does not reload to the policy's bits")
    _warn_unfused(graph, pairs)
    groups = qc["config_groups"]
    default = next(iter(groups.values()), None)
    return {
        "policy_id": policy_id,
        "format": "hf-quant-config",
        "file": str(out),
        "config_groups": len(groups),
        "default": (f"W{default['weights']['num_bits']}" if default else "none")
        + ("" if not default or default["input_activations"] is None
           else f"A{default['input_activations']['num_bits']}"),
        "ignored": len(qc["ignore"]),
    }

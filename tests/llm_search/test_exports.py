"""The LLM exports read back: llama.cpp --tensor-type lines through gguf's own name map and
types, and the compressed-tensors config through compressed-tensors' own loader and matcher."""

from __future__ import annotations

import json
import re
from functools import cache

import gguf
import pytest

from hwq.errors import UserError
from hwq.export.hf_quant_config import quantization_config, read_hf_quant_config
from hwq.export.llama_cpp import (
    _row_lengths,
    bits_per_weight,
    match_tensor_types,
    read_tensor_types,
    tensor_types,
    type_bits,
    write_tensor_types,
)
from hwq.model_source import load_graph
from hwq.models import load_model

BITS = {"q_proj": 4, "k_proj": 4, "v_proj": 4, "o_proj": 3, "gate_proj": 2, "up_proj": 2,
        "down_proj": 6, "embed_tokens": 8, "lm_head": 16}


@cache
def graph():
    return load_graph("tinylm")


def mixed_pairs(g, a: int = 16) -> list[tuple[int, int]]:
    """A policy of every width on tinylm: by projection kind, block 1's MLP at 5 bits, matmul
    rows 16x16."""
    pairs = []
    for name, op in zip(g.names, g.column("op")):
        if op == "matmul":
            pairs.append((16, 16))
            continue
        w = BITS[name.split(".")[-1]]
        if name.startswith("model.layers.1.mlp"):
            w = 5
        pairs.append((w, a if w < 16 else 16))
    return pairs


def uniform(g, w: int) -> list[tuple[int, int]]:
    return [(16, 16) if op == "matmul" else (w, 16) for op in g.column("op")]


def arch_tensor_names(n_blocks: int) -> set[str]:
    """Every weight tensor name of the GGUF llama architecture, from gguf's own tables."""
    out = set()
    for t in gguf.MODEL_TENSORS[gguf.MODEL_ARCH.LLAMA]:
        fmt = gguf.TENSOR_NAMES[t]
        names = [fmt.format(bid=b) for b in range(n_blocks)] if "{bid}" in fmt else [fmt]
        out.update(n + ".weight" for n in names)
    return out


def test_llama_cpp_lines_round_trip(tmp_path):
    g = graph()
    pairs = mixed_pairs(g)
    lines = tensor_types(g.names, list(g.column("op")), _row_lengths(g),
                         list(g.column("weight_params")), pairs, "llama", 2)
    path = tmp_path / "tinylm.tensor-types"
    write_tensor_types(lines, path)
    text = path.read_text()
    assert text.splitlines()[1] == r"^blk\.0\.attn_q\.weight$=q4_k"
    assert r"^token_embd\.weight$=q8_0" in text and r"^output\.weight$=f16" in text
    items = read_tensor_types(path)
    weight_rows = [(n, p) for n, op, p in zip(g.names, g.column("op"), pairs) if op != "matmul"]
    assert len(items) == len(weight_rows) == 16  # one line per weight layer, none for matmuls
    known = arch_tensor_names(2)
    for pattern, _kind in items:  # every pattern names one tensor of the GGUF llama arch
        assert sum(bool(re.search(pattern, t)) for t in known) == 1, pattern
    # tensors by gguf's name map: each matched by exactly one line of the layer's bits
    name_map = gguf.TensorNameMap(gguf.MODEL_ARCH.LLAMA, 2)
    tensors = {name_map.get_name(n) + ".weight": p[0] for n, p in weight_rows}
    matched = match_tensor_types(items, list(tensors) + ["output_norm.weight",
                                                         "blk.0.attn_norm.weight"])
    for tensor, bits in tensors.items():
        assert len(matched[tensor]) == 1, tensor
        assert type_bits(matched[tensor][0]) == bits, tensor
    assert matched["output_norm.weight"] == [] and matched["blk.0.attn_norm.weight"] == []
    kinds = {t.module.split(".")[-1]: t.gguf_type for t in lines}
    assert kinds == {"embed_tokens": "Q8_0", "q_proj": "Q4_K", "k_proj": "Q4_K", "v_proj": "Q4_K",
                     "o_proj": "Q3_K", "gate_proj": "Q5_K", "up_proj": "Q5_K",
                     "down_proj": "Q5_K", "lm_head": "F16"}  # last block's MLP at 5 bits
    assert bits_per_weight("Q4_K") == 4.5 and bits_per_weight("Q8_0") == 8.5


def test_llama_cpp_refuses_quantized_activations_and_rows_no_type_fits():
    g = graph()
    ops, rows, params = list(g.column("op")), _row_lengths(g), list(g.column("weight_params"))
    with pytest.raises(UserError, match="a_bits=8; GGUF types store weights only"):
        tensor_types(g.names, ops, rows, params, mixed_pairs(g, a=8), "llama", 2)
    with pytest.raises(UserError, match="no GGUF type for 7-bit weights"):
        tensor_types(g.names, ops, rows, params, uniform(g, 7), "llama", 2)
    # rows of 96 values: no 256-value k-quant block fits; 4 bits fall back to q4_0, 3 bits fail
    short = [96] * len(g)
    four = tensor_types(g.names, ops, short, params, uniform(g, 4), "llama", 2)
    assert {t.gguf_type for t in four} == {"Q4_0"}
    with pytest.raises(UserError, match="rows of 96 values are not whole 256-value blocks"):
        tensor_types(g.names, ops, short, params, uniform(g, 3), "llama", 2)
    with pytest.raises(UserError, match="no architecture"):
        tensor_types(g.names, ops, rows, params, uniform(g, 4), "no-such-arch", 2)


@pytest.mark.parametrize("a", [16, 8])
def test_hf_quant_config_round_trips_through_compressed_tensors(tmp_path, a):
    from compressed_tensors.quantization import QuantizationConfig
    from compressed_tensors.utils import is_match

    g = graph()
    pairs = mixed_pairs(g, a)
    qc = quantization_config(g.names, list(g.column("op")), list(g.column("weight_params")),
                             pairs)
    path = tmp_path / "quant.json"
    path.write_text(json.dumps({"quantization_config": qc}))
    weights = [(n, p) for n, op, p in zip(g.names, g.column("op"), pairs) if op != "matmul"]
    assert read_hf_quant_config(path, [n for n, _ in weights]) == [p for _, p in weights]
    assert qc["ignore"] == ["lm_head"]
    assert qc["format"] == ("pack-quantized" if a == 16 else "int-quantized")
    # compressed-tensors' own schema and matcher give every module the same bits
    parsed = QuantizationConfig.model_validate(qc)
    modules = dict(load_model("tinylm").named_modules())
    for name, (w, act) in weights:
        hits = [s for s in parsed.config_groups.values()
                if is_match(name, modules[name], s.targets, parsed.ignore)]
        if w >= 16:
            assert hits == [], name
            continue
        assert len(hits) == 1, name
        assert hits[0].weights.num_bits == w
        if act >= 16:
            assert hits[0].input_activations is None
        else:
            assert hits[0].input_activations.num_bits == act


def test_hf_quant_config_reader_refuses_other_configs(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"quantization_config": {"quant_method": "gptq", "bits": 4}}))
    with pytest.raises(UserError, match="expected a compressed-tensors quantization_config"):
        read_hf_quant_config(path, ["lm_head"])
    with pytest.raises(UserError, match="product of two activations"):
        quantization_config(["a.matmul0"], ["matmul"], [0], [(8, 16)])


def test_hf_quant_config_warns_when_fused_layers_differ(caplog):
    from hwq.export.hf_quant_config import _warn_unfused

    g = graph()
    pairs = mixed_pairs(g)
    _warn_unfused(g, pairs)  # q/k/v at 4 bits, gate/up at 2 (5): fused layers agree
    assert not caplog.records
    pairs[g.names.index("model.layers.1.self_attn.k_proj")] = (8, 16)
    _warn_unfused(g, pairs)
    [record] = caplog.records
    assert "model.layers.1.self_attn.q_proj, model.layers.1.self_attn.k_proj" in record.message


def test_llama_cpp_types_follow_the_llamacpp_profile_the_search_priced():
    from hwq.export.llama_cpp import runtime_types
    from hwq.profile import load_profile

    rtx = load_profile("rtx4090-llamacpp")
    types = runtime_types(rtx.path)
    assert types is not None and types[4] == "Q4_0" and types[8] == "Q8_0"
    assert runtime_types(load_profile("a100-torchao").path) is None  # GGUF_TYPES then
    g = graph()
    ops, rows, params = list(g.column("op")), _row_lengths(g), list(g.column("weight_params"))
    four = tensor_types(g.names, ops, rows, params, uniform(g, 4), "llama", 2, types)
    assert {t.gguf_type for t in four} == {"Q4_0"}  # what rtx4090-llamacpp prices at 4x16
    default = tensor_types(g.names, ops, rows, params, uniform(g, 4), "llama", 2)
    assert {t.gguf_type for t in default} == {"Q4_K"}


def test_hf_quant_config_writes_the_runtime_format_the_search_measured(tmp_path):
    """On a torchao profile the config's weight schemes are torchao's stored formats (what the
    perplexity objective quantized): 4/3/2/6 bits in groups of 64 with a zero point, int8 per
    channel symmetric; compressed-tensors' schema accepts them; without a runtime, per channel."""
    from compressed_tensors.quantization import QuantizationConfig

    from hwq.export.hf_quant_config import weight_grids
    from hwq.profile import load_profile

    grids = weight_grids(load_profile("a100-torchao").path)
    assert weight_grids(tmp_path / "no-profile.yaml") == {}
    assert grids[4] == (64, True) and grids[8] == (0, False)
    g = graph()
    pairs = [(4, 16) if i % 2 else (8, 16) for i in range(len(g))]
    pairs = [(16, 16) if op == "matmul" else p for op, p in zip(g.column("op"), pairs)]
    qc = quantization_config(g.names, list(g.column("op")), list(g.column("weight_params")),
                             pairs, grids)
    schemes = {s["weights"]["num_bits"]: s["weights"] for s in qc["config_groups"].values()}
    assert schemes[4]["strategy"] == "group" and schemes[4]["group_size"] == 64
    assert schemes[4]["symmetric"] is False
    assert schemes[8]["strategy"] == "channel" and schemes[8]["symmetric"] is True
    QuantizationConfig.model_validate(qc)
    plain = quantization_config(g.names, list(g.column("op")), list(g.column("weight_params")),
                                pairs)
    assert {s["weights"]["strategy"] for s in plain["config_groups"].values()} == {"channel"}

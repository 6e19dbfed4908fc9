"""Weight-only formats and W8A8 on the LLM-runtime profiles (issue 19): the profile's pairs are
the one allowed-bits rule, weight bytes include each runtime's group scales (hand counts), a
conv at a quantized pair is refused naming the runtime, profiles without formats keep plain
weight bytes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hwq
from hwq.allowed_bits import check_layers, check_pairs
from hwq.errors import CostModelError, UserError
from hwq.graph import LayerGraph
from hwq.profile import validate_file

K, N_OUT, VOCAB, DIM = 4096, 11008, 32000, 4096


def graph() -> LayerGraph:
    """An embedding, one linear (K -> N_OUT) and one attention matmul (no weights), batch 1."""
    rows = [
        {"name": "emb", "op": "embedding", "batch": 1, "in_channels": VOCAB,
         "out_channels": DIM, "in_h": 1, "out_h": 1},
        {"name": "fc", "op": "linear", "batch": 1, "in_channels": K, "out_channels": N_OUT,
         "in_h": 1, "out_h": 1},
        {"name": "attn", "op": "matmul", "batch": 1, "in_channels": 128, "out_channels": 64,
         "in_h": 1, "out_h": 1, "groups": 8},
    ]
    return LayerGraph.from_frame(pd.DataFrame(rows))


@pytest.mark.parametrize("device, pair, bpw", [
    # torchao: int4 groups of 64 with a bf16 scale and a bf16 zero point; int8 per channel
    ("a100-torchao", (4, 16), 4 + 32 / 64),
    ("a100-torchao", (8, 16), 8 + 16 / K),
    ("a100-torchao", (8, 8), 8 + 16 / K),
    ("a100-torchao", (16, 16), 16.0),
    ("a100-torchao", (3, 16), 3 + 32 / 64),  # uintx weight-only, groups of 64
    # llama.cpp GGUF: Q4_0 and Q8_0 blocks of 32 with an fp16 scale; K-quants per 256
    ("rtx4090-llamacpp", (4, 16), 4.5),
    ("rtx4090-llamacpp", (8, 16), 8.5),
    ("rtx4090-llamacpp", (6, 16), (256 * 6 + 128 + 16) / 256),
    ("rtx4090-llamacpp", (3, 16), (256 * 3 + 96 + 16) / 256),
    ("rtx4090-llamacpp", (2, 16), (256 * 2 + 128 + 16 + 16) / 256),
    ("rtx4090-llamacpp", (16, 16), 16.0),
])
def test_weight_bytes_include_group_scales(device: str, pair: tuple[int, int],
                                           bpw: float) -> None:
    t = hwq.cost_table(graph(), hwq.load_profile(device), [pair])
    df = t.to_pandas().set_index("layer")
    assert df.loc["fc", "bits_per_weight"] == pytest.approx(bpw, rel=1e-12)
    assert df.loc["fc", "weight_bytes"] == pytest.approx(K * N_OUT * bpw / 8, rel=1e-12)
    # an embedding stores its table at the format too (a per-channel scale per token's row)
    emb = 8 + 16 / DIM if device == "a100-torchao" and pair[0] == 8 else bpw
    assert df.loc["emb", "weight_bytes"] == pytest.approx(VOCAB * DIM * emb / 8, rel=1e-12)
    assert df.loc["attn", "weight_bytes"] == 0.0 and np.isnan(df.loc["attn", "bits_per_weight"])
    totals = hwq.evaluate(t, [hwq.Policy(default=pair)]).iloc[0]
    assert totals["weight_bytes"] == pytest.approx((K * N_OUT * bpw + VOCAB * DIM * emb) / 8)


def test_profiles_without_formats_keep_plain_weight_bytes() -> None:
    t = hwq.cost_table(graph(), hwq.load_profile("a100-tensorrt"), [(4, 8)])
    df = t.to_pandas().set_index("layer")
    assert "bits_per_weight" not in df.columns
    assert df.loc["fc", "weight_bytes"] == K * N_OUT * 4 / 8


def test_pairs_are_the_allowed_formats() -> None:
    p = hwq.load_profile("a100-torchao")
    assert p.default_pairs() == [(16, 16), (8, 16), (4, 16), (3, 16), (2, 16)]
    check_pairs(p, [(16, 16), (8, 16), (4, 16), (8, 8), (32, 32)])
    with pytest.raises(UserError, match="4x8 is not a format of device a100-torchao.*"
                                        "16x16, 8x16, 6x16, 4x16, 3x16, 2x16, 8x8"):
        check_pairs(p, [(4, 8)])
    with pytest.raises(UserError, match="layer fc: 5x16 is not a format"):
        check_layers(p, ["emb", "fc"], np.array([[16, 16], [5, 16]]))
    with pytest.raises(UserError, match="4x8 is not a format"):
        hwq.cost_table(graph(), p, [(4, 8)])
    with pytest.raises(UserError, match="layer fc: 4x8 is not a format"):
        hwq.evaluate(hwq.cost_table(graph(), p, [(16, 16)]),
                     np.array([[[16, 16], [4, 8], [16, 16]]]))


def test_a_quantized_conv_is_refused_naming_the_runtime() -> None:
    conv = LayerGraph.from_frame(pd.DataFrame([{
        "name": "stem", "op": "conv", "batch": 1, "in_channels": 3, "out_channels": 16,
        "in_h": 32, "in_w": 32, "out_h": 32, "out_w": 32, "kernel_h": 3, "kernel_w": 3,
        "pad_h": 1, "pad_w": 1}]))
    for device, runtime in (("a100-torchao", "torchao"), ("rtx4090-llamacpp", "llamacpp")):
        p = hwq.load_profile(device)
        with pytest.raises(CostModelError, match=f"layer stem: a conv at 4x16: runtime "
                                                 f"{runtime}"):
            hwq.cost_table(conv, p, [(16, 16), (4, 16)])
        assert hwq.cost_table(conv, p, [(16, 16)]).values["latency_s"][0, 0] > 0


def _write(tmp_path, body: str):
    f = tmp_path / "p.yaml"
    f.write_text(body)
    return validate_file(f)


BASE = """schema_version: 1
name: t
kind: gpu
runtime: {runtime}
clock_hz: 1000000000
bits: {bits}
sm_count: 10
tensor_core: {{fp16_ops_per_s: 1.0e+14, int8_ops_per_s: 2.0e+14, int4_ops_per_s: 4.0e+14}}
gemm_tile: {{m: 64, n: 64, k: 32}}
memory: {{dram_bytes_per_s: 1.0e+12, l2_bytes: 1000000, dram_pj_per_bit: 5.0}}
launch_overhead_s: 1.0e-6
efficiency: {{compute: 0.5, memory: 0.7, overlap: 1.0}}
power: {{idle_w: 10.0, max_w: 100.0}}
"""


def test_llm_runtime_profile_rules(tmp_path) -> None:
    pairs = '{pairs: ["16x16", "5x16"], search_default_pairs: ["16x16", "4x8"]}'
    problems = "\n".join(_write(tmp_path, BASE.format(runtime="torchao", bits=pairs)))
    assert "p.yaml:4: formats: expected the efficiencies of every format of runtime torchao" \
        in problems
    assert ("bits.pairs[1]: expected weight widths runtime torchao stores (2, 3, 4, 6, 8, 16), "
            "found 5x16") in problems
    assert "bits.search_default_pairs[1]: expected a pair listed in bits.pairs, found 4x8" \
        in problems
    formats = 'formats:\n  "4x16": {memory: 0.4, compute: 0.5}\n'
    ok_bits = '{pairs: ["16x16", "4x16"], search_default_pairs: ["4x16"]}'
    problems = "\n".join(_write(tmp_path, BASE.format(runtime="torchao", bits=ok_bits)
                                + formats))
    assert "formats.16x16: expected a value" in problems
    assert "formats.16x16: expected the efficiencies of format 16x16" in problems
    widths = "{weights: [4, 8], activations: [4, 8], search_default: [4, 8]}"
    problems = "\n".join(_write(tmp_path, BASE.format(runtime="tensorrt", bits=widths)
                                + formats))
    assert "formats: expected a runtime with weight formats (torchao, llamacpp), found " \
        "runtime tensorrt" in problems
    good = formats + '  "16x16": {memory: 0.7, compute: 0.5}\n'
    assert _write(tmp_path, BASE.format(runtime="torchao", bits=ok_bits) + good) == []

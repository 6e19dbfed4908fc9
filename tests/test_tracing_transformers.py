"""matmul and embedding rows of transformer pieces (tests/transformer_models.py): every row's MACs
and the totals against hand formulas, under torch.fx and the hooks fallback, and coverage 1.0."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hwq
from hwq.graph import same_input_groups
from hwq.tracing import trace_fx, trace_hooks
from hwq.tracing_rows import einsum_dims, matmul_row
from tests.test_tracing_patterns import TRACERS, HandAttention, attention, products, rows
from tests.transformer_models import (
    GPT2Attention,
    LlamaBlock,
    PositionalLM,
    Products,
    SharedAttention,
    WithEmbeddingBag,
)


def complete(graph) -> bool:
    """The graph accounts for every MAC the aten-level count sees."""
    cov = graph.coverage
    return cov["reference_macs"] == cov["graph_macs"] == graph.totals()["macs"] and \
        cov["fraction"] == 1.0 and cov["unsupported_macs"] == 0


@pytest.mark.parametrize("kind", ["matmul", "baddbmm"])
@pytest.mark.parametrize("b", [1, 2])
def test_gpt2_attention_on_conv1d_projections(kind, b):
    d, h, t = 8, 2, 5
    model, x = GPT2Attention(d, h, kind=kind).eval(), torch.zeros(b, t, d)
    with pytest.raises(Exception):  # noqa: B017 - slicing a buffer by a traced length
        trace_fx(model, x)
    g = trace_hooks(model, x)
    attn_rows, attn_products = attention("", b, h, t, t, d // h, "c_attn", "c_attn", "c_attn")
    assert rows(g) == {
        "c_attn": ("linear", b, t, b * t * d * 3 * d),  # addmm on [B*T, C]: T tokens per sample
        **attn_rows,  # the full products under the causal mask
        "c_proj": ("linear", b, t, b * t * d * d),
    }
    assert products(g) == attn_products
    assert g.totals() == {"layers": 4, "macs": b * t * (4 * d * d + 2 * t * d),
                          "weight_params": 4 * d * d}
    full = hwq.trace(model, x)
    assert full.specialised and complete(full)


@pytest.mark.parametrize("how", ["enable_gqa", "repeat", "broadcast"])
@pytest.mark.parametrize("mode", TRACERS)
@pytest.mark.parametrize("b", [1, 2])
def test_grouped_query_attention_block(how, mode, b):
    e, ff, t, hq, hkv = 16, 24, 6, 4, 2
    d = e // hq
    g = TRACERS[mode](LlamaBlock(e, ff, how).eval(), torch.zeros(b, t, e))
    attn_rows, attn_products = attention("attn.", b, hq, t, t, d, "attn.q_proj", "attn.k_proj",
                                         "attn.v_proj")  # groups = the query heads
    assert rows(g) == {
        "attn.q_proj": ("linear", b, t, b * t * e * hq * d),
        "attn.k_proj": ("linear", b, t, b * t * e * hkv * d),
        "attn.v_proj": ("linear", b, t, b * t * e * hkv * d),
        **attn_rows,
        "attn.o_proj": ("linear", b, t, b * t * hq * d * e),
        "mlp.gate_proj": ("linear", b, t, b * t * e * ff),
        "mlp.up_proj": ("linear", b, t, b * t * e * ff),
        "mlp.down_proj": ("linear", b, t, b * t * ff * e),
    }
    assert products(g) == attn_products
    assert g.inputs[g.index_of("mlp.down_proj")] == ("mlp.gate_proj", "mlp.up_proj")
    assert complete(hwq.trace(LlamaBlock(e, ff, how).eval(), torch.zeros(b, t, e)))


@pytest.mark.parametrize("mode", TRACERS)
@pytest.mark.parametrize("b", [1, 2])
def test_position_embedding_and_tied_head(mode, b):
    vocab, d, ctx, t = 13, 8, 10, 7
    g = TRACERS[mode](PositionalLM(vocab, d, ctx).eval(), torch.randint(0, vocab, (b, t)))
    assert rows(g) == {
        "wte": ("embedding", b, t, 0),
        "wpe": ("embedding", b, t, 0),  # arange positions: t lookups per sample
        "block": ("linear", b, t, b * t * d * d),
        "lm_head": ("linear", b, t, b * t * d * vocab),
    }
    df = g.to_frame().set_index("name")
    assert list(df["weight_params"]) == [vocab * d, ctx * d, d * d, 0]  # lm_head tied to wte
    assert df.loc["wte", "reads_input"] and not df.loc["wpe", "reads_input"]
    assert list(df["in_elems"]) == [b * t, b * t, b * t * d, b * t * d]
    assert g.edges == [("wte", "block"), ("wpe", "block"), ("block", "lm_head")]
    # two lookups of different tensors are not tied (one reads the model input)
    assert [0] in same_input_groups(g) and [1] in same_input_groups(g)
    full = hwq.trace(PositionalLM(vocab, d, ctx).eval(), torch.randint(0, vocab, (b, t)))
    assert complete(full)
    assert full.with_batch(4).totals()["macs"] == 4 * full.totals()["macs"] // b


class FlatIds(nn.Module):
    """Ids flattened before the lookup ([B*T]), and one id per sample ([B], a class label)."""

    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Embedding(9, 4)
        self.cls = nn.Embedding(3, 4)

    def forward(self, ids, label):
        b, t = ids.shape
        return self.tok(ids.reshape(-1)).view(b, t, 4) + self.cls(label)[:, None]


@pytest.mark.parametrize("mode", TRACERS)
def test_embedding_tokens_per_sample(mode):
    ids, label = torch.randint(0, 9, (2, 5)), torch.tensor([0, 2])
    g = TRACERS[mode](FlatIds().eval(), (ids, label))
    df = g.to_frame().set_index("name")
    assert list(df["op"]) == ["embedding", "embedding"]
    assert list(df["batch"]) == [2, 2] and list(df["out_h"]) == [5, 1]
    assert list(df["weight_params"]) == [9 * 4, 3 * 4]
    assert list(df["out_elems"]) == [2 * 5 * 4, 2 * 1 * 4]


@pytest.mark.parametrize("mode", TRACERS)
def test_a_shared_module_counts_its_weights_once(mode):
    e, t, b = 8, 5, 2
    g = TRACERS[mode](SharedAttention(e).eval(), torch.zeros(b, t, e))
    # i counts the module's products over the forward pass; its weights get @1 on reuse
    assert g.names == ["attn.in_proj", "attn.matmul0", "attn.matmul1", "attn.out_proj",
                       "attn.in_proj@1", "attn.matmul2", "attn.matmul3", "attn.out_proj@1"]
    df = g.to_frame().set_index("name")
    assert list(df["weight_params"]) == [3 * e * e, 0, 0, e * e, 0, 0, 0, 0]
    assert g.totals()["macs"] == 2 * b * t * (4 * e * e + 2 * t * e)
    assert products(g)["attn.matmul2"] == (2, t, e // 2, t, ("attn.in_proj@1",),
                                           ("attn.in_proj@1",))


@pytest.mark.parametrize("mode", TRACERS)
@pytest.mark.parametrize("b", [1, 2])
def test_products_of_the_root_forward(mode, b):
    c, t = 6, 5
    g = TRACERS[mode](Products(c).eval(), torch.zeros(b, t, c))
    assert products(g) == {
        "matmul0": (1, t, c, t, ("a",), ("b",)),  # einsum "...qc,...kc->...qk"
        "matmul1": (1, t, t, c, ("matmul0",), ("b",)),  # bmm
        "matmul2": (1, t, c, t, ("matmul1",), ("a",)),  # F.linear(y, a[0]): y @ a[0]ᵀ
        "matmul3": (1, t, t, c, ("matmul2",), ("b",)),  # mm on [B*T, T]: T rows per sample
    }
    assert {n: r[1] for n, r in rows(g).items()} == {n: b for n in g.names}
    assert g.totals()["macs"] == b * t * (2 * c * c + 4 * c * t)
    assert complete(hwq.trace(Products(c).eval(), torch.zeros(b, t, c)))


class BiasKV(nn.Module):
    def __init__(self, e: int = 8) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(e, 2, add_bias_kv=True, add_zero_attn=True)

    def forward(self, x):  # [B, T, C] in, the module's [T, B, C] inside, weights returned
        x = x.transpose(0, 1)
        return self.attn(x, x, x)[0].transpose(0, 1)


@pytest.mark.parametrize("mode", TRACERS)
@pytest.mark.parametrize("b", [1, 2])
def test_mha_bias_kv_and_zero_attn_lengthen_the_source(mode, b):
    e, t = 8, 5
    g = TRACERS[mode](BiasKV(e).eval(), torch.zeros(b, t, e))
    s = t + 2  # add_bias_kv and add_zero_attn each append one source position
    assert products(g) == attention("attn.", b, 2, t, s, e // 2, "attn.in_proj", "attn.in_proj",
                                    "attn.in_proj")[1]
    assert rows(g)["attn.in_proj"] == ("linear", b, t, b * t * e * 3 * e)
    assert complete(hwq.trace(BiasKV(e).eval(), torch.zeros(b, t, e)))


def test_embedding_bag_is_listed_unsupported():
    g = hwq.trace(WithEmbeddingBag().eval(), torch.randint(0, 20, (2, 4)))
    assert [(u.name, u.type) for u in g.unsupported] == [("bag", "EmbeddingBag")]
    assert g.names == ["fc"]
    df = g.to_frame().set_index("name")
    assert not df.loc["fc", "reads_input"]  # it reads the bag's output, not the ids


@pytest.mark.parametrize("model, x", [
    (LlamaBlock().eval(), torch.zeros(2, 6, 16)),
    (PositionalLM().eval(), torch.randint(0, 13, (2, 7))),
    (Products().eval(), torch.zeros(2, 5, 6)),
    (SharedAttention().eval(), torch.zeros(2, 5, 8)),
    (HandAttention(8, 2, "einsum").eval(), torch.zeros(2, 5, 8)),
])
def test_fx_and_hooks_give_one_graph(model, x):
    fx, hooks = trace_fx(model, x), trace_hooks(model, x)
    assert fx.graph_hash == hooks.graph_hash
    assert fx.inputs == hooks.inputs and fx.second_inputs == hooks.second_inputs


# -- ties (--tie same-input) --------------------------------------------------------------------
def test_same_input_ties_projections_not_their_products():
    g = trace_fx(LlamaBlock().eval(), torch.zeros(2, 6, 16))
    tied = sorted(sorted(g.names[i] for i in grp) for grp in same_input_groups(g))
    assert tied == [["attn.k_proj", "attn.q_proj", "attn.v_proj"], ["attn.matmul0"],
                    ["attn.matmul1"], ["attn.o_proj"], ["mlp.down_proj"],
                    ["mlp.gate_proj", "mlp.up_proj"]]


def test_a_fused_qkv_is_one_layer_and_its_products_stay_apart():
    g = trace_fx(HandAttention(8, 2, "matmul").eval(), torch.zeros(2, 5, 8))
    assert same_input_groups(g) == [[0], [1], [2], [3]]


# -- row formulas -------------------------------------------------------------------------------
def test_einsum_dims_read_each_letter():
    assert einsum_dims("bhqd,bhkd->bhqk", (2, 3, 5, 4), (2, 3, 7, 4)) == (6, 5, 4, 7)
    assert einsum_dims("bhqk,bhkd->bhqd", (2, 3, 5, 7), (2, 3, 7, 4)) == (6, 5, 7, 4)
    assert einsum_dims("...ij,...jk", (2, 3, 5, 4), (3, 4, 6)) == (6, 5, 4, 6)  # implicit out
    assert einsum_dims("ij,jk->k", (5, 4), (4, 6)) == (1, 1, 4, 6)  # i summed before the product
    assert einsum_dims("ij,jk,kl->il", (5, 4), (4, 6)) is None
    assert einsum_dims("ijk,jk->i", (5, 4), (4, 6)) is None  # a rank that does not match


def test_matmul_row_splits_leading_dims_into_samples_and_groups():
    row = matmul_row(lead=2 * 3, m=5, k=4, n=7, samples=2)
    assert (row["batch"], row["groups"], row["out_h"]) == (2, 3, 5)
    row = matmul_row(lead=1, m=2 * 5, k=4, n=7, samples=2)  # [B*T, K] x [K, N]
    assert (row["batch"], row["groups"], row["out_h"]) == (2, 1, 5)
    row = matmul_row(lead=3, m=5, k=4, n=7, samples=2)  # no sample dimension to find
    assert (row["batch"], row["groups"], row["out_h"]) == (1, 3, 5)

"""Layers found by what they compute: every row's MACs against hand formulas, under torch.fx and
under the hooks fallback, for the patterns real model libraries use."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hwq
from hwq.tracing import trace_fx, trace_hooks
from tests.transformer_models import Conv1D

TRACERS = {"fx": trace_fx, "hooks": trace_hooks}


def rows(graph) -> dict[str, tuple]:
    df = graph.to_frame().set_index("name")
    return {n: (r["op"], int(r["batch"]), int(r["out_h"]), int(r["macs"]))
            for n, r in df.iterrows()}


def products(graph) -> dict[str, tuple]:
    """matmul rows: (groups, M, K, N, first operand's producers, second operand's)."""
    df = graph.to_frame().set_index("name")
    return {n: (int(r["groups"]), int(r["out_h"]), int(r["in_channels"]),
                int(r["out_channels"]), tuple(r["inputs"]), tuple(r["second_inputs"]))
            for n, r in df.iterrows() if r["op"] == "matmul"}


def attention(prefix: str, b: int, h: int, tq: int, tk: int, d: int, q: str, k: str,
              v: str) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """The rows and products of one attention: scores [tq, d] x [d, tk], context [tq, tk] x
    [tk, d], h heads per sample, the full products even under a causal mask."""
    s, c = f"{prefix}matmul0", f"{prefix}matmul1"
    return ({s: ("matmul", b, tq, b * h * tq * d * tk), c: ("matmul", b, tq, b * h * tq * tk * d)},
            {s: (h, tq, d, tk, (q,), (k,)), c: (h, tq, tk, d, (s,), (v,))})


class WSConv2d(nn.Conv2d):
    """A weight-standardised conv (BiT / NF-ResNet style): its own forward, weight from params."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        w = (w - mean) / torch.sqrt(var + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class WSNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = WSConv2d(3, 8, 3, padding=1)
        self.body = WSConv2d(8, 16, 3, stride=2, padding=1, groups=2)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = self.body(torch.relu(self.stem(x)))
        return self.fc(x.mean(dim=(2, 3)))


@pytest.mark.parametrize("mode", TRACERS)
def test_weight_standardised_conv_subclass(mode):
    g = TRACERS[mode](WSNet().eval(), torch.zeros(2, 3, 8, 8))
    assert rows(g) == {
        "stem": ("conv", 2, 8, 2 * 8 * 8 * 8 * 3 * 9),
        "body": ("conv", 2, 4, 2 * 4 * 4 * 16 * (8 // 2) * 9),
        "fc": ("linear", 2, 1, 2 * 16 * 5),
    }
    assert g.edges == [("stem", "body"), ("body", "fc")]
    df = g.to_frame().set_index("name")
    assert df.loc["body", "groups"] == 2 and df.loc["body", "stride_h"] == 2
    assert df.loc["stem", "weight_params"] == 8 * 3 * 9


class Functional(nn.Module):
    """F.conv2d, F.linear, x @ W and torch.addmm on the module's own parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_w = nn.Parameter(torch.randn(6, 3, 3, 3))
        self.proj = nn.Module()
        self.proj.weight = nn.Parameter(torch.randn(10, 6))  # F.linear: [N, K]
        self.mat = nn.Parameter(torch.randn(10, 4))  # x @ W: [K, N]
        self.head = nn.Module()
        self.head.w = nn.Parameter(torch.randn(4, 7))
        self.head.b = nn.Parameter(torch.zeros(7))

    def forward(self, x):
        x = F.conv2d(x, self.conv_w, padding=1)  # [B, 6, H, W]
        x = x.flatten(2).transpose(1, 2)  # [B, H*W, 6]
        x = F.linear(x, self.proj.weight)
        x = x @ self.mat
        x = torch.addmm(self.head.b, x.reshape(-1, 4), self.head.w)  # GPT-2 Conv1D style
        return x


@pytest.mark.parametrize("mode", TRACERS)
@pytest.mark.parametrize("batch", [1, 2])
def test_functional_calls_on_parameters(mode, batch):
    g = TRACERS[mode](Functional().eval(), torch.zeros(batch, 3, 4, 5))
    t = 4 * 5
    assert rows(g) == {
        "conv_w": ("conv", batch, 4, batch * 4 * 5 * 6 * 3 * 9),
        "proj": ("linear", batch, t, batch * t * 6 * 10),
        "mat": ("linear", batch, t, batch * t * 10 * 4),
        "head": ("linear", batch, t, batch * t * 4 * 7),
    }
    assert g.edges == [("conv_w", "proj"), ("proj", "mat"), ("mat", "head")]
    assert g.to_frame().set_index("name").loc["mat", "weight_params"] == 40


class GPT2Block(nn.Module):
    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.c_attn = Conv1D(3 * d, d)
        self.c_proj = Conv1D(d, 3 * d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        return self.mlp(self.c_proj(self.c_attn(x)) + x)


@pytest.mark.parametrize("mode", TRACERS)
@pytest.mark.parametrize("batch", [1, 2])
def test_gpt2_conv1d_token_model(mode, batch):
    d, t = 8, 5
    g = TRACERS[mode](GPT2Block(d).eval(), torch.zeros(batch, t, d))
    assert rows(g) == {
        "c_attn": ("linear", batch, t, batch * t * d * 3 * d),
        "c_proj": ("linear", batch, t, batch * t * 3 * d * d),
        "mlp.0": ("linear", batch, t, batch * t * d * 4 * d),
        "mlp.2": ("linear", batch, t, batch * t * 4 * d * d),
    }
    df = g.to_frame().set_index("name")
    assert df.loc["c_attn", "in_channels"] == d and df.loc["c_attn", "out_channels"] == 3 * d
    assert df.loc["c_attn", "in_h"] == t and df.loc["c_attn", "in_w"] == 1
    assert df.loc["c_attn", "in_elems"] == batch * t * d
    assert g.edges == [("c_attn", "c_proj"), ("c_proj", "mlp.0"), ("mlp.0", "mlp.2")]


def test_token_model_batch_means_samples():
    g1 = hwq.trace(GPT2Block().eval(), torch.zeros(1, 5, 8))
    g2 = hwq.trace(GPT2Block().eval(), torch.zeros(2, 5, 8))
    assert set(g1.column("batch")) == {1} and set(g2.column("batch")) == {2}
    g4 = g1.with_batch(4)
    assert list(g4.column("macs")) == [4 * m for m in g1.column("macs")]
    assert list(g4.column("out_h")) == list(g1.column("out_h")) == [5, 5, 5, 5]
    assert g4.coverage["reference_macs"] == 4 * g1.coverage["reference_macs"]
    assert list(g2.column("macs")) == [2 * m for m in g1.column("macs")]


class LoRALinear(nn.Module):
    """A wrapper around a stock linear adding a low-rank x @ A^T @ B^T path."""

    def __init__(self, k: int, n: int, r: int) -> None:
        super().__init__()
        self.base = nn.Linear(k, n)
        self.lora_a = nn.Parameter(torch.randn(r, k))
        self.lora_b = nn.Parameter(torch.zeros(n, r))

    def forward(self, x):
        return self.base(x) + (x @ self.lora_a.t()) @ self.lora_b.t()


@pytest.mark.parametrize("mode", TRACERS)
def test_lora_wrapper_every_product(mode):
    g = TRACERS[mode](LoRALinear(6, 4, 2).eval(), torch.zeros(3, 6))
    assert rows(g) == {
        "base": ("linear", 3, 1, 3 * 6 * 4),
        "lora_a": ("linear", 3, 1, 3 * 6 * 2),
        "lora_b": ("linear", 3, 1, 3 * 2 * 4),
    }


class EinsumHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(6, 4))

    def forward(self, x):
        return torch.einsum("btc,cd->btd", x, self.w)


@pytest.mark.parametrize("mode", TRACERS)
def test_einsum_with_a_parameter(mode):
    g = TRACERS[mode](EinsumHead().eval(), torch.zeros(2, 3, 6))
    assert rows(g) == {"w": ("linear", 2, 3, 2 * 3 * 6 * 4)}


class SelfAttention(nn.Module):
    def __init__(self, e: int = 8, heads: int = 2, need_weights: bool = False) -> None:
        super().__init__()
        self.need_weights = need_weights  # True: torch's bmm path; False: its sdpa path
        self.attn = nn.MultiheadAttention(e, heads, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=self.need_weights)[0]


class CrossAttention(nn.Module):
    def __init__(self, e: int = 8, kdim: int = 6, vdim: int = 5) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(e, 2, kdim=kdim, vdim=vdim)

    def forward(self, q, k, v):  # [B, T, C] in, the module's [T, B, C] layout inside
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
        return self.attn(q, k, v, need_weights=False)[0].transpose(0, 1)


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("mode", TRACERS)
@pytest.mark.parametrize("batch", [1, 2])
def test_mha_self_attention_fused_in_proj(mode, batch, need_weights):
    e, t, h = 8, 5, 2
    model = SelfAttention(e, h, need_weights).eval()
    g = TRACERS[mode](model, torch.zeros(batch, t, e))
    attn_rows, attn_products = attention("attn.", batch, h, t, t, e // h,
                                         "attn.in_proj", "attn.in_proj", "attn.in_proj")
    assert rows(g) == {
        "attn.in_proj": ("linear", batch, t, batch * t * e * 3 * e),
        **attn_rows,
        "attn.out_proj": ("linear", batch, t, batch * t * e * e),
    }
    assert list(rows(g)) == ["attn.in_proj", "attn.matmul0", "attn.matmul1", "attn.out_proj"]
    assert products(g) == attn_products
    assert g.edges == [("attn.in_proj", "attn.matmul0"), ("attn.matmul0", "attn.matmul1"),
                       ("attn.in_proj", "attn.matmul1"), ("attn.matmul1", "attn.out_proj")]
    assert g.unsupported == ()
    assert g.to_frame().set_index("name").loc["attn.in_proj", "reads_input"]
    assert g.totals()["weight_params"] == 4 * e * e
    full = hwq.trace(model, torch.zeros(batch, t, e))
    assert full.coverage == {"reference_macs": g.totals()["macs"],
                             "graph_macs": g.totals()["macs"], "unsupported_macs": 0,
                             "fraction": 1.0}


@pytest.mark.parametrize("mode", TRACERS)
@pytest.mark.parametrize("batch", [1, 2])
def test_mha_cross_attention_with_kdim_seq_first(mode, batch):
    e, kdim, vdim, tq, tk = 8, 6, 5, 3, 7
    q = torch.zeros(batch, tq, e)
    k, v = torch.zeros(batch, tk, kdim), torch.zeros(batch, tk, vdim)
    model = CrossAttention(e, kdim, vdim).eval()
    g = TRACERS[mode](model, (q, k, v))
    attn_rows, attn_products = attention("attn.", batch, 2, tq, tk, e // 2,
                                         "attn.q_proj", "attn.k_proj", "attn.v_proj")
    assert rows(g) == {
        "attn.q_proj": ("linear", batch, tq, batch * tq * e * e),
        "attn.k_proj": ("linear", batch, tk, batch * tk * kdim * e),
        "attn.v_proj": ("linear", batch, tk, batch * tk * vdim * e),
        **attn_rows,
        "attn.out_proj": ("linear", batch, tq, batch * tq * e * e),
    }
    assert products(g) == attn_products
    assert ("attn.matmul1", "attn.out_proj") in g.edges
    assert not any(dst == "attn.out_proj" and src.endswith("_proj") for src, dst in g.edges)
    assert g.unsupported == ()
    assert g.totals()["weight_params"] == e * e + kdim * e + vdim * e + e * e
    assert hwq.trace(model, (q, k, v)).coverage["fraction"] == 1.0


class FusedCross(nn.Module):
    def __init__(self, e: int = 8) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(e, 2, batch_first=True)

    def forward(self, x, memory):
        return self.attn(x, memory, memory, need_weights=False)[0]


@pytest.mark.parametrize("mode", TRACERS)
def test_mha_fused_weight_cross_attention(mode):
    e, tq, tk = 8, 3, 4
    g = TRACERS[mode](FusedCross(e).eval(), (torch.zeros(2, tq, e), torch.zeros(2, tk, e)))
    attn_rows, attn_products = attention("attn.", 2, 2, tq, tk, e // 2, "attn.in_proj",
                                         "attn.in_proj@1", "attn.in_proj@1")
    assert rows(g) == {
        "attn.in_proj": ("linear", 2, tq, 2 * tq * e * e),
        "attn.in_proj@1": ("linear", 2, tk, 2 * tk * e * 2 * e),
        **attn_rows,
        "attn.out_proj": ("linear", 2, tq, 2 * tq * e * e),
    }
    assert products(g) == attn_products
    assert g.totals()["weight_params"] == 3 * e * e + e * e  # the slices of one in_proj weight


def encoder(e: int = 8, ff: int = 16, layers: int = 2) -> nn.Module:
    layer = nn.TransformerEncoderLayer(e, 2, dim_feedforward=ff, batch_first=True, dropout=0.0)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False).eval()


@pytest.mark.parametrize("mode", ["hooks", "trace"])
@pytest.mark.parametrize("batch", [1, 2])
def test_transformer_encoder_eval_mode_seen_through(mode, batch):
    e, ff, t = 8, 16, 6
    model = encoder(e, ff)
    x = torch.zeros(batch, t, e)
    g = trace_hooks(model, x) if mode == "hooks" else hwq.trace(model, x)
    expected, expected_products = {}, {}
    for i in range(2):
        p = f"layers.{i}"
        qkv = f"{p}.self_attn.in_proj"
        attn_rows, attn_products = attention(f"{p}.self_attn.", batch, 2, t, t, e // 2,
                                             qkv, qkv, qkv)
        expected[qkv] = ("linear", batch, t, batch * t * e * 3 * e)
        expected.update(attn_rows)
        expected[f"{p}.self_attn.out_proj"] = ("linear", batch, t, batch * t * e * e)
        expected[f"{p}.linear1"] = ("linear", batch, t, batch * t * e * ff)
        expected[f"{p}.linear2"] = ("linear", batch, t, batch * t * ff * e)
        expected_products.update(attn_products)
    assert rows(g) == expected
    assert list(rows(g)) == list(expected)  # execution order
    assert products(g) == expected_products
    assert ("layers.0.linear2", "layers.1.self_attn.in_proj") in g.edges
    assert torch.backends.mha.get_fastpath_enabled()  # restored after tracing
    assert g.totals()["macs"] == 2 * batch * t * (4 * e * e + 2 * e * ff + 2 * t * e)
    if mode == "trace":
        assert g.coverage["reference_macs"] == g.totals()["macs"]
        assert g.coverage["fraction"] == 1.0


class HandAttention(nn.Module):
    """Attention written by hand: projections, then the products of activations (scores and
    context) by `@`, einsum or causal scaled_dot_product_attention, in the root's forward."""

    def __init__(self, e: int = 8, heads: int = 2, kind: str = "matmul") -> None:
        super().__init__()
        self.heads, self.kind = heads, kind
        self.qkv = nn.Linear(e, 3 * e)
        self.proj = nn.Linear(e, e)

    def forward(self, x):
        b, t, e = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, e // self.heads).permute(
            2, 0, 3, 1, 4)
        if self.kind == "sdpa":
            ctx = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif self.kind == "einsum":
            att = torch.einsum("bhqd,bhkd->bhqk", q, k).softmax(-1)
            ctx = torch.einsum("bhqk,bhkd->bhqd", att, v)
        else:
            ctx = (q @ k.transpose(-2, -1)).softmax(-1) @ v
        return self.proj(ctx.transpose(1, 2).reshape(b, t, e))


@pytest.mark.parametrize("kind", ["matmul", "einsum", "sdpa"])
@pytest.mark.parametrize("mode", TRACERS)
@pytest.mark.parametrize("b", [1, 2])
def test_hand_written_attention_products_and_coverage(kind, mode, b, caplog):
    e, t, h = 8, 5, 2
    model = HandAttention(e, h, kind).eval()
    x = torch.zeros(b, t, e)
    g = TRACERS[mode](model, x)
    # products the root's own forward computes are `matmul<i>`
    attn_rows, attn_products = attention("", b, h, t, t, e // h, "qkv", "qkv", "qkv")
    assert rows(g) == {
        "qkv": ("linear", b, t, b * t * e * 3 * e),
        **attn_rows,
        "proj": ("linear", b, t, b * t * e * e),
    }
    assert products(g) == attn_products
    assert g.edges == [("qkv", "matmul0"), ("matmul0", "matmul1"), ("qkv", "matmul1"),
                       ("matmul1", "proj")]
    assert g.unsupported == ()
    df = g.to_frame().set_index("name")
    assert list(df["weight_params"]) == [3 * e * e, 0, 0, e * e]
    assert df.loc["matmul0", "in_elems"] == b * h * t * (e // h)
    assert df.loc["matmul0", "out_elems"] == b * h * t * t
    assert list(g.second_elems()) == [0, b * h * (e // h) * t, b * h * t * (e // h), 0]
    full = hwq.trace(model, x)
    assert full.coverage == {"reference_macs": g.totals()["macs"],
                             "graph_macs": g.totals()["macs"], "unsupported_macs": 0,
                             "fraction": 1.0}
    assert not any("missing most" in r.message for r in caplog.records)


class GQA(nn.Module):
    """Grouped-query attention: 4 query heads share 2 key/value heads."""

    def __init__(self, e: int = 16, hq: int = 4, hkv: int = 2) -> None:
        super().__init__()
        self.hq, self.hkv, self.d = hq, hkv, e // hq
        self.q = nn.Linear(e, hq * self.d, bias=False)
        self.k = nn.Linear(e, hkv * self.d, bias=False)
        self.v = nn.Linear(e, hkv * self.d, bias=False)
        self.o = nn.Linear(hq * self.d, e, bias=False)

    def forward(self, x):
        b, t, _ = x.shape
        q = self.q(x).view(b, t, self.hq, self.d).transpose(1, 2)
        k = self.k(x).view(b, t, self.hkv, self.d).transpose(1, 2)
        v = self.v(x).view(b, t, self.hkv, self.d).transpose(1, 2)
        rep = self.hq // self.hkv
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        ctx = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(ctx.transpose(1, 2).reshape(b, t, -1))


@pytest.mark.parametrize("mode", TRACERS)
def test_grouped_query_attention_projections(mode):
    e, t, b, d = 16, 6, 2, 4
    g = TRACERS[mode](GQA().eval(), torch.zeros(b, t, e))
    attn_rows, attn_products = attention("", b, 4, t, t, d, "q", "k", "v")  # 4 query heads
    assert rows(g) == {
        "q": ("linear", b, t, b * t * e * 4 * d),
        "k": ("linear", b, t, b * t * e * 2 * d),
        "v": ("linear", b, t, b * t * e * 2 * d),
        **attn_rows,
        "o": ("linear", b, t, b * t * 4 * d * e),
    }
    assert products(g) == attn_products
    full = hwq.trace(GQA().eval(), torch.zeros(b, t, e))
    assert full.coverage["reference_macs"] == full.totals()["macs"]
    assert full.totals()["macs"] - b * t * e * 12 * d == 2 * b * 4 * t * t * d


def test_stock_cnn_coverage_is_complete():
    g = hwq.trace(WSNet().eval(), torch.zeros(1, 3, 8, 8))
    assert g.coverage == {"reference_macs": g.totals()["macs"], "graph_macs": g.totals()["macs"],
                          "unsupported_macs": 0, "fraction": 1.0}


class WithConvTranspose(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Conv2d(3, 4, 3, padding=1)
        self.up = nn.ConvTranspose2d(4, 2, 2, stride=2)

    def forward(self, x):
        return self.up(self.enc(x))


def test_conv_transpose_is_missing_and_named(caplog):
    g = hwq.trace(WithConvTranspose(), torch.zeros(1, 3, 4, 4))
    enc = 4 * 4 * 4 * 3 * 9
    up = (4 * 4 * 4) * 2 * 4  # input elements x C_out x kernel
    assert g.coverage == {"reference_macs": enc + up, "graph_macs": enc,
                          "unsupported_macs": up, "fraction": enc / (enc + up)}
    assert any("missing most in: up" in r.message for r in caplog.records)


def test_cost_table_batch_of_a_token_model_means_samples():
    g = hwq.trace(GPT2Block().eval(), torch.zeros(1, 5, 8))
    prof = hwq.load_profile("bitfusion")
    one = hwq.cost_table(g, prof, [(8, 8)]).to_pandas()
    four_table = hwq.cost_table(g, prof, [(8, 8)], batch=4)
    four = four_table.to_pandas()
    assert four_table.batch == 4
    assert list(four["macs"]) == [4 * m for m in one["macs"]]
    assert list(four_table.graph.column("out_h")) == [5, 5, 5, 5]  # tokens stay tokens


class LearnedQueries(nn.Module):
    """A projection of a parameter (DETR-style queries) is a layer; a merged weight is not."""

    def __init__(self) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(4, 6))
        self.proj = nn.Linear(6, 3)
        self.down = nn.Parameter(torch.randn(6, 2))
        self.up = nn.Parameter(torch.randn(2, 3))

    def forward(self, x):
        merged = self.down @ self.up  # [6, 3] from parameters only: a weight
        q = self.proj(self.queries)  # [4, 3]
        return x @ merged + q.sum()


@pytest.mark.parametrize("mode", TRACERS)
def test_parameter_inputs_and_merged_weights(mode):
    g = TRACERS[mode](LearnedQueries().eval(), torch.zeros(2, 6))
    assert rows(g) == {
        "proj": ("linear", 2, 2, 4 * 6 * 3),  # R = 4 rows over 2 samples: T = R / batch = 2
        "down": ("linear", 2, 1, 2 * 6 * 3),
    }


class TiedHead(nn.Module):
    def __init__(self, weight: nn.Parameter) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, x):
        return F.linear(x, self.weight)


class TinyLM(nn.Module):
    """Token ids -> embedding -> block -> LM head tied to the embedding."""

    def __init__(self, vocab: int = 11, d: int = 8, functional_head: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.block = nn.Linear(d, d)
        if functional_head:
            self.head = TiedHead(self.embed.weight)
        else:
            self.head = nn.Linear(d, vocab, bias=False)
            self.head.weight = self.embed.weight

    def forward(self, ids):
        return self.head(torch.relu(self.block(self.embed(ids))))


@pytest.mark.parametrize("functional_head", [False, True])
@pytest.mark.parametrize("mode", TRACERS)
@pytest.mark.parametrize("batch", [1, 2])
def test_tied_lm_head_is_named_by_the_head(functional_head, mode, batch):
    vocab, d, t = 11, 8, 6
    ids = torch.randint(0, vocab, (batch, t))
    g = TRACERS[mode](TinyLM(vocab, d, functional_head).eval(), ids)
    assert rows(g) == {
        "embed": ("embedding", batch, t, 0),
        "block": ("linear", batch, t, batch * t * d * d),
        "head": ("linear", batch, t, batch * t * d * vocab),
    }
    assert g.edges == [("embed", "block"), ("block", "head")]
    df = g.to_frame().set_index("name")
    # the tied weight is counted once, by the embedding row; the head keeps its MACs
    assert list(df["weight_params"]) == [vocab * d, d * d, 0]
    assert g.totals()["weight_params"] == vocab * d + d * d
    emb = df.loc["embed"]
    assert (emb["in_channels"], emb["out_channels"], emb["in_h"]) == (vocab, d, t)
    assert (emb["in_elems"], emb["out_elems"]) == (batch * t, batch * t * d)
    assert emb["reads_input"] and not df.loc["block", "reads_input"]


def test_token_model_coverage_is_complete():
    ids = torch.randint(0, 11, (2, 6))
    g = hwq.trace(TinyLM().eval(), ids)
    assert g.coverage["fraction"] == 1.0  # the lookup has no MACs
    assert g.coverage["reference_macs"] == 2 * 6 * (8 * 8 + 8 * 11)


@pytest.mark.parametrize("batch", [1, 2])
def test_transformer_decoder_self_and_cross_attention(batch):
    e, ff, tq, tk = 8, 12, 3, 5
    layer = nn.TransformerDecoderLayer(e, 2, dim_feedforward=ff, batch_first=True, dropout=0.0)
    model = nn.TransformerDecoder(layer, 1).eval()
    g = hwq.trace(model, (torch.zeros(batch, tq, e), torch.zeros(batch, tk, e)))
    p = "layers.0"
    sa, ca = f"{p}.self_attn.", f"{p}.multihead_attn."
    self_rows, self_products = attention(sa, batch, 2, tq, tq, e // 2, f"{sa}in_proj",
                                         f"{sa}in_proj", f"{sa}in_proj")
    cross_rows, cross_products = attention(ca, batch, 2, tq, tk, e // 2, f"{ca}in_proj",
                                           f"{ca}in_proj@1", f"{ca}in_proj@1")
    assert rows(g) == {
        f"{p}.self_attn.in_proj": ("linear", batch, tq, batch * tq * e * 3 * e),
        **self_rows,
        f"{p}.self_attn.out_proj": ("linear", batch, tq, batch * tq * e * e),
        f"{p}.multihead_attn.in_proj": ("linear", batch, tq, batch * tq * e * e),
        f"{p}.multihead_attn.in_proj@1": ("linear", batch, tk, batch * tk * e * 2 * e),
        **cross_rows,
        f"{p}.multihead_attn.out_proj": ("linear", batch, tq, batch * tq * e * e),
        f"{p}.linear1": ("linear", batch, tq, batch * tq * e * ff),
        f"{p}.linear2": ("linear", batch, tq, batch * tq * ff * e),
    }
    assert products(g) == {**self_products, **cross_products}
    assert g.coverage["reference_macs"] == g.totals()["macs"]
    assert g.coverage["fraction"] == 1.0
    df = g.to_frame().set_index("name")
    assert df.loc[f"{p}.multihead_attn.in_proj@1", "reads_input"]  # the memory input
    assert (f"{p}.self_attn.out_proj", f"{p}.multihead_attn.in_proj") in g.edges
    assert (f"{p}.self_attn.out_proj", f"{p}.multihead_attn.in_proj@1") not in g.edges


class PosConv(nn.Module):
    """Wav2Vec2's positional conv: a grouped conv1d under weight_norm, on [B, T, C] features."""

    def __init__(self, c: int = 8, k: int = 4, groups: int = 2) -> None:
        super().__init__()
        from torch.nn.utils.parametrizations import weight_norm

        self.proj = nn.Linear(3, c)
        self.conv = weight_norm(nn.Conv1d(c, c, k, padding=k // 2, groups=groups), dim=2)

    def forward(self, x):
        h = self.proj(x).transpose(1, 2)  # [B, C, T]
        return self.conv(h)[:, :, :-1].transpose(1, 2) + h.transpose(1, 2)


@pytest.mark.parametrize("mode", TRACERS)
def test_weight_norm_conv1d_is_named_by_its_module(mode):
    c, k, t, b = 8, 4, 10, 2
    g = TRACERS[mode](PosConv(c, k).eval(), torch.zeros(b, t, 3))
    out_t = t + 2 * (k // 2) - k + 1
    assert rows(g) == {
        "proj": ("linear", b, t, b * t * 3 * c),
        "conv": ("conv", b, out_t, b * out_t * c * (c // 2) * k),
    }
    assert g.to_frame().set_index("name").loc["conv", "weight_params"] == c * (c // 2) * k


class PaddingModes(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")
        self.b = nn.Conv1d(4, 4, 3, padding="same", padding_mode="circular")

    def forward(self, x):
        return self.b(self.a(x).flatten(2))


def test_padding_modes_read_alike_in_both_tracers():
    model, x = PaddingModes().eval(), torch.zeros(2, 3, 5, 6)
    fx, hooks = trace_fx(model, x), trace_hooks(model, x)
    assert fx.graph_hash == hooks.graph_hash
    df = hooks.to_frame().set_index("name")
    assert (df.loc["a", "in_h"], df.loc["a", "pad_h"], df.loc["a", "out_h"]) == (5, 1, 5)
    assert df.loc["a", "macs"] == 2 * 5 * 6 * 4 * 3 * 9
    assert df.loc["b", "macs"] == 2 * 30 * 4 * 4 * 3

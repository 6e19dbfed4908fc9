"""Small transformer pieces written the ways model libraries write them, for the tracing tests:
GPT-2 attention on `Conv1D` (addmm) projections, Llama-style gated MLPs and grouped-query attention,
position embeddings looked up by arange, and products that reuse a module."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Conv1D(nn.Module):
    """Hugging Face GPT-2 `Conv1D`: a [C_in, C_out] weight through addmm on [B*T, C]."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


class GPT2Attention(nn.Module):
    """GPT-2's attention: a fused c_attn Conv1D, causal scores by `matmul` (or `baddbmm`, as its
    upcast path computes them) under a `tril` buffer mask, context by `matmul`, c_proj."""

    def __init__(self, d: int = 8, heads: int = 2, ctx: int = 16, kind: str = "matmul") -> None:
        super().__init__()
        self.heads, self.d, self.kind = heads, d, kind
        self.c_attn = Conv1D(3 * d, d)
        self.c_proj = Conv1D(d, d)
        self.register_buffer("bias", torch.tril(torch.ones(ctx, ctx, dtype=torch.bool)),
                             persistent=False)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.d // self.heads).permute(0, 2, 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.c_attn(x).split(self.d, dim=2)
        q, k, v = self.split(q), self.split(k), self.split(v)
        if self.kind == "baddbmm":
            bh, hd = b * self.heads, self.d // self.heads
            scores = torch.empty(bh, t, t, dtype=x.dtype)
            scores = torch.baddbmm(scores, q.reshape(bh, t, hd),
                                   k.transpose(-1, -2).reshape(bh, hd, t), beta=0.0)
            scores = scores.reshape(b, self.heads, t, t)
        else:
            scores = torch.matmul(q, k.transpose(-1, -2))
        mask = self.bias[:t, :t]
        scores = torch.where(mask, scores, torch.finfo(scores.dtype).min)
        ctx = torch.matmul(scores.softmax(-1), v)
        return self.c_proj(ctx.permute(0, 2, 1, 3).reshape(b, t, self.d))


class LlamaMLP(nn.Module):
    """down(silu(gate(x)) * up(x)): gate and up read one tensor."""

    def __init__(self, d: int = 8, ff: int = 12) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(d, ff, bias=False)
        self.up_proj = nn.Linear(d, ff, bias=False)
        self.down_proj = nn.Linear(ff, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class GQAttention(nn.Module):
    """Grouped-query attention inside a module (`attn`): separate q, k, v projections; the
    shared key/value heads reach the query heads by `enable_gqa`, by `repeat_interleave`, or
    by broadcasting one key/value head (multi-query)."""

    def __init__(self, e: int = 16, hq: int = 4, hkv: int = 2, how: str = "enable_gqa") -> None:
        super().__init__()
        self.hq, self.hkv, self.d, self.how = hq, hkv, e // hq, how
        self.q_proj = nn.Linear(e, hq * self.d, bias=False)
        self.k_proj = nn.Linear(e, hkv * self.d, bias=False)
        self.v_proj = nn.Linear(e, hkv * self.d, bias=False)
        self.o_proj = nn.Linear(hq * self.d, e, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.hq, self.d).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.hkv, self.d).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.hkv, self.d).transpose(1, 2)
        if self.how == "enable_gqa":
            ctx = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        elif self.how == "repeat":
            rep = self.hq // self.hkv
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            ctx = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # broadcast: one key/value head for every query head
            ctx = F.scaled_dot_product_attention(q, k[:, :1], v[:, :1], is_causal=True)
        return self.o_proj(ctx.transpose(1, 2).reshape(b, t, -1))


class LlamaBlock(nn.Module):
    def __init__(self, e: int = 16, ff: int = 24, how: str = "enable_gqa") -> None:
        super().__init__()
        self.attn = GQAttention(e, 4, 2, how)
        self.mlp = LlamaMLP(e, ff)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class PositionalLM(nn.Module):
    """Token and position embeddings (positions looked up by arange, which reads no model input;
    the functional `torch.embedding(weight, ids)` form), a block, an LM head tied to the tokens."""

    def __init__(self, vocab: int = 13, d: int = 8, ctx: int = 10) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Parameter(torch.randn(ctx, d))
        self.block = nn.Linear(d, d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1])
        h = self.wte(ids) + torch.embedding(self.wpe, pos)
        return self.lm_head(torch.relu(self.block(h)))


class SharedAttention(nn.Module):
    """One attention module called twice (ALBERT-style sharing): weights counted once, its
    products numbered on through both calls."""

    def __init__(self, e: int = 8) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(e, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn(x, x, x, need_weights=False)[0]
        return self.attn(x, x, x, need_weights=False)[0]


class Products(nn.Module):
    """Activation products the root's own forward computes: an einsum with `...`, bmm,
    F.linear of two activations, mm of flattened rows."""

    def __init__(self, c: int = 6) -> None:
        super().__init__()
        self.a = nn.Linear(c, c)
        self.b = nn.Linear(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [B, T, C]
        a, b = self.a(x), self.b(x)
        s = torch.einsum("...qc,...kc->...qk", a, b)  # [B, T, T]
        y = torch.bmm(s, b)  # [B, T, C]
        z = F.linear(y, a[0])  # [B, T, T]: y by a[0]ᵀ
        flat = z.reshape(-1, z.shape[-1])  # [B*T, T]
        return torch.mm(flat, b[0])  # [B*T, C]


class WithEmbeddingBag(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(20, 6, mode="mean")
        self.fc = nn.Linear(6, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bag(ids))

"""Attention blocks. Every one goes through `torch.nn.functional.scaled_dot_product_attention` (the flash
kernel on CPU and CUDA) or, for bf16/fp16 on CPU, through `chunked_attention` (cache-sized blocks of
queries x keys with an online softmax), so no (tokens x tokens) map is ever materialised: memory is linear
in the number of tokens. Parameter names follow the official layouts so official state_dicts load strictly.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from bfvr.models.blocks.conv3d import _inplace_ok, memory_format_of, normalize

#: largest number of attention scores held at once by the chunked low-precision path (2 Mi = 4 MB bf16).
#: Small on purpose: the score block must stay in cache (2 MB L2/core, 32 MB L3 here). With 64 Mi scores
#: (the old bound) every block went through DRAM and the softmax alone cost ~1.2 ns/score on 2 cores;
#: 512 x 4096 blocks run the 3D attention (49152 tokens, d=256) at ~500 GFLOP/s instead of ~250, and the
#: transformers' (12 frames x 2 heads x 4096 tokens, d=128) at ~450 instead of ~180 (bf16, 2 threads).
MAX_CHUNK_SCORES = 1 << 21
#: keys per block; with more keys than this the softmax is accumulated over key blocks (online softmax)
KEY_BLOCK = 4096


def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      max_scores: int = MAX_CHUNK_SCORES, key_block: int = KEY_BLOCK) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v over blocks of at most `max_scores` scores (memory linear in tokens).

    Each leading (batch, head) index is done separately, in query chunks; when there are more than
    `key_block` keys, the keys are split into blocks too and the softmax is accumulated over them
    (running max, fp32 running sum and output, as in flash attention; each block's exp and row sum are
    in the input dtype, the same rounding as a bf16 softmax output), so the score block stays cache-sized
    whatever the number of tokens. Same result as SDPA; on CPU in bf16 it is faster than the flash
    kernel for one wide head (d = 128..512) because the blocks run as GEMMs.
    """
    n_q, d = q.shape[-2:]
    n_k = k.shape[-2]
    lead = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    # views per (batch, head) index, no copies (q/k/v are often strided head views)
    q3, k3, v3 = (t.expand(lead + t.shape[-2:]) for t in (q, k, v))
    kb = max(1, min(n_k, key_block, max_scores))
    rows = max(1, min(n_q, max_scores // kb))
    scale = d ** -0.5
    dv, dt = v.shape[-1], v.dtype
    out = torch.empty(lead + (n_q, dv), dtype=dt, device=v.device)
    # every block is written into these buffers (out=): no per-block allocation. Thousands of 4 MB
    # temporaries per forward leave glibc's heap fragmented (+0.9 GB peak RSS at 24x512x512).
    sbuf = torch.empty(rows * kb, dtype=dt, device=v.device)
    pbuf = torch.empty(rows * kb, dtype=dt, device=v.device) if kb == n_k else None
    if kb < n_k:
        obuf = torch.empty(rows, dv, dtype=torch.float32, device=v.device)
        pvbuf = torch.empty(rows, dv, dtype=dt, device=v.device)
    # autocast off: it would run softmax in fp32 on a copy (10x slower on CPU); inputs share one dtype
    with torch.autocast(q.device.type, enabled=False):
        for b in itertools.product(*map(range, lead)):
            kt, vb = k3[b].transpose(0, 1), v3[b]
            for i in range(0, n_q, rows):
                qi = q3[b][i:i + rows] * scale
                r = qi.shape[0]
                dst = out[b][i:i + r]
                if kb == n_k:
                    sc = torch.mm(qi, kt, out=sbuf[:r * n_k].view(r, n_k))
                    pr = torch.ops.aten._softmax.out(sc, -1, False, out=pbuf[:r * n_k].view(r, n_k))
                    torch.mm(pr, vb, out=dst)
                    continue
                # m (running max) stays in the input dtype: the max of bf16 scores is exact in bf16, and
                # a same-dtype sub_ needs no activation-sized fp32 temporary
                o, pv = obuf[:r], pvbuf[:r]
                m = den = None
                for j in range(0, n_k, kb):
                    c = min(kb, n_k - j)
                    sc = torch.mm(qi, kt[:, j:j + c], out=sbuf[:r * c].view(r, c))
                    mb = sc.amax(dim=-1, keepdim=True)
                    if m is None:
                        m = mb
                        sc.sub_(m).exp_()
                        den = sc.sum(dim=-1, keepdim=True).float()
                        o.copy_(torch.mm(sc, vb[j:j + c], out=pv))
                    else:
                        m_new = torch.maximum(m, mb)
                        alpha = (m.float() - m_new.float()).exp_()
                        m = m_new
                        sc.sub_(m).exp_()
                        den.mul_(alpha).add_(sc.sum(dim=-1, keepdim=True))
                        o.mul_(alpha).add_(torch.mm(sc, vb[j:j + c], out=pv))
                dst.copy_(o.div_(den))
    return out


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Attention in the dtype of `v` (autocast may leave q/k/v in different dtypes after fp32 norms):
    fused SDPA, except bf16/fp16 on CPU with many tokens and wide heads (d >= 128, e.g. STC's one
    512-wide head), where the chunked GEMM form is faster. With 64-wide heads (PGTFormer's code
    predictor: 8 heads over 3072 tokens) the flash kernel is faster (0.06 s against 0.10 s a layer in
    bf16 on one core of an AMX Xeon)."""
    dt = v.dtype
    q, k = q.to(dt), k.to(dt)
    if (v.device.type == "cpu" and dt in (torch.bfloat16, torch.float16) and k.shape[-2] >= 2048
            and q.shape[-1] >= 128):
        return chunked_attention(q, k, v)
    return F.scaled_dot_product_attention(q, k, v)


class LayerNorm(nn.LayerNorm):
    """nn.LayerNorm (same parameters) that returns the input's dtype.

    Under CPU bf16/fp16 autocast a plain LayerNorm makes an fp32 copy of its input and returns fp32,
    which every following Linear casts back to bf16 (one activation-sized copy per consumer). The CPU
    kernel takes bf16 input with fp32 parameters and accumulates in fp32, so this gives the same values
    rounded once to bf16 (as the Linear would), without the copies. fp32 input: nn.LayerNorm exactly."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 or x.device.type != "cpu":
            return super().forward(x)
        with torch.autocast(x.device.type, enabled=False):
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)


class _Conv3dAttention(nn.Module):
    """The parameters both Conv3d attention blocks share (official names): GroupNorm `norm` and 1x1x1
    convs `q`, `k`, `v`, `proj_out`."""

    def __init__(self, channels: int, groups: int, eps: float) -> None:
        super().__init__()
        self.channels = channels
        self.norm = normalize(channels, groups, eps)
        self.q = nn.Conv3d(channels, channels, kernel_size=1)
        self.k = nn.Conv3d(channels, channels, kernel_size=1)
        self.v = nn.Conv3d(channels, channels, kernel_size=1)
        self.proj_out = nn.Conv3d(channels, channels, kernel_size=1)


class AttnBlock(_Conv3dAttention):
    """Single-head self-attention over all T*H*W positions of a BCTHW tensor, with a residual.

    GroupNorm -> q, k, v (1x1x1 Conv3d) -> softmax(q k^T / sqrt(C)) v -> proj_out (1x1x1) -> x + h.
    """

    def __init__(self, channels: int, *, groups: int = 32, eps: float = 1e-6) -> None:
        super().__init__(channels, groups, eps)

    @staticmethod
    def _tokens(t: torch.Tensor) -> torch.Tensor:
        # B C T H W -> B 1 (T H W) C ; a free view when `t` is channels_last_3d
        return t.flatten(2).transpose(1, 2).unsqueeze(1).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        q, k, v = self._tokens(self.q(h)), self._tokens(self.k(h)), self._tokens(self.v(h))
        del h
        a = _sdpa(q, k, v)  # B 1 N C
        del q, k, v
        b, c, t, hh, ww = x.shape
        a = a.squeeze(1).transpose(1, 2).reshape(b, c, t, hh, ww)
        out = self.proj_out(a.contiguous(memory_format=memory_format_of(x)))
        if _inplace_ok(out) and out.dtype == x.dtype:
            return out.add_(x)
        return x + out


class TemporalAttention(_Conv3dAttention):
    """Attention along T only, separately for every (b, h, w) position; no residual (official `SA2`).

    GroupNorm(16) -> q, k, v (1x1x1 Conv3d) -> softmax over the T frames (scale C^-1/2) -> proj_out.
    Input and output are B C T H W.
    """

    def __init__(self, channels: int, *, groups: int = 16, eps: float = 1e-6) -> None:
        super().__init__(channels, groups, eps)

    @staticmethod
    def _tokens(t: torch.Tensor) -> torch.Tensor:
        # B C T H W -> (B H W) 1 T C
        # contiguous matters: SDPA on the strided view is ~100x slower on CPU
        b, c, tt, h, w = t.shape
        return t.permute(0, 3, 4, 2, 1).reshape(b * h * w, 1, tt, c).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        hn = self.norm(x)
        q, k, v = self._tokens(self.q(hn)), self._tokens(self.k(hn)), self._tokens(self.v(hn))
        del hn
        a = _sdpa(q, k, v)  # (B H W) 1 T C
        a = a.reshape(b, h, w, t, c).permute(0, 4, 3, 1, 2)
        return self.proj_out(a.contiguous(memory_format=memory_format_of(x)))


class MultiheadSelfAttention(nn.Module):
    """Multi-head self-attention with `nn.MultiheadAttention`'s parameter names (`in_proj_weight`,
    `in_proj_bias`, `out_proj`), computed with SDPA on batch-first tokens [N, L, E]."""

    def __init__(self, embed_dim: int, num_heads: int, *, bias: bool = True) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim)) if bias else None
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        e, nh = self.embed_dim, self.num_heads
        w, b = self.in_proj_weight, self.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else b.split(e)
        wq, wk, wv = w.split(e)
        n, lq, _ = query.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(n, t.shape[1], nh, e // nh).transpose(1, 2)

        if query is key:
            qk = F.linear(query, torch.cat([wq, wk]), None if b is None else torch.cat([bq, bk]))
            q, k = qk.split(e, dim=-1)
        else:
            q, k = F.linear(query, wq, bq), F.linear(key, wk, bk)
        v = F.linear(value, wv, bv)
        out = _sdpa(heads(q), heads(k), heads(v))  # N h L d
        out = out.transpose(1, 2).reshape(n, lq, e)
        return self.out_proj(out)


class TransformerSALayer(nn.Module):
    """Pre-LN transformer layer (CodeFormer layout): q = k = LN(x) + pos, v = LN(x); GELU MLP.

    Tokens are batch-first [N, L, E]; `pos` is [L, E] (or broadcastable). Dropout is kept as an option
    for training (0 = the official inference setting).
    """

    def __init__(self, embed_dim: int, nhead: int, dim_mlp: int = 2048, dropout: float = 0.0) -> None:
        super().__init__()
        self.self_attn = MultiheadSelfAttention(embed_dim, nhead)
        self.linear1 = nn.Linear(embed_dim, dim_mlp)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_mlp, embed_dim)
        self.norm1 = nn.LayerNorm(embed_dim)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm1(x)
        qk = h if pos is None else h + pos
        x = x + self.dropout1(self.self_attn(qk, qk, h))
        h = self.linear2(self.dropout(F.gelu(self.linear1(self.norm2(x)))))
        return x + self.dropout2(h)

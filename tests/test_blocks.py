"""The shared layers: SDPA attention equals the textbook formulas, names match nn.MultiheadAttention,
memory format / bf16 autocast keep results, in-place tricks never break autograd."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bfvr.models.blocks import (
    AttnBlock,
    Downsample,
    Downsample2D,
    GroupNorm,
    MultiheadSelfAttention,
    ResBlock,
    TemporalAttention,
    TransformerSALayer,
    Upsample,
    Upsample2D,
    chunked_attention,
)


def _randomise(m: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.dim() > 1 else 0.1))
    return m.eval()


def _naive_attn_block(m: AttnBlock, x: torch.Tensor) -> torch.Tensor:
    b, c, t, h, w = x.shape
    hn = m.norm(x)
    q, k, v = (f(hn).reshape(b, c, -1) for f in (m.q, m.k, m.v))
    a = torch.softmax(torch.bmm(q.transpose(1, 2), k) * c ** -0.5, dim=2)  # b, N, N
    o = torch.bmm(v, a.transpose(1, 2)).reshape(b, c, t, h, w)
    return x + m.proj_out(o)


def _naive_temporal(m: TemporalAttention, x: torch.Tensor) -> torch.Tensor:
    b, c, t, h, w = x.shape
    hn = m.norm(x)
    q, k, v = (f(hn).permute(0, 3, 4, 2, 1).reshape(-1, t, c) for f in (m.q, m.k, m.v))
    a = torch.softmax(torch.bmm(q, k.transpose(1, 2)) * c ** -0.5, dim=-1)
    o = torch.bmm(a, v).reshape(b, h, w, t, c).permute(0, 4, 3, 1, 2)
    return m.proj_out(o)


@pytest.mark.parametrize("shape", [(1, 32, 2, 4, 4), (2, 64, 3, 5, 3)])
def test_attn_block_equals_full_softmax_attention(shape):
    torch.manual_seed(0)
    m = _randomise(AttnBlock(shape[1]))
    x = torch.randn(shape)
    with torch.no_grad():
        ref, out = _naive_attn_block(m, x), m(x)
    assert out.shape == x.shape
    assert (out - ref).abs().max() < 1e-4
    # a different memory layout gives the same numbers
    with torch.no_grad():
        out_cl = m(x.contiguous(memory_format=torch.channels_last_3d))
    assert (out_cl - ref).abs().max() < 1e-4


def test_temporal_attention_only_mixes_frames_at_the_same_position():
    torch.manual_seed(1)
    m = _randomise(TemporalAttention(32, groups=16))
    x = torch.randn(2, 32, 5, 3, 4)
    with torch.no_grad():
        out = m(x)
        assert (out - _naive_temporal(m, x)).abs().max() < 1e-4
        # attention along T only: shuffling spatial positions commutes with the block
        perm = torch.randperm(3 * 4)
        xs = x.flatten(3)[..., perm].view_as(x)
        assert (m(xs) - out.flatten(3)[..., perm].view_as(out)).abs().max() < 1e-4


def test_multihead_self_attention_matches_torch_module_and_names():
    torch.manual_seed(2)
    ours = MultiheadSelfAttention(64, 4)
    ref = nn.MultiheadAttention(64, 4)
    _randomise(ref)
    assert set(ours.state_dict()) == set(ref.state_dict())
    ours.load_state_dict(ref.state_dict(), strict=True)
    x, pos = torch.randn(3, 10, 64), torch.randn(10, 64)
    qk = x + pos
    with torch.no_grad():
        out = ours(qk, qk, x)
        expected = ref(qk.transpose(0, 1), qk.transpose(0, 1), x.transpose(0, 1),
                       need_weights=False)[0].transpose(0, 1)
    assert (out - expected).abs().max() < 1e-5


def test_transformer_layer_is_pre_ln_with_position_on_query_and_key_only():
    torch.manual_seed(3)
    layer = _randomise(TransformerSALayer(32, 2, 64))
    ref_attn = nn.MultiheadAttention(32, 2)
    ref_attn.load_state_dict(layer.self_attn.state_dict())
    x, pos = torch.randn(2, 7, 32), torch.randn(7, 32)
    with torch.no_grad():
        h = layer.norm1(x)
        qk = (h + pos).transpose(0, 1)
        x1 = x + ref_attn(qk, qk, h.transpose(0, 1), need_weights=False)[0].transpose(0, 1)
        expected = x1 + layer.linear2(torch.nn.functional.gelu(layer.linear1(layer.norm2(x1))))
        assert (layer(x, pos) - expected).abs().max() < 1e-5


def test_resampling_shapes():
    x = torch.randn(1, 8, 4, 16, 12)
    assert Downsample(8)(x).shape == (1, 8, 2, 8, 6)
    assert Downsample2D(8)(x).shape == (1, 8, 4, 8, 6)
    assert Upsample(8)(x).shape == (1, 8, 8, 32, 24)
    assert Upsample2D(8)(x).shape == (1, 8, 4, 32, 24)


def test_resblock_backward_works_and_inplace_paths_agree():
    torch.manual_seed(4)
    m = ResBlock(32, 64)
    x = torch.randn(1, 32, 2, 6, 6, requires_grad=True)
    y = m(x)
    y.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with torch.no_grad():  # the no-grad path works in place; it must give the same numbers
        assert (m(x) - y).abs().max() < 1e-6
    a = AttnBlock(32)  # its gradients equal those of the attention written plainly

    def plain(t: torch.Tensor) -> torch.Tensor:
        h = a.norm(t)
        q, k, v = (f(h).flatten(2).transpose(1, 2) for f in (a.q, a.k, a.v))  # B N C
        w = torch.softmax(q @ k.transpose(1, 2) / q.shape[-1] ** 0.5, dim=-1)
        return t + a.proj_out((w @ v).transpose(1, 2).reshape(t.shape))

    xa = torch.randn(1, 32, 2, 3, 3, requires_grad=True)
    a(xa).square().sum().backward()
    got = [xa.grad.clone()] + [p.grad.clone() for p in a.parameters()]
    xa.grad = None
    a.zero_grad()
    plain(xa).square().sum().backward()
    want = [xa.grad] + [p.grad for p in a.parameters()]
    assert all(torch.allclose(g, w, rtol=1e-4, atol=1e-5) for g, w in zip(got, want))


def test_groupnorm_statistics_stay_fp32_under_bf16_autocast():
    torch.manual_seed(5)
    gn = GroupNorm(4, 16, eps=1e-6)
    x = torch.randn(1, 16, 2, 8, 8) * 3 + 100.0  # large mean: bf16 statistics would be far off
    ref = torch.nn.functional.group_norm(x, 4, gn.weight, gn.bias, 1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = gn(x.bfloat16())
    assert out.dtype == torch.bfloat16
    # the input was rounded to bf16 (step 0.5 at 100): compare against the rounded input's exact norm
    ref_rounded = torch.nn.functional.group_norm(x.bfloat16().float(), 4, gn.weight, gn.bias, 1e-6)
    assert (out.float() - ref_rounded).abs().max() < 0.02
    assert (ref - ref_rounded).abs().max() < 0.5


@pytest.mark.parametrize("max_scores", [7, 64, 1 << 20])
def test_chunked_attention_equals_sdpa(max_scores):
    torch.manual_seed(6)
    q, k, v = torch.randn(2, 3, 50, 16), torch.randn(2, 3, 40, 16), torch.randn(2, 3, 40, 8)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert (chunked_attention(q, k, v, max_scores=max_scores) - ref).abs().max() < 1e-5


@pytest.mark.parametrize("key_block", [16, 24, 4096])
def test_chunked_attention_key_blocks_on_strided_heads(key_block):
    # online softmax over key blocks (a ragged last one), on strided head views as MultiheadSelfAttention
    # passes them, in fp32 (exact) and bf16 (rounding only)
    torch.manual_seed(7)
    q, k, v = (torch.randn(2, 40, 3, 16).transpose(1, 2) for _ in range(3))
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    out = chunked_attention(q, k, v, max_scores=64, key_block=key_block)
    assert out.shape == ref.shape and (out - ref).abs().max() < 1e-5
    out16 = chunked_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), max_scores=64, key_block=key_block)
    assert out16.dtype == torch.bfloat16 and (out16.float() - ref).abs().max() < 0.05


def test_layer_norm_keeps_bf16_and_rounds_the_fp32_result_once():
    from bfvr.models.blocks import LayerNorm

    torch.manual_seed(0)
    ln, ref = LayerNorm(64), nn.LayerNorm(64)
    with torch.no_grad():
        ln.weight.normal_(), ln.bias.normal_()
    ref.load_state_dict(ln.state_dict())
    x = torch.randn(500, 64) * 3 + 1
    with torch.no_grad():
        assert torch.equal(ln(x), ref(x))  # fp32: nn.LayerNorm exactly
        xb = x.bfloat16()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = ln(xb)
        assert out.dtype == torch.bfloat16
        expected = ref(xb.float()).bfloat16()
        assert (out.float() - expected.float()).abs().max() <= 2 ** -7 * expected.float().abs().max()
        assert (out == expected).float().mean() > 0.99

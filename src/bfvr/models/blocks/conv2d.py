"""2D convolutional building blocks (NCHW tensors) of the per-frame VQGANs (CodeFormer layout).

The 2D counterparts of `bfvr.models.blocks.conv3d`: the same GroupNorm(32, eps=1e-6) in fp32, swish and
parameter names (`norm1`, `conv1`, `norm2`, `conv2`, `conv_out`, `conv`, `norm`, `q`, `k`, `v`,
`proj_out`), so CodeFormer-style state_dicts (e.g. DicFace) load with ``strict=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bfvr.models.blocks.conv3d import _inplace_ok, normalize, swish


class ResBlock2d(nn.Module):
    """norm -> swish -> Conv2d 3x3 -> norm -> swish -> (dropout) -> Conv2d 3x3, plus a 1x1 skip when the
    channel count changes, named `skip_name` (`conv_out` in CodeFormer's layout, `nin_shortcut` in the
    taming-VQGAN one PGTFormer's TS-VQGAN uses). Dropout has no parameters: the state_dict is the same."""

    def __init__(self, in_channels: int, out_channels: int | None = None, *, groups: int = 32,
                 eps: float = 1e-6, skip_name: str = "conv_out", dropout: float = 0.0) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.in_channels, self.out_channels, self.skip_name = in_channels, out_channels, skip_name
        self.norm1 = normalize(in_channels, groups, eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.norm2 = normalize(out_channels, groups, eps)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        if in_channels != out_channels:
            setattr(self, skip_name, nn.Conv2d(in_channels, out_channels, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        if self.in_channels != self.out_channels:
            x = getattr(self, self.skip_name)(x)
        if _inplace_ok(h) and h.dtype == x.dtype:
            return h.add_(x)
        return x + h


class AttnBlock2d(nn.Module):
    """Single-head self-attention over the H*W positions of each image, with a residual:
    GroupNorm -> q, k, v (1x1 convs) -> softmax(q k^T / sqrt(C)) v -> proj_out (1x1) -> x + h (SDPA)."""

    def __init__(self, channels: int, *, groups: int = 32, eps: float = 1e-6) -> None:
        super().__init__()
        self.channels = channels
        self.norm = normalize(channels, groups, eps)
        self.q = nn.Conv2d(channels, channels, kernel_size=1)
        self.k = nn.Conv2d(channels, channels, kernel_size=1)
        self.v = nn.Conv2d(channels, channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        hn = self.norm(x)
        # N C H W -> N 1 (H W) C, one head of width C
        q, k, v = (t(hn).flatten(2).transpose(1, 2).unsqueeze(1) for t in (self.q, self.k, self.v))
        dt = v.dtype
        a = F.scaled_dot_product_attention(q.to(dt), k.to(dt), v)
        a = a.squeeze(1).transpose(1, 2).reshape(b, c, h, w)
        out = self.proj_out(a)
        if _inplace_ok(out) and out.dtype == x.dtype:
            return out.add_(x)
        return x + out


class Downsample2d(nn.Module):
    """/2: zero-pad one pixel at the right and bottom, then Conv2d(k=3, stride=2, no padding)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class Upsample2d(nn.Module):
    """x2: nearest-neighbour, then Conv2d 3x3."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))

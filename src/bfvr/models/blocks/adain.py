"""Adaptive instance normalisation, shared by the methods (STC, DicFace and PGTFormer all use it)."""

from __future__ import annotations

import torch


def adaptive_instance_normalization(content: torch.Tensor, style: torch.Tensor,
                                    eps: float = 1e-5) -> torch.Tensor:
    """Give `content` the per-(sample, channel) mean/std of `style` (statistics over T, H, W)."""
    b, c = content.shape[:2]
    cs = content.reshape(b, c, -1)
    ss = style.reshape(b, c, -1)
    c_mean, c_std = cs.mean(-1), (cs.var(-1) + eps).sqrt()
    s_mean, s_std = ss.mean(-1), (ss.var(-1) + eps).sqrt()
    shape = (b, c) + (1,) * (content.dim() - 2)
    return (content - c_mean.view(shape)) / c_std.view(shape) * s_std.view(shape) + s_mean.view(shape)

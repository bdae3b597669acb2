"""3D convolutional building blocks (BCTHW tensors) shared by the video VQGANs.

Parameter names follow the official BFVR-STC layout (`norm1`, `conv1`, `norm2`, `conv2`, `conv_out`,
`conv`), so official state_dicts load with ``strict=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _inplace_ok(t: torch.Tensor) -> bool:
    """In-place ops are only safe when autograd does not track `t` (inference / no_grad)."""
    return not (torch.is_grad_enabled() and t.requires_grad)


def to_channels_last_3d(module: nn.Module) -> nn.Module:
    """Store every 5-D parameter/buffer of `module` channels_last_3d (Conv3d weights); values unchanged,
    others untouched. (``module.to(memory_format=torch.channels_last_3d)`` fails on modules that also hold 4-D
    weights.)

    The precision policy (`bfvr.engine.device`): used with bf16/fp16, or when asked explicitly; fp32 keeps the
    official (contiguous) layout, whose numerics match the official code.
    """
    for t in list(module.parameters()) + list(module.buffers()):
        if t.dim() == 5:
            t.data = t.data.contiguous(memory_format=torch.channels_last_3d)
    return module


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """channels_last_3d (5-D) or channels_last (4-D) when `x` is stored that way (and not also
    plain-contiguous), else contiguous."""
    if not x.is_contiguous():
        if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d):
            return torch.channels_last_3d
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            return torch.channels_last
    return torch.contiguous_format


def swish(x: torch.Tensor) -> torch.Tensor:
    """x * sigmoid(x), in place when autograd allows it (saves one activation-sized buffer)."""
    return F.silu(x, inplace=_inplace_ok(x))


class GroupNorm(nn.GroupNorm):
    """GroupNorm that always computes in fp32 and returns the input dtype.

    Under CPU bf16 autocast the statistics of a 24x512x512 feature map are too coarse in bf16; this
    keeps them exact while the convolutions around it run in bf16. Parameter names are nn.GroupNorm's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        with torch.autocast(x.device.type, enabled=False):
            if x.device.type == "cpu":
                # CPU group_norm takes bf16/fp16 input with fp32 parameters and accumulates in fp32:
                # the same numbers as on an fp32 copy, without the two activation-sized fp32 copies
                return F.group_norm(x, self.num_groups, w, b, self.eps)
            y = F.group_norm(x.float(), self.num_groups, w, b, self.eps)
        return y.to(x.dtype)


def normalize(channels: int, groups: int = 32, eps: float = 1e-6) -> GroupNorm:
    """The VQGAN normalisation: GroupNorm(32, eps=1e-6, affine)."""
    return GroupNorm(num_groups=groups, num_channels=channels, eps=eps, affine=True)


class ResBlock(nn.Module):
    """norm -> swish -> Conv3d 3x3x3 -> norm -> swish -> Conv3d 3x3x3, plus a 1x1x1 skip when channels
    change."""

    def __init__(self, in_channels: int, out_channels: int | None = None, *, groups: int = 32,
                 eps: float = 1e-6) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = normalize(in_channels, groups, eps)
        self.conv1 = nn.Conv3d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.norm2 = normalize(out_channels, groups, eps)
        self.conv2 = nn.Conv3d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        if in_channels != out_channels:
            self.conv_out = nn.Conv3d(in_channels, out_channels, kernel_size=1, stride=1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # one statement per step so each intermediate is freed as soon as the next exists (at 24x512x512
        # one fp32 activation is 0.8 GB: this keeps 3 alive instead of 4)
        h = swish(self.norm1(x))
        h = self.conv1(h)
        h = swish(self.norm2(h))
        h = self.conv2(h)
        if self.in_channels != self.out_channels:
            x = self.conv_out(x)
        if _inplace_ok(h) and h.dtype == x.dtype and h.shape == x.shape:
            return h.add_(x)
        return x + h


class Downsample(nn.Module):
    """Spatio-temporal /2: zero-pad one sample at the end of T, H and W, then Conv3d(k=3, stride=2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1, 0, 1), mode="constant", value=0.0))


class Downsample2D(nn.Module):
    """Spatial-only /2 on a BCTHW tensor: Conv3d(k=(1,3,3), stride=(1,2,2), pad=(0,1,1))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Spatio-temporal x2: nearest in T, H, W, then Conv3d 3x3x3."""

    scale: tuple[int, int, int] = (2, 2, 2)

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=self.scale, mode="nearest"))


class Upsample2D(Upsample):
    """Spatial-only x2 (nearest in H, W), then Conv3d 3x3x3 (a full 3x3x3 kernel, as in the official
    layout)."""

    scale = (1, 2, 2)

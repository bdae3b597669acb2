"""BFVR-Lite as a `ClipModel` (see `bfvr.engine.base`): clips of frames on a 512x512 face canvas.

* layout: the engine's ``[T, 3, H, W]`` in [0, 1] becomes the network's ``[1, T, 3, H, W]``;
* sizes that are not multiples of 16 are padded (edge replicated) and cropped back;
* ``precision="bf16"``: bf16 autocast with channels-last weights (several times faster than fp32 on CPUs
  with AMX/AVX512-BF16); ``"fp32"``: plain fp32; output clamped to [0, 1];
* ONNX: `onnx_module()` gives what `bfvr.models.onnx.export_onnx` traces (T, H and W stay dynamic).

The clip engine cross-fades `overlap` frames between consecutive clips: the network looks four frames
each way (four temporal fusions), so an overlap of 4 hides the clip edges.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bfvr.engine.device import autocast, check_clip_options, uses_channels_last
from bfvr.errors import ModelError



class LiteClipModel:
    """Restores clips with a `LiteNet`."""

    def __init__(self, net: nn.Module, *, name: str = "bfvr-lite", clip_len: int | None = 24, overlap: int = 4,
                 canvas: tuple[int, int] | None = (512, 512), device: torch.device | str = "cpu",
                 precision: str = "fp32", multiple: int = 16) -> None:
        self.device = check_clip_options(precision, clip_len, overlap, device)
        self.name, self.clip_len, self.overlap, self.canvas = name, clip_len, overlap, canvas
        self.precision, self.multiple = precision, multiple
        self.net = net.to(self.device).eval().requires_grad_(False)
        if uses_channels_last(precision):
            self.net.to(memory_format=torch.channels_last)

    def __repr__(self) -> str:
        return (f"LiteClipModel(name={self.name!r}, clip_len={self.clip_len}, overlap={self.overlap}, "
                f"canvas={self.canvas}, device={self.device}, precision={self.precision!r})")

    @torch.no_grad()
    def restore_clip(self, clip: torch.Tensor) -> torch.Tensor:
        """Restore `clip` [T, 3, H, W] in [0, 1]; return [T, 3, H, W] float32 in [0, 1] on `self.device`."""
        if clip.dim() != 4 or clip.shape[1] != 3:
            raise ModelError(f"{self.name} restores clips shaped [T, 3, H, W]; got {list(clip.shape)}.")
        t, _, h, w = clip.shape
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        x = clip.to(self.device, torch.float32)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        with autocast(self.device, self.precision):
            out = self.net(x.unsqueeze(0))
        out = out.float()[0, :, :, :h, :w].clamp_(0.0, 1.0)
        return out.contiguous()

    def onnx_module(self) -> tuple[nn.Module, str, str]:
        """(network, input layout, the axes that may vary) for `bfvr.models.onnx.export_onnx`."""
        return self.net, "BTCHW", "THW"

"""BFVR-STC as a `ClipModel` (see `bfvr.engine.base`): 24-frame clips on a 512x512 canvas.

The engine cuts any-length videos into clips of `clip_len` frames that share `overlap` frames and
cross-fades the overlaps; this class only runs one clip through the stage-II network:

* layout: the engine's ``[T, 3, H, W]`` in [0, 1] becomes the network's ``[1, 3, T, H, W]``;
* odd T (the network halves T) is padded with a copy of the last frame, which is dropped again;
* forward under ``torch.no_grad()``; ``precision="bf16"`` runs under bf16 autocast with
  channels_last_3d tensors (about 4x faster on CPUs with AMX), ``"fp16"`` under fp16 autocast (CUDA);
* output mapping: ``"clamp"`` (default) clamps to [0, 1]; ``"minmax"`` is the official inference's
  min-max normalisation over the whole clip (with chunking it is per clip, so brightness may differ
  between clips: the cross-fade hides the seams only partly).

Why 24 frames: the official networks were trained on 24-frame clips, and the official stage-II
temporal residual (reproduced with ``official_residual=True``) mixes channel groups in a way that
depends on T, so the official checkpoints behave as trained only at T=24.
"""

from __future__ import annotations

import torch
from torch import nn

from bfvr.engine.device import autocast, check_clip_options, uses_channels_last
from bfvr.errors import ConfigError, ModelError
from bfvr.models.blocks.conv3d import to_channels_last_3d

OUTPUT_MAPS = ("clamp", "minmax")


def map_output(x: torch.Tensor, mode: str) -> torch.Tensor:
    """Map the network output to [0, 1]: ``clamp`` or the official whole-clip ``minmax``."""
    if mode == "clamp":
        return x.clamp(0.0, 1.0)
    if mode == "minmax":
        lo, hi = x.min(), x.max()
        return (x - lo) / (hi - lo).clamp_min(1e-8)
    raise ConfigError(f"unknown output mapping '{mode}'; choose one of: {', '.join(OUTPUT_MAPS)}.")


class STCClipModel:
    """Restores clips with a BFVR-STC stage-II network (`bfvr.models.stc.STCStage2`).

    `net` is ``STCStage2`` (its ``infer(x, precision, channels_last)`` applies the precision policy) or
    any module called as ``net(x BCTHW in [0,1], w=0)`` that returns the restored clip or a tuple whose
    first item is the restored clip (then autocast + channels_last_3d are applied here).
    """

    #: the crop the official STC data used (see bfvr.faces)
    face_crop_mode = "proportion"

    def __init__(self, net: nn.Module, *, name: str = "stc", clip_len: int | None = 24, overlap: int = 8,
                 canvas: tuple[int, int] | None = (512, 512), device: torch.device | str = "cpu",
                 precision: str = "fp32", output_map: str = "clamp") -> None:
        if output_map not in OUTPUT_MAPS:
            raise ConfigError(f"unknown output mapping '{output_map}'; choose one of: {', '.join(OUTPUT_MAPS)}.")
        self.device = check_clip_options(precision, clip_len, overlap, device)
        self.name = name
        self.clip_len = clip_len
        self.overlap = overlap
        self.canvas = canvas
        self.precision = precision
        self.output_map = output_map
        self.net = net.to(self.device).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.channels_last = uses_channels_last(precision)
        if self.channels_last:
            to_channels_last_3d(self.net)

    def __repr__(self) -> str:
        return (f"STCClipModel(name={self.name!r}, clip_len={self.clip_len}, overlap={self.overlap}, "
                f"canvas={self.canvas}, device={self.device}, precision={self.precision!r}, "
                f"output_map={self.output_map!r})")

    def onnx_module(self) -> tuple[nn.Module, str, str]:
        """(network, input layout, axes that may vary) for `bfvr.models.onnx.export_onnx`: the restored clip of
        ``net(x, w=0)`` for a fixed clip length (the official residual depends on T) on the 512x512 canvas."""
        return _FirstOutput(self.net), "BCTHW", ""

    @torch.no_grad()
    def restore_clip(self, clip: torch.Tensor) -> torch.Tensor:
        """Restore `clip` [T, 3, H, W] in [0, 1]; return [T, 3, H, W] float32 in [0, 1] on `self.device`."""
        if clip.dim() != 4 or clip.shape[1] != 3:
            raise ModelError(f"{self.name} restores clips shaped [T, 3, H, W]; got {list(clip.shape)}.")
        t, _, h, w = clip.shape
        if self.canvas is not None and (h, w) != tuple(self.canvas):
            raise ModelError(f"{self.name} needs {self.canvas[0]}x{self.canvas[1]} frames; got {h}x{w} "
                             "(resize the frames or crop the faces to the model canvas first).")
        x = clip.to(self.device, torch.float32).permute(1, 0, 2, 3).unsqueeze(0)  # 1,3,T,H,W
        if t % 2:
            x = torch.cat([x, x[:, :, -1:]], dim=2)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        infer = getattr(self.net, "infer", None)
        if infer is not None:  # STCStage2's own precision policy (autocast + channels_last_3d)
            out = infer(x, precision=self.precision, channels_last=self.channels_last)
        else:
            with autocast(self.device, self.precision):
                out = self.net(x, w=0)
            if isinstance(out, (tuple, list)):
                out = out[0]
        out = out.float()[:, :, :t]
        out = map_output(out, self.output_map)
        return out[0].permute(1, 0, 2, 3).contiguous()


class _FirstOutput(nn.Module):
    """``net(x, w=0)[0]`` as a module (what the ONNX export traces)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x, w=0)
        return out[0] if isinstance(out, (tuple, list)) else out

"""BFVR-STC as a `ClipModel` (see `bfvr.engine.base`): 24-frame clips on a 512x512 canvas.

The engine cuts any-length videos into clips of `clip_len` frames that share `overlap` frames and
cross-fades the overlaps; this adapter (on the shared `bfvr.models.adapter.NetClipModel`) runs one clip
through the stage-II network:

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

from bfvr.engine.base import Schedule
from bfvr.models.adapter import OUTPUT_MAPS, NetClipModel, map_output
from bfvr.models.blocks.conv3d import to_channels_last_3d

__all__ = ["OUTPUT_MAPS", "STCClipModel", "map_output", "to_channels_last_3d"]


class STCClipModel(NetClipModel):
    """Restores clips with a BFVR-STC stage-II network (`bfvr.models.stc.STCStage2`), or any module called as
    ``net(x BCTHW in [0,1], w=0)`` that returns the restored clip or a tuple whose first item is it."""

    def __init__(self, net: nn.Module, *, name: str = "stc", clip_len: int | None = 24, overlap: int = 8,
                 canvas: tuple[int, int] | None = (512, 512), device: torch.device | str = "cpu",
                 precision: str = "fp32", output_map: str = "clamp") -> None:
        super().__init__(net, name=name, schedule=Schedule.clips(clip_len, overlap), canvas=canvas,
                         device=device, precision=precision, layout="BCTHW", time_multiple=2,
                         output_map=output_map,
                         face_crop_mode="proportion")  # the crop the official STC data used (see bfvr.faces)

    def net_to_channels_last(self) -> None:
        to_channels_last_3d(self.net)  # only the Conv3d weights: STC's few 2-D weights act on 4-D views

    def run_net(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x, w=0)
        return out[0] if isinstance(out, (tuple, list)) else out

    def onnx_module(self) -> tuple[nn.Module, str, str]:
        """(network, input layout, axes that may vary) for `bfvr.models.onnx.export_onnx`: the restored
        clip of ``net(x, w=0)`` for a fixed clip length (the official residual depends on T) on the
        512x512 canvas."""
        return _FirstOutput(self.net), "BCTHW", ""


class _FirstOutput(nn.Module):
    """``net(x, w=0)[0]`` as a module (what the ONNX export traces)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x, w=0)
        return out[0] if isinstance(out, (tuple, list)) else out

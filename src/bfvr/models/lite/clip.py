"""BFVR-Lite as a `ClipModel` (see `bfvr.engine.base`): clips of frames on a 512x512 face canvas.

On the shared adapter `bfvr.models.adapter.NetClipModel`:

* layout: the engine's ``[T, 3, H, W]`` in [0, 1] becomes the network's ``[1, T, 3, H, W]``;
* sizes that are not multiples of 16 are padded (edge replicated) and cropped back;
* ``precision="bf16"``: bf16 autocast with channels-last weights (several times faster than fp32 on CPUs
  with AMX/AVX512-BF16); ``"fp32"``: plain fp32; output clamped to [0, 1];
* ONNX: `onnx_module()` gives what `bfvr.models.onnx.export_onnx` traces (T, H and W stay dynamic).

The clip engine cross-fades `overlap` frames between consecutive clips: the network looks four frames
each way (four temporal fusions), so an overlap of 4 hides the clip edges. The engine then damps what
flicker is left where the picture stands still (``temporal_filter``, `bfvr.engine.temporal`; default
`TEMPORAL_FILTER`).
"""

from __future__ import annotations

import torch
from torch import nn

from bfvr.engine.base import Schedule
from bfvr.engine.temporal import check_sigma
from bfvr.models.adapter import NetClipModel

#: the default strength of BFVR-Lite's temporal filter (8-bit levels; how it was chosen:
#: `bfvr.engine.temporal`)
TEMPORAL_FILTER = 1.0


class LiteClipModel(NetClipModel):
    """Restores clips with a `LiteNet`."""

    def __init__(self, net: nn.Module, *, name: str = "bfvr-lite", clip_len: int | None = 24,
                 overlap: int = 4, canvas: tuple[int, int] | None = (512, 512),
                 device: torch.device | str = "cpu",
                 precision: str = "fp32", multiple: int = 16,
                 temporal_filter: float = TEMPORAL_FILTER) -> None:
        """`temporal_filter`: strength (8-bit levels) of the motion-adaptive filter the engine applies to each
        restored clip (`bfvr.engine.temporal`); 0 = the network's output as it is."""
        # no face_crop_mode: trained on the proportion crop, which is the pipeline's default
        super().__init__(net, name=name, schedule=Schedule.clips(clip_len, overlap), canvas=canvas,
                         device=device, precision=precision, layout="BTCHW", spatial_multiple=multiple,
                         canvas_required=False)
        self.multiple = multiple
        #: fully convolutional: it restores whole frames too (the face pipeline's background pass)
        self.whole_frames = True
        self.temporal_filter = check_sigma(temporal_filter)
        #: the network takes any number of frames (edges repeated, as in training): a stream shorter than
        #: `clip_len` goes through unpadded
        self.short_clips = True

    def onnx_module(self) -> tuple[nn.Module, str, str]:
        """(network, input layout, the axes that may vary) for `bfvr.models.onnx.export_onnx`."""
        return self.net, "BTCHW", "THW"

"""The shared `ClipModel` adapter: what every network needs between the engine and its forward pass.

The engine hands a model ``[T, 3, H, W]`` frames in the model's value range (`bfvr.engine.base`). A network
wants its own layout, sizes it can divide, a precision and a memory layout, and its output mapped back.
`NetClipModel` does all of that once; a method's adapter only says how to call its network (`run_net`)
and which settings it has:

* **layout**: ``"BCTHW"`` (3-D networks: STC), ``"BTCHW"`` (a clip per batch item: BFVR-Lite) or ``"NCHW"``
  (frames stacked in the batch, ``(B*T), C, H, W``: DicFace, PGTFormer);
* **padding**: H and W padded by edge replication to a multiple of `spatial_multiple` and cropped back; T
  padded to a multiple of `time_multiple` by repeating the last frame, whose outputs are dropped;
* **canvas**: the size the face pipeline crops to; frames must have it unless `canvas_required=False`
  (a fully convolutional network that also runs on other sizes, e.g. `--has-aligned` crops);
* **precision** (`bfvr.engine.device`): fp32 runs the official numerics; bf16/fp16 run under autocast with
  channels-last weights and inputs (the one rule in `uses_channels_last`);
* **output mapping**: ``"clamp"`` to the value range, ``"minmax"`` (official STC inference: min-max over the
  clip, then into the value range) or ``"none"``;
* **contract** members: `schedule`, `value_range`, `face_crop_mode`, `precision` (read by
  `bfvr.engine.base.contract_of`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bfvr.engine.base import CROP_MODES, Schedule
from bfvr.engine.device import autocast, check_clip_options, uses_channels_last
from bfvr.errors import ConfigError, ModelError

LAYOUTS = ("BCTHW", "BTCHW", "NCHW")
OUTPUT_MAPS = ("clamp", "minmax", "none")


def map_output(x: torch.Tensor, mode: str, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Map a network output into `value_range`: ``clamp``, the official whole-clip ``minmax``, or ``none``."""
    lo, hi = value_range
    if mode == "clamp":
        return x.clamp(lo, hi)
    if mode == "minmax":
        mn, mx = x.min(), x.max()
        return (x - mn) / (mx - mn).clamp_min(1e-8) * (hi - lo) + lo
    if mode == "none":
        return x
    raise ConfigError(f"unknown output mapping '{mode}'; choose one of: {', '.join(OUTPUT_MAPS)}.")


def to_channels_last(module: nn.Module) -> nn.Module:
    """Store the 4-D weights of `module` channels_last and the 5-D ones channels_last_3d (values
    unchanged)."""
    for t in list(module.parameters()) + list(module.buffers()):
        if t.dim() == 4:
            t.data = t.data.contiguous(memory_format=torch.channels_last)
        elif t.dim() == 5:
            t.data = t.data.contiguous(memory_format=torch.channels_last_3d)
    return module


class NetClipModel:
    """A `ClipModel` around one network. Subclasses override `run_net` when the network is not called as
    ``net(x)`` or returns more than the restored tensor (the default takes the first item of a tuple)."""

    def __init__(self, net: nn.Module, *, name: str, schedule: Schedule, canvas: tuple[int, int] | None,
                 device: torch.device | str = "cpu", precision: str = "fp32",
                 value_range: tuple[float, float] = (0.0, 1.0), layout: str = "BCTHW",
                 spatial_multiple: int = 1, time_multiple: int = 1, output_map: str = "clamp",
                 face_crop_mode: str | None = None,
                 channels_last: bool | None = None, canvas_required: bool = True) -> None:
        schedule = schedule.validated()
        self.device = check_clip_options(precision, schedule.length, schedule.overlap, device)
        if layout not in LAYOUTS:
            raise ConfigError(f"unknown network layout '{layout}'; use one of: {', '.join(LAYOUTS)}.")
        if output_map not in OUTPUT_MAPS:
            raise ConfigError(f"unknown output mapping '{output_map}'; "
                              f"choose one of: {', '.join(OUTPUT_MAPS)}.")
        if face_crop_mode is not None and face_crop_mode not in CROP_MODES:
            raise ConfigError(f"face_crop_mode must be one of {', '.join(CROP_MODES)} or None, "
                              f"got {face_crop_mode!r}.")
        if spatial_multiple < 1 or time_multiple < 1:
            raise ConfigError("spatial_multiple and time_multiple must be >= 1.")
        self.name, self.schedule, self.precision, self.layout = name, schedule, precision, layout
        self.canvas = tuple(canvas) if canvas else None
        self.canvas_required = canvas_required
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.spatial_multiple, self.time_multiple = spatial_multiple, time_multiple
        self.output_map, self.face_crop_mode = output_map, face_crop_mode
        self.net = net.to(self.device).eval().requires_grad_(False)
        self.channels_last = uses_channels_last(precision, channels_last)
        if self.channels_last:
            self.net_to_channels_last()

    # the engine's clip-schedule view of `schedule` (the window length is the clip a call gets)
    @property
    def clip_len(self) -> int | None:
        return self.schedule.length

    @property
    def overlap(self) -> int:
        return self.schedule.overlap

    def __repr__(self) -> str:
        s = self.schedule
        if s.kind == "window":
            sched = f"window({s.length}, keep={s.keep})"
        else:
            sched = f"clips({s.length}, overlap={s.overlap})"
        return (f"{type(self).__name__}(name={self.name!r}, schedule={sched}, canvas={self.canvas}, "
                f"device={self.device}, precision={self.precision!r}, output_map={self.output_map!r})")

    # ------------------------------------------------------------------------------------------ hooks
    def net_to_channels_last(self) -> None:
        """Store the network's weights channels-last (called when the precision policy asks for it)."""
        to_channels_last(self.net)

    def run_net(self, x: torch.Tensor) -> torch.Tensor:
        """Call the network on `x` (network layout, padded, on the device, under autocast); return the
        restored tensor in the same layout."""
        out = self.net(x)
        return out[0] if isinstance(out, (tuple, list)) else out

    # ---------------------------------------------------------------------------------------- layout
    def to_layout(self, frames: torch.Tensor) -> torch.Tensor:
        """``[T, 3, H, W]`` -> the network layout (one clip)."""
        if self.layout == "BCTHW":
            x = frames.permute(1, 0, 2, 3).unsqueeze(0)
            if self.channels_last:
                return x.contiguous(memory_format=torch.channels_last_3d)
            return x.contiguous()
        if self.layout == "BTCHW":
            return frames.unsqueeze(0).contiguous()
        if self.channels_last:
            return frames.contiguous(memory_format=torch.channels_last)
        return frames.contiguous()

    def from_layout(self, out: torch.Tensor) -> torch.Tensor:
        """The network layout -> ``[T, 3, H, W]``."""
        if self.layout == "BCTHW":
            return out[0].permute(1, 0, 2, 3)
        if self.layout == "BTCHW":
            return out[0]
        return out

    # --------------------------------------------------------------------------------------- restore
    def check_clip(self, clip: torch.Tensor) -> None:
        if clip.dim() != 4 or clip.shape[1] != 3:
            raise ModelError(f"{self.name} restores clips shaped [T, 3, H, W]; got {list(clip.shape)}.")
        h, w = clip.shape[-2:]
        if self.canvas is not None and self.canvas_required and (h, w) != self.canvas:
            raise ModelError(f"{self.name} needs {self.canvas[0]}x{self.canvas[1]} frames; got {h}x{w} "
                             "(resize the frames or crop the faces to the model canvas first).")

    @torch.no_grad()
    def restore_clip(self, clip: torch.Tensor) -> torch.Tensor:
        """Restore `clip` [T, 3, H, W] (float, in `value_range`); return [T, 3, H, W] float32 on
        `self.device`."""
        self.check_clip(clip)
        t, _, h, w = clip.shape
        x = clip.to(self.device, torch.float32)
        m = self.spatial_multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        pt = (-t) % self.time_multiple
        if pt:
            x = torch.cat([x, x[-1:].expand(pt, -1, -1, -1)], dim=0)
        with autocast(self.device, self.precision):
            out = self.run_net(self.to_layout(x))
        out = self.from_layout(out.float())[:t, :, :h, :w]
        return map_output(out, self.output_map, self.value_range).contiguous()

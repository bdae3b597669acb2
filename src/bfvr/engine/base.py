"""The contract between the engine and the restoration models.

A *clip model* restores a short clip of frames on one canvas size. The engine (scheduling, overlap
blending, padding, value range, precision) and the face pipeline (crop/align, paste-back) only talk to
models through this interface, so a new method plugs in by implementing it.

Required members: `name`, `clip_len`, `overlap`, `canvas`, `device` and `restore_clip`. Optional members,
with the default used when a model does not set them:

* `schedule` (`Schedule`): how the engine consumes the model; default `Schedule.clips(clip_len, overlap)`;
* `value_range` ((lo, hi)): the values `restore_clip` takes and returns; default (0.0, 1.0). The engine
  maps its [0, 1] frames to this range before the call and back after it;
* `precision` (str | None): set when the model applies its precision itself (autocast, memory layout);
  None = the engine wraps the call in autocast for the precision the caller asked for;
* `face_crop_mode` ("proportion" | "align" | None): the crop the model was trained on; None = no
  preference (the face pipeline then uses the proportion crop);
* `prepare_frames` (callable): ``f(iter of (frame uint8 [H, W, 3], pts)) -> the same`` applied to the whole
  video frames before the face pipeline and the engine (e.g. DicFace inpainting paints the mask's holes
  white); None = frames unchanged;
* `window_session` (callable): window schedules only: ``f() -> WindowSession | None``, a per-stream cache
  that restores a window's kept frames reusing per-frame work of earlier windows (DicFace: each frame is
  encoded once); None = every window is a full `restore_clip` call;
* `temporal_filter` (float): strength in 8-bit levels of the motion-adaptive temporal filter the engine
  applies to every clip the model returns (`bfvr.engine.temporal`; BFVR-Lite: 1); 0 = none;
* `short_clips` (bool): a clip shorter than `clip_len` is fine (a network that takes any number of frames,
  BFVR-Lite): a stream shorter than one clip goes through as it is instead of being padded in time (the
  padding's mirrored frames otherwise look, to a network trained on real clips, like a still scene around its
  last frame, which it pulls toward its neighbour); default False.

Callers read all of it through `contract_of(model)`, never by attribute name.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from bfvr.engine.temporal import check_sigma
from bfvr.errors import ConfigError

SCHEDULE_KINDS = ("clips", "window")
CROP_MODES = ("proportion", "align")


@dataclass(frozen=True)
class Schedule:
    """How the engine feeds a model a video of any length.

    * ``clips`` (STC, BFVR-Lite): clips of `length` frames (None = any length, in chunks) sharing `overlap`
      frames, which are cross-faded; the model returns as many frames as it gets.
    * ``window`` (DicFace L=5, PGTFormer L=3): a sliding window of `length` frames; of the model's output
      only `keep` centre frames are used, and the window moves by `keep`. ``keep=1`` is the official
      schedule: stride 1, output frame i = model(frames i-L//2 .. i-L//2+L-1)[L//2], frames before the
      first / after the last replicated at the edges. ``keep=K > 1`` is the faster variant: K times fewer
      calls; frame i of a block is then taken from output position L//2 - K//2 + (i - block start),
      i.e. up to K//2 frames off-centre (measured deviation: docs/architecture.md).
    """

    kind: str = "clips"
    length: int | None = None
    overlap: int = 0
    keep: int = 1

    @classmethod
    def clips(cls, length: int | None, overlap: int = 0) -> Schedule:
        return cls("clips", length, overlap, 1).validated()

    @classmethod
    def window(cls, length: int, keep: int = 1) -> Schedule:
        return cls("window", length, 0, keep).validated()

    @property
    def first_kept(self) -> int:
        """Window: output position of the first kept frame (L//2 for the official keep=1)."""
        return (self.length or 1) // 2 - self.keep // 2

    def validated(self) -> Schedule:
        if self.kind not in SCHEDULE_KINDS:
            raise ConfigError(f"unknown schedule {self.kind!r}; use one of: {', '.join(SCHEDULE_KINDS)}.")
        if self.kind == "window":
            if self.length is None or self.length < 1:
                raise ConfigError(f"a window schedule needs a window length >= 1, got {self.length}.")
            if self.overlap:
                raise ConfigError("overlap applies to clip schedules; a window model keeps centre frames "
                                  "(set keep) instead.")
            if not 1 <= self.keep <= self.length:
                raise ConfigError("keep must be between 1 and the window "
                                  f"length {self.length}, got {self.keep}.")
        else:
            if self.length is not None and self.length < 1:
                raise ConfigError(f"clip length must be >= 1, got {self.length}.")
            if self.length is not None and not 0 <= self.overlap < self.length:
                raise ConfigError(f"overlap must be between 0 and clip_len-1 = {self.length - 1} frames, "
                                  f"got {self.overlap}.")
        return self


@runtime_checkable
class WindowSession(Protocol):
    """Incremental window restoration for one stream of frames (`ModelContract.window_session`)."""

    def restore(self, window: torch.Tensor, ids: list[int], keep: list[int]) -> torch.Tensor:
        """`window` [L, 3, H, W] in the model's value range holds stream frames `ids` (non-decreasing, edge
        frames repeated); return the restored window positions `keep` as [len(keep), 3, H, W], equal to
        ``restore_clip(window)[keep]``. Frames before ``min(ids)`` are never asked for again (the session
        may forget them)."""
        ...


@dataclass(frozen=True)
class ModelContract:
    """Everything the engine and the face pipeline need from a model (see the module doc)."""

    name: str
    schedule: Schedule
    canvas: tuple[int, int] | None
    device: torch.device
    value_range: tuple[float, float] = (0.0, 1.0)
    precision: str | None = None
    face_crop_mode: str | None = None
    prepare_frames: Callable[[Any], Any] | None = None
    #: the model also restores whole frames of any size (fully convolutional): the face pipeline then runs it
    #: over every frame as the background pass (`FaceOptions.background_model`)
    whole_frames: bool = False
    #: window schedules: ``f() -> WindowSession | None`` (see the module doc)
    window_session: Callable[[], WindowSession | None] | None = None
    #: strength (8-bit levels) of the motion-adaptive temporal filter the engine applies to each clip the
    #: model returns (`bfvr.engine.temporal`); 0 = none
    temporal_filter: float = 0.0
    #: a clip shorter than the schedule's length is fine: a short stream is not padded in time
    short_clips: bool = False


def _temporal_filter_of(model: Any) -> float:
    """The model's `temporal_filter` strength: 0 when it has none (or an attribute of that name that is not a
    number, e.g. a submodule); one sentence when it is a number that is not a strength."""
    value = getattr(model, "temporal_filter", None)
    if value is None or isinstance(value, bool) or not isinstance(value, numbers.Real):
        return 0.0
    try:
        return check_sigma(value)
    except ConfigError as e:
        raise ConfigError(f"model {getattr(model, 'name', type(model).__name__)}: {e}") from None


def contract_of(model: ClipModel) -> ModelContract:
    """The model's contract, with the documented defaults for the optional members (the one place that reads
    them by name)."""
    schedule = getattr(model, "schedule", None)
    if schedule is None:
        schedule = Schedule.clips(getattr(model, "clip_len", None), int(getattr(model, "overlap", 0) or 0))
    lo, hi = getattr(model, "value_range", (0.0, 1.0))
    if not hi > lo:
        raise ConfigError(f"model value_range must be (lo, hi) with hi > lo, got {(lo, hi)}.")
    crop = getattr(model, "face_crop_mode", None)
    if crop is not None and crop not in CROP_MODES:
        raise ConfigError("model face_crop_mode must be one of "
                          f"{', '.join(CROP_MODES)} or None, got {crop!r}.")
    canvas = getattr(model, "canvas", None)
    return ModelContract(name=str(getattr(model, "name", type(model).__name__)),
                         schedule=schedule.validated(), canvas=tuple(canvas) if canvas else None,
                         device=torch.device(getattr(model, "device", "cpu")),
                         value_range=(float(lo), float(hi)), precision=getattr(model, "precision", None),
                         face_crop_mode=crop, prepare_frames=getattr(model, "prepare_frames", None),
                         whole_frames=bool(getattr(model, "whole_frames", False)),
                         window_session=getattr(model, "window_session", None),
                         temporal_filter=_temporal_filter_of(model),
                         short_clips=bool(getattr(model, "short_clips", False)))


@runtime_checkable
class ClipModel(Protocol):
    #: short name used in logs and in `bfvr models`
    name: str
    #: frames per forward pass the model wants (STC: 24; a window model: its window); None = any length
    clip_len: int | None
    #: frames shared by consecutive clips and cross-faded by the engine (0 = no overlap)
    overlap: int
    #: (H, W) the model needs as input; None = any size (the caller keeps the frame size)
    canvas: tuple[int, int] | None
    #: device the model runs on (the engine moves clips there)
    device: torch.device

    def restore_clip(self, clip: torch.Tensor) -> torch.Tensor:
        """Restore `clip` [T, 3, H, W] float32 in `value_range` (on any device); return the same shape and
        range.

        T equals the clip or window length when that is set (the engine pads short tails), and H, W equal
        `canvas` when that is set (the engine or the face pipeline resizes).
        """
        ...


class IdentityModel:
    """Passes frames through unchanged: exercises the whole read -> model -> write path."""

    name = "identity"
    clip_len: int | None = None
    overlap = 0
    canvas: tuple[int, int] | None = None

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)

    def restore_clip(self, clip: torch.Tensor) -> torch.Tensor:
        return clip

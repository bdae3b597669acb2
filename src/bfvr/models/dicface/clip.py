"""DicFace as a `ClipModel` (`bfvr.models.adapter.NetClipModel`): a sliding window over aligned face crops.

* layout ``NCHW`` (the window's frames stacked in the batch), values in [-1, 1], canvas = the network's
  `img_size` (512x512), output clamped to [-1, 1];
* schedule ``Schedule.window(5, keep)``: ``keep=1`` is the official schedule (stride 1, each output frame is
  the centre of its own 5-frame window, edge frames replicated); ``keep=K`` (2..5) keeps K centre frames per
  call, K times fewer calls (``keep=5`` runs every frame once, in groups of 5). Longer windows must be a
  multiple of 5 frames (the network mixes time only inside groups of 5);
* faces: ``align`` crops (FFHQ 5-point template), as DicFace was trained;
* tasks: ``restore``; ``color`` converts every frame to grey first; ``inpaint`` paints the missing pixels of
  the user's mask white in the video frames before the face pipeline (`prepare_frames`, see `tasks`);
* sampling (`DicFace`): ``"official"`` Dirichlet draws from a private stream seeded with `seed` (repeatable;
  each call gets fresh noise) or ``"mean"`` (deterministic).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from bfvr.engine.base import Schedule
from bfvr.errors import ConfigError, ModelError
from bfvr.models.adapter import NetClipModel
from bfvr.models.dicface.net import SAMPLING_MODES, DicFace
from bfvr.models.dicface.tasks import FrameMask, to_grey

TASKS = ("restore", "inpaint", "color")
#: the sampling `bfvr restore` uses unless told otherwise (docs/dicface.md: measured effect on flicker)
DEFAULT_SAMPLING = "mean"


class DicFaceClipModel(NetClipModel):
    """Restores windows of aligned face crops with a `DicFace` network (any task)."""

    def __init__(
        self,
        net: DicFace,
        *,
        name: str = "dicface",
        task: str = "restore",
        window: int = 5,
        keep: int = 1,
        device: torch.device | str = "cpu",
        precision: str = "fp32",
        w: float = 1.0,
        adain: bool = False,
        sampling: str = DEFAULT_SAMPLING,
        seed: int | None = 0,
        mask: FrameMask | str | None = None,
    ) -> None:
        if task not in TASKS:
            raise ConfigError(f"unknown DicFace task '{task}'; choose one of: {', '.join(TASKS)}.")
        if sampling not in SAMPLING_MODES:
            raise ConfigError(f"unknown sampling '{sampling}'; choose one of: {', '.join(SAMPLING_MODES)}.")
        g = net.frame_length
        if window < g or window % g:
            raise ConfigError(f"the DicFace window must be a multiple of {g} frames, got {window}.")
        if not 0.0 <= float(w) <= 1.0:
            raise ConfigError(f"the fidelity weight w must be between 0 and 1, got {w}.")
        if task == "inpaint" and mask is None:
            raise ConfigError(
                f"{name} needs the mask of the missing pixels: --mask mask.png (white = missing; "
                "or a mask video / folder with one mask per frame)."
            )
        if task != "inpaint" and mask is not None:
            raise ConfigError(f"{name} takes no mask; use --model dicface-inpaint for inpainting.")
        size = net.img_size
        super().__init__(
            net,
            name=name,
            schedule=Schedule.window(window, keep),
            canvas=(size, size),
            device=device,
            precision=precision,
            value_range=(-1.0, 1.0),
            layout="NCHW",
            time_multiple=g,
            output_map="clamp",
            face_crop_mode="align",
        )
        self.task, self.w, self.adain = task, float(w), bool(adain)
        self.net.sampling, self.net.seed = sampling, seed
        self.net.reset_rng()
        self.mask = mask if mask is None or isinstance(mask, FrameMask) else FrameMask(mask)

    @property
    def sampling(self) -> str:
        return self.net.sampling

    def __repr__(self) -> str:
        return (
            super().__repr__()[:-1]
            + f", task={self.task!r}, sampling={self.sampling!r}, seed={self.net.seed}, "
            f"w={self.w})"
        )

    def check_clip(self, clip: torch.Tensor) -> None:
        super().check_clip(clip)
        g = self.net.frame_length
        if clip.shape[0] % g:
            raise ModelError(
                f"{self.name} restores windows of a multiple of {g} frames; got {clip.shape[0]} "
                f"(use a window length of 5, 10, ...)."
            )

    def run_net(self, x: torch.Tensor) -> torch.Tensor:
        if self.task == "color":
            x = to_grey(x)
        return self.net(x, w=self.w, adain=self.adain)[0]

    def prepare_frames(
        self, frames: Iterable[tuple[np.ndarray, int | None]]
    ) -> Iterator[tuple[np.ndarray, int | None]]:
        """The video frames as the network expects them before any cropping (inpainting: holes painted
        white)."""
        if self.mask is None:
            yield from frames
            return
        yield from self.mask.apply(frames)

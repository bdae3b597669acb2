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
  each call gets fresh noise) or ``"mean"`` (deterministic);
* incremental windows (`DicFaceWindowSession`, default; ``incremental=False`` = a full forward per window):
  the encoder and the multi-scale fusion are per frame, so each frame is encoded once and its encoding is
  reused by every window that contains it; the transformers and the Dirichlet head still see the whole
  window (and draw the whole window's sample, so the random stream advances exactly as a full forward
  does); only the kept frames are decoded (the generator is per frame too).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from bfvr.engine.base import Schedule
from bfvr.engine.device import autocast
from bfvr.errors import ConfigError, ModelError
from bfvr.models.adapter import NetClipModel, map_output
from bfvr.models.blocks.adain import adaptive_instance_normalization
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
        incremental: bool = True,
        fp32_transformer: bool = True,
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
        self.incremental = bool(incremental)
        self.net.fp32_transformer = bool(fp32_transformer)
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

    def window_session(self) -> DicFaceWindowSession | None:
        """The engine's per-stream incremental session (None with ``incremental=False``: every window is a
        full forward, the naive official loop)."""
        return DicFaceWindowSession(self) if self.incremental else None

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


class DicFaceWindowSession:
    """Incremental DicFace windows for one stream (`bfvr.engine.base.WindowSession`).

    Cache: frame index -> (lq_feat, encoder features for the fusion blocks). A frame's features are dropped
    once it has been decoded (the engine outputs every frame once), its lq_feat once the windows have moved
    past it; so the cache holds at most the current window (memory flat in the video length)."""

    def __init__(self, model: DicFaceClipModel) -> None:
        self.model = model
        self.net: DicFace = model.net
        self.lq: dict[int, torch.Tensor] = {}
        self.feats: dict[int, dict[str, torch.Tensor]] = {}
        self.encoded = 0  # frames encoded so far (for tests and benchmarks)

    def _encode(self, x: torch.Tensor, ids: list[int]) -> None:
        new = [j for j in dict.fromkeys(ids) if j not in self.lq]
        if not new:
            return
        first = [ids.index(j) for j in new]
        frames = self.model.to_layout(x[first])
        if self.model.task == "color":
            frames = to_grey(frames)
        lq, feats = self.net.encode_frames(frames)
        for k, j in enumerate(new):
            self.lq[j] = lq[k : k + 1]
            self.feats[j] = {s: f[k : k + 1] for s, f in feats.items()}
        self.encoded += len(new)

    @torch.no_grad()
    def restore(self, window: torch.Tensor, ids: list[int], keep: list[int]) -> torch.Tensor:
        m, net = self.model, self.net
        m.check_clip(window)
        if len(ids) != window.shape[0] or not keep:
            raise ModelError(f"{m.name}: a window of {window.shape[0]} frames needs as many frame indices "
                             "and at least one kept position.")
        for j in [j for j in self.lq if j < min(ids)]:  # windows only move forward
            self.lq.pop(j)
            self.feats.pop(j, None)
        x = window.to(m.device, torch.float32)
        with autocast(m.device, m.precision):
            self._encode(x, ids)
            lq_feat = torch.cat([self.lq[j] for j in ids])
            alpha = net.concentration(lq_feat)
            weights = net.code_weights(alpha)  # the whole window's draw: the random stream as a full forward
            quant = net.code_mixture(weights[keep])
            if m.adain:
                quant = adaptive_instance_normalization(quant, lq_feat[keep].float())
            kept = [ids[p] for p in keep]
            if any(j not in self.feats for j in kept):
                raise ModelError(f"{m.name}: frame {kept} was already restored in this stream.")
            feats = {s: torch.cat([self.feats[j][s] for j in kept]) for s in self.feats[kept[0]]}
            out = net.decode(quant, feats, m.w)
        for j in kept:
            self.feats.pop(j)
        return map_output(m.from_layout(out.float()), m.output_map, m.value_range).contiguous()

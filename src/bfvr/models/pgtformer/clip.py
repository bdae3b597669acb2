"""PGTFormer as a `ClipModel` (see `bfvr.engine.base`): 3-frame windows on a 512x512 face canvas.

On the shared adapter `bfvr.models.adapter.NetClipModel`:

* schedule: a sliding window of 3 frames (`Schedule.window(3, keep)`). ``keep=1`` is the official
  inference: stride 1, output frame i = the middle output of frames (i-1, i, i+1), the first and last frames
  replicated at the ends. ``keep=3`` is the fast variant: the window moves by 3 and all three outputs are
  used (3x fewer forward passes; the outer frames of each window see only one neighbour);
* layout: frames stacked in the batch, ``[(B*3), 3, 512, 512]`` in [0, 1] (the official layout); the canvas
  is the network's nominal resolution (512 for the released weights);
* precision: fp32 is the official numerics; bf16 runs under autocast with channels-last weights;
* output: clamped to [0, 1] (the official inference clamps too);
* faces: the method was trained on crops that are not aligned (the released weights are its stage IV,
  "don't need align"), so the face pipeline gives it the ``proportion`` crop;
* incremental windows (default, ``incremental=True``): the same numbers as one full network call per window
  (the naive loop, ``incremental=False``) with less work, through the engine's `window_session` contract:
  one session per stream (face track) caches each frame's per-frame part (BiSeNet parsing and the encoder
  before its first window attention, `PGTFormer.frame_features`) by stream frame index, computes it once
  and forgets frames the schedule has passed (at most L + K frames held, flat in video length); the decoder
  past the last cross-frame operation runs only for the frames the schedule keeps. `restore_clip` itself
  is always the full window call. No random numbers are drawn (dropout 0, argmax codes), on either path.
"""

from __future__ import annotations

import torch
from torch import nn

from bfvr.engine.base import Schedule
from bfvr.engine.device import autocast
from bfvr.errors import ConfigError, ModelError
from bfvr.models.adapter import NetClipModel, map_output


class PGTFormerClipModel(NetClipModel):
    """Restores 3-frame windows with a `bfvr.models.pgtformer.PGTFormer` network."""

    def __init__(
        self,
        net: nn.Module,
        *,
        name: str = "pgtformer",
        keep: int = 1,
        w: float = 1.0,
        canvas: tuple[int, int] | None = None,
        device: torch.device | str = "cpu",
        precision: str = "fp32",
        incremental: bool = True,
        cache_frames: int | None = None,
    ) -> None:
        frames = int(getattr(net, "tf", 3))
        if canvas is None:  # the size the network was built for (512 for the released weights)
            res = int(getattr(net, "ddconfig", {}).get("resolution", 512))
            canvas = (res, res)
        if keep not in range(1, frames + 1):
            raise ConfigError(
                f"keep must be between 1 (the official schedule) and the window length {frames}, got {keep}."
            )
        if not 0.0 <= float(w) <= 1.0:
            raise ConfigError(f"the fidelity weight w must be between 0 and 1, got {w}.")
        super().__init__(
            net,
            name=name,
            schedule=Schedule.window(frames, keep),
            canvas=canvas,
            device=device,
            precision=precision,
            layout="NCHW",
            output_map="clamp",
            face_crop_mode="proportion",
        )
        self.w = float(w)
        self.incremental = bool(incremental) and hasattr(net, "frame_features")

    def window_session(self) -> PGTFormerWindowSession | None:
        """A per-stream incremental session (`bfvr.engine.base.WindowSession`); None on the naive path."""
        return PGTFormerWindowSession(self) if self.incremental else None

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", w={self.w}, incremental={self.incremental})"

    @property
    def parsing_net(self) -> nn.Module:
        """The network's face-parsing BiSeNet (the face pipeline's ``--paste-mask parsing`` uses it)."""
        return self.net.conditionnet

    def check_clip(self, clip: torch.Tensor) -> None:
        super().check_clip(clip)
        n = self.schedule.length
        if clip.shape[0] != n:
            raise ModelError(
                f"{self.name} restores windows of {n} frames (got {clip.shape[0]}); --clip-len does "
                "not apply to it (use --keep for the faster schedule)."
            )

    def run_net(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, w=self.w)[0]



class PGTFormerWindowSession:
    """The incremental official schedule for one stream of frames (see the module doc).

    ``restore(window, ids, keep)``: `window` [3, 3, H, W] holds stream frames `ids` (edges repeated); returns
    the restored positions `keep`, equal to ``model.restore_clip(window)[keep]``. Per-frame features are
    looked up by frame index; frames before ``min(ids)`` are dropped (never asked for again)."""

    def __init__(self, model: PGTFormerClipModel) -> None:
        self.model = model
        self.cache: dict[int, dict] = {}
        self.frames_encoded = 0  # per-frame passes run (each frame once on a stream)

    @torch.no_grad()
    def restore(self, window: torch.Tensor, ids: list[int], keep: list[int]) -> torch.Tensor:
        m = self.model
        m.check_clip(window)
        if len(ids) != window.shape[0] or not keep:
            raise ModelError(f"{m.name}: a window of {window.shape[0]} frames needs as many frame ids and at "
                             "least one kept position.")
        for i in [i for i in self.cache if i < min(ids)]:
            del self.cache[i]
        first = {}  # id -> its first position in the window
        for pos, i in enumerate(ids):
            first.setdefault(i, pos)
        new = [i for i in first if i not in self.cache]
        x = m.to_layout(window.to(m.device, torch.float32))
        with autocast(m.device, m.precision):
            if new:
                feats = m.net.frame_features(x[[first[i] for i in new]])
                self.cache.update(zip(new, m.net.split_features(feats)))
                self.frames_encoded += len(new)
            stacked = m.net.stack_features([self.cache[i] for i in ids])
            out = m.net.forward_window(stacked, keep=list(keep), w=m.w)
        return map_output(out.float(), m.output_map, m.value_range).contiguous()

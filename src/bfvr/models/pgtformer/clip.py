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
  (the naive loop, ``incremental=False``) with less work. Each frame's per-frame part (BiSeNet parsing and
  the encoder before its first window attention, `PGTFormer.frame_features`) is computed once and reused
  by every window containing the frame: a small cache keyed by the frame's exact pixels (at most
  `cache_frames` frames, least recently used out; it serves any caller, several face tracks included); the
  decoder past the last cross-frame operation runs only for the frames the schedule keeps (the engine asks
  for them: `partial_windows`). No random numbers are drawn (dropout 0, argmax codes), on either path.
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
        #: frames whose per-frame features are kept (2 windows' worth: two interleaved face tracks still hit)
        self.cache_frames = int(cache_frames) if cache_frames is not None else 2 * frames
        if self.cache_frames < frames:
            raise ConfigError(
                f"cache_frames must be at least the window length {frames}, got {cache_frames}."
            )
        self._cache: list[tuple[torch.Tensor, dict]] = []  # (frame, its features), most recent last
        self.frames_encoded = 0  # per-frame passes run (a measure of the reuse)

    @property
    def partial_windows(self) -> bool:
        """The engine may ask `restore_clip` for the kept output positions only (incremental path)."""
        return self.incremental

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

    # ---------------------------------------------------------------------------- incremental windows
    def clear_cache(self) -> None:
        self._cache.clear()

    def _features(self, x: torch.Tensor) -> list[dict]:
        """Per-frame features of the window's frames x [L, 3, H, W]: from the cache when the same pixels
        were seen, else computed (all missing frames in one call) and cached."""
        found: list[dict | None] = []
        for f in x:
            hit = None
            for i, (key, feats) in enumerate(self._cache):
                if key.shape == f.shape and torch.equal(key, f):
                    hit = feats
                    self._cache.append(self._cache.pop(i))  # most recently used last
                    break
            found.append(hit)
        missing = [i for i, h in enumerate(found) if h is None]
        uniq: list[int] = []  # a window may hold the same frame twice (edge replication)
        for i in missing:
            if not any(torch.equal(x[i], x[j]) for j in uniq):
                uniq.append(i)
        if uniq:
            new = self.net.split_features(self.net.frame_features(x[uniq]))
            self.frames_encoded += len(uniq)
            for i, feats in zip(uniq, new):
                self._cache.append((x[i].clone(), feats))
            del self._cache[: max(0, len(self._cache) - self.cache_frames)]
            for i in missing:
                found[i] = next(feats for j, feats in zip(uniq, new) if torch.equal(x[i], x[j]))
        return found  # type: ignore[return-value]

    @torch.no_grad()
    def restore_clip(self, clip: torch.Tensor, keep: tuple[int, int] | None = None) -> torch.Tensor:
        """Restore a window `clip` [3, 3, H, W]; with `keep` = (start, stop) return only those output
        positions (the incremental path computes only them past the last cross-frame operation)."""
        if not self.incremental:
            out = super().restore_clip(clip)
            return out if keep is None else out[keep[0] : keep[1]]
        self.check_clip(clip)
        x = self.to_layout(clip.to(self.device, torch.float32))
        positions = list(range(x.shape[0])) if keep is None else list(range(keep[0], keep[1]))
        with autocast(self.device, self.precision):
            frames = self.net.stack_features(self._features(x))
            out = self.net.forward_window(frames, keep=positions, w=self.w)
        return map_output(out.float(), self.output_map, self.value_range).contiguous()

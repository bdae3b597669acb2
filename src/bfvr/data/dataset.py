"""Training datasets: random T-frame windows of clips with on-the-fly degradation, paired LQ/GT tensors.

```python
from bfvr.data import ClipDataset
ds = ClipDataset("prepared/manifest.jsonl", clip_len=24, size=512, recipe="stc", seed=0)
item = ds[0]        # {"lq": [T,3,H,W] float32 in [0,1], "gt": same, "name", "start", "params" (JSON str)}
ds.set_epoch(1)     # new windows/degradations each epoch, still reproducible
```

Everything random in ``ds[i]`` (window start, crop, flip, degradation parameters, noise) comes from a
numpy Generator seeded with ``(seed, epoch, i)``: an item is the same whichever DataLoader worker
builds it, in whatever order, and on every run.
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from bfvr.errors import ConfigError, InputError

CROPS = ("center", "random", "stretch")

# A closed bfvr.io reader that stopped mid-stream stays in a reference cycle (reader <-> its frame
# generator) until the cyclic GC runs, and keeps FFmpeg's frame-threaded decoder alive. A DataLoader
# worker forked at that moment inherits the decoder without its threads and hangs or segfaults when
# it frees it (measured: probe() in the parent, then num_workers=2 -> worker killed by SIGSEGV). So
# collect garbage in the parent right before every fork.
os.register_at_fork(before=gc.collect)


def _clip_list(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
               kept_only: bool) -> list[dict]:
    from bfvr.data.prepare import read_manifest
    from bfvr.io import list_videos

    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if p.is_dir():
            if (p / "manifest.jsonl").exists():
                return read_manifest(p / "manifest.jsonl", kept_only)
            return [{"path": str(v), "name": v.stem} for v in list_videos(p)]
        if p.suffix == ".jsonl":
            return read_manifest(p, kept_only)
        return [{"path": str(p), "name": p.stem}]
    return [{"path": str(s), "name": Path(s).stem} for s in source]


def center_square(height: int, width: int) -> tuple[int, int, int]:
    """The central square of a height x width frame as (x, y, side)."""
    side = min(height, width)
    return (width - side) // 2, (height - side) // 2, side


def cut_and_resize(frames: np.ndarray, box: tuple[int, int, int] | None, size: int) -> np.ndarray:
    """uint8 [N, H, W, 3] cut to the square ``box`` (x, y, side; None = the whole frame, stretched) and
    resized to size x size (INTER_AREA when shrinking, INTER_CUBIC when enlarging)."""
    import cv2

    if box is not None:
        x, y, s = box
        frames = frames[:, y:y + s, x:x + s]
    interp = cv2.INTER_AREA if frames.shape[1] > size else cv2.INTER_CUBIC
    return np.stack([cv2.resize(f, (size, size), interpolation=interp) for f in frames])


def jitter_params(rng: np.random.Generator, strength: float) -> dict[str, Any]:
    """One colour change of strength s in [0, 1): gamma exp(U[-s/2, s/2]), saturation U[1-s, 1+s],
    per-channel gains U[1-s/4, 1+s/4] (white balance), contrast about the mean U[1-s/2, 1+s/2]."""
    s = float(strength)
    return {"gamma": float(np.exp(rng.uniform(-s / 2, s / 2))),
            "saturation": float(rng.uniform(1 - s, 1 + s)),
            "gains": [float(g) for g in rng.uniform(1 - s / 4, 1 + s / 4, 3)],
            "contrast": float(rng.uniform(1 - s / 2, 1 + s / 2))}


def jitter_colors(frames: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    """Apply `jitter_params` to uint8 RGB frames [..., 3]: gamma, then saturation (mix with BT.601 luma), per-
    channel gains, contrast about the mean of all the frames (the same change on every frame): uint8."""
    x = np.power(frames.astype(np.float32) / 255.0, p["gamma"])
    luma = x @ np.array([0.299, 0.587, 0.114], np.float32)
    x = luma[..., None] + (x - luma[..., None]) * p["saturation"]
    x *= np.asarray(p["gains"], np.float32)
    mean = float(x.mean())
    x = (x - mean) * p["contrast"] + mean
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


class ClipDataset(Dataset):
    """Random ``clip_len``-frame windows of videos, degraded on the fly: paired (LQ, GT) clips.

    Args:
        source: a manifest (.jsonl from ``bfvr prepare``; only kept clips), a folder (its manifest.jsonl,
            else its videos), one video, or a list of videos.
        clip_len: frames per item (STC: 24; DicFace/KEEP: 5; PGTFormer: 3).
        size: output frames are size x size.
        recipe: a ``bfvr.degrade`` recipe name (e.g. "stc", "keep", "stc+flicker-brightness") or a
            ``Degradation``; None = no degradation (LQ = GT, e.g. for a VQGAN stage I).
        seed: base seed; item i of epoch e uses ``numpy.random.default_rng([seed, e, i])``.
        crop: "center" (central square, the default), "random" (a random square of side
            U[crop_scale[0], 1] x the shorter side) or "stretch" (resize the whole frame, as the official
            STC loader does).
        hflip: flip the whole clip horizontally with probability 0.5.
        layout: "TCHW" (items [T,3,H,W]; DicFace/PGTFormer) or "CTHW" (items [3,T,H,W]; batches are
            BCTHW as STC's Conv3d networks want).
        samples_per_clip: items per clip per epoch (``len = clips x samples_per_clip``).
        max_frames: windows start within the first ``max_frames`` frames (official STC: 240).
        flicker_dir: a folder of pre-generated LQ videos (same names); the LQ window is read from there
            (with the same crop/flip) instead of being synthesised.
        mid: degrade with the middle of every parameter range (evaluation sets).
        reverse_prob: play the window backwards with this probability (DicFace/KEEP use 0.5).
        frame_step: take every k-th frame, k drawn per item from 1..frame_step (faster motion than the
            videos have; 1 = consecutive frames); a video too short for a step draws among those that fit.
        color_jitter: strength s of a per-item colour change of the clean window before it is degraded
            (`jitter_colors`: gamma, then saturation, white balance, contrast); 0 = off.
    """

    def __init__(self, source: Any, clip_len: int = 24, size: int = 512, recipe: Any = "stc", seed: int = 0,
                 *, crop: str = "center", crop_scale: tuple[float, float] = (0.8, 1.0), hflip: bool = True,
                 layout: str = "TCHW", samples_per_clip: int = 1, max_frames: int | None = 240,
                 flicker_dir: str | os.PathLike[str] | None = None, mid: bool = False,
                 reverse_prob: float = 0.0, kept_only: bool = True, frame_step: int = 1,
                 color_jitter: float = 0.0) -> None:
        from bfvr.degrade import Degradation
        from bfvr.degrade import recipe as get_recipe

        if crop not in CROPS:
            raise ConfigError(f"unknown crop '{crop}'; choose {', '.join(CROPS)}.")
        if layout not in ("TCHW", "CTHW"):
            raise ConfigError(f"unknown layout '{layout}'; choose TCHW or CTHW.")
        if clip_len < 1 or size < 8:
            raise ConfigError("clip_len must be >= 1 and size >= 8.")
        if int(frame_step) < 1 or not 0.0 <= float(color_jitter) < 1.0:
            raise ConfigError(f"frame_step must be >= 1 and color_jitter in [0, 1), got {frame_step} and "
                              f"{color_jitter}.")
        if flicker_dir and float(color_jitter) > 0:
            raise ConfigError("color_jitter cannot be used with flicker_dir: the pre-generated LQ videos "
                              "keep their colours, so they would no longer match the recoloured GT.")
        self.clips = _clip_list(source, kept_only)
        if not self.clips:
            raise InputError(f"no clips in '{source}'; give a manifest with "
                             "kept clips, a folder of videos or videos.")
        self.clip_len, self.size, self.seed = int(clip_len), int(size), int(seed)
        self.degradation = None if recipe is None else (recipe if isinstance(recipe, Degradation)
                                                        else get_recipe(recipe))
        self.crop, self.crop_scale, self.hflip, self.layout = crop, crop_scale, hflip, layout
        self.samples_per_clip, self.max_frames = int(samples_per_clip), max_frames
        self.flicker_dir = Path(flicker_dir) if flicker_dir else None
        self.mid, self.reverse_prob = mid, reverse_prob
        self.frame_step, self.color_jitter = int(frame_step), float(color_jitter)
        self.epoch = 0
        self._meta: dict[str, tuple[int, Fraction]] = {}

    def set_epoch(self, epoch: int) -> None:
        """Draw new windows and degradations (call before creating the epoch's DataLoader iterator;
        persistent workers keep their own copy of the dataset)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.clips) * self.samples_per_clip

    def _info(self, clip: dict) -> tuple[int, Fraction]:
        key = clip["path"]
        if key not in self._meta:
            from bfvr.io import probe

            info = probe(key)
            n = int(clip.get("frames") or info.frame_count)
            self._meta[key] = (n, info.fps)
        return self._meta[key]

    def _window(self, clip: dict, start: int, length: int) -> np.ndarray:
        """Frames start .. start+length-1 of a clip (fewer at its end), uint8 [N, H, W, 3]."""
        return self._read_window(clip["path"], start, length)

    @staticmethod
    def _read_window(path: str, start: int, length: int) -> np.ndarray:
        from bfvr.io import open_video

        out = []
        with open_video(path) as r:
            for i, (f, _) in enumerate(r.frames()):
                if i >= start:
                    out.append(f)
                    if len(out) == length:
                        break
        if not out:
            raise InputError(f"'{path}' has fewer than {start + 1} frames; re-run bfvr prepare on it.")
        return np.stack(out)

    def _spatial(self, frames: np.ndarray, box: tuple[int, int, int] | None, flip: bool) -> np.ndarray:
        out = cut_and_resize(frames, box, self.size)
        return out[:, :, ::-1].copy() if flip else out

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        clip = self.clips[index % len(self.clips)]
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        n, fps = self._info(clip)
        limit = min(n, self.max_frames) if self.max_frames else n
        # the step is drawn only when enabled, so configs without it (and their resumed runs) draw as before;
        # a short video draws among the steps whose window fits in it
        fits = max(1, min(self.frame_step, (limit - 1) // max(1, self.clip_len - 1)))
        step = int(rng.integers(1, fits + 1)) if self.frame_step > 1 else 1
        span = (self.clip_len - 1) * step + 1
        start = int(rng.integers(0, max(1, limit - span + 1)))
        gt = self._window(clip, start, span)[::step]
        idx = np.arange(self.clip_len)
        if len(gt) < self.clip_len:  # short clip: ping-pong (0 1 2 1 0 1 ...) to the wanted length
            period = max(1, 2 * len(gt) - 2)
            idx = np.array([i % period if i % period < len(gt) else period - i % period for i in idx])
        h, w = gt.shape[1:3]
        if self.crop == "stretch":
            box = None
        elif self.crop == "random":
            side = max(1, int(round(min(h, w) * rng.uniform(*self.crop_scale))))
            box = (int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1)), side)
        else:
            box = center_square(h, w)
        flip = bool(self.hflip and rng.random() < 0.5)
        reverse = bool(rng.random() < self.reverse_prob)
        if reverse:
            idx = idx[::-1]
        gt = self._spatial(gt, box, flip)[idx]
        colors = jitter_params(rng, self.color_jitter) if self.color_jitter > 0 else None
        if colors is not None:
            gt = jitter_colors(gt, colors)
        deg_rng = np.random.default_rng([self.seed, self.epoch, int(index), 1])
        name = clip.get("name") or Path(clip["path"]).stem
        if self.flicker_dir is not None:
            from bfvr.degrade.files import find_pregenerated

            lq_path = find_pregenerated(self.flicker_dir, name)
            lq = self._spatial(self._read_window(str(lq_path), start, span)[::step], box, flip)[idx]
            params: dict[str, Any] = {"recipe": "pre-generated", "path": str(lq_path)}
        elif self.degradation is not None:
            params = self.degradation.draw(deg_rng, self.size, self.size, fps=fps, mid=self.mid)
            lq = self.degradation.apply(gt, params)
        else:
            lq, params = gt, {"recipe": None}
        params.update({"start": start, "crop": list(box) if box else None, "flip": flip, "reverse": reverse,
                       "frame_step": step, "colors": colors})
        return {"lq": self._tensor(lq), "gt": self._tensor(gt), "name": name, "start": start,
                "params": json.dumps(params)}

    def _tensor(self, frames: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
        return t.permute(1, 0, 2, 3).contiguous() if self.layout == "CTHW" else t

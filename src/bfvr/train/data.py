"""Training data for the trainer: a dataset addressed by *sample position* and a sampler of positions.

Every sample the run ever draws has a global position p = 0, 1, 2, ... (micro-step m of the whole job
draws positions m*world*B ... m*world*B + world*B - 1, rank r taking its B consecutive ones). The clip at
position p is a pure function of (seed, p), so

* resuming at step s only needs s (the sampler restarts at micro-step s*accum): the data state is exact;
* a 2-process run with batch B and a 1-process run with batch 2B see the same clips in each step;
* DataLoader workers need no shared RNG state.

Datasets: `bfvr.data.ClipDataset` (the project's dataset with the papers' degradation recipes) when it is
importable, else `BuiltinClipDataset` below (a small in-memory reader with a minimal STC-like degradation);
which one is used is logged. Items are dicts {"gt", "lq"} of float32 [3, T, H, W] in [0, 1].
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from bfvr.errors import ConfigError, InputError

log = logging.getLogger("bfvr.train")

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif", ".m4v"}


def expand_paths(paths: Sequence[str]) -> list[Path]:
    """Video files from files, folders (non-recursive) and `bfvr prepare` manifests (the "path" of each kept
    record, via `bfvr.data.prepare.read_manifest`)."""
    out: list[Path] = []
    for item in paths:
        p = Path(item).expanduser()
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.suffix.lower() in VIDEO_SUFFIXES)
        elif p.suffix == ".jsonl" and p.is_file():
            from bfvr.data.prepare import read_manifest

            out += [Path(rec["path"]) for rec in read_manifest(p, kept_only=True) if rec.get("path")]
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"training data not found: {p} (relative data.paths in a config file are read from "
                             "the config's folder, --data/--set paths from the current one); fix data.paths or "
                             "pass --data PATH.")
    if not out:
        raise InputError(f"no videos found in {list(paths)}; data.paths needs video files or folders of videos.")
    return out


def load_clip(path: Path, max_frames: int, size: int, face_crop: bool = False) -> np.ndarray:
    """The first `max_frames` frames of `path` as uint8 [N, size, size, 3]: stretched to the square, or
    (`face_crop`) cut to the face-proportion square of `bfvr prepare` first (InputError: no face)."""
    import cv2

    arr = _read_video(path, max_frames)
    if not len(arr):
        raise InputError(f"{path} has no decodable video frames.")
    if face_crop:
        from bfvr.data.prepare import PrepareOptions, Preparer, apply_crop

        prep = Preparer(PrepareOptions(size=size, max_frames=max_frames, text_backend="none"),
                        orientation_check=False)
        rect, _ = prep.face_rect(path, arr.shape[2], arr.shape[1])
        if rect is None:
            raise InputError(f"no face found in {path}; drop it from the data or turn data.face_crop off.")
        return np.stack([apply_crop(fr, rect, size) for fr in arr])
    return np.stack([cv2.resize(fr, (size, size), interpolation=cv2.INTER_AREA) for fr in arr])


def _read_video(path: Path, max_frames: int) -> np.ndarray:
    """[N,H,W,3] uint8 RGB, first `max_frames` frames (bfvr.io when present)."""
    try:
        from bfvr.io import read_frames  # type: ignore[attr-defined]
    except ImportError:
        read_frames = None
    if read_frames is not None:
        return np.asarray(read_frames(str(path), max_frames=max_frames))
    import av

    frames = []
    with av.open(str(path)) as c:
        for fr in c.decode(video=0):
            frames.append(fr.to_ndarray(format="rgb24"))
            if len(frames) >= max_frames:
                break
    if not frames:
        raise InputError(f"{path} has no decodable video frames.")
    return np.stack(frames)


class BuiltinClipDataset(Dataset):
    """Videos decoded once into memory (first `max_frames` frames, stretched to size x size), from which
    position p draws a video, a `clip_len` window (`window="first"`: always the first clip_len frames, as
    the STC paper samples), a crop, a flip and the degradation parameters with
    `np.random.default_rng([seed, p])`.

    recipe: "none" (LQ = GT, Stage I) or any `bfvr.degrade` recipe ("stc-nonoise", "stc",
    "flicker-brightness", ... or chains like "stc+flicker-brightness"), one parameter draw per clip.
    """

    def __init__(self, paths: Sequence[str], *, clip_len: int = 24, size: int = 256, crop: int | None = None,
                 recipe: str = "none", hflip: bool = False, max_frames: int = 240, seed: int = 0,
                 progress: bool = False, face_crop: bool = False, exclude: Sequence[str] = (),
                 window: str = "random") -> None:
        self.degradation = None
        if recipe != "none":
            from bfvr.degrade import recipe as make_recipe

            self.degradation = make_recipe(recipe)  # ConfigError for unknown names

        self.clip_len, self.size, self.crop = clip_len, size, crop
        self.recipe, self.hflip, self.seed = recipe, hflip, seed
        self.window = window
        self.videos: list[np.ndarray] = []
        self.names: list[str] = []
        files = [f for f in expand_paths(paths) if f.stem not in set(exclude)]
        if not files:
            raise InputError(f"every video in {list(paths)} is excluded (data.exclude); nothing to train on.")
        it = files
        if progress:
            from tqdm import tqdm

            it = tqdm(files, desc="loading clips", unit="video", leave=False)
        for f in it:
            try:
                arr = load_clip(f, max_frames, size, face_crop)
            except InputError as e:  # a video without a face (face_crop) or without frames
                log.warning("skipping %s: %s", f, e)
                continue
            if len(arr) < clip_len:
                log.warning("skipping %s: %d frames < clip_len %d", f, len(arr), clip_len)
                continue
            self.videos.append(arr)
            self.names.append(f.name)
        if not self.videos:
            raise InputError(f"no video in {list(paths)} has at least {clip_len} frames; lower data.clip_len.")

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, pos: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, int(pos)])
        v = self.videos[int(rng.integers(len(self.videos)))]
        t0 = int(rng.integers(len(v) - self.clip_len + 1))  # drawn in both modes: same draws after it
        if self.window == "first":
            t0 = 0
        clip = v[t0:t0 + self.clip_len]
        if self.crop is not None and self.crop < self.size:
            y0 = int(rng.integers(self.size - self.crop + 1))
            x0 = int(rng.integers(self.size - self.crop + 1))
            clip = clip[:, y0:y0 + self.crop, x0:x0 + self.crop]
        if self.hflip and rng.random() < 0.5:
            clip = clip[:, :, ::-1]
        clip = np.ascontiguousarray(clip)
        gt = clip.astype(np.float32) / 255.0
        if self.degradation is None:
            lq = gt
        else:
            lq = self.degradation(clip, rng)[0].astype(np.float32) / 255.0
        to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(3, 0, 1, 2).contiguous()  # noqa: E731
        return {"gt": to_t(gt), "lq": to_t(lq)}


class ProjectClipDataset(Dataset):
    """Adapter over `bfvr.data.ClipDataset` (layout CTHW): position p -> epoch e = p // len and item
    perm_e[p mod len] (a per-epoch permutation from (seed, e)), then an optional random `crop` of the
    LQ/GT pair drawn from (seed, p). Returns {"gt", "lq"} float32 [3,T,H,W]."""

    def __init__(self, base: Dataset, *, seed: int = 0, crop: int | None = None) -> None:
        self.base, self.seed, self.crop = base, seed, crop
        self._perm: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def _index(self, pos: int) -> int:
        n = len(self.base)  # type: ignore[arg-type]
        epoch = pos // n
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch, 7]).permutation(n))
            if hasattr(self.base, "set_epoch"):
                self.base.set_epoch(epoch)
        return int(self._perm[1][pos % n])

    def __getitem__(self, pos: int) -> dict[str, torch.Tensor]:
        item = self.base[self._index(int(pos))]
        gt, lq = item["gt"].float(), item["lq"].float()
        if self.crop is not None and self.crop < gt.shape[-1]:
            rng = np.random.default_rng([self.seed, int(pos), 11])
            y0 = int(rng.integers(gt.shape[-2] - self.crop + 1))
            x0 = int(rng.integers(gt.shape[-1] - self.crop + 1))
            gt = gt[..., y0:y0 + self.crop, x0:x0 + self.crop]
            lq = lq[..., y0:y0 + self.crop, x0:x0 + self.crop]
        return {"gt": gt.contiguous(), "lq": lq.contiguous()}


def build_dataset(cfg, *, seed: int, progress: bool = False) -> Dataset:
    """The training dataset for `cfg` (a DataConfig): bfvr.data.ClipDataset or the built-in one (logged)."""
    backend = cfg.backend
    if backend not in ("auto", "bfvr", "builtin"):
        raise ConfigError("data.backend must be auto, bfvr or builtin.")
    if backend in ("auto", "bfvr"):
        try:
            from bfvr.data import ClipDataset  # type: ignore[attr-defined]
        except ImportError:
            if backend == "bfvr":
                raise ConfigError("data.backend is 'bfvr' but bfvr.data.ClipDataset is not available.") from None
            ClipDataset = None
        if ClipDataset is not None:
            ds = _make_project_dataset(ClipDataset, cfg, seed)
            log.info("data: bfvr.data.ClipDataset, recipe %s, %d clips", cfg.recipe, len(ds))
            return ds
    ds = BuiltinClipDataset(cfg.paths, clip_len=cfg.clip_len, size=cfg.size, crop=cfg.crop, recipe=cfg.recipe,
                            hflip=cfg.hflip, max_frames=cfg.clip_len if cfg.window == "first" else cfg.max_frames,
                            seed=seed, progress=progress,
                            face_crop=cfg.face_crop, exclude=cfg.exclude, window=cfg.window)
    log.info("data: built-in clip reader, recipe %s, %d videos", cfg.recipe, len(ds))
    return ds


def _make_project_dataset(cls, cfg, seed: int):
    """bfvr.data.ClipDataset with our settings (CTHW items; recipe "none" = no degradation)."""
    source = list(cfg.paths) if len(cfg.paths) != 1 else cfg.paths[0]
    # window "first": windows may only start at frame 0 (ClipDataset draws the start within max_frames)
    max_frames = cfg.clip_len if cfg.window == "first" else cfg.max_frames
    base = cls(source, clip_len=cfg.clip_len, size=cfg.size, recipe=None if cfg.recipe == "none" else cfg.recipe,
               seed=seed, crop=cfg.crop_mode, hflip=cfg.hflip, layout="CTHW", max_frames=max_frames)
    return ProjectClipDataset(base, seed=seed, crop=cfg.crop)


class PositionSampler(Sampler[list[int]]):
    """Infinite batch sampler of global sample positions for one rank, starting at micro-step `start`."""

    def __init__(self, *, batch_size: int, rank: int = 0, world_size: int = 1, start: int = 0) -> None:
        self.batch_size, self.rank, self.world_size, self.start = batch_size, rank, world_size, start

    def positions(self, micro_step: int) -> list[int]:
        base = (micro_step * self.world_size + self.rank) * self.batch_size
        return list(range(base, base + self.batch_size))

    def __iter__(self) -> Iterator[list[int]]:
        m = self.start
        while True:
            yield self.positions(m)
            m += 1


def data_fingerprint(ds: Dataset) -> str:
    """Short hash of what a dataset holds (video names), saved with checkpoints to warn on resume mismatch."""
    names = getattr(ds, "names", None)
    if names is None:
        clips = getattr(getattr(ds, "base", None), "clips", None) or []
        names = [str(c.get("path", c)) if isinstance(c, dict) else str(c) for c in clips]
    return hashlib.sha1("\n".join(names).encode()).hexdigest()[:12]

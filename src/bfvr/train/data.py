"""Training data for the trainer: a dataset addressed by *sample position* and a sampler of positions.

Every sample the run ever draws has a global position p = 0, 1, 2, ... (micro-step m of the whole job
draws positions m*world*B ... m*world*B + world*B - 1, rank r taking its B consecutive ones). The clip at
position p is a pure function of (seed, p), so

* resuming at step s only needs s (the sampler restarts at micro-step s*accum): the data state is exact;
* a 2-process run with batch B and a 1-process run with batch 2B see the same clips in each step;
* DataLoader workers need no shared RNG state.

Datasets: `bfvr.data.ClipDataset` (the project's dataset with the papers' degradation recipes), reading
each window from its file, or `BuiltinClipDataset` below (the same dataset over videos decoded once into
memory); which one is used is logged. Items are dicts {"gt", "lq"} of float32 [3, T, H, W] in [0, 1].
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from bfvr.data.dataset import ClipDataset
from bfvr.errors import ConfigError, InputError
from bfvr.io.reader import list_videos, read_frames

log = logging.getLogger(__name__)

def expand_paths(paths: Sequence[str]) -> list[Path]:
    """Video files from files, folders (non-recursive) and `bfvr prepare` manifests (the "path" of each kept
    record, via `bfvr.data.prepare.read_manifest`)."""
    out: list[Path] = []
    for item in paths:
        p = Path(item).expanduser()
        if p.is_dir():
            out += list_videos(p)
        elif p.suffix == ".jsonl" and p.is_file():
            from bfvr.data.prepare import read_manifest

            out += [Path(rec["path"]) for rec in read_manifest(p, kept_only=True) if rec.get("path")]
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"training data not found: {p} (relative data.paths in a config "
                             "file are read from the config's folder, --data/--set paths "
                             "from the current one); fix data.paths or pass --data PATH.")
    if not out:
        raise InputError(f"no videos found in {list(paths)}; data.paths "
                         "needs video files or folders of videos.")
    return out


def load_clip(path: Path, max_frames: int, size: int, face_crop: bool = False) -> np.ndarray:
    """The first `max_frames` frames of `path` as uint8 [N, size, size, 3]: stretched to the square, or
    (`face_crop`) cut to the face-proportion square of `bfvr prepare` first (InputError: no face)."""
    import cv2

    arr = read_frames(path, max_frames=max_frames)
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


def face_landmarks(frames: np.ndarray, path: Path | str = "") -> np.ndarray:
    """5-point landmarks [N, 5, 2] of the largest face in every frame, found by the face pipeline's detector
    (`bfvr.faces.detect.make_detector("auto")`); a frame without a face takes the nearest frame's
    (InputError when no frame has one)."""
    from bfvr.faces.detect import make_detector

    det = make_detector("auto")
    found: dict[int, np.ndarray] = {}
    for i, fr in enumerate(frames):
        faces = [f for f in det(np.ascontiguousarray(fr)) if f.landmarks is not None]
        if faces:
            found[i] = max(faces, key=lambda f: f.area).landmarks.astype(np.float32)
    if not found:
        raise InputError(f"no face with landmarks found in {path}; drop it from the data or turn data.align "
                         "off.")
    have = np.array(sorted(found))
    return np.stack([found[int(have[np.abs(have - i).argmin()])] for i in range(len(frames))])


def align_window(frames: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
    """Warp every frame of a window with ONE similarity transform: the one that puts the centre frame's 5
    landmarks on the FFHQ 5-point template of a size x size canvas (`bfvr.faces.align.align_matrix`, the
    face pipeline's `align` crop). Outside the frame: the FFHQ-style grey border (135, 133, 132)."""
    from bfvr.faces.align import align_matrix, warp_crop

    m = align_matrix(landmarks[len(frames) // 2], (size, size))
    return np.stack([warp_crop(np.ascontiguousarray(f), m, (size, size), border="constant") for f in frames])


class BuiltinClipDataset(ClipDataset):
    """`bfvr.data.ClipDataset` over videos decoded once into memory: the first `max_frames` frames of each,
    stretched to size x size (or, `face_crop`, cut to their face square first), with the same windows,
    flips and `bfvr.degrade` recipes ("none" = LQ is GT, Stage I) and no decoding per item. Videos named
    in `exclude` are never read; videos shorter than `clip_len` or without a face are skipped with a
    warning. Items are CTHW; `build_dataset` puts it behind the position interface (`ProjectClipDataset`).

    `align`: the frames are kept at their own size with the 5-point landmarks of every frame (found once,
    at load), and each window is warped to the FFHQ 5-point template with one transform, taken from the
    window's centre frame (`align_window`; what PGTFormer's official `is_aligned` data does).
    """

    def __init__(self, paths: Sequence[str], *, clip_len: int = 24, size: int = 256, recipe: str = "none",
                 hflip: bool = False, max_frames: int = 240, seed: int = 0, progress: bool = False,
                 face_crop: bool = False, exclude: Sequence[str] = (), reverse_prob: float = 0.0,
                 frame_step: int = 1, color_jitter: float = 0.0, align: bool = False) -> None:
        from bfvr.degrade import recipe as make_recipe
        from bfvr.io import probe

        deg = None if recipe == "none" else make_recipe(recipe)  # ConfigError for unknown names, first
        files = [f for f in expand_paths(paths) if f.stem not in set(exclude)]
        if not files:
            raise InputError(f"every video in {list(paths)} is excluded (data.exclude); nothing to train on.")
        it = files
        if progress:
            from tqdm import tqdm

            it = tqdm(files, desc="loading clips", unit="video", leave=False)
        self.videos: dict[str, np.ndarray] = {}
        self.landmarks: dict[str, np.ndarray] = {}
        self.align, self._size = bool(align), int(size)
        self.names: list[str] = []
        self._fps: dict[str, Fraction] = {}
        for f in it:
            if str(f) in self.videos:
                continue
            try:
                if align:
                    arr = read_frames(f, max_frames=max_frames)
                    if not len(arr):
                        raise InputError(f"{f} has no decodable video frames.")
                    self.landmarks[str(f)] = face_landmarks(arr, f) if len(arr) >= clip_len else arr[:0]
                else:
                    arr = load_clip(f, max_frames, size, face_crop)
            except InputError as e:  # a video without a face (face_crop, align) or without frames
                log.warning("skipping %s: %s", f, e)
                continue
            if len(arr) < clip_len:
                log.warning("skipping %s: %d frames < clip_len %d", f, len(arr), clip_len)
                continue
            self.videos[str(f)], self._fps[str(f)] = arr, probe(f).fps
            self.names.append(f.name)
        if not self.videos:
            raise InputError(f"no video in {list(paths)} has at least {clip_len} frames; lower "
                             "data.clip_len.")
        super().__init__(list(self.videos), clip_len=clip_len, size=size, recipe=deg, seed=seed,
                         crop="stretch", hflip=hflip, layout="CTHW", max_frames=max_frames,
                         reverse_prob=reverse_prob, frame_step=frame_step, color_jitter=color_jitter)

    def _info(self, clip: dict) -> tuple[int, Fraction]:
        return len(self.videos[clip["path"]]), self._fps[clip["path"]]

    def _window(self, clip: dict, start: int, length: int) -> np.ndarray:
        frames = self.videos[clip["path"]][start:start + length]
        if self.align:
            return align_window(frames, self.landmarks[clip["path"]][start:start + length], self._size)
        return frames


class ProjectClipDataset(Dataset):
    """Adapter over `bfvr.data.ClipDataset` (layout CTHW): position p -> epoch e = p // len and item
    perm_e[p mod len] (a per-epoch permutation from (seed, e)), then an optional random `crop` of the
    LQ/GT pair drawn from (seed, p). Returns {"gt", "lq"} float32 [3,T,H,W]."""

    def __init__(self, base: ClipDataset, *, seed: int = 0, crop: int | None = None) -> None:
        self.base, self.seed, self.crop = base, seed, crop
        self._perm: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def _index(self, pos: int) -> int:
        n = len(self.base)  # type: ignore[arg-type]
        epoch = pos // n
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch, 7]).permutation(n))
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
    """The training dataset for `cfg` (a DataConfig), addressed by position: bfvr.data.ClipDataset reading
    the videos per item ("auto", "bfvr") or the in-memory `BuiltinClipDataset` ("builtin"); logged."""
    backend = cfg.backend
    if backend not in ("auto", "bfvr", "builtin"):
        raise ConfigError("data.backend must be auto, bfvr or builtin.")
    # data.window "first" (the STC paper's sampling): only the first clip_len frames of each video are
    # read, so every window starts at frame 0; "random": a window anywhere in the first max_frames frames
    max_frames = cfg.clip_len if cfg.window == "first" else cfg.max_frames
    if backend == "builtin":
        base: Dataset = BuiltinClipDataset(cfg.paths, clip_len=cfg.clip_len, size=cfg.size, recipe=cfg.recipe,
                                           hflip=cfg.hflip, max_frames=max_frames, seed=seed,
                                           progress=progress, face_crop=cfg.face_crop, exclude=cfg.exclude,
                                           reverse_prob=cfg.reverse_prob, frame_step=cfg.frame_step,
                                           color_jitter=cfg.color_jitter, align=cfg.align)
        log.info("data: built-in in-memory clip reader, recipe %s, %d videos%s", cfg.recipe, len(base),
                 ", aligned to the FFHQ 5-point template (one transform per window, from its centre frame)"
                 if cfg.align else "")
    else:
        source = list(cfg.paths) if len(cfg.paths) != 1 else cfg.paths[0]
        base = ClipDataset(source, clip_len=cfg.clip_len, size=cfg.size,
                           recipe=None if cfg.recipe == "none" else cfg.recipe, seed=seed, crop=cfg.crop_mode,
                           hflip=cfg.hflip, layout="CTHW", max_frames=max_frames,
                           reverse_prob=cfg.reverse_prob, frame_step=cfg.frame_step,
                           color_jitter=cfg.color_jitter)
        log.info("data: bfvr.data.ClipDataset, recipe %s, %d clips", cfg.recipe, len(base))
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
    base = getattr(ds, "base", ds)
    names = getattr(base, "names", None)
    if names is None:
        clips = getattr(base, "clips", None) or []
        names = [str(c.get("path", c)) if isinstance(c, dict) else str(c) for c in clips]
    return hashlib.sha1("\n".join(names).encode()).hexdigest()[:12]

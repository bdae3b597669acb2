"""The inputs of DicFace's two other tasks, prepared as in its training data.

* Colourisation (`dicface-color`): the network was trained on grey frames (BT.601 luma replicated to three
  channels), so any input, colour or grey, is converted to grey first (`to_grey`).
* Inpainting (`dicface-inpaint`): the training inputs had their missing pixels painted white (brush strokes,
  the same mask on every frame of a clip); the network gets no separate mask channel. `FrameMask` reads the
  user's mask (white = missing) and paints those pixels white in the video frames, before face detection
  and cropping, so the crop carries the hole like the training crops did. The mask is one image for every
  frame, or a mask video / folder of mask images with one mask per frame (same size as the video).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from bfvr.errors import InputError

#: BT.601 luma weights (what cv2's BGR2GRAY, used by the official colourisation data, computes)
GREY_WEIGHTS = (0.299, 0.587, 0.114)
#: mask pixels brighter than this (0..255 grey) are missing
MASK_THRESHOLD = 127
#: still-image suffixes: one mask for every frame
STILL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def to_grey(x: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] RGB (any value range: the weights sum to 1) -> its luma replicated to 3 channels."""
    w = torch.tensor(GREY_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True).expand(-1, 3, -1, -1).contiguous(memory_format=_format(x))


def _format(x: torch.Tensor) -> torch.memory_format:
    cl = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if cl else torch.contiguous_format


def _read_still(path: Path) -> np.ndarray:
    import cv2

    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as e:
        raise InputError(f"cannot read the mask '{path}' ({e.strerror or e}).") from None
    img = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if img is None:
        raise InputError(f"the mask '{path}' is not a readable image; give a PNG (white = missing pixels).")
    return img


def _grey(frame: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] -> [H, W] luma (uint8 math is enough to threshold)."""
    return frame @ np.asarray(GREY_WEIGHTS, np.float32)


class FrameMask:
    """The inpainting mask of a video: ``FrameMask(path)``; `path` is an image (the mask of every frame), or a
    video / folder of images (mask i for frame i). White (> 127 grey) = missing.

    `check(width, height, frames)` verifies sizes and counts up front (one clear `InputError`);
    `apply(stream)` paints the missing pixels of each (frame, pts) white, lazily, and checks again.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise InputError(
                f"the mask '{self.path}' does not exist; give a PNG (white = missing pixels), a mask "
                "video or a folder of mask images."
            )
        self.still = self.path.is_file() and self.path.suffix.lower() in STILL_SUFFIXES
        self._still: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"FrameMask({str(self.path)!r})"

    def _still_mask(self) -> np.ndarray:
        if self._still is None:
            self._still = _read_still(self.path) > MASK_THRESHOLD
        return self._still

    def size_and_count(self) -> tuple[int, int, int | None]:
        """(width, height, frame count or None for a still mask)."""
        if self.still:
            m = self._still_mask()
            return m.shape[1], m.shape[0], None
        from bfvr.io import probe

        info = probe(self.path)
        return info.width, info.height, info.frame_count

    def check(self, width: int, height: int, frames: int | None = None) -> None:
        """Raise `InputError` unless the mask fits frames of `width` x `height` (and, for a mask sequence,
        has exactly `frames` masks, when given)."""
        mw, mh, n = self.size_and_count()
        if (mw, mh) != (width, height):
            raise InputError(
                f"the mask '{self.path}' is {mw}x{mh} but the video frames are {width}x{height}; "
                "give a mask of the video's size (white = missing pixels)."
            )
        if n is not None and frames is not None and n != frames:
            raise InputError(
                f"the mask '{self.path}' has {n} frames but the video has {frames}; give one mask "
                "per frame, or a single PNG for all frames."
            )

    def masks(self) -> Iterator[np.ndarray]:
        """bool [H, W] masks (True = missing), one per frame (endless for a still mask)."""
        if self.still:
            yield from itertools.repeat(self._still_mask())
            return
        from bfvr.io import open_video

        with open_video(self.path) as r:
            for f, _ in r.frames():
                yield _grey(f) > MASK_THRESHOLD

    def apply(
        self, frames: Iterable[tuple[np.ndarray, int | None]]
    ) -> Iterator[tuple[np.ndarray, int | None]]:
        """Paint the missing pixels white: (frame uint8 [H, W, 3], pts) in, the same out, lazily."""
        masks = self.masks()
        for i, (frame, pts) in enumerate(frames):
            m = next(masks, None)
            if m is None:
                raise InputError(
                    f"the mask '{self.path}' has only {i} frames but the video has more; give one "
                    "mask per frame, or a single PNG for all frames."
                )
            if m.shape != frame.shape[:2]:
                raise InputError(
                    f"the mask '{self.path}' is {m.shape[1]}x{m.shape[0]} but the video frames are "
                    f"{frame.shape[1]}x{frame.shape[0]}; give a mask of the video's size."
                )
            out = frame.copy()
            out[m] = 255
            yield out, pts

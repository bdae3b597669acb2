"""The pictures people look at: temporal profiles and side-by-side comparison frames."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["hstack_labeled", "label_strip", "profile_image", "side_by_side_video", "temporal_profile"]


def temporal_profile(frames_iter, column: float | None = None, row: float | None = None) -> np.ndarray:
    """Stack one pixel column (or row) of every frame over time.

    ``column``/``row``: a pixel index (int >= 1 or 0) or a fraction of the width/height (0 < x < 1);
    default: the middle column. Column profile: [H, T, 3] (time runs left to right); row profile:
    [T, W, 3] (time runs top to bottom). ``frames_iter`` yields [N,H,W,3] chunks or single frames.
    """
    lines = []
    for chunk in frames_iter:
        c = np.asarray(chunk)
        if c.ndim == 3:
            c = c[None]
        h, w = c.shape[1:3]
        if row is not None:
            r = int(round(row * (h - 1))) if 0 < row < 1 else int(row)
            if not 0 <= r < h:
                raise ValueError(f"row {row} is outside the frame height {h}")
            lines += list(c[:, r])            # [W,3] each
        else:
            if column is None:
                x = w // 2
            else:
                x = int(round(column * (w - 1))) if 0 < column < 1 else int(column)
            if not 0 <= x < w:
                raise ValueError(f"column {column} is outside the frame width {w}")
            lines += list(c[:, :, x])         # [H,3] each
    if not lines:
        raise ValueError("no frames")
    prof = np.stack(lines)                    # [T, L, 3]
    return prof if row is not None else prof.transpose(1, 0, 2)


def label_strip(text: str, width: int, height: int = 28) -> np.ndarray:
    """A black strip [height, width, 3] with ``text`` in white."""
    import cv2

    strip = np.zeros((height, width, 3), np.uint8)
    scale = height / 40
    (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    while tw > width - 8 and scale > 0.25:
        scale *= 0.85
        (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.putText(strip, text, (4, int(height * 0.72)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                cv2.LINE_AA)
    return strip


def hstack_labeled(images: Sequence[np.ndarray], labels: Sequence[str] | None, height: int,
                   gap: int = 4, label_height: int = 28) -> np.ndarray:
    """Resize images to a common height, put them side by side with a gap, labels on top."""
    import cv2

    tiles = []
    for i, im in enumerate(images):
        h, w = im.shape[:2]
        nw = max(1, int(round(w * height / h)))
        t = im if (h, w) == (height, nw) else cv2.resize(im, (nw, height), interpolation=cv2.INTER_AREA
                                                          if h > height else cv2.INTER_CUBIC)
        if labels is not None:
            t = np.concatenate([label_strip(labels[i], nw, label_height), t])
        tiles.append(t)
        if i < len(images) - 1 and gap:
            tiles.append(np.full((t.shape[0], gap, 3), 255, np.uint8))
    return np.concatenate(tiles, axis=1)


#: the longest side `profile_image` makes (JPEG's limit is 65535 pixels, libpng's default 1,000,000)
MAX_IMAGE_SIDE = 65500


def profile_image(videos: Sequence[str | os.PathLike[str]], *, column: float | None = None,
                  row: float | None = None,
                  max_frames: int | None = None, labels: Sequence[str] | None = None, scale: int = 1,
                  on_video: Callable[[int], None] | None = None) -> np.ndarray:
    """The temporal profiles of several videos side by side with their labels (what `bfvr profile` writes).

    ``column``/``row``: an index given for the first video's size (scaled for the others) or a fraction;
    default the middle column. ``scale`` enlarges the time axis (nearest) so short clips stay visible.
    ``labels`` default to the file names; ``on_video(i)`` is called after video ``i``. Raises `InputError`.
    """
    from pathlib import Path

    from bfvr.errors import ConfigError, InputError
    from bfvr.io import open_video

    whole = isinstance(scale, int) or (isinstance(scale, float) and scale.is_integer())
    if isinstance(scale, bool) or not whole or scale < 1:
        raise ConfigError(f"--scale must be a whole number of 1 or more, got {scale}.")
    scale = int(scale)
    videos = [Path(v) for v in videos]
    names = list(labels) if labels is not None else [v.stem for v in videos]
    if len(names) != len(videos):
        raise InputError(f"--labels has {len(names)} entries for {len(videos)} videos.")
    for v in videos:
        if not v.exists():
            raise InputError(f"'{v}' does not exist; check the path.")
    if column is not None and row is not None:
        raise InputError("give --column or --row, not both.")
    profiles = []
    first_w = first_h = None
    for i, v in enumerate(videos):
        with open_video(v) as r:
            w, h = r.info.width, r.info.height
            first_w, first_h = first_w or w, first_h or h
            for name, value, size in (("--column", column, first_w), ("--row", row, first_h)):
                if value is not None and not (0 < value < 1) and not (0 <= value < size):
                    raise InputError(f"{name} {value:g} is outside the first video's frame (0..{size - 1}); "
                                     "give a pixel index inside it or a fraction between 0 and 1.")
            c = rw = None
            if row is not None:
                rw = row if 0 < row < 1 else min(h - 1, int(round(row * h / first_h)))
            else:
                c = column
                if column is not None and not 0 < column < 1:
                    c = min(w - 1, int(round(column * w / first_w)))

            def chunks(r=r):
                n = 0
                for ch in r.chunks(32):
                    f = ch.frames if max_frames is None else ch.frames[:max_frames - n]
                    n += len(f)
                    if len(f):
                        yield f
                    if max_frames is not None and n >= max_frames:
                        return

            try:
                p = temporal_profile(chunks(), column=c, row=rw)
            except ValueError as e:
                raise InputError(f"{v}: {e}.") from None
        if scale > 1:
            axis = 0 if row is not None else 1
            if p.shape[axis] * scale > MAX_IMAGE_SIDE:
                raise ConfigError(f"--scale {scale} makes the time axis of {v.name} {p.shape[axis] * scale} "
                                  f"pixels long, more than an image holds ({MAX_IMAGE_SIDE}); give a smaller "
                                  "--scale or --max-frames.")
            p = np.repeat(p, scale, axis=axis)
        profiles.append(p)
        if on_video is not None:
            on_video(i)
    height = max(p.shape[0] for p in profiles)
    return hstack_labeled(profiles, names, height)


def side_by_side_video(paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *,
                       labels: Sequence[str] | None = None, max_frames: int | None = None, crf: float = 18,
                       overwrite: bool = False, on_frames: Callable[[int], None] | None = None) -> int:
    """Write a labelled side-by-side video of `paths` (what `bfvr compare` writes); returns the frame count.

    Every video is resized to the second one's height (the restored video in input | output [| GT]);
    stops at the shortest video (or `max_frames`). ``labels`` default to input, output, GT;
    ``on_frames(k)`` is called after each ``k`` frames written (raising from it aborts: the writer then
    removes its temporary file). The output appears only when complete.
    """
    from bfvr.errors import InputError
    from bfvr.io import VideoWriter, open_video

    names = list(labels) if labels is not None else ["input", "output", "GT"][:len(paths)]
    if len(names) != len(paths):
        raise InputError(f"--labels has {len(names)} entries for {len(paths)} videos.")
    from bfvr.io.paths import check_not_url
    from bfvr.io.writer import prepare_output

    for p in paths:
        check_not_url(p)
    prepare_output(out, overwrite, create=False, inputs=paths)  # before any decoding
    readers = [open_video(p) for p in paths]
    try:
        infos = [r.info for r in readers]
        n = min(i.frame_count for i in infos)
        if max_frames is not None:
            n = min(n, max_frames)
        ref = infos[1] if len(infos) > 1 else infos[0]
        height = ref.height - ref.height % 2
        its = [r.chunks(16) for r in readers]
        done = 0
        with VideoWriter(out, fps=ref.fps, crf=crf, overwrite=overwrite, inputs=paths,
                         color=infos[0].color) as w:
            while done < n:
                chunks = [next(it, None) for it in its]
                if any(c is None for c in chunks):
                    break
                k = min(min(len(c) for c in chunks), n - done)
                frames = [hstack_labeled([c.frames[i] for c in chunks], names, height) for i in range(k)]
                w.write(np.stack(frames))
                done += k
                if on_frames is not None:
                    on_frames(k)
                if any(len(c) != k for c in chunks):
                    break  # chunk boundaries drifted (a shorter video); stop at the common frames
    finally:
        for r in readers:
            r.close()
    return done

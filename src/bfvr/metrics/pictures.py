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
                       overwrite: bool = False, on_frames: Callable[[int], None] | None = None,
                       say: Callable[[str], None] | None = None) -> int:
    """Write a labelled side-by-side video of `paths` (what `bfvr compare` writes); returns the frame count.

    Every video is resized to the second one's height (the restored video in input | output [| GT]), rounded
    down to an even number; frames are paired by their index and the side-by-side stops at the shortest
    video (or `max_frames`). It keeps the first video's timestamps and its audio (cut where the side-by-side
    ends). ``labels`` default to input, output, GT; ``say(line)`` is told how sizes, lengths and audio were
    matched; ``on_frames(k)`` is called after each ``k`` frames written (raising from it aborts: the writer
    then removes its temporary file). The output appears only when complete.
    """
    from pathlib import Path

    from bfvr.errors import InputError
    from bfvr.io import VideoWriter, open_video

    names = list(labels) if labels is not None else ["input", "output", "GT"][:len(paths)]
    if len(names) != len(paths):
        raise InputError(f"--labels has {len(names)} entries for {len(paths)} videos.")
    from bfvr.io.paths import check_not_url
    from bfvr.io.writer import output_kind, prepare_output

    for p in paths:
        check_not_url(p)
    prepare_output(out, overwrite, create=False, inputs=paths)  # before any decoding
    say = say or (lambda line: None)
    readers = [open_video(p) for p in paths]
    try:
        infos = [r.info for r in readers]
        first = infos[0]
        ref = infos[1] if len(infos) > 1 else first
        height = ref.height - ref.height % 2
        sizes = [(max(1, int(round(i.width * height / i.height))), height) for i in infos]
        if any((i.width, i.height) != s for i, s in zip(infos, sizes)):
            say(f"sizes: every video resized to {names[min(1, len(names) - 1)]}'s height ({height} pixels): "
                + ", ".join(f"{nm} {i.width}x{i.height}" + ("" if (i.width, i.height) == sz else
                                                             f" -> {sz[0]}x{sz[1]}")
                            for nm, i, sz in zip(names, infos, sizes)))
        if len({round(float(i.fps), 3) for i in infos}) > 1:
            say("frame rates differ (" + ", ".join(f"{nm} {float(i.fps):.3g}" for nm, i in zip(names, infos))
                + f"): frames are paired by their index and timed as {names[0]}'s")
        audio = first.has_audio and output_kind(Path(out)) == "video"
        its = [r.frames() for r in readers]
        done = 0
        last_pts = None
        with VideoWriter(out, fps=first.fps, time_base=first.time_base, vfr=first.vfr, crf=crf,
                         overwrite=overwrite, inputs=paths, color=first.color,
                         audio_from=paths[0] if audio else None) as w:
            batch: list[np.ndarray] = []
            pts: list[int | None] = []
            ended = None  # the index of the video that ran out first
            while max_frames is None or done + len(batch) < max_frames:
                items = []
                for j, it in enumerate(its):
                    item = next(it, None)
                    if item is None:
                        ended = j
                        break
                    items.append(item)
                if ended is not None:
                    break
                batch.append(hstack_labeled([f for f, _ in items], names, height))
                pts.append(items[0][1])
                if len(batch) == 16:
                    w.write(np.stack(batch), pts)
                    done, last_pts = done + len(batch), pts[-1]
                    batch, pts = [], []
                    if on_frames is not None:
                        on_frames(16)
            if batch:
                w.write(np.stack(batch), pts)
                done, last_pts = done + len(batch), pts[-1]
                if on_frames is not None:
                    on_frames(len(batch))
            # which videos go on after the side-by-side's last frame (the first one that ran out does not)
            if ended is None:
                more = [None] * len(its)  # stopped by --max-frames
            else:
                more = [True] * ended + [False] + [next(it, None) is not None for it in its[ended + 1:]]
            if more[0] is None:
                more[0] = next(its[0], None) is not None
            if not more[0]:  # all of the first video: its audio and its last frame's duration stay whole
                w.last_duration = readers[0].last_duration
            else:
                w.audio_end = (float(last_pts * first.time_base) if last_pts is not None else
                               (done - 1) / float(first.fps)) + 1 / float(first.fps)
            if ended is None:
                say(f"length: {done} frames (--max-frames)")
            elif any(more):
                say(f"length: {done} frames, the shortest video's (paired by index; "
                    + ", ".join(f"{nm} " + (f"has {i.frame_count}" if m else f"ends at {done}")
                                for nm, i, m in zip(names, infos, more)) + ")")
            else:
                say(f"length: {done} frames (every video has as many)")
            if w.audio_mode is None:
                say(f"audio: none ({names[0]} has none)" if not first.has_audio else
                    "audio: none (a folder of frames has no sound)")
            else:
                say(f"audio: {names[0]}'s ({w.audio_mode})" + (f", cut at {w.audio_end:.3f} s where the "
                                                               "side-by-side ends" if more[0] else ""))
    finally:
        for r in readers:
            r.close()
    return done

"""The pictures people look at: temporal profiles and side-by-side comparison frames."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["temporal_profile", "label_strip", "hstack_labeled"]


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
            x = w // 2 if column is None else (int(round(column * (w - 1))) if 0 < column < 1 else int(column))
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
    cv2.putText(strip, text, (4, int(height * 0.72)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
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

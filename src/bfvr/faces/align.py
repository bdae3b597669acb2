"""From face geometry to a 2x3 affine that maps frame pixels to the model canvas, and back.

Two crop modes:
- "proportion": a square around the (smoothed) face box, expanded by `expand` (STC's training data:
  Haar boxes x1.3), scaled to the canvas. Only scale + translation, so the face keeps its roll.
- "align": a similarity transform (rotation + uniform scale + translation) that puts the 5 landmarks on
  the FFHQ 5-point template (what CodeFormer-style models such as DicFace expect).
"""

from __future__ import annotations

import numpy as np

from bfvr.errors import ConfigError

CROP_MODES = ("proportion", "align")

#: FFHQ 5-point template for a 512x512 canvas (eye on the image left, eye on the right, nose tip,
#: mouth corner left, mouth corner right), as used by CodeFormer/GFPGAN/DicFace
FFHQ_TEMPLATE_512 = np.array([
    [192.98138, 239.94708],
    [318.90277, 240.19360],
    [256.63416, 314.01935],
    [201.26117, 371.41043],
    [313.08905, 371.15118],
], np.float32)


def template_for(canvas: tuple[int, int]) -> np.ndarray:
    """The FFHQ template scaled to a canvas (H, W) (scaled independently in x and y when not square)."""
    h, w = canvas
    return FFHQ_TEMPLATE_512 * np.array([w / 512.0, h / 512.0], np.float32)


def align_matrix(landmarks: np.ndarray, canvas: tuple[int, int]) -> np.ndarray:
    """Similarity 2x3 matrix (frame -> canvas) that best maps 5 landmarks onto the FFHQ template."""
    import cv2

    src = np.asarray(landmarks, np.float32).reshape(5, 2)
    # all points in the fit: with smoothed landmarks there are no outliers for LMEDS to reject
    m, _ = cv2.estimateAffinePartial2D(src, template_for(canvas), method=cv2.LMEDS)
    if m is None:  # degenerate points (all equal): fall back to a least-squares fit
        m = _similarity_lstsq(src, template_for(canvas))
    return m.astype(np.float64)


def _similarity_lstsq(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Umeyama-style least-squares similarity without reflection."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var = (s ** 2).sum()
    if var < 1e-9:
        return np.array([[1, 0, mu_d[0] - mu_s[0]], [0, 1, mu_d[1] - mu_s[1]]], np.float64)
    a = (s[:, 0] * d[:, 0] + s[:, 1] * d[:, 1]).sum() / var
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / var
    r = np.array([[a, -b], [b, a]])
    t = mu_d - r @ mu_s
    return np.hstack([r, t[:, None]]).astype(np.float64)


def square_box(box: np.ndarray, expand: float = 1.3) -> np.ndarray:
    """Square [x0, y0, x1, y1] centred on `box`, side = expand x the longer side of `box`."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = max(box[2] - box[0], box[3] - box[1]) * expand / 2
    return np.array([cx - half, cy - half, cx + half, cy + half], np.float64)


def proportion_matrix(box: np.ndarray, canvas: tuple[int, int], expand: float = 1.3) -> np.ndarray:
    """Scale+translate 2x3 matrix (frame -> canvas) of the expanded square crop around `box`."""
    sq = square_box(box, expand)
    h, w = canvas
    sx, sy = w / (sq[2] - sq[0]), h / (sq[3] - sq[1])
    # pixel centres: frame x maps to (x - x0) * s + (s - 1) / 2 so the crop covers the square exactly
    return np.array([[sx, 0, -sq[0] * sx + (sx - 1) / 2], [0, sy, -sq[1] * sy + (sy - 1) / 2]], np.float64)


def crop_matrix(mode: str, canvas: tuple[int, int], *, box: np.ndarray | None = None,
                landmarks: np.ndarray | None = None, expand: float = 1.3) -> np.ndarray:
    """The frame -> canvas matrix for `mode` ("proportion" or "align")."""
    if mode == "proportion":
        return proportion_matrix(box, canvas, expand)
    if mode == "align":
        if landmarks is None:
            raise ConfigError("--crop-mode align needs 5 landmarks, but the detector gave none; install dlib "
                              "(pip install dlib-bin face-recognition-models) or use --crop-mode proportion.")
        return align_matrix(landmarks, canvas)
    raise ConfigError(f"unknown crop mode '{mode}'; choose one of: {', '.join(CROP_MODES)}.")


def invert(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix."""
    import cv2

    return cv2.invertAffineTransform(np.asarray(m, np.float64))


def warp_crop(frame: np.ndarray, m: np.ndarray, canvas: tuple[int, int], *,
              border: str = "reflect") -> np.ndarray:
    """Cut the face out of `frame` (uint8 [H, W, 3]) onto the canvas with matrix `m` (frame -> canvas).

    Bilinear when the crop is not smaller than the face in the frame; when it shrinks by more than 1.5x
    the frame is first pre-filtered (area-downscaled) so the crop does not alias.
    """
    import cv2

    h, w = canvas
    m = np.asarray(m, np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    src = frame
    if scale < 1 / 1.5:
        # shrink the frame by an integer-ish factor with INTER_AREA first, and adjust the matrix
        f = scale * 1.25  # keep a bit above the final scale so the last step is still an upsample-ish warp
        sw, sh = max(1, round(frame.shape[1] * f)), max(1, round(frame.shape[0] * f))
        src = cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_AREA)
        fx, fy = sw / frame.shape[1], sh / frame.shape[0]
        pre = np.array([[fx, 0, (fx - 1) / 2], [0, fy, (fy - 1) / 2], [0, 0, 1]], np.float64)
        m = (np.vstack([m, [0, 0, 1]]) @ np.linalg.inv(pre))[:2]
    mode = {"reflect": cv2.BORDER_REFLECT101, "replicate": cv2.BORDER_REPLICATE,
            "constant": cv2.BORDER_CONSTANT}[border]
    return cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=mode,
                          borderValue=(135, 133, 132))

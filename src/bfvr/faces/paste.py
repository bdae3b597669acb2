"""Paste a restored face crop back into its frame through the inverse warp, with a feathered mask.

The mask lives on the canvas (so it moves with the smoothed crop: stable, no flicker at the boundary):
an eroded box or ellipse with Gaussian-blurred edges. Only the frame region the warped canvas covers is
touched; every other pixel is returned bit-exact.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

MASK_SHAPES = ("box", "ellipse")


@lru_cache(maxsize=8)
def soft_mask(canvas: tuple[int, int], shape: str = "box", erode: float = 0.04,
              feather: float = 0.06) -> np.ndarray:
    """Float32 [H, W] mask in [0, 1] on the canvas: a box (or ellipse) shrunk by `erode` x size on each
    side, edges blurred by a Gaussian with sigma `feather` x size. Zero on the canvas border."""
    import cv2

    h, w = canvas
    size = min(h, w)
    m = np.zeros((h, w), np.float32)
    e = int(round(erode * size))
    sigma = max(feather * size, 0.5)
    # leave room for the blur so the mask is exactly zero at the canvas edge (no hard cut in the frame)
    pad = e + int(np.ceil(2 * sigma))
    if shape == "box":
        m[pad:h - pad, pad:w - pad] = 1.0
    elif shape == "ellipse":
        cv2.ellipse(m, (w // 2, h // 2), (max(1, w // 2 - pad), max(1, h // 2 - pad)), 0, 0, 360, 1.0, -1)
    else:
        raise ValueError(f"unknown mask shape {shape!r}; choose one of {MASK_SHAPES}")
    k = int(2 * np.ceil(3 * sigma) + 1)
    m = cv2.GaussianBlur(m, (k, k), sigma, borderType=cv2.BORDER_CONSTANT)
    m[[0, -1], :] = 0
    m[:, [0, -1]] = 0
    m.setflags(write=False)
    return m


def match_color(restored: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Shift/scale each channel of `restored` so its mean and std inside `mask` match `reference`
    (keeps skin tone consistent with the untouched surroundings)."""
    w = mask[..., None].astype(np.float32)
    tot = max(float(w.sum()), 1e-6)
    r, f = restored.astype(np.float32), reference.astype(np.float32)
    mr, mf = (r * w).sum((0, 1)) / tot, (f * w).sum((0, 1)) / tot
    sr = np.sqrt(((r - mr) ** 2 * w).sum((0, 1)) / tot) + 1e-3
    sf = np.sqrt(((f - mf) ** 2 * w).sum((0, 1)) / tot) + 1e-3
    return np.clip((r - mr) * (sf / sr) + mf, 0, 255).astype(np.uint8)


def crop_scale(m: np.ndarray) -> float:
    """How much the crop matrix `m` (frame -> canvas) enlarges the face: > 1 upsamples, < 1 downsamples."""
    return float(np.sqrt(abs(np.linalg.det(np.asarray(m, np.float64)[:, :2]))))


def paste_back(frame: np.ndarray, face: np.ndarray, m: np.ndarray, mask: np.ndarray, *,
               out: np.ndarray | None = None, crop: np.ndarray | None = None,
               base: np.ndarray | None = None) -> np.ndarray:
    """Blend canvas image `face` (uint8 [h, w, 3]) into `frame` (uint8 [H, W, 3]) where `m` is the
    frame -> canvas matrix of the crop and `mask` the canvas mask. Writes into `out` (default: a copy).

    *Residual paste* (`crop` = the model's input crop, `base` = the original frame): instead of the restored
    face itself, ``base + warp(face - crop)`` is blended in: only what the model changed is resampled into
    the frame, so a face larger than the canvas keeps its own detail where the model changes nothing
    (resampling the whole face down to the canvas and back up would blur it twice)."""
    import cv2

    H, W = frame.shape[:2]
    h, w = face.shape[:2]
    if out is None:
        out = frame.copy()
    minv = cv2.invertAffineTransform(np.asarray(m, np.float64))
    # frame region covered by the canvas: the bounding box of its warped corners, clipped to the frame
    corners = np.array([[-0.5, -0.5, 1], [w - 0.5, -0.5, 1], [-0.5, h - 0.5, 1], [w - 0.5, h - 0.5, 1]])
    corners = corners @ minv.T
    x0 = max(int(np.floor(corners[:, 0].min())), 0)
    y0 = max(int(np.floor(corners[:, 1].min())), 0)
    x1 = min(int(np.ceil(corners[:, 0].max())) + 1, W)
    y1 = min(int(np.ceil(corners[:, 1].max())) + 1, H)
    if x1 <= x0 or y1 <= y0:
        return out
    roi_inv = minv.copy()
    roi_inv[:, 2] -= (x0, y0)
    size = (x1 - x0, y1 - y0)
    a = cv2.warpAffine(mask, roi_inv, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                       borderValue=0)
    a = a[..., None]
    region = out[y0:y1, x0:x1].astype(np.float32)
    if crop is not None:
        src = (base if base is not None else frame)[y0:y1, x0:x1].astype(np.float32)
        delta = face.astype(np.float32) - crop.astype(np.float32)
        d = cv2.warpAffine(delta, roi_inv, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        f = src + d
    else:
        f = cv2.warpAffine(face, roi_inv, size, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    blended = region + (f - region) * a
    # pixels the mask does not reach stay bit-exact
    np.copyto(out[y0:y1, x0:x1], np.clip(blended + 0.5, 0, 255).astype(np.uint8), where=a > 0)
    return out


def draw_box(frame: np.ndarray, m: np.ndarray, canvas: tuple[int, int], color=(0, 255, 0), thickness: int = 2,
             label: str | None = None) -> np.ndarray:
    """Draw the crop's outline (the canvas border mapped into the frame) on `frame` in place."""
    import cv2

    h, w = canvas
    minv = cv2.invertAffineTransform(np.asarray(m, np.float64))
    pts = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], np.float64) @ minv.T
    cv2.polylines(frame, [np.round(pts).astype(np.int32)], True, color, thickness, cv2.LINE_AA)
    if label:
        cv2.putText(frame, label, (int(pts[0, 0]), max(12, int(pts[0, 1]) - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.6, color, 2, cv2.LINE_AA)
    return frame

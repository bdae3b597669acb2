"""Temporal metrics from optical flow: Flow-Score and flow-warping error (OpenCV DIS, offline).

* Flow-Score (EvalCrafter / BFVR-STC): mean optical-flow magnitude in pixels between consecutive
  frames of one video. Lower means calmer; it is only meaningful against the GT's own value.
* Warping error (Lai et al. 2018 style, the de-flicker measure): for each pair (t, t+1) the flow is
  computed on a *reference* (the GT when given, else the video itself), frame t of the video is
  backward-warped onto t+1, and the mean absolute difference (0..255 RGB) to frame t+1 is taken over
  the non-occluded pixels (forward-backward flow consistency, Sundaram et al.). Lower is better.

Flow: ``cv2.DISOpticalFlow`` preset MEDIUM on grayscale frames. (RAFT needs weights we do not
ship; pass a callable ``flow_fn(prev_gray, next_gray) -> [H,W,2]`` to use another estimator.)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["dis_flow", "flow_magnitudes", "warp", "warp_errors", "FlowFn"]

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

_DIS = None


def _gray(frame: np.ndarray) -> np.ndarray:
    import cv2

    f = np.asarray(frame)
    if f.dtype != np.uint8:
        f = np.clip(f, 0, 255).astype(np.uint8)
    return cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) if f.ndim == 3 else f


def dis_flow(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """Dense flow [H,W,2] (dx, dy) from ``prev`` to ``nxt`` (RGB or gray frames) with OpenCV DIS."""
    import cv2

    global _DIS
    if _DIS is None:
        _DIS = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return _DIS.calc(_gray(prev), _gray(nxt), None)


def flow_magnitudes(frames: np.ndarray, first_end: int = 1, flow_fn: FlowFn = dis_flow) -> np.ndarray:
    """Mean flow magnitude (pixels) of each transition (t-1 -> t) with t >= ``first_end``."""
    out = []
    for t in range(max(1, first_end), len(frames)):
        f = flow_fn(frames[t - 1], frames[t])
        out.append(float(np.mean(np.linalg.norm(f, axis=-1))))
    return np.asarray(out, dtype=np.float64)


def warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample ``img`` at x + flow(x) (backward warping), bilinear, border replicated."""
    import cv2

    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def _valid_mask(flow_back: np.ndarray, flow_fwd: np.ndarray) -> np.ndarray:
    """Pixels of frame t+1 whose backward flow is consistent with the forward flow (not occluded)."""
    fwd_at = warp(flow_fwd.astype(np.float32), flow_back)
    s = flow_back + fwd_at
    bound = 0.01 * (np.sum(flow_back ** 2, -1) + np.sum(fwd_at ** 2, -1)) + 0.5
    return np.sum(s ** 2, -1) < bound


def warp_errors(frames: np.ndarray, reference: np.ndarray | None = None, first_end: int = 1,
                flow_fn: FlowFn = dis_flow) -> np.ndarray:
    """Warping error of each transition (t-1 -> t), t >= ``first_end``; flow from ``reference`` or
    ``frames``."""
    ref = frames if reference is None else reference
    if len(ref) != len(frames) or ref.shape[1:3] != frames.shape[1:3]:
        raise ValueError(f"reference shape {ref.shape} does not match the video {frames.shape}")
    out = []
    for t in range(max(1, first_end), len(frames)):
        back = flow_fn(ref[t], ref[t - 1])     # for each pixel of t: where it was in t-1
        fwd = flow_fn(ref[t - 1], ref[t])
        mask = _valid_mask(back, fwd)
        warped = warp(np.asarray(frames[t - 1], dtype=np.float32), back)
        err = np.abs(warped - np.asarray(frames[t], dtype=np.float32)).mean(-1)
        out.append(float(err[mask].mean()) if mask.any() else float("nan"))
    return np.asarray(out, dtype=np.float64)

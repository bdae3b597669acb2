"""Full-reference frame metrics: PSNR and SSIM (BasicSR definitions), MSRL and temporal-difference PSNR.

All functions take uint8 or float arrays in the 0..255 range, RGB, shaped [H,W,3] (one frame) or
[N,H,W,3] (a stack of frames), and return float64 values.

* PSNR: ``10*log10(255^2 / MSE)`` over all pixels and channels; ``inf`` for identical frames.
* SSIM: Wang et al. with an 11x11 Gaussian window (sigma 1.5), C1=(0.01*255)^2, C2=(0.03*255)^2,
  computed per channel on the "valid" area (5 pixels cut at each side) and averaged over channels
  -- BasicSR's ``calculate_ssim`` and scikit-image's ``structural_similarity(gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=255)``. ``ssim_map`` is the same formula on torch
  tensors (differentiable; the training loss uses it), its window ``bfvr.kernels.gaussian_window``.
* ``y_channel=True``: the BT.601 luma in the studio range 16..235 (BasicSR's ``to_y_channel``,
  not rounded), instead of the three RGB channels.
* ``crop_border``: pixels removed at each side before measuring.
* MSRL (PGTFormer's Eq. 7 read as literally as a PSNR allows; the paper releases no script): for each
  transition (t-1 -> t) the residual ``D_t = (pred[t]-pred[t-1]) - (gt[t]-gt[t-1])`` of the
  frame-to-frame differences is taken at the three scales of Eq. 7, n = 1, 2, 3 -> downscale
  ``↓_n`` by 2^(n-1): full size and averaged over 2x2 and 4x4 pixel blocks (``MSRL_SCALES``). Per
  scale the mean squared residual is averaged over all transitions of the video; Eq. 7's
  ``1/3 sum_n`` then averages the three scales, and that one mean squared residual becomes one PSNR
  (peak 255): ``msrl = 10 log10(255^2 / (1/3 sum_s E_s))``. Higher is better; ``inf`` only when the
  differences agree exactly over the whole video, and a transition where both videos hold a frame
  simply adds zero error.
* ``msrl_scales`` (bfvr's earlier reading, called ``msrl`` until issue 26): the same per-scale
  ``E_s``, each turned into a PSNR, then the mean of the three dB values (scales whose residual is
  exactly zero over the whole video are left out of that mean). Since the logarithm is concave,
  ``msrl_scales >= msrl`` always.
* Temporal-difference PSNR (``tdiff_psnr``; bfvr's earlier reading of MSRL, kept under its own
  name): for each temporal stride s in ``TDIFF_STRIDES`` the mean squared residual of the differences
  ``x[t+s]-x[t]`` (prediction minus GT, full size) is averaged over t and turned into a PSNR; the
  value is the mean over strides (exactly matching strides left out as for MSRL).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from bfvr.kernels import gaussian_window

__all__ = ["to_y", "prepare", "psnr", "ssim", "psnr_frames", "ssim_frames", "ssim_map", "msrl_mse",
           "msrl_from_mse", "msrl", "msrl_scales_from_mse", "msrl_scales", "block_mean", "MSRL_SCALES",
           "tdiff_mse", "tdiff_psnr_from_mse", "tdiff_psnr", "TDIFF_STRIDES", "finite_mean", "mse_to_db"]

MSRL_SCALES: tuple[int, ...] = (1, 2, 4)    # spatial: full size, 2x2 and 4x4 block means
TDIFF_STRIDES: tuple[int, ...] = (1, 2, 4)  # temporal strides of tdiff_psnr

# BT.601 studio-range luma from RGB in [0,1] (times 255 back to 16..235)
_Y_COEF = np.array([65.481, 128.553, 24.966], dtype=np.float64)


def to_y(img: np.ndarray) -> np.ndarray:
    """RGB in 0..255 -> Y in 16..235 (float64), shape [..., H, W, 1]."""
    x = np.asarray(img, dtype=np.float64) / 255.0
    return (x @ _Y_COEF + 16.0)[..., None]


def prepare(img: np.ndarray, crop_border: int = 0, y_channel: bool = False) -> np.ndarray:
    """Float64 copy in 0..255 with the border cropped and (optionally) only the Y channel."""
    x = np.asarray(img)
    if x.shape[-1] != 3:
        raise ValueError(f"expected RGB frames with 3 channels last, got shape {x.shape}")
    if crop_border:
        x = x[..., crop_border:-crop_border, crop_border:-crop_border, :]
    return to_y(x) if y_channel else x.astype(np.float64)


def _check(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"prediction and reference differ in shape: {a.shape} vs {b.shape}")


def psnr(pred: np.ndarray, gt: np.ndarray, crop_border: int = 0, y_channel: bool = False) -> float:
    """PSNR in dB of one frame [H,W,3] (or of all pixels of a stack taken together)."""
    _check(np.asarray(pred), np.asarray(gt))
    a, b = prepare(pred, crop_border, y_channel), prepare(gt, crop_border, y_channel)
    return mse_to_db(float(np.mean((a - b) ** 2)))


def psnr_frames(pred: np.ndarray, gt: np.ndarray, crop_border: int = 0,
                y_channel: bool = False) -> np.ndarray:
    """PSNR of each frame of [N,H,W,3] stacks -> [N]."""
    _check(np.asarray(pred), np.asarray(gt))
    a, b = prepare(pred, crop_border, y_channel), prepare(gt, crop_border, y_channel)
    mse = np.mean((a - b) ** 2, axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        return np.where(mse == 0, np.inf, 10.0 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-300)))


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float, *, window: int = 11,
             sigma: float = 1.5) -> torch.Tensor:
    """SSIM at every "valid" position of two NCHW batches (per channel): [N, C, H-window+1, W-window+1].

    Wang et al. with a Gaussian window and C1 = (0.01 L)^2, C2 = (0.03 L)^2 for `data_range` L; the
    means and (co)variances are the window's weighted sums. Differentiable; computed in x's dtype.
    """
    c = x.shape[1]
    g = torch.from_numpy(gaussian_window(window, sigma)).to(device=x.device, dtype=x.dtype)
    gh, gv = g.view(1, 1, 1, -1).expand(c, 1, 1, window), g.view(1, 1, -1, 1).expand(c, 1, window, 1)

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(z, gh, groups=c), gv, groups=c)

    return _ssim_from(blur, x, y, data_range)


def ssim(pred: np.ndarray, gt: np.ndarray, crop_border: int = 0, y_channel: bool = False) -> float:
    """SSIM of one frame [H,W,3] (mean over channels)."""
    _check(np.asarray(pred), np.asarray(gt))
    a, b = prepare(pred, crop_border, y_channel), prepare(gt, crop_border, y_channel)
    if min(a.shape[0], a.shape[1]) < 11:
        raise ValueError(f"SSIM needs frames of at least 11x11 pixels after cropping, got {a.shape[:2]}")
    return float(_ssim_map_np(a, b, 255.0).mean())


def _ssim_map_np(a: np.ndarray, b: np.ndarray, data_range: float, window: int = 11,
                 sigma: float = 1.5) -> np.ndarray:
    """`ssim_map` on float64 [H, W(, C)] arrays with OpenCV's separable filter (the same sums, ~50x faster
    than a float64 torch convolution on a CPU): the SSIM at every valid position. Channels have one size,
    so the mean over all positions is the mean of the per-channel SSIMs."""
    import cv2

    g = gaussian_window(window, sigma)
    r = window // 2

    def blur(z: np.ndarray) -> np.ndarray:
        return cv2.sepFilter2D(z, cv2.CV_64F, g, g, borderType=cv2.BORDER_REFLECT)[r:-r, r:-r]

    a, b = np.ascontiguousarray(a, np.float64), np.ascontiguousarray(b, np.float64)
    return _ssim_from(blur, a, b, data_range)


def _ssim_from(blur, x, y, data_range: float):
    """Wang et al.'s SSIM map from a windowed-mean function `blur` (torch tensors or numpy arrays alike):
    C1 = (0.01 L)^2, C2 = (0.03 L)^2 for `data_range` L."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))


def ssim_frames(pred: np.ndarray, gt: np.ndarray, crop_border: int = 0,
                y_channel: bool = False) -> np.ndarray:
    """SSIM of each frame of [N,H,W,3] stacks -> [N]."""
    _check(np.asarray(pred), np.asarray(gt))
    return np.array([ssim(p, g, crop_border, y_channel) for p, g in zip(pred, gt)], dtype=np.float64)


def mse_to_db(mse: float) -> float:
    """PSNR in dB (peak 255) of a mean squared error; ``inf`` for 0."""
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0 ** 2 / mse))


def block_mean(x: np.ndarray, s: int) -> np.ndarray:
    """Mean over non-overlapping s x s pixel blocks of [..., H, W, C] (the last H % s rows and W % s
    columns are dropped): the area downscale by an integer factor. ``s = 1`` returns ``x``."""
    if s == 1:
        return x
    h, w = x.shape[-3] // s * s, x.shape[-2] // s * s
    if h == 0 or w == 0:
        raise ValueError(f"frames of {x.shape[-3]}x{x.shape[-2]} pixels are too small for {s}x{s} blocks")
    x = x[..., :h, :w, :]
    return x.reshape(*x.shape[:-3], h // s, s, w // s, s, x.shape[-1]).mean(axis=(-4, -2))


def msrl_mse(pred: np.ndarray, gt: np.ndarray, first_end: int = 1, y_channel: bool = False,
             scales: Sequence[int] = MSRL_SCALES) -> np.ndarray:
    """Mean squared MSRL residual of each transition (t-1 -> t), t >= ``first_end``, at each scale.

    Returns [T, len(scales)]: ``mean(B_s(D_t)^2)`` with ``D_t = (pred[t]-pred[t-1]) - (gt[t]-gt[t-1])``
    and ``B_s`` the s x s block mean (``block_mean``). ``first_end`` lets a streaming caller that
    prepends the previous chunk's last frame count each transition once; ``msrl_from_mse`` of the
    concatenated rows gives the video's MSRL.
    """
    _check(np.asarray(pred), np.asarray(gt))
    a, b = prepare(pred, 0, y_channel), prepare(gt, 0, y_channel)
    out = []
    for t in range(max(1, first_end), a.shape[0]):
        d = (a[t] - a[t - 1]) - (b[t] - b[t - 1])  # block_mean is linear: B(dp) - B(dg) = B(dp - dg)
        out.append([float(np.mean(block_mean(d, s) ** 2)) for s in scales])
    return np.asarray(out, dtype=np.float64).reshape(len(out), len(scales))


def msrl_from_mse(mse: np.ndarray) -> float:
    """MSRL of a video from its ``msrl_mse`` rows [T, S] (the literal reading of Eq. 7): per scale the
    mean over transitions, then the mean over the scales (Eq. 7's ``1/3 sum_n``), turned into one PSNR.
    ``nan`` without transitions."""
    mse = np.asarray(mse, dtype=np.float64)
    if mse.size == 0:
        return float("nan")
    return mse_to_db(float(mse.mean(axis=0).mean()))


def msrl_scales_from_mse(mse: np.ndarray) -> float:
    """``msrl_scales`` of a video from its ``msrl_mse`` rows [T, S]: per scale the mean over transitions
    turned into dB, then the mean of those dB values over the scales (``finite_mean``). ``nan`` without
    transitions."""
    mse = np.asarray(mse, dtype=np.float64)
    if mse.size == 0:
        return float("nan")
    return finite_mean([mse_to_db(m) for m in mse.mean(axis=0)])


def msrl(pred: np.ndarray, gt: np.ndarray, y_channel: bool = False) -> float:
    """MSRL of a whole clip (``nan`` for a single frame)."""
    return msrl_from_mse(msrl_mse(pred, gt, y_channel=y_channel))


def msrl_scales(pred: np.ndarray, gt: np.ndarray, y_channel: bool = False) -> float:
    """``msrl_scales`` of a whole clip (``nan`` for a single frame)."""
    return msrl_scales_from_mse(msrl_mse(pred, gt, y_channel=y_channel))


def tdiff_mse(pred: np.ndarray, gt: np.ndarray, stride: int, first_end: int = 0,
              y_channel: bool = False) -> np.ndarray:
    """Mean squared difference between the stride-``stride`` temporal differences of two [N,H,W,3]
    stacks (full size), one value per transition (t, t+stride) whose end index t+stride >=
    ``first_end`` (so a streaming caller that prepends the last frames of the previous chunk counts
    each transition once)."""
    _check(np.asarray(pred), np.asarray(gt))
    a, b = prepare(pred, 0, y_channel), prepare(gt, 0, y_channel)
    out = []
    for end in range(max(stride, first_end), a.shape[0]):
        d = (a[end] - a[end - stride]) - (b[end] - b[end - stride])
        out.append(float(np.mean(d * d)))
    return np.asarray(out, dtype=np.float64)


def tdiff_psnr_from_mse(per_stride: dict[int, Sequence[float]]) -> float:
    """tdiff_psnr from ``{stride: tdiff_mse values}``: per stride the mean over transitions in dB, then
    the mean over the strides that have transitions (``finite_mean``); ``nan`` when none has."""
    return finite_mean([mse_to_db(float(np.mean(v))) for v in per_stride.values() if len(v)])


def tdiff_psnr(pred: np.ndarray, gt: np.ndarray, y_channel: bool = False,
               strides: Sequence[int] = TDIFF_STRIDES) -> float:
    """tdiff_psnr of a whole clip (``nan`` for a single frame)."""
    return tdiff_psnr_from_mse({s: tdiff_mse(pred, gt, s, y_channel=y_channel) for s in strides})


def finite_mean(values: Sequence[float] | np.ndarray) -> float:
    """Mean of the finite values; ``inf`` only when every value is ``inf`` (e.g. every scale of a video
    that matches exactly), ``nan`` when there is no value."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return float("nan")
    fin = v[np.isfinite(v)]
    if fin.size:
        return float(np.mean(fin))
    return float("inf") if np.all(v == np.inf) else float("nan")

"""A motion-adaptive temporal filter for restored clips (less flicker where the picture stands still).

Each output frame becomes a weighted mean of itself and its two neighbours, per pixel::

    y'_t = (y_t + w_-1 * y_{t-1} + w_+1 * y_{t+1}) / (1 + w_-1 + w_+1)
    w_k  = exp(-((g_t - g_{t+k}) / sigma)^2),   g = Gaussian-blurred luma of y (std `guide_blur` px)

so a pixel whose smoothed brightness changes by much more than `sigma` (8-bit levels) between frames keeps
its own value (motion, cuts), and one that barely changes is averaged with its neighbours: the residual
frame-to-frame noise of a restoration (and of its input) is damped where the scene is still. The clip's first
and last frames use their one neighbour. A model asks for it with a ``temporal_filter`` attribute (sigma;
0 = off), which the clip engine applies to every clip the model returns (`bfvr.engine.chunker`).

BFVR-Lite's default, sigma 1, was chosen on training clips, never on the held-out ones (docs/models.md,
"The temporal filter"): on 14 degraded training clips every sigma from 1 to 3 brought the flicker of all 14
below their input's at an unchanged PSNR, while on 7 clean training clips larger sigmas smoothed away more of
the film grain (detail kept in the worst clip: 92 % at sigma 1, 85 % at 3); sigma 1 is the largest on that
grid that keeps the issue's 90 %.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: BT.601 luma weights
_LUMA = (0.299, 0.587, 0.114)


def _gaussian_blur(x: torch.Tensor, std: float) -> torch.Tensor:
    """Gaussian blur of one image `x` [H, W] (edges replicated): OpenCV on the CPU (about 8x faster than a
    separable conv2d there), a separable conv2d elsewhere."""
    if x.device.type == "cpu":
        import cv2

        return torch.from_numpy(cv2.GaussianBlur(x.contiguous().numpy(), (0, 0), std,
                                                 borderType=cv2.BORDER_REPLICATE))
    r = max(1, int(math.ceil(4.0 * std)))  # OpenCV's float32 kernel size
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t * t) / (2.0 * std * std))
    k = k / k.sum()
    y = F.conv2d(F.pad(x[None, None], (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))[0, 0]


def check_sigma(sigma: float) -> float:
    """`sigma` as a float, or one sentence when it is not a finite number >= 0."""
    from bfvr.errors import ConfigError

    try:
        s = float(sigma)
    except (TypeError, ValueError):
        raise ConfigError(f"the temporal filter strength must be a number of 8-bit levels (0 = off), "
                          f"got {sigma!r}.") from None
    if not math.isfinite(s) or s < 0:
        raise ConfigError(f"the temporal filter strength must be >= 0 (8-bit levels; 0 = off), "
                          f"got {sigma!r}.")
    return s


@torch.no_grad()
def temporal_filter(frames: torch.Tensor, sigma: float, *, guide_blur: float = 1.5) -> torch.Tensor:
    """Filter `frames` [T, 3, H, W] (float in [0, 1]) in place as the module doc says and return them.

    `sigma` is in 8-bit levels (BFVR-Lite: 1); 0, or a clip of one frame, leaves `frames` as they
    are. Extra memory: the guide (one channel per frame) and three frames."""
    sigma = check_sigma(sigma)
    t = frames.shape[0]
    if sigma == 0 or t < 2:
        return frames
    if frames.dim() != 4 or frames.shape[1] != 3:
        raise ValueError(f"temporal_filter takes frames shaped [T, 3, H, W]; got {list(frames.shape)}")
    guide = torch.empty((t,) + tuple(frames.shape[2:]), dtype=torch.float32, device=frames.device)
    for i in range(t):  # frame by frame: no full-clip float temporaries
        f = frames[i].float()
        guide[i] = _gaussian_blur(f[0] * _LUMA[0] + f[1] * _LUMA[1] + f[2] * _LUMA[2], guide_blur)
    scale = 255.0 / sigma
    prev = None  # the unfiltered frame t-1 (frame t-1 itself is already overwritten)
    w_prev = None  # the weight between frames t-1 and t (the same both ways)
    for i in range(t):
        cur = frames[i].clone()
        num = cur.float()
        if num is cur:  # float32 frames: `cur` must stay unfiltered (it is the next frame's `prev`)
            num = num.clone()
        den = torch.ones_like(guide[i])
        if prev is not None:
            num.addcmul_(w_prev, prev.float())
            den.add_(w_prev)
        w_next = None
        if i + 1 < t:
            w_next = torch.sub(guide[i], guide[i + 1]).mul_(scale).square_().neg_().exp_()
            num.addcmul_(w_next, frames[i + 1].float())
            den.add_(w_next)
        frames[i] = num.div_(den)
        prev, w_prev = cur, w_next
    return frames

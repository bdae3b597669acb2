"""Filter kernels shared by layers that must not import each other (the degradations' blur, the metrics' SSIM
window)."""

from __future__ import annotations

import numpy as np


def gaussian_window(size: int, sigma: float) -> np.ndarray:
    """The normalised 1-D Gaussian of `size` taps (float64). Filtering once per axis with it is the
    isotropic 2-D Gaussian filter (the separable blur here; SSIM's 11-tap, sigma-1.5 window)."""
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(ax**2) / (2 * sigma**2))
    return g / g.sum()

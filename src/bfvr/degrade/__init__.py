"""Degradation synthesis: seeded, composable operators with one parameter draw per clip.

``recipe(name)`` gives a :class:`Degradation` (stc, stc-nonoise, stc-paper, stc-paper-nonoise, keep,
flicker-brightness, flicker-pixel, inpaint, gray, or several joined with '+'); ``clip_rng(seed, name)``
the per-clip generator; ``degrade_path`` the file/folder level used by ``bfvr degrade``. See
docs/degrade.md.
"""

from bfvr.degrade.ops import (
    Blur,
    BrightnessFlicker,
    BrushMask,
    Codec,
    Downscale,
    Grayscale,
    Noise,
    Op,
    PixelFlicker,
    Upscale,
    gaussian_kernel,
    gaussian_window,
)
from bfvr.degrade.pipeline import RECIPES, Degradation, clip_rng, clip_seed, recipe

__all__ = ["RECIPES", "Degradation", "clip_rng", "clip_seed", "recipe", "Op", "Blur", "Downscale", "Upscale",
           "Noise", "Codec", "BrightnessFlicker", "PixelFlicker", "BrushMask", "Grayscale", "gaussian_kernel",
           "gaussian_window"]

"""Recipes (chains of operators), per-clip seeding, and applying a recipe to a clip or a stream."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from bfvr.degrade.ops import (
    Blur,
    BrightnessFlicker,
    Broad,
    BrushMask,
    Codec,
    Downscale,
    Grayscale,
    Noise,
    Op,
    PixelFlicker,
    Upscale,
    _u8,
)
from bfvr.errors import ConfigError

SIDECAR_VERSION = 1


def clip_seed(seed: int, name: str) -> np.random.SeedSequence:
    """The seed sequence of one clip: from the run's ``seed`` and the clip's name (e.g. file stem)."""
    h = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")
    return np.random.SeedSequence([int(seed) & (2**63 - 1), h])


def clip_rng(seed: int, name: str) -> np.random.Generator:
    """A numpy Generator for one clip, seeded from (seed, clip name)."""
    return np.random.default_rng(clip_seed(seed, name))


class Degradation:
    """A chain of operators applied to whole clips with one parameter draw per clip.

    >>> deg = recipe("stc")
    >>> params = deg.draw(clip_rng(0, "clip"), width=512, height=512, fps=25)
    >>> lq = deg.apply(frames, params)          # frames: uint8 [N,H,W,3] RGB -> same shape, uint8
    """

    def __init__(
        self, ops: Sequence[Op], name: str = "custom", rng_slots: Sequence[int] | None = None
    ) -> None:
        self.ops = list(ops)
        self.name = name
        # operator i draws from child generator rng_slots[i] (default: i). A recipe that reorders another's
        # operators keeps their generators, so both draw the same parameters from the same seed.
        self.rng_slots = list(range(len(self.ops))) if rng_slots is None else list(rng_slots)
        if sorted(self.rng_slots) != list(range(len(self.ops))):
            raise ValueError(
                f"rng_slots must be a permutation of 0..{len(self.ops) - 1}, got {self.rng_slots}"
            )

    def __repr__(self) -> str:
        return f"Degradation({self.name!r}, {self.ops!r})"

    def draw(self, rng: np.random.Generator | int, width: int, height: int, fps: Fraction | float | int = 25,
             mid: bool = False) -> dict[str, Any]:
        """Draw every operator's parameters once for a clip of ``width`` x ``height``.

        Each operator gets its own child generator, so changing one operator's ranges does not
        change what the others draw. Returns the sidecar dict: ``{"recipe", "mid", "ops": [...]}``.
        """
        rng = np.random.default_rng(rng) if isinstance(rng, (int, np.integer)) else rng
        children = rng.spawn(len(self.ops))
        fps = Fraction(fps).limit_denominator(1001 * 1000) if fps else Fraction(25)
        ctx: dict[str, Any] = {"size": (int(width), int(height)), "orig_size": (int(width), int(height)),
                               "fps": fps}
        ops = []
        for op, slot in zip(self.ops, self.rng_slots):
            p = op.draw(children[slot], ctx, mid=mid)
            ops.append({"op": op.name, **p})
        return {"version": SIDECAR_VERSION, "recipe": self.name, "mid": bool(mid),
                "size": [int(width), int(height)], "fps": str(fps), "ops": ops}

    def stream(self, chunks: Iterable[np.ndarray], params: dict[str, Any]) -> Iterator[np.ndarray]:
        """Degrade a clip that arrives in chunks (uint8 [n,H,W,3]); yields uint8 chunks (sizes may differ)."""

        def source() -> Iterator[tuple[int, np.ndarray]]:
            i = 0
            for c in chunks:
                yield i, np.asarray(c, dtype=np.float32)
                i += len(c)

        it: Iterator[tuple[int, np.ndarray]] = source()
        for op, p in zip(self.ops, params["ops"]):
            it = op.stream(it, p)
        for _, frames in it:
            yield _u8(frames)

    def apply(self, frames: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Degrade a whole clip (uint8 [N,H,W,3] RGB) with already drawn ``params``."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected frames [N,H,W,3], got {frames.shape}")
        out = list(self.stream([frames], params))
        res = np.concatenate(out) if out else frames[:0]
        self.summarize(params, len(frames))
        return res

    def summarize(self, params: dict[str, Any], n_frames: int) -> dict[str, Any]:
        """Record per-frame facts (e.g. which frames flickered) once the clip length is known."""
        params["frames"] = int(n_frames)
        for op, p in zip(self.ops, params["ops"]):
            op.summarize(p, n_frames)
        return params

    def __call__(self, frames: np.ndarray, rng: np.random.Generator | int, fps: Fraction | float = 25,
                 mid: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw parameters for ``frames`` and apply them: returns (lq, params)."""
        frames = np.asarray(frames)
        params = self.draw(rng, frames.shape[2], frames.shape[1], fps=fps, mid=mid)
        return self.apply(frames, params), params

    def find(self, op_name: str) -> tuple[Op, int] | None:
        for i, op in enumerate(self.ops):
            if op.name == op_name:
                return op, i
        return None


def _stc(noise: bool, paper: bool = False) -> list[Op]:
    ops: list[Op] = [Blur(kernels=("iso",), size=11, sigma=(2.0, 5.0)),
                     Downscale(scale=(2.0, 4.0), interps=("linear",))]
    if noise:
        ops.append(Noise(sigma=(0.0, 5.0)))
    if paper:  # the paper's Eq. 9: compress at the low resolution, then upsample
        return ops + [Codec(crf=(18, 25)), Upscale(interp="linear")]
    return ops + [Upscale(interp="linear"), Codec(crf=(18, 25))]


def _keep() -> list[Op]:
    return [Blur(kernels=("iso", "aniso"), probs=(0.7, 0.3), size=21, sigma=(0.1, 10.0)),
            Downscale(scale=4.0, interps=("area", "linear", "cubic"), probs=(0.2, 0.4, 0.4), even=True),
            Noise(sigma=(0.0, 10.0), gray_prob=0.5),
            Codec(crf=(18, 25)),
            Upscale(interp="same")]


def _bfvr(sigma: tuple[float, float] = (0.5, 6.0), scale: tuple[float, float] = (2.0, 4.0)) -> list[Op]:
    return [Blur(kernels=("iso", "aniso"), probs=(0.7, 0.3), size=25, sigma=sigma),
            Downscale(scale=scale, interps=("area", "linear", "cubic"), even=True),
            Noise(sigma=(0.0, 8.0), gray_prob=0.3),
            Codec(crf=(18, 36)),
            Upscale(interp="linear"),
            BrightnessFlicker(prob=0.15, alpha=(0.8, 1.2))]


def _bfvr_eval() -> list[Op]:
    return [Blur(kernels=("iso",), size=25, sigma=4.0), Downscale(scale=4.0, interps=("area",), even=True),
            Noise(sigma=4.0), Codec(crf=25), Upscale(interp="linear")]


RECIPES: dict[str, tuple[str, Any]] = {
    "bfvr": ("BFVR-Lite training: iso/aniso blur k25 s~U[0.5,6] -> down x U[2,4] "
             "(area/linear/cubic) -> noise s~U[0,8] (gray p=0.3) -> x264 CRF 18-35 at the low "
             "size -> up (linear) -> brightness flicker (p=0.15 per frame, alpha~U[0.8,1.2])", _bfvr),
    "bfvr-hard": ("the heavier half of bfvr (BFVR-Lite fine-tuning): blur s~U[2,6], down x U[3,4]; noise, "
                  "codec and flicker as bfvr", lambda: _bfvr(sigma=(2.0, 6.0), scale=(3.0, 4.0))),
    "bfvr-broad": ("BFVR-Lite training, broad family (one level per clip): clean 12 %; light 23 % "
                   "(mild blur, small down, noise s<3, H.264 CRF 18-28 or JPEG 70-95); full 65 % "
                   "(iso/aniso blur s 0.5-6 p 0.9, down x1-x4 area/linear/cubic/nearest, Gaussian s<10 or "
                   "Poisson noise, H.264 CRF 18-38 / H.265 CRF 20-38 / JPEG 20-90 / none, up "
                   "linear/cubic, brightness flicker on 25 % of clips)",
                   lambda: [Broad()]),
    "bfvr-eval": ("fixed evaluation recipe (no random parameter): iso blur s=4 -> down "
                  "x4 (area) -> noise s=4 -> x264 CRF 25 at the low size -> up (linear)", _bfvr_eval),
    "stc": ("BFVR-STC/VFHQ: iso blur k11 s~U[2,5] -> down x U[2,4] -> noise s~U[0,5] -> up -> x264 CRF 18-24",
            lambda: _stc(True)),
    "stc-nonoise": ("STC without the noise step (its first, incremental training step)", lambda: _stc(False)),
    "stc-paper": ("BFVR-STC as the paper's Eq. 9 writes it: iso blur k11 s~U[2,5] -> down x U[2,4] -> noise "
                  "s~U[0,5] -> x264 CRF 18-24 at the low size -> up (linear); same draws as stc for a seed",
                  lambda: _stc(True, paper=True)),
    "stc-paper-nonoise": ("stc-paper without the noise step; same draws as stc-nonoise for a seed",
                          lambda: _stc(False, paper=True)),
    "keep": ("KEEP/DicFace: iso/aniso blur k21 s~U[0.1,10] -> down x4 (area/linear/cubic) -> noise s~U[0,10] "
             "(gray p=0.5) -> x264 CRF 18-24 -> up", _keep),
    "flicker-brightness": ("each frame with p=0.3: convertScaleAbs(alpha~U[0.5,1.5])",
                           lambda: [BrightnessFlicker()]),
    "flicker-pixel": ("per-frame independent texture/detail perturbation (see docs/degrade.md)",
                      lambda: [PixelFlicker()]),
    "inpaint": ("1-3 brush strokes (8-28 vertices, 30-70 px), same mask on all frames",
                lambda: [BrushMask()]),
    "gray": ("grayscale input for colourisation", lambda: [Grayscale()]),
}


#: recipes whose operators are another recipe's in a different order: operator i of the recipe draws from
#: the generator of that recipe's operator RNG_SLOTS[name][i] (the codec keeps the generator it has in `stc`)
RNG_SLOTS: dict[str, tuple[int, ...]] = {"stc-paper": (0, 1, 2, 4, 3), "stc-paper-nonoise": (0, 1, 3, 2)}


def recipe(name: str) -> Degradation:
    """The named recipe; several can be chained with '+', e.g. ``"stc+flicker-brightness"``."""
    ops: list[Op] = []
    slots: list[int] = []
    for part in name.split("+"):
        part = part.strip()
        if part not in RECIPES:
            raise ConfigError(f"unknown degradation recipe {part!r}; choose from {', '.join(RECIPES)} "
                              "(or chain them with '+').")
        new = RECIPES[part][1]()
        slots += [len(ops) + i for i in RNG_SLOTS.get(part, range(len(new)))]
        ops += new
    return Degradation(ops, name=name, rng_slots=slots)

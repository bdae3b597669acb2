"""Degradation operators on whole clips, with one parameter draw per clip.

Every operator has two halves:

* ``draw(rng, ctx, mid=False) -> dict``: draws the operator's parameters **once for the whole clip**
  (blur kernel, scale, noise level, CRF, ...). The dict is JSON-serialisable and is what the sidecar
  records. ``mid=True`` takes the middle of every range instead of a random value (used to report the
  "mid-range" recipe). Operators whose effect is per frame (noise realisation, flicker) draw a
  ``seed`` here; the value for frame ``i`` comes from ``numpy.random.default_rng([seed, i])``, so it
  does not depend on how the clip is cut into chunks.
* ``apply(frames, params, start) -> frames``: applies those parameters to a chunk of frames
  (float32 ``[N,H,W,3]`` RGB on the 0..255 scale; ``start`` is the index of the chunk's first frame
  in the clip). Because the parameters are fixed, every frame of a clip gets the same blur / scale /
  noise level / CRF.

``ctx`` carries what earlier operators decided: the current frame size ``size`` (w, h), the clip's
original size ``orig_size``, the last interpolation ``interp`` and the clip ``fps``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import cv2
import numpy as np

from bfvr.kernels import gaussian_window  # noqa: F401  (also `bfvr.degrade.gaussian_window`)

INTERP = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC,
          "area": cv2.INTER_AREA, "lanczos": cv2.INTER_LANCZOS4}

Range = float | tuple[float, float]


def _uniform(rng: np.random.Generator, r: Range, mid: bool) -> float:
    lo, hi = (r, r) if isinstance(r, (int, float)) else r
    if lo == hi:
        return float(lo)
    return float((lo + hi) / 2) if mid else float(rng.uniform(lo, hi))


def _integer(rng: np.random.Generator, r: int | tuple[int, int], mid: bool) -> int:
    """An integer in the half-open range [lo, hi) (numpy/official ``randint`` semantics)."""
    lo, hi = (r, r + 1) if isinstance(r, int) else r
    return int((lo + hi - 1) // 2) if mid else int(rng.integers(lo, hi))


def _choice(rng: np.random.Generator, options: Sequence[str], probs: Sequence[float] | None,
            mid: bool) -> str:
    if len(options) == 1:
        return options[0]
    if mid:  # the most likely option (the first one on ties)
        return options[int(np.argmax(probs))] if probs is not None else options[0]
    return str(options[int(rng.choice(len(options), p=probs))])


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**63 - 1))


def frame_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of frame ``index`` for an operator whose clip-level seed is ``seed``."""
    return np.random.default_rng([int(seed), int(index)])


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


class Op:
    """Base class: subclasses implement ``draw`` and ``apply``; ``stream`` maps ``apply`` over chunks."""

    name = "op"

    def draw(self, rng: np.random.Generator, ctx: dict[str, Any], mid: bool = False) -> dict[str, Any]:
        raise NotImplementedError

    def apply(self, frames: np.ndarray, params: dict[str, Any], start: int) -> np.ndarray:
        raise NotImplementedError

    def stream(self, chunks: Iterator[tuple[int, np.ndarray]], params: dict[str, Any]
               ) -> Iterator[tuple[int, np.ndarray]]:
        for start, frames in chunks:
            yield start, self.apply(frames, params, start)

    def summarize(self, params: dict[str, Any], n_frames: int) -> None:
        """Add per-frame facts to ``params`` once the clip length is known (default: nothing)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


# ------------------------------------------------------------------------------------------ blur
def gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None,
                    theta: float = 0.0) -> np.ndarray:
    """A normalised 2-D Gaussian kernel (anisotropic when ``sigma_y`` differs, rotated by ``theta``)."""
    sigma_y = sigma_x if sigma_y is None else sigma_y
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2
    xx, yy = np.meshgrid(ax, ax)
    c, s = math.cos(theta), math.sin(theta)
    u, v = c * xx + s * yy, -s * xx + c * yy
    k = np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return (k / k.sum()).astype(np.float32)


class Blur(Op):
    """Gaussian blur with one kernel per clip: isotropic and/or anisotropic (rotated) kernels.

    STC: ``Blur(kernels=("iso",), size=11, sigma=(2, 5))``. KEEP/DicFace: ``Blur(kernels=("iso",
    "aniso"), probs=(0.7, 0.3), size=21, sigma=(0.1, 10))`` (aniso draws sigma_x, sigma_y and an
    angle in [-pi, pi]).
    """

    name = "blur"

    def __init__(self, kernels: Sequence[str] = ("iso",), probs: Sequence[float] | None = None,
                 size: int = 11, sigma: Range = (2.0, 5.0), rotation: Range = (-math.pi, math.pi)) -> None:
        bad = set(kernels) - {"iso", "aniso"}
        if bad:
            raise ValueError(f"unknown kernel types {sorted(bad)}; use 'iso' and/or 'aniso'")
        self.kernels, self.probs, self.size = tuple(kernels), probs, size
        self.sigma, self.rotation = sigma, rotation

    def draw(self, rng, ctx, mid=False):
        kind = _choice(rng, self.kernels, self.probs, mid)
        sx = _uniform(rng, self.sigma, mid)
        if kind == "iso":
            sy, theta = sx, 0.0
        else:
            sy, theta = _uniform(rng, self.sigma, mid), _uniform(rng, self.rotation, mid)
        return {"kernel": kind, "size": self.size, "sigma_x": sx, "sigma_y": sy, "theta": theta}

    def apply(self, frames, params, start):
        size, sx, sy, theta = params["size"], params["sigma_x"], params["sigma_y"], params["theta"]
        if sx == sy or theta == 0.0:
            # an axis-aligned Gaussian is separable: two 1-D passes give the 2-D kernel's result (up to float
            # rounding) at a fraction of the cost (5 frames of 256^2, k=25: 138 -> ~5 ms)
            kx, ky = (gaussian_window(size, v).astype(np.float32) for v in (sx, sy))
            return np.stack([cv2.sepFilter2D(f, -1, kx, ky,
                                             borderType=cv2.BORDER_REFLECT_101) for f in frames])
        k = gaussian_kernel(size, sx, sy, theta)
        return np.stack([cv2.filter2D(f, -1, k, borderType=cv2.BORDER_REFLECT_101) for f in frames])


# ---------------------------------------------------------------------------------------- resize
def _resize(frames: np.ndarray, size: tuple[int, int], interp: str) -> np.ndarray:
    w, h = size
    if frames.shape[1:3] == (h, w):
        return frames
    return np.stack([cv2.resize(f, (w, h), interpolation=INTERP[interp]) for f in frames])


class Downscale(Op):
    """Resize down by a factor drawn once per clip (STC: U[2,4], bilinear; KEEP: x4, interpolation
    drawn from area/linear/cubic with p 0.2/0.4/0.4, size rounded to even)."""

    name = "downscale"

    def __init__(self, scale: Range = (2.0, 4.0), interps: Sequence[str] = ("linear",),
                 probs: Sequence[float] | None = None, even: bool = False) -> None:
        self.scale, self.interps, self.probs, self.even = scale, tuple(interps), probs, even

    def draw(self, rng, ctx, mid=False):
        s = _uniform(rng, self.scale, mid)
        interp = _choice(rng, self.interps, self.probs, mid)
        w, h = ctx["size"]
        nw, nh = max(1, round(w / s)), max(1, round(h / s))
        if self.even:
            nw, nh = max(2, nw + nw % 2), max(2, nh + nh % 2)
        ctx["size"], ctx["interp"] = (nw, nh), interp
        return {"scale": s, "interp": interp, "size": [nw, nh]}

    def apply(self, frames, params, start):
        return _resize(frames, tuple(params["size"]), params["interp"])


class Upscale(Op):
    """Resize back to the clip's original size (``interp="same"`` reuses the downscale's choice)."""

    name = "upscale"

    def __init__(self, interp: str = "linear") -> None:
        self.interp = interp

    def draw(self, rng, ctx, mid=False):
        interp = ctx.get("interp", "linear") if self.interp == "same" else self.interp
        ctx["size"] = tuple(ctx["orig_size"])
        return {"interp": interp, "size": list(ctx["orig_size"])}

    def apply(self, frames, params, start):
        return _resize(frames, tuple(params["size"]), params["interp"])


# ----------------------------------------------------------------------------------------- noise
class Noise(Op):
    """Additive Gaussian noise, sigma (0..255 scale) drawn once per clip; a new realisation per frame.
    With probability ``gray_prob`` the noise is the same on R, G and B ("gray" noise)."""

    name = "noise"

    def __init__(self, sigma: Range = (0.0, 5.0), gray_prob: float = 0.0) -> None:
        self.sigma, self.gray_prob = sigma, gray_prob

    def draw(self, rng, ctx, mid=False):
        sigma = _uniform(rng, self.sigma, mid)
        gray = bool(rng.random() < self.gray_prob) if not mid else self.gray_prob > 0.5
        return {"sigma": sigma, "gray": gray, "seed": _seed(rng)}

    def apply(self, frames, params, start):
        out = np.empty_like(frames)
        for j, f in enumerate(frames):
            r = frame_rng(params["seed"], start + j)
            shape = f.shape[:2] + (1,) if params["gray"] else f.shape
            out[j] = f + r.standard_normal(shape, dtype=np.float32) * np.float32(params["sigma"])
        return out


# ----------------------------------------------------------------------------------------- codec
class Codec(Op):
    """Real H.264: libx264 at a CRF drawn once per clip from [lo, hi) (official: randint(18, 25)),
    yuv420p, encoded and decoded in memory (see ``bfvr.degrade.codec``); deterministic (1 thread)."""

    name = "codec"

    def __init__(self, crf: int | tuple[int, int] = (18, 25), preset: str = "medium",
                 codec: str = "libx264") -> None:
        self.crf, self.preset, self.codec = crf, preset, codec

    def draw(self, rng, ctx, mid=False):
        fps = ctx.get("fps") or 25
        return {"codec": self.codec, "crf": _integer(rng, self.crf, mid), "preset": self.preset,
                "pix_fmt": "yuv420p", "fps": str(fps)}

    def apply(self, frames, params, start):
        out = [f for _, f in self.stream(iter([(start, frames)]), params)]
        return np.concatenate(out).astype(np.float32)

    def stream(self, chunks, params):
        from fractions import Fraction

        from bfvr.degrade.codec import X264Roundtrip

        rt = None
        done = 0
        for _start, frames in chunks:
            if rt is None:
                h, w = frames.shape[1:3]
                rt = X264Roundtrip(w, h, params["crf"], fps=Fraction(params["fps"]), preset=params["preset"],
                                   codec=params.get("codec", "libx264"))
            out = rt.push(_u8(frames))
            if len(out):
                yield done, out.astype(np.float32)
                done += len(out)
        if rt is not None:
            tail = rt.flush()
            if len(tail):
                yield done, tail.astype(np.float32)


# --------------------------------------------------------------------------------------- flicker
class BrightnessFlicker(Op):
    """STC's brightness flicker: each frame independently, with probability ``prob`` (0.3), becomes
    ``cv2.convertScaleAbs(frame, alpha=a)`` = saturate(|a * frame|) on uint8, a ~ U[0.5, 1.5].
    Frames that are not picked are left bit-identical."""

    name = "flicker_brightness"

    def __init__(self, prob: float = 0.3, alpha: Range = (0.5, 1.5)) -> None:
        self.prob, self.alpha = prob, alpha

    def draw(self, rng, ctx, mid=False):
        return {"prob": self.prob, "alpha_range": list(self.alpha) if not isinstance(self.alpha, (int, float))
                else [self.alpha, self.alpha], "seed": _seed(rng)}

    @staticmethod
    def frame_alpha(params: dict[str, Any], index: int) -> float | None:
        r = frame_rng(params["seed"], index)
        picked = r.random() < params["prob"]
        alpha = float(r.uniform(*params["alpha_range"]))
        return alpha if picked else None

    def apply(self, frames, params, start):
        out = frames.copy()
        for j, f in enumerate(frames):
            a = self.frame_alpha(params, start + j)
            if a is not None:
                out[j] = cv2.convertScaleAbs(_u8(f), alpha=a).astype(np.float32)
        return out

    def summarize(self, params, n_frames):
        picked = [(i, self.frame_alpha(params, i)) for i in range(n_frames)]
        params["flickered"] = [[i, round(a, 6)] for i, a in picked if a is not None]


class PixelFlicker(Op):
    """Our stand-in for STC's pixel flicker (per-frame re-rendering by an SD x4 upscaler, not released).

    Each frame independently (its own generator ``[seed, i]``) gets, scaled by a clip strength s:

    1. hallucinated fine texture: unit-variance band-pass noise (Gaussian sigma 0.7 minus sigma 2.0 of
       white noise) on the luma, amplitude ``s * U[3, 10]`` (0..255 scale), weighted by the frame's
       normalised gradient magnitude (0.2 + 0.8 * edge weight), added to R, G and B alike;
    2. sharpen/soften: ``f + k * (f - G_1.5(f))`` with ``k = s * U[-0.6, 1.2]``;
    3. per-channel gain ``1 + s * U[-0.02, 0.02]``;
    4. a sub-pixel shift ``s * U[-0.5, 0.5]`` px in x and y (bilinear, reflected border).

    The result: textures, edges and tone that change from frame to frame like independently
    re-rendered frames while the content stays put.
    """

    name = "flicker_pixel"

    def __init__(self, strength: Range = (0.5, 1.0), texture: tuple[float, float] = (3.0, 10.0),
                 sharpen: tuple[float, float] = (-0.6, 1.2), gain: float = 0.02, shift: float = 0.5) -> None:
        self.strength, self.texture, self.sharpen = strength, texture, sharpen
        self.gain, self.shift = gain, shift

    def draw(self, rng, ctx, mid=False):
        return {"strength": _uniform(rng, self.strength, mid), "texture": list(self.texture),
                "sharpen": list(self.sharpen), "gain": self.gain, "shift": self.shift, "seed": _seed(rng)}

    def apply(self, frames, params, start):
        s = params["strength"]
        out = np.empty_like(frames)
        for j, f in enumerate(frames):
            r = frame_rng(params["seed"], start + j)
            h, w = f.shape[:2]
            y = f @ np.array([0.299, 0.587, 0.114], np.float32)
            z = r.standard_normal((h, w), dtype=np.float32)
            band = cv2.GaussianBlur(z, (0, 0), 0.7) - cv2.GaussianBlur(z, (0, 0), 2.0)
            band /= band.std() + 1e-6
            yb = cv2.GaussianBlur(y, (0, 0), 1.0)
            mag = cv2.magnitude(cv2.Sobel(yb, cv2.CV_32F, 1, 0), cv2.Sobel(yb, cv2.CV_32F, 0, 1))
            weight = 0.2 + 0.8 * np.clip(mag / (np.percentile(mag, 95) + 1e-6), 0, 1)
            amp = s * r.uniform(*params["texture"])
            g = f + (amp * band * weight)[..., None]
            k = s * r.uniform(*params["sharpen"])
            g = g + k * (g - cv2.GaussianBlur(g, (0, 0), 1.5))
            g = g * (1 + s * r.uniform(-params["gain"], params["gain"], 3)).astype(np.float32)
            dx, dy = s * r.uniform(-params["shift"], params["shift"], 2)
            m = np.float32([[1, 0, dx], [0, 1, dy]])
            out[j] = cv2.warpAffine(g, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        return out


# ----------------------------------------------------------------------------- inpaint and gray
def brush_stroke_strokes(rng: np.random.Generator, w: int, h: int, strokes: tuple[int, int] = (1, 3),
                         vertices: tuple[int, int] = (8, 28), width: tuple[int, int] = (30, 70),
                         width_scale: float = 1.0) -> list[dict[str, Any]]:
    """Free-form brush strokes (DeepFill-v2 style random walks), counts inclusive: 1-3 strokes of 8-28
    vertices, 30-70 px wide (times ``width_scale``); mean turn angle 2*pi/5 +- up to 2*pi/15, step
    length ~ N(d/8, d/16) clipped to [0, d/4] with d the frame diagonal."""
    avg_r = math.hypot(w, h) / 8
    mean_angle, angle_range = 2 * math.pi / 5, 2 * math.pi / 15
    out = []
    for _ in range(int(rng.integers(strokes[0], strokes[1] + 1))):
        nv = int(rng.integers(vertices[0], vertices[1] + 1))
        lo = mean_angle - rng.uniform(0, angle_range)
        hi = mean_angle + rng.uniform(0, angle_range)
        x, y = float(rng.integers(0, w)), float(rng.integers(0, h))
        pts = [[x, y]]
        for i in range(nv - 1):
            a = rng.uniform(lo, hi)
            if i % 2 == 0:
                a = 2 * math.pi - a
            r = float(np.clip(rng.normal(avg_r, avg_r / 2), 0, 2 * avg_r))
            x = float(np.clip(x + r * math.cos(a), 0, w - 1))
            y = float(np.clip(y + r * math.sin(a), 0, h - 1))
            pts.append([x, y])
        bw = max(1, round(int(rng.integers(width[0], width[1] + 1)) * width_scale))
        if rng.random() < 0.5:
            pts = [[w - 1 - px, py] for px, py in pts]
        if rng.random() < 0.5:
            pts = [[px, h - 1 - py] for px, py in pts]
        out.append({"vertices": [[round(px, 2), round(py, 2)] for px, py in pts], "width": bw})
    return out


def render_strokes(strokes: list[dict[str, Any]], w: int, h: int) -> np.ndarray:
    """The uint8 mask (255 = hole) of ``strokes`` on a w x h frame."""
    mask = np.zeros((h, w), np.uint8)
    for st in strokes:
        pts = np.rint(np.array(st["vertices"])).astype(np.int32)
        bw = int(st["width"])
        for a, b in zip(pts[:-1], pts[1:]):
            cv2.line(mask, tuple(int(v) for v in a), tuple(int(v) for v in b), 255, bw)
        for p in pts:
            cv2.circle(mask, tuple(int(v) for v in p), bw // 2, 255, -1)
    return mask


class BrushMask(Op):
    """Inpainting input: 1-3 free-form brush strokes, one mask for every frame of the clip, filled with
    ``fill`` (white, 255, by default). Stroke widths are given for 512-px frames and scaled by
    min(H, W)/512 (``ref_size``)."""

    name = "inpaint_mask"

    def __init__(self, strokes=(1, 3), vertices=(8, 28), width=(30, 70), fill: float = 255.0,
                 ref_size: int = 512) -> None:
        self.strokes, self.vertices, self.width = strokes, vertices, width
        self.fill, self.ref_size = fill, ref_size

    def draw(self, rng, ctx, mid=False):
        w, h = ctx["size"]
        strokes = brush_stroke_strokes(rng, w, h, self.strokes, self.vertices, self.width,
                                       width_scale=min(w, h) / self.ref_size)
        return {"size": [w, h], "fill": self.fill, "strokes": strokes}

    @staticmethod
    def mask(params: dict[str, Any]) -> np.ndarray:
        return render_strokes(params["strokes"], *params["size"])

    def apply(self, frames, params, start):
        m = (self.mask(params) > 0)[None, ..., None]
        return np.where(m, np.float32(params["fill"]), frames)


class Grayscale(Op):
    """Colourisation input: luma (BT.601: 0.299 R + 0.587 G + 0.114 B) replicated to 3 channels."""

    name = "gray"

    def draw(self, rng, ctx, mid=False):
        return {"weights": [0.299, 0.587, 0.114]}

    def apply(self, frames, params, start):
        y = frames @ np.asarray(params["weights"], np.float32)
        return np.repeat(y[..., None], 3, axis=-1)


# ------------------------------------------------------------------------------------ jpeg, poisson
class Jpeg(Op):
    """JPEG compression of every frame (OpenCV, 4:2:0) at a quality drawn once per clip from [lo, hi)."""

    name = "jpeg"

    def __init__(self, quality: int | tuple[int, int] = (30, 95)) -> None:
        self.quality = quality

    def draw(self, rng, ctx, mid=False):
        return {"quality": _integer(rng, self.quality, mid)}

    def apply(self, frames, params, start):
        q = [int(cv2.IMWRITE_JPEG_QUALITY), int(params["quality"])]
        out = np.empty_like(frames)
        for j, f in enumerate(frames):
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(_u8(f), cv2.COLOR_RGB2BGR), q)
            out[j] = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return out


class PoissonNoise(Op):
    """Shot noise: each frame becomes Poisson(frame / 255 * peak) / peak * 255, with the photon count
    ``peak`` of full white drawn once per clip, log-uniform in ``peak`` (lower = noisier)."""

    name = "noise_poisson"

    def __init__(self, peak: tuple[float, float] = (50.0, 2000.0), gray_prob: float = 0.0) -> None:
        self.peak, self.gray_prob = peak, gray_prob

    def draw(self, rng, ctx, mid=False):
        lo, hi = math.log(self.peak[0]), math.log(self.peak[1])
        peak = math.exp((lo + hi) / 2 if mid else rng.uniform(lo, hi))
        gray = bool(rng.random() < self.gray_prob) if not mid else self.gray_prob > 0.5
        return {"peak": peak, "gray": gray, "seed": _seed(rng)}

    def apply(self, frames, params, start):
        peak = float(params["peak"])
        out = np.empty_like(frames)
        for j, f in enumerate(frames):
            r = frame_rng(params["seed"], start + j)
            base = np.clip(f, 0, 255) / 255.0 * peak
            if params["gray"]:  # noise of the luma, added to every channel
                luma = base.mean(axis=2, keepdims=True)
                out[j] = f + (r.poisson(luma).astype(np.float32) - luma) / peak * 255.0
            else:
                out[j] = r.poisson(base).astype(np.float32) / peak * 255.0
        return out


# ------------------------------------------------------------------------------------------ broad
class _Fixed:
    """Stands in for a generator when `Broad` draws its mid-range chain: every coin lands on its first
    side."""

    @staticmethod
    def random() -> float:
        return 0.0


class Broad(Op):
    """A broad family of degradations for training a model that must generalise (BFVR-Lite): one draw per
    clip picks a *level* and, for it, which operators run and with what parameters.

    * ``clean`` (p 0.12): nothing -- the model learns to leave a good face as it is;
    * ``light`` (p 0.23): mild blur (p 0.6, sigma 0.3-1.5), a small downscale (p 0.5, x1-x1.6), light
      Gaussian noise (sigma 0-3), and H.264 CRF 18-28 or JPEG q 70-95;
    * ``full`` (p 0.65): iso/aniso blur (p 0.9, sigma 0.5-6), down x1-x4 (area/linear/cubic/nearest), Gaussian
      (sigma 0-10) or Poisson noise (p 0.75), then H.264 CRF 18-38, H.265 CRF 20-38, JPEG q 20-90 or none,
      up (linear/cubic), and brightness flicker (p 0.25 of clips, 15 % of their frames, alpha 0.8-1.2).

    The operators are the ones of this module; the drawn list is recorded in the sidecar as ``ops``.
    """

    name = "broad"
    LEVELS = ("clean", "light", "full")

    def __init__(self, level_probs: tuple[float, float, float] = (0.12, 0.23, 0.65)) -> None:
        self.level_probs = level_probs

    @staticmethod
    def _ops_for(level: str, rng: np.random.Generator, mid: bool = False) -> list[Op]:
        """The operators of one clip at `level`; `mid`: the most likely chain (blur, Gaussian noise, x264,
        cubic up, no flicker), the same for every clip."""
        if mid:
            rng = _Fixed()
        ops: list[Op] = []
        if level == "clean":
            return ops
        if level == "light":
            if rng.random() < 0.6:
                ops.append(Blur(kernels=("iso",), size=11, sigma=(0.3, 1.5)))
            if rng.random() < 0.5:
                ops.append(Downscale(scale=(1.0, 1.6), interps=("area", "linear", "cubic")))
            ops.append(Noise(sigma=(0.0, 3.0), gray_prob=0.3))
            ops.append(Codec(crf=(18, 29)) if rng.random() < 0.6 else Jpeg(quality=(70, 96)))
            ops.append(Upscale(interp="linear") if any(isinstance(o, Downscale) for o in ops) else None)
            return [o for o in ops if o is not None]
        if rng.random() < 0.9:
            ops.append(Blur(kernels=("iso", "aniso"), probs=(0.6, 0.4), size=25, sigma=(0.5, 6.0)))
        ops.append(Downscale(scale=(1.0, 4.0), interps=("area", "linear", "cubic", "nearest"),
                             probs=(0.3, 0.3, 0.3, 0.1), even=True))
        u = rng.random()
        if u < 0.45:
            ops.append(Noise(sigma=(0.0, 10.0), gray_prob=0.3))
        elif u < 0.75:
            ops.append(PoissonNoise(peak=(30.0, 1000.0), gray_prob=0.3))
        c = rng.random()
        if c < 0.45:
            ops.append(Codec(crf=(18, 39)))
        elif c < 0.65:
            ops.append(Codec(crf=(20, 39), preset="fast", codec="libx265"))
        elif c < 0.9:
            ops.append(Jpeg(quality=(20, 91)))
        ops.append(Upscale(interp="cubic" if rng.random() < 0.5 else "linear"))  # mid: cubic
        if rng.random() < 0.25 and not isinstance(rng, _Fixed):
            ops.append(BrightnessFlicker(prob=0.15, alpha=(0.8, 1.2)))
        return ops

    def draw(self, rng, ctx, mid=False):
        from bfvr.degrade.codec import X265_MIN_SIDE

        level = _choice(rng, self.LEVELS, self.level_probs, mid)
        ops = self._ops_for(level, rng, mid)
        sub_ctx = dict(ctx)
        children = rng.spawn(max(1, len(ops)))
        drawn = []
        for op, r in zip(ops, children):
            p = {"op": op.name, **op.draw(r, sub_ctx, mid=mid)}
            if p.get("codec") == "libx265" and min(sub_ctx["size"]) < X265_MIN_SIDE:
                p["codec"] = "libx264"  # x265 takes no tiny frames
            drawn.append(p)
        return {"level": level, "ops": drawn}

    @staticmethod
    def _op(p: dict[str, Any]) -> Op:
        return {o.name: o for o in (Blur, Downscale, Upscale, Noise, PoissonNoise, Codec, Jpeg,
                                    BrightnessFlicker)}[p["op"]]()

    def stream(self, chunks, params):
        it = chunks
        for p in params["ops"]:
            it = self._op(p).stream(it, p)
        yield from it

    def apply(self, frames, params, start):
        out = [f for _, f in self.stream(iter([(start, frames)]), params)]
        return np.concatenate(out) if out else frames

    def summarize(self, params, n_frames):
        for p in params["ops"]:
            self._op(p).summarize(p, n_frames)

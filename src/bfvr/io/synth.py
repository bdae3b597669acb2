"""Synthetic test videos: a moving pattern (plus an optional sine tone), encoded for real with PyAV.

Used by the tests (so CI does not depend on shared data) and by the benchmarks (videos of any length
are generated frame by frame, in bounded memory).
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np


def pattern_frame(i: int, width: int, height: int) -> np.ndarray:
    """Frame `i` of a smooth moving pattern (gradients + a moving disc + a bar), RGB uint8 [H, W, 3].

    Smooth enough that H.264 at a low CRF reproduces it at well above 40 dB, textured enough that a
    swapped, dropped or shifted frame is obvious.
    """
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    t = i * 0.15
    r = 128 + 80 * np.sin(2 * np.pi * (x / max(width, 1)) + t)
    g = 128 + 80 * np.sin(2 * np.pi * (y / max(height, 1)) - 0.7 * t)
    b = 128 + 60 * np.cos(2 * np.pi * ((x + y) / max(width + height, 1)) + 0.5 * t)
    cx = width * (0.5 + 0.3 * np.sin(t)) if width else 0
    cy = height * (0.5 + 0.3 * np.cos(0.8 * t)) if height else 0
    rad = max(3.0, min(width, height) / 8)
    disc = np.clip(rad - np.hypot(x - cx, y - cy), 0, 1)
    img = np.stack([r, g, b], -1) * (1 - disc[..., None]) + disc[..., None] * np.array([240, 235, 220])
    bar = (np.abs(x - (i * 3) % max(width, 1)) < max(1, width // 32)).astype(np.float32)
    img = img * (1 - 0.5 * bar[..., None]) + 20 * bar[..., None]
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def synth_video(path: str | os.PathLike[str], *, frames: int = 48, width: int = 256, height: int = 256,
                fps: float | Fraction = 25, audio: bool = True, audio_codec: str = "aac",
                sample_rate: int = 48000, tone_hz: float = 440.0, codec: str = "libx264",
                pix_fmt: str = "yuv420p", crf: int = 12, preset: str = "veryfast",
                rotation: int | None = None, pts: list[int] | None = None, time_base: Fraction | None = None,
                container_format: str | None = None, extra_options: dict[str, str] | None = None,
                container_options: dict[str, str] | None = None) -> Path:
    """Encode a synthetic clip to `path` and return it.

    `rotation` writes a display matrix (degrees counter-clockwise, as FFmpeg/PyAV): the stored frames
    are the upright pattern turned the other way, so a correct reader gets `pattern_frame` back.
    `pts` (in `time_base`) makes a variable-frame-rate clip. `frames=0` writes a video stream with no
    frames; `width=0` writes audio only.
    """
    import av

    path = Path(path)
    fps = Fraction(fps).limit_denominator(1_000_000)
    c = av.open(str(path), mode="w", format=container_format, options=container_options or {})
    vs = None
    if width and height:
        vs = c.add_stream(codec, rate=fps)
        k = (rotation or 0) // 90 % 4
        vs.width, vs.height = (height, width) if k % 2 else (width, height)
        vs.pix_fmt = pix_fmt
        if time_base is not None:
            vs.time_base = time_base
            vs.codec_context.time_base = time_base
        if codec == "libx264":
            vs.options = {"crf": str(crf), "preset": preset, **(extra_options or {})}
        elif extra_options:
            vs.options = dict(extra_options)
        if rotation:
            vs.set_display_rotation(rotation)
    astream = None
    if audio:
        astream = c.add_stream(audio_codec, rate=sample_rate)
        astream.layout = "stereo"
    tb = time_base or (1 / fps)
    duration = float(frames / fps) if frames else 1.0
    a_written = 0
    a_total = int(round(duration * sample_rate))

    def write_audio(until_s: float) -> None:
        nonlocal a_written
        if astream is None:
            return
        while a_written < min(a_total, int(until_s * sample_rate)):
            n = min(1024, a_total - a_written)
            tt = (a_written + np.arange(n)) / sample_rate
            s = (0.3 * np.sin(2 * np.pi * tone_hz * tt)).astype(np.float32)
            af = av.AudioFrame.from_ndarray(np.stack([s, s]), format="fltp", layout="stereo")
            af.sample_rate = sample_rate
            af.pts = a_written
            af.time_base = Fraction(1, sample_rate)
            for p in astream.encode(af):
                c.mux(p)
            a_written += n

    if vs is not None:
        k = (rotation or 0) // 90 % 4
        for i in range(frames):
            img = pattern_frame(i, width, height)
            if k:
                img = np.ascontiguousarray(np.rot90(img, k=-k))  # stored turned clockwise; display turns back
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = pts[i] if pts is not None else int(round(i / (fps * tb)))
            f.time_base = tb
            for p in vs.encode(f):
                c.mux(p)
            write_audio(float(f.pts * tb) + 0.5)
        for p in vs.encode():
            c.mux(p)
    if not frames or vs is None:
        c.start_encoding()  # write the header even when no packet follows (a video stream with 0 frames)
    write_audio(duration + 1)
    if astream is not None:
        for p in astream.encode():
            c.mux(p)
    c.close()
    return path


def burn_caption(frame: np.ndarray, text: str = "BREAKING NEWS") -> np.ndarray:
    """A copy of `frame` (uint8 RGB) with a news-style caption, white text on a black band across its lower
    part: the burned-in text the `bfvr prepare` text filter must catch (its tests and benchmark)."""
    import cv2

    h, w = frame.shape[:2]
    g = frame.copy()
    y0, y1 = int(h * 0.78), int(h * 0.89)
    cv2.rectangle(g, (int(w * 0.1), y0), (int(w * 0.9), y1), (0, 0, 0), -1)
    cv2.putText(g, text, (int(w * 0.13), y1 - int(h * 0.035)), cv2.FONT_HERSHEY_DUPLEX, w / 400,
                (255, 255, 255), max(2, round(w / 240)), cv2.LINE_AA)
    return g

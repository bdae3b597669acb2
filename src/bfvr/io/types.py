"""Plain data the reader hands out: the stream's metadata and chunks of frames."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class VideoInfo:
    """What the reader knows about an input before (and without) decoding it all.

    `width`/`height` are the size of the frames the reader yields: upright (after rotation) and with
    bfvr's own even-size padding removed. `frame_count` is exact for containers that index their
    samples (mp4/mov, image folders), counted from the packets for the others (mkv, webm, ...), and
    estimated from duration x fps only when demuxing fails (`frame_count_exact` says which). `fps` of a
    variable-frame-rate file is its measured average. Timestamps (`pts`) are integers in `time_base` seconds.
    `rotation` is the display-matrix angle in degrees counter-clockwise (0/90/180/270) that the reader
    applied to make frames upright (FFmpeg/PyAV convention; a phone's "rotate=90" tag is 270 here).
    """

    path: Path
    width: int
    height: int
    fps: Fraction
    frame_count: int
    duration: float
    time_base: Fraction
    rotation: int = 0
    pix_fmt: str = "rgb24"
    codec: str = ""
    has_audio: bool = False
    audio_codec: str | None = None
    audio_sample_rate: int | None = None
    audio_channels: int | None = None
    audio_duration: float | None = None
    container: str = ""
    kind: str = "video"  # "video" (any PyAV-decodable file), "gif", "images" (a folder of PNG/JPG)
    frame_count_exact: bool = True
    bit_depth: int = 8
    #: the coded size when bfvr padded an odd-sized output to even (the reader crops it back)
    coded_size: tuple[int, int] | None = None
    #: the frames are not evenly spaced in time (a variable frame rate; `fps` is then the average)
    vfr: bool = False
    #: the stream's colour tags as FFmpeg numbers (colorspace/matrix, range, primaries, transfer), e.g.
    #: (1, 1, 1, 1) for BT.709 limited range, (2, 0, 2, 2) for untagged; None for RGB/PNG/GIF inputs. The
    #: reader converts to RGB with this matrix and range (FFmpeg's defaults, BT.601 limited, where
    #: untagged) and the writer converts back with the same ones and copies the tags (docs/io.md, "Colour").
    color: tuple[int, int, int, int] | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return (self.width, self.height)

    def as_dict(self) -> dict[str, object]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["path"] = str(self.path)
        fps = self.fps
        d["fps"] = f"{fps.numerator}/{fps.denominator}" if fps.denominator != 1 else str(fps)
        d["time_base"] = f"{self.time_base.numerator}/{self.time_base.denominator}"
        return d


@dataclass
class Chunk:
    """Consecutive frames: `frames` uint8 [N, H, W, 3] RGB upright; `pts[i]` in the reader's time base
    (None when the container gave none); `start` = index of the first frame in the whole video."""

    frames: np.ndarray
    pts: list[int | None] = field(default_factory=list)
    start: int = 0

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def stop(self) -> int:
        return self.start + len(self)

    def tensor(self, device: object = "cpu", dtype: object = None):
        """The frames as a float tensor [N, 3, H, W] in [0, 1] on `device` (float32 unless `dtype`)."""
        import torch

        t = torch.from_numpy(np.ascontiguousarray(self.frames)).to(device)
        t = t.permute(0, 3, 1, 2).to(dtype or torch.float32).div_(255.0)
        return t

"""Lazy video reading on PyAV: files (anything FFmpeg decodes), GIFs and folders of PNG/JPG frames.

Frames come out as RGB uint8, upright (the display matrix is applied), with bfvr's even-size padding
removed, whatever the source pixel format (10-bit, 4:4:4, gray, palette, alpha). Nothing is buffered
beyond the frame being converted, so memory does not grow with the video's length.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from bfvr.errors import InputError
from bfvr.io.types import Chunk, VideoInfo

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: the suffixes of the video files bfvr picks from a folder (a file named directly may be anything FFmpeg
#: decodes)
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv",
                  ".gif")
#: FFmpeg demuxers that mean "one still image", not a video (an image renamed .mp4 lands here)
_STILL_FORMATS = re.compile(r"(_pipe$|^image2$|^png$|^mjpeg$|^jpeg|^webp$|^bmp$|^tiff$)")
#: swscale flags of the YUV -> RGB conversion of every decoded frame (bilinear chroma upsampling to full
#: resolution, correctly rounded, bit-exact) and of the RGB -> YUV conversion of every encoded one
#: (Lanczos chroma downsampling: 0.15 dB closer to a plain re-encode than bilinear); FFmpeg's default fast
#: paths round down, which made an identity restore ~1 level darker (benchmarks/colour_roundtrip.py)
def _sws_flags(encode: bool):
    from av.video.reformatter import Interpolation as Sws

    base = Sws.ACCURATE_RND | Sws.FULL_CHR_H_INP | Sws.BITEXACT
    return base | (Sws.LANCZOS if encode else Sws.BILINEAR | Sws.FULL_CHR_H_INT)


SWS_EXACT, SWS_EXACT_ENCODE = _sws_flags(False), _sws_flags(True)

#: container metadata key bfvr writes when it padded an odd size to even: "WxH" of the real frames
SIZE_TAG = "bfvr_size"
#: the highest frame rate bfvr takes for an image folder (`--fps`, a manifest's "fps")
MAX_FPS = 1000
#: the largest frame bfvr reads, in pixels (8192x8192, twice 8K UHD): one such frame is 200 MB as RGB and
#: several GB as the float tensors of a model or a detector, so larger frames are refused up front
MAX_FRAME_PIXELS = 8192 * 8192


def natural_key(name: str) -> list[object]:
    """Sort key for file names with numbers in their natural order (frame2 before frame10)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_videos(folder: str | os.PathLike[str]) -> list[Path]:
    """The video files directly inside `folder` (by `VIDEO_SUFFIXES`; hidden files skipped), sorted by
    name."""
    return sorted((p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
                   and not p.name.startswith(".")), key=lambda p: p.name)


def bit_depth(pix_fmt: str) -> int:
    """Bits per sample of a pixel format (its deepest colour component, alpha aside): 16 for gray16le and
    rgb48le, 10 for yuv420p10le, p010le and gray10le, 8 for yuv420p, gray and pal8."""
    import av

    bits = 0
    try:
        comps = av.VideoFormat(pix_fmt).components
        bits = max((c.bits for c in comps if not c.is_alpha), default=0)
    except Exception:  # a name PyAV does not know: read the depth from the name
        pass
    # the name too: packed formats count some components in fewer bits (bayer_rggb16le: 4/8/4)
    m = re.search(r"(?:p|gray|ya|bayer_[a-z]{4})(\d{2})(?:le|be)$", pix_fmt)
    if m:
        bits = max(bits, int(m.group(1)))
    return bits or 8


def fps_problem(value: object) -> str | None:
    """Why `value` is not a usable frame rate ("is not a number", ...), or None: a finite number above 0
    and at most `MAX_FPS`. Numeric strings ("25", "30000/1001") count as numbers."""
    if isinstance(value, str):
        try:
            value = Fraction(value.strip())
        except (ValueError, ZeroDivisionError):
            return "is not a number"
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction)):
        return "is not a number"
    v = float(value)
    if not (v == v and 0 < v < float("inf")):
        return "must be a finite number above 0"
    if v > MAX_FPS:
        return f"is above {MAX_FPS} frames per second"
    return None


def check_frame_size(what: str, width: int, height: int) -> None:
    """Refuse frames above `MAX_FRAME_PIXELS` with one sentence (`what` names the file)."""
    if width * height > MAX_FRAME_PIXELS:
        mp, top = width * height / 1e6, MAX_FRAME_PIXELS / 1e6
        raise InputError(f"the frames of {what} are {width}x{height} ({mp:.0f} megapixels), more than the "
                         f"{top:.0f} megapixels bfvr takes (e.g. 8192x8192); scale them down first (e.g. "
                         "ffmpeg -i IN -vf scale=-2:4320 OUT).")


def _color_tags(frame: object, pix_fmt: str) -> tuple[int, int, int, int] | None:
    """(colorspace, range, primaries, trc) of a decoded YUV frame as FFmpeg numbers; None for RGB, gray and
    palette frames."""
    if not pix_fmt.startswith(("yuv", "nv", "p0", "p2", "y2", "uyv", "yuyv")):
        return None
    vals = [getattr(frame, k, None) for k in ("colorspace", "color_range", "color_primaries", "color_trc")]
    try:
        spc, rng, prim, trc = (int(v) if v is not None else None for v in vals)
    except (TypeError, ValueError):
        return None
    if pix_fmt.startswith("yuvj"):
        rng = 2  # the deprecated full-range formats: swscale reads them as full range whatever the tag
    return (2 if spc is None else spc, 0 if rng is None else rng, 2 if prim is None else prim,
            2 if trc is None else trc)


def _check_path(path: Path) -> None:
    from bfvr.io.paths import check_not_url

    check_not_url(path)
    if not path.exists():
        raise InputError(f"input '{path}' does not exist; check the path.")
    if not os.access(path, os.R_OK):
        raise InputError(f"input '{path}' is not readable; check its permissions.")


class VideoReader:
    """Base class: iterate frames lazily. Use as a context manager or call `close()`."""

    info: VideoInfo
    #: duration (in `info.time_base` ticks) of the frame yielded last, when the container says (else None)
    last_duration: int | None = None

    def frames(self) -> Iterator[tuple[np.ndarray, int | None]]:
        """Yield (frame uint8 [H, W, 3] RGB, pts) in display order, from where the reader is now."""
        raise NotImplementedError

    def chunks(self, n: int) -> Iterator[Chunk]:
        """Yield `Chunk`s of up to `n` consecutive frames (the last one may be shorter)."""
        if n < 1:
            raise ValueError("chunk size must be >= 1")
        buf: list[np.ndarray] = []
        pts: list[int | None] = []
        start = 0
        for frame, p in self.frames():
            buf.append(frame)
            pts.append(p)
            if len(buf) == n:
                yield Chunk(np.stack(buf), pts, start)
                start += n
                buf, pts = [], []
        if buf:
            yield Chunk(np.stack(buf), pts, start)

    def __iter__(self) -> Iterator[tuple[np.ndarray, int | None]]:
        return self.frames()

    def close(self) -> None:
        pass

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AVReader(VideoReader):
    """A video file or GIF decoded with PyAV. The first frame is decoded on open (to validate the file
    and learn the real size; two for image demuxers, to tell a still from a video); iteration resumes
    from it."""

    def __init__(self, path: Path) -> None:
        import av

        self.path = path
        try:
            self._container = av.open(str(path), mode="r")
        except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as e:
            raise InputError(f"'{path}' is not a readable video ({_why(e)}); give a video file "
                             "(mp4, mov, mkv, webm, avi, gif, ...) or a folder of PNG/JPG frames.") from None
        try:
            self._open_streams()
        except BaseException:
            self._container.close()
            raise

    def _open_streams(self) -> None:
        c, path = self._container, self.path
        fmt = c.format.name or ""
        if not c.streams.video:
            what = "only audio" if c.streams.audio else "no video stream (or no video frames)"
            raise InputError(f"'{path}' has {what}; give a file with a video stream.")
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        self._stream = vs
        check_frame_size(f"'{path}'", vs.codec_context.width or 0, vs.codec_context.height or 0)  # undecoded
        self._frame_iter = self._decode()
        self._decoded = 0
        try:
            first = next(self._frame_iter)
        except StopIteration:
            raise InputError(f"'{path}' has no decodable video frames; the file is empty or "
                             "corrupt.") from None
        self._peeked = [first]
        if _STILL_FORMATS.search(fmt):  # an image demuxer: a video only if a second frame follows
            second = next(self._frame_iter, None)
            if second is None:
                raise InputError(f"'{path}' is a still image ({fmt}), not a video; put images in a folder "
                                 "and pass the folder to read them as frames.")
            self._peeked.append(second)

        rot = int(round(first.rotation or 0)) % 360 if hasattr(first, "rotation") else 0
        rot = int(90 * round(rot / 90)) % 360
        self._rot_k = rot // 90
        coded_w, coded_h = first.width, first.height
        crop = None
        tag = {k.lower(): v for k, v in (c.metadata or {}).items()}.get(SIZE_TAG)
        if tag:
            m = re.fullmatch(r"(\d+)x(\d+)", tag.strip())
            if m:
                tw, th = int(m.group(1)), int(m.group(2))
                if tw <= coded_w and th <= coded_h and (tw, th) != (coded_w, coded_h):
                    crop = (tw, th)
        self._crop = crop
        w, h = crop if crop else (coded_w, coded_h)
        check_frame_size(f"'{path}'", w, h)
        if self._rot_k % 2:
            w, h = h, w

        fps = vs.average_rate or vs.guessed_rate or vs.base_rate
        fps = Fraction(fps) if fps else Fraction(25)
        tb = Fraction(vs.time_base) if vs.time_base else Fraction(1, 90000)
        tag_duration = _parse_hms((vs.metadata or {}).get("DURATION") or (vs.metadata or {}).get("duration"))
        if vs.duration:
            duration = float(vs.duration * tb)
        elif tag_duration:  # matroska writes the stream's own duration as a tag: where its last frame ends
            # (a track can start after 0: FFmpeg moves all tracks later by the AAC priming an mp4 skips)
            start = float(vs.start_time * tb) if vs.start_time and vs.start_time > 0 else 0.0
            duration = tag_duration - start if tag_duration > start else tag_duration
        elif c.duration:
            duration = c.duration / 1_000_000
        else:
            duration = 0.0
        count, exact = int(vs.frames or 0), True
        # indexed containers (mp4/mov): FFmpeg's base rate (the rate that represents every timestamp) is
        # the frame rate of a constant-rate stream, and higher than the average for a variable one
        base = Fraction(vs.base_rate) if vs.base_rate else None
        vfr = bool(count > 1 and base and abs(float(base) - float(fps)) > 0.005 * float(fps))
        if count <= 0:  # the container does not index its frames (mkv, webm, avi, ...): count the packets
            counted = _count_packets(path, vs.index)
            if counted is not None:
                count, span, step = counted
                vfr = count > 2 and step is None
                if count > 1 and span > 0:
                    measured = Fraction(count - 1) / (span * tb)  # average rate from the timestamps
                    # VFR (or a stream rate that is only the time base, e.g. "1000 fps"): the measured average
                    if step is None or abs(float(measured) - float(fps)) > 0.005 * float(fps):
                        fps = measured.limit_denominator(1001 * 1000)
                if not duration and count:
                    duration = float(count / fps)
            else:
                count, exact = max(1, int(round(duration * fps))), False
        if vs.frames and duration == 0.0:
            duration = float(count / fps)
        pix = first.format.name if first.format else (vs.codec_context.pix_fmt or "")
        depth = bit_depth(pix)
        a = c.streams.audio[0] if c.streams.audio else None
        adur = None
        if a is not None and a.duration and a.time_base:
            adur = float(a.duration * a.time_base)
        self.info = VideoInfo(
            path=self.path, width=w, height=h, fps=fps, frame_count=count, duration=duration, time_base=tb,
            rotation=rot, pix_fmt=pix, codec=vs.codec_context.name or "", has_audio=a is not None,
            audio_codec=audio_codec_name(a) if a is not None else None,
            audio_sample_rate=a.codec_context.sample_rate if a is not None else None,
            audio_channels=a.codec_context.channels if a is not None else None,
            audio_duration=adur, container=c.format.name or "",
            kind="gif" if (c.format.name or "") == "gif" else "video",
            frame_count_exact=exact, bit_depth=depth,
            coded_size=(coded_w, coded_h) if crop else None, vfr=vfr, color=_color_tags(first, pix),
        )

    def _decode(self) -> Iterator[object]:
        import av

        try:
            for packet in self._container.demux(self._stream):
                yield from packet.decode()
        except av.FFmpegError as e:
            raise InputError(f"'{self.path}' is corrupt or truncated "
                             f"({_why(e)}); re-export or re-download it.") \
                from None

    def _to_rgb(self, frame: object) -> np.ndarray:
        # swscale: any depth / chroma / gray / palette -> RGB uint8, with the frame's matrix and range and the
        # exact paths (docs/io.md, "Colour"): its default fast paths round down and subsample chroma,
        # which made every restore ~1 level darker
        full = getattr(frame, "color_range", 0) == 2
        a = frame.reformat(format="rgb24", interpolation=SWS_EXACT, src_color_range="JPEG" if full else None,
                           dst_color_range="JPEG").to_ndarray()
        if self._crop:
            a = a[: self._crop[1], : self._crop[0]]
        if self._rot_k:
            a = np.rot90(a, k=self._rot_k)
        return np.ascontiguousarray(a)

    def frames(self) -> Iterator[tuple[np.ndarray, int | None]]:
        while self._peeked:
            f = self._peeked.pop(0)
            self._decoded += 1
            self.last_duration = getattr(f, "duration", None) or None
            yield self._to_rgb(f), f.pts
        for f in self._frame_iter:
            self._decoded += 1
            self.last_duration = getattr(f, "duration", None) or None
            yield self._to_rgb(f), f.pts
        # mp4/mov index every sample: decoding fewer frames than indexed means the data was cut off
        info = self.info
        if (not self._seeked and info.frame_count_exact and "mp4" in info.container
                and self._decoded < info.frame_count):
            raise InputError(f"'{self.path}' ended after {self._decoded} of its {info.frame_count} frames; "
                             "the file is truncated or corrupt (re-export or re-download it).")

    _seeked = False

    def seek(self, pts: int) -> None:
        """Move to the key frame at or before `pts` (in `info.time_base`): `frames()` then yields from there,
        so a caller that wants frame `pts` skips the frames before it (`bfvr.scale` reads segments so)."""
        import av

        close_iter = getattr(self._frame_iter, "close", None)
        if close_iter is not None:
            close_iter()
        try:
            self._container.seek(int(pts), stream=self._stream, backward=True, any_frame=False)
        except av.FFmpegError as e:
            raise InputError(
                f"cannot seek in '{self.path}' ({_why(e)}); re-export it as mp4 or mkv."
            ) from None
        self._peeked = []
        self._seeked = True
        self._frame_iter = self._decode()

    def close(self) -> None:
        self._peeked = []
        try:
            # finish the decode generator now: left to the cyclic GC it keeps FFmpeg's threaded decoder
            # alive, and a process forked meanwhile inherits it without its threads
            close_iter = getattr(self._frame_iter, "close", None)
            if close_iter is not None:
                close_iter()
            self._container.close()
        except Exception:
            pass


class ImageFolderReader(VideoReader):
    """A folder of PNG/JPG/... frames, in natural sort order (frame2 < frame10). pts = index in 1/fps."""

    def __init__(self, path: Path, files: list[Path], fps: Fraction) -> None:
        self.path, self._files = path, files
        first = self._load(files[0])
        h, w = first.shape[:2]
        self._size = (w, h)
        tb = Fraction(1) / fps
        self.info = VideoInfo(
            path=path, width=w, height=h, fps=fps, frame_count=len(files), duration=float(len(files) / fps),
            time_base=tb, pix_fmt="rgb24", codec=files[0].suffix.lstrip(".").lower(), container="images",
            kind="images",
        )

    def _load(self, p: Path) -> np.ndarray:
        import cv2

        a = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if a is None:
            raise InputError(f"frame '{p}' is not a readable image; remove it or replace it.")
        check_frame_size(f"'{self.path}' ({p.name})", a.shape[1], a.shape[0])  # before the RGB copy
        if a.dtype == np.uint16:
            a = (a >> 8).astype(np.uint8)
        elif a.dtype != np.uint8:
            a = np.clip(a, 0, 255).astype(np.uint8)
        if a.ndim == 2:
            a = cv2.cvtColor(a, cv2.COLOR_GRAY2RGB)
        elif a.shape[2] == 4:
            a = cv2.cvtColor(a, cv2.COLOR_BGRA2RGB)
        else:
            a = cv2.cvtColor(a, cv2.COLOR_BGR2RGB)
        return a

    _start = 0

    def seek(self, pts: int) -> None:
        """Start `frames()` at frame `pts` (an image folder's pts is the frame index)."""
        self._start = max(0, int(pts))

    def frames(self) -> Iterator[tuple[np.ndarray, int | None]]:
        for i, p in enumerate(self._files[self._start:], self._start):
            a = self._load(p)
            if (a.shape[1], a.shape[0]) != self._size:
                raise InputError(f"frame '{p.name}' is {a.shape[1]}x{a.shape[0]} but "
                                 f"the first frame is {self._size[0]}x{self._size[1]}; "
                                 "all frames in a folder must have one size.")
            yield a, i


def open_video(path: str | os.PathLike[str], *, fps: float | Fraction | None = None) -> VideoReader:
    """Open a video file, a GIF, or a folder of PNG/JPG frames for lazy reading.

    `fps` sets the frame rate of an image folder (default 25); it is ignored for files, which carry
    their own timestamps. Raises `InputError` with what to do when the input cannot be used.
    """
    p = Path(path).expanduser()
    _check_path(p)
    why = None if fps is None else fps_problem(fps)
    if why:
        from bfvr.errors import ConfigError

        raise ConfigError(f"the frame rate {fps} {why}; give the rate of the image folder, e.g. 25.")
    if p.is_dir():
        files = sorted((f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                        and not f.name.startswith(".")), key=lambda f: natural_key(f.name))
        if not files:
            raise InputError(f"'{p}' is a folder without PNG/JPG frames; "
                             "give a video file or a folder of images.")
        rate = Fraction(fps).limit_denominator(1001 * 1000) if fps else Fraction(25)
        return ImageFolderReader(p, files, rate)
    if not p.is_file():
        raise InputError(f"'{p}' is not a regular file; give a video file or a folder of images.")
    if p.stat().st_size == 0:
        raise InputError(f"'{p}' is empty (0 bytes); give a video file.")
    reader = AVReader(p)
    i = reader.info
    log.info("reading %s: %dx%d, %d frames at %.3g fps%s", p, i.width, i.height, i.frame_count, float(i.fps),
             ", with audio" if i.has_audio else "")
    return reader


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """The `VideoInfo` of `path` (opens, decodes one frame, closes)."""
    with open_video(path) as r:
        return r.info


def read_frames(path: str | os.PathLike[str], max_frames: int | None = None) -> np.ndarray:
    """All frames (or the first `max_frames`) as uint8 [N, H, W, 3]: for small clips, tests and metrics."""
    out: list[np.ndarray] = []
    with open_video(path) as r:
        for frame, _ in r.frames():
            if max_frames is not None and len(out) >= max_frames:
                break
            out.append(frame)
    return np.stack(out)


def audio_codec_name(stream: object) -> str:
    """The codec's name ("mp3"), not its decoder's ("mp3float"): what a container can hold is a codec."""
    codec = stream.codec_context.codec
    return getattr(codec, "canonical_name", None) or codec.name


def _count_packets(path: Path, index: int) -> tuple[int, int, int | None] | None:
    """(video packets, last pts - first pts, the constant pts step or None when it varies) of stream
    `index`, by demuxing only (no decoding: seconds for hours of video); None when the demuxer fails."""
    import av

    n, pts = 0, []
    try:
        with av.open(str(path), mode="r") as c:
            st = c.streams[index]
            for pkt in c.demux(st):
                if pkt.size == 0 and pkt.pts is None:
                    continue  # the flush packet
                n += 1
                if pkt.pts is not None:
                    pts.append(int(pkt.pts))
    except (av.FFmpegError, OSError, ValueError):
        return None
    if not pts:
        return n, 0, None
    pts.sort()
    steps = {b - a for a, b in zip(pts, pts[1:])}
    uniform = len(steps) <= 1 or max(steps) - min(steps) <= 1  # one tick of rounding
    step = min(steps, default=None) if uniform else None
    return n, pts[-1] - pts[0], step


def _parse_hms(text: str | None) -> float | None:
    """'00:01:02.500000000' -> 62.5 (None when absent or malformed)."""
    m = re.fullmatch(r"\s*(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)\s*", text or "")
    if not m:
        return None
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))


def _why(e: BaseException) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    msg = re.sub(r"\s*:\s*'[^']*'$", "", " ".join(str(msg).split()))
    return msg[:120] or type(e).__name__

"""Streaming H.264 writing on PyAV (libx264, yuv420p) with audio passthrough, or PNG folders.

* Output kind from the suffix: .mp4/.m4v/.mov/.mkv = a video file; no suffix = a folder of PNG frames.
* Everything is written to a hidden temporary file (or folder) next to the output and renamed only when
  complete; on any error it is removed, so a failed run never leaves a partial output. An existing
  output is replaced only with `overwrite=True`, and only when bfvr wrote it: every video carries the
  container tag `bfvr_writer` (`bfvr.io.paths.check_replaceable`).
* Timestamps: frames keep the caller's pts in `time_base` (pass the reader's time base and pts and a
  variable frame rate survives); without pts, frames are spaced 1/fps.
* Odd sizes: 4:2:0 H.264 needs even width and height, and its bitstream crop works in 2-pixel units, so an
  odd frame is padded by one replicated row/column at the bottom/right and the real size is written
  to the container tag `bfvr_size` ("WxH"); `bfvr.io.open_video` crops it away on reading. Other players
  show the one extra replicated row/column.
* Audio (`audio_from=path`): the first audio stream of that file is copied packet by packet (no
  re-encoding) when the container accepts its codec (mp4/mov: AAC, MP3, Opus, ALAC, FLAC, AC-3, E-AC-3;
  mkv: nearly anything), else re-encoded to AAC. Audio packets are interleaved with the video by
  timestamp as frames are written, so memory stays bounded whatever the length. The sound keeps its place
  relative to the first frame: copied packets keep their timestamps, re-encoded ones are moved to the
  input's first sample (docs/io.md, "Audio-video sync", says what mkv does with AAC priming).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from bfvr.errors import InputError, OutputError
from bfvr.io.paths import (
    FRAMES_MARKER,
    VIDEO_TAG,
    check_replaceable,
    check_separate,
    check_writable_folder,
    publish,
    remove_own_frames_dir,
    remove_temp,
    temp_beside,
)
from bfvr.io.reader import SIZE_TAG, SWS_EXACT_ENCODE, audio_codec_name

log = logging.getLogger(__name__)

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                "veryslow", "placebo")
#: the video outputs bfvr writes: file suffix -> FFmpeg muxer
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
#: audio codecs each container takes as a stream copy; anything else is re-encoded to AAC
COPYABLE_AUDIO = {
    "mp4": {"aac", "mp3", "opus", "alac", "flac", "ac3", "eac3"},
    "mov": {"aac", "mp3", "opus", "alac", "flac", "ac3", "eac3", "pcm_s16le", "pcm_s16be", "pcm_s24le",
            "pcm_f32le"},
    "matroska": {"aac", "mp3", "opus", "vorbis", "flac", "ac3", "eac3", "alac", "mp2", "dts", "pcm_s16le",
                 "pcm_s24le", "pcm_s32le", "pcm_f32le"},
}


def h264_size_ok(width: int, height: int) -> bool:
    """Whether FFmpeg's encoders accept a frame of this size (its image size limit, ~16000x16000)."""
    return width > 0 and height > 0 and (width + 128) * (height + 128) < (2**31 - 1) // 8


def output_kind(out: Path) -> str:
    """'video' or 'images' for an output path, or raise OutputError for an unsupported suffix."""
    suffix = out.suffix.lower()
    if suffix in CONTAINERS:
        return "video"
    if suffix == "":
        return "images"
    raise OutputError(f"cannot write '{out.name}': use a .mp4, .mov, .m4v or .mkv file, "
                      "or a path without suffix for a folder of PNG frames.")


def prepare_output(out: str | os.PathLike[str], overwrite: bool = False, *, create: bool = True,
                   inputs: Iterable[str | os.PathLike[str] | None] = ()) -> Path:
    """Check that `out` may be written (exists? folder writable? not one of `inputs`? with `overwrite`,
    only ever something bfvr writes: see `bfvr.io.paths`) and create its parent folder (`create=False`:
    only check, so a failure later leaves no empty folder behind)."""
    out = Path(out).expanduser()
    kind = output_kind(out)
    check_separate(inputs, out, out_is_dir=kind == "images")
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise OutputError(f"'{out}' already exists; pass --overwrite "
                              "to replace it or choose another path.")
        check_replaceable(out, kind)
    parent = out.parent
    if not create:
        check_writable_folder(parent)
        return out
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the output folder '{parent}' ({e.strerror}); "
                          "choose a writable location.") from None
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"the output folder '{parent}' is not writable; choose a writable location.")
    return out


def lossless_codec(path: str | os.PathLike[str], preset: str = "medium") -> dict[str, object]:
    """VideoWriter settings that store RGB frames bit-exactly: FFV1 in .mkv, RGB H.264 (libx264rgb, qp 0)
    in .mp4/.mov (exact, but fewer players decode it than yuv420p H.264)."""
    if Path(path).suffix.lower() == ".mkv":
        return {"codec": "ffv1", "pix_fmt": "bgr0", "codec_options": {}}
    return {"codec": "libx264rgb", "pix_fmt": "rgb24", "codec_options": {"qp": "0", "preset": preset}}


class VideoWriter:
    """Write RGB uint8 frames to an H.264 file (with optional audio) or to a PNG folder.

    >>> with VideoWriter("out.mp4", fps=reader.info.fps, time_base=reader.info.time_base,
    ...                  audio_from="in.mp4", vfr=reader.info.vfr) as w:
    ...     for chunk in reader.chunks(16):
    ...         w.write(chunk.frames, chunk.pts)

    `vfr`: the timestamps are unevenly spaced. An mp4/mov track ends where the sum of its samples' decode
    durations ends, and B-frames give uneven timestamps decode times that run behind the presentation
    (measured: a 1.02 s clip stored as 0.79 s), so mp4/mov outputs of a variable frame rate get no B-frames.
    """

    def __init__(self, out: str | os.PathLike[str], fps: float | Fraction = 25, *,
                 time_base: Fraction | None = None, audio_from: str | os.PathLike[str] | None = None,
                 crf: float = 18, preset: str = "medium", overwrite: bool = False,
                 size: tuple[int, int] | None = None, codec: str = "libx264", pix_fmt: str = "yuv420p",
                 codec_options: dict[str, str] | None = None, vfr: bool = False,
                 inputs: Iterable[str | os.PathLike[str] | None] = (),
                 color: tuple[int, int, int, int] | None = None) -> None:
        missing = [d for d in Path(out).expanduser().absolute().parents if not d.exists()]
        self.path = prepare_output(out, overwrite, inputs=[*inputs, audio_from])
        self._created_dirs = missing  # removed again (when empty) if the write fails
        self.kind = output_kind(self.path)
        self.fps = Fraction(fps).limit_denominator(1_000_000) if not isinstance(fps, Fraction) else fps
        if self.fps <= 0:
            raise OutputError(f"frame rate must be positive, got {fps}.")
        self.time_base = Fraction(time_base) if time_base else 1 / self.fps
        self.audio_from = Path(audio_from) if audio_from else None
        if not (0 <= float(crf) <= 51):
            raise OutputError(f"--crf must be between 0 and 51, got {crf}.")
        if codec in ("libx264", "libx264rgb") and preset not in X264_PRESETS:
            raise OutputError(f"preset {preset!r} is not an x264 preset; "
                              f"use one of: {', '.join(X264_PRESETS)}.")
        self.crf, self.preset, self.codec, self.pix_fmt = crf, preset, codec, pix_fmt
        self.codec_options = dict(codec_options or {})
        self.overwrite = overwrite
        self.size = size  # (W, H) of the frames given; None = from the first frame
        self.frames_written = 0
        #: "copied" / "re-encoded" once the audio stream is set up, None without audio
        self.audio_mode: str | None = None
        #: how long the last frame lasts, in `time_base` ticks (e.g. the input's last frame, so a variable
        #: frame rate video keeps its length); None = the encoder's default (1/fps)
        self.last_duration: int | None = None
        #: seconds (on `audio_from`'s timeline) where its audio stops (a shorter video); None = all of it
        self.audio_end: float | None = None
        self.vfr = vfr
        #: colour tags (colorspace, range, primaries, trc) of the input (`VideoInfo.color`): YUV outputs are
        #: converted with its matrix and range and carry its tags; None = BT.601 limited range, tagged so
        self.color = tuple(int(v) for v in color) if color is not None else None
        self._held: list = []  # the newest packets, muxed late so `close` can still set their durations
        self._last_pts: int | None = None
        self._container = None
        self._vstream = None
        self._audio: _AudioMux | None = None
        self._pad = (0, 0)
        self._closed = False
        parent = self.path.parent
        try:
            self._tmp = temp_beside(self.path, folder=self.kind == "images")
            if self.kind == "images":
                (self._tmp / FRAMES_MARKER).write_text(
                    "PNG frames written by bfvr; `--overwrite` may replace this folder while it holds only "
                    "bfvr's frames.\n")
        except OSError as e:
            raise OutputError(f"cannot write in '{parent}' ({e.strerror}); choose a writable "
                              "location.") from None

    # ------------------------------------------------------------------ writing
    def write(self, frames: np.ndarray, pts: Iterable[int | None] | None = None) -> None:
        """Append frames: uint8 [N, H, W, 3] RGB (or one [H, W, 3]); `pts` in `time_base` or None."""
        if self._closed:
            raise RuntimeError("write() after close()")
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be [N, H, W, 3], got shape {frames.shape}")
        if frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {frames.dtype}")
        pts_list = list(pts) if pts is not None else [None] * len(frames)
        if len(pts_list) != len(frames):
            raise ValueError(f"{len(frames)} frames but {len(pts_list)} pts")
        h, w = frames.shape[1:3]
        if self.size is None:
            self.size = (w, h)
        if (w, h) != tuple(self.size):
            raise ValueError(f"frame size {w}x{h} differs from the stream's {self.size[0]}x{self.size[1]}")
        if self.kind == "video" and not h264_size_ok(w, h):
            self.abort()
            raise OutputError(f"{w}x{h} frames are larger than the H.264 encoder takes (about 16000x16000); "
                              "use a smaller size (e.g. a smaller --upscale) or a folder of PNG frames.")
        try:
            if self.kind == "images":
                self._write_images(frames)
            else:
                self._write_video(frames, pts_list)
        except OutputError:
            self.abort()
            raise
        except OSError as e:
            self.abort()
            raise OutputError(f"writing '{self.path}' failed ({e.strerror or e}); check free space "
                              "and permissions.") from None

    def _write_images(self, frames: np.ndarray) -> None:
        import cv2

        for f in frames:
            p = self._tmp / f"{self.frames_written:06d}.png"
            if not cv2.imwrite(str(p), cv2.cvtColor(f, cv2.COLOR_RGB2BGR)):
                raise OutputError(f"cannot write frame '{p}'; check free space and permissions.")
            self.frames_written += 1

    def _open_video(self) -> None:
        import av

        w, h = self.size
        pw, ph = w + (w & 1), h + (h & 1)
        self._pad = (pw - w, ph - h)
        fmt = CONTAINERS[self.path.suffix.lower()]
        # movie_timescale: the edit lists (an audio track starting later, the skipped AAC priming) are
        # written in the movie time scale; FFmpeg's default 1000 rounds a start to the millisecond (0.8 ms
        # measured), 90000 keeps it to the sample
        options = ({"movflags": "+use_metadata_tags", "movie_timescale": "90000"} if fmt in ("mp4", "mov")
                   else {})
        self._container = c = av.open(str(self._tmp), mode="w", format=fmt, options=options)
        from bfvr import __version__

        c.metadata[VIDEO_TAG] = f"bfvr {__version__}"  # how --overwrite knows the file is bfvr's
        if self._pad != (0, 0):
            c.metadata[SIZE_TAG] = f"{w}x{h}"
        vs = c.add_stream(self.codec, rate=self.fps)
        vs.width, vs.height, vs.pix_fmt = pw, ph, self.pix_fmt
        vs.time_base = self.time_base
        vs.codec_context.time_base = self.time_base
        opts = {"crf": f"{self.crf:g}", "preset": self.preset} if self.codec == "libx264" else {}
        if self.vfr and fmt in ("mp4", "mov") and self.codec in ("libx264", "libx264rgb"):
            opts["bf"] = "0"  # see the class doc
        opts.update(self.codec_options)
        vs.options = opts
        # RGB streams (e.g. the lossless libx264rgb) say matrix "RGB", full range, so decoders keep them RGB;
        # YUV streams carry the input's colour tags (untagged stays untagged) and are converted with the
        # matrix and range the reader used for that input (`_yuv_frame`), so colours round-trip
        rgb = self.pix_fmt.startswith(("rgb", "bgr", "gbr"))
        spc, rng, prim, trc = (0, 2, 2, 2) if rgb else (self.color or (6, 1, 6, 6))
        try:
            vs.codec_context.colorspace = spc
            vs.codec_context.color_range = rng
            vs.codec_context.color_primaries = prim
            vs.codec_context.color_trc = trc
        except (AttributeError, TypeError, ValueError):
            pass
        self._rgb_stream = rgb
        vs.thread_type = "AUTO"
        self._vstream = vs
        if self.audio_from is not None:
            self._audio = _AudioMux.open(self.audio_from, c, fmt)
            if self._audio is not None:
                self.audio_mode = "copied" if self._audio.copy else "re-encoded"

    def _write_video(self, frames: np.ndarray, pts_list: list[int | None]) -> None:
        import av

        if self._container is None:
            self._open_video()
        step = max(1, round(1 / (self.fps * self.time_base)))
        for f, p in zip(frames, pts_list):
            if self._pad != (0, 0):
                f = np.pad(f, ((0, self._pad[1]), (0, self._pad[0]), (0, 0)), mode="edge")
            if p is None:
                p = 0 if self._last_pts is None else self._last_pts + step
            elif self._last_pts is not None and p <= self._last_pts:
                p = self._last_pts + 1  # encoders need strictly increasing timestamps
            self._last_pts = int(p)
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            if not self._rgb_stream:
                vf = self._yuv_frame(vf)
            vf.pts = int(p)
            vf.time_base = self.time_base
            self._mux_video(self._vstream.encode(vf))
            self.frames_written += 1

    def _yuv_frame(self, vf: object) -> object:
        """RGB -> the stream's YUV format with the input's matrix and range and swscale's exact paths (the
        reader's inverse: see `bfvr.io.reader.SWS_EXACT_ENCODE`)."""
        spc, rng = (self.color or (6, 1, 6, 6))[:2]
        # swscale reads the matrix from the frame's colorspace (FFmpeg's numbers; unspecified = BT.601)
        vf.colorspace = spc
        return vf.reformat(format=self.pix_fmt, interpolation=SWS_EXACT_ENCODE,
                           src_color_range="JPEG", dst_color_range="JPEG" if rng == 2 else "MPEG")

    def _end_at_last_duration(self) -> None:
        """Make the video end `last_duration` after its last frame: the packet shown last gets that duration
        (matroska and the mov edit list end a track at the largest pts + duration), and in mp4/mov also the
        packet decoded last (the sum of the decode durations is the mov track length; without uneven
        timestamps under B-frames, see the class doc, it then ends at the same time)."""
        d, held = self.last_duration, self._held
        if not d or d <= 0 or not held or self._last_pts is None:
            return
        shown = max((p for p in held if p.pts is not None), key=lambda p: p.pts, default=None)
        if shown is None or shown.pts * shown.time_base != self._last_pts * self.time_base:
            return  # the last frame's packet was muxed already (never with a held window this long)
        dur = int(round(d * self.time_base / shown.time_base))
        shown.duration = dur
        if CONTAINERS[self.path.suffix.lower()] in ("mp4", "mov"):
            decoded = max((p for p in held if p.dts is not None), key=lambda p: p.dts, default=shown)
            decoded.duration = dur

    def _mux_video(self, packets: Iterable[object], hold: int = 32) -> None:
        self._held.extend(packets)
        while len(self._held) > hold:
            pkt = self._held.pop(0)
            if self._audio is not None and pkt.dts is not None:
                self._audio.pump(float(pkt.dts * pkt.time_base))
            self._container.mux(pkt)

    # ------------------------------------------------------------------ finishing
    def close(self) -> Path:
        """Flush, finalise and rename into place; returns the output path."""
        if self._closed:
            return self.path
        try:
            if self.frames_written == 0:
                raise OutputError(f"no frames were written to '{self.path}'; nothing to save.")
            if self.kind == "video":
                self._held.extend(self._vstream.encode())
                self._end_at_last_duration()
                self._mux_video([], hold=0)
                if self._audio is not None:
                    self._audio.end = self.audio_end
                    self._audio.pump(None)
                    self._audio.close()
                self._container.close()
                self._container = None
            self._closed = True
            self._replace()
        except BaseException as e:
            self.abort()
            if isinstance(e, OSError):
                raise OutputError(f"finishing '{self.path}' failed ({e.strerror or e}); check free space "
                                  "and permissions.") from None
            raise
        return self.path

    def _replace(self) -> None:
        if self.path.exists() or self.path.is_symlink():
            if not self.overwrite:
                raise OutputError(f"'{self.path}' appeared while writing; pass --overwrite to replace it.")
            check_replaceable(self.path, self.kind)  # again: the folder may have changed while writing
            if self.path.is_dir() and not self.path.is_symlink():
                remove_own_frames_dir(self.path)
            else:
                self.path.unlink()
        publish(self._tmp, self.path)  # with the umask's permissions (mkstemp/mkdtemp made it 0600/0700)
        log.info("wrote %s (%d frames)", self.path, self.frames_written)

    def abort(self) -> None:
        """Stop and remove the temporary output (nothing is left behind)."""
        self._closed = True
        for closer in (getattr(self._audio, "close", None), getattr(self._container, "close", None)):
            if closer is not None:
                try:
                    closer()
                except Exception:
                    pass
        self._audio = self._container = None
        remove_temp(getattr(self, "_tmp", None))
        for d in getattr(self, "_created_dirs", []):  # deepest first
            try:
                d.rmdir()
            except OSError:
                break
        self._created_dirs = []

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:  # an unclosed writer leaves nothing behind either
        if not getattr(self, "_closed", True):
            self.abort()


class _AudioMux:
    """Copies (or re-encodes to AAC) the first audio stream of a file into an output container,
    reading packets lazily so the caller can interleave them with the video."""

    def __init__(self, inp: object, ist: object, out: object, copy: bool) -> None:
        self._inp, self._ist, self._out, self.copy = inp, ist, out, copy
        if copy:
            self._ost = out.add_stream_from_template(ist)
        else:
            cc = ist.codec_context
            rate = cc.sample_rate if cc.sample_rate in (8000, 16000, 22050, 24000, 32000, 44100,
                                                        48000) else 48000
            self._ost = out.add_stream("aac", rate=rate)
            self._ost.layout = "stereo" if (cc.channels or 2) >= 2 else "mono"
            self._ost.bit_rate = 192_000
        self._packets: Iterator[object] = inp.demux(ist)
        self._pending = None
        self._done = False
        self.end: float | None = None  # packets starting at or after this (seconds) are left out
        # re-encoding: the frames are numbered from 0 in samples (PyAV's encoder needs continuous pts from 0,
        # and only with pts does the AAC encoder mark its priming samples for the mp4/mov edit list and mkv's
        # CodecDelay), and the packets are moved to where the input's first decoded sample is presented
        self._samples = 0
        self._start: Fraction | None = None

    @classmethod
    def open(cls, path: Path, out: object, fmt: str) -> _AudioMux | None:
        import av

        try:
            inp = av.open(str(path), mode="r")
        except (av.FFmpegError, OSError) as e:
            raise InputError(f"cannot read audio from '{path}' ({e}); pass a readable file or no "
                             "audio.") from None
        if not inp.streams.audio:
            inp.close()
            return None
        ist = inp.streams.audio[0]
        return cls(inp, ist, out, audio_codec_name(ist) in COPYABLE_AUDIO.get(fmt, set()))

    def _next(self) -> object | None:
        import av

        while True:
            try:
                pkt = next(self._packets)
            except StopIteration:
                return None
            except av.FFmpegError:
                return None  # a damaged audio tail: keep what was copied
            if pkt.dts is None and pkt.size == 0:
                continue  # the demuxer's flush packet
            return pkt

    def pump(self, until: float | None) -> None:
        """Mux audio packets that start before `until` seconds (None = all that are left)."""
        if self._done:
            return
        while True:
            pkt = self._pending if self._pending is not None else self._next()
            self._pending = None
            if pkt is None:
                if until is None:
                    self._flush()
                    self._done = True
                return
            t = pkt.pts if pkt.pts is not None else pkt.dts
            if self.end is not None and t is not None and float(t * pkt.time_base) >= self.end:
                self._flush()  # the video ends here: the rest of the sound is left out
                self._done = True
                return
            if until is not None and t is not None and float(t * pkt.time_base) > until:
                self._pending = pkt
                return
            self._mux(pkt)

    def _mux(self, pkt: object) -> None:
        if self.copy:
            if pkt.dts is None:
                return
            pkt.stream = self._ost
            self._out.mux(pkt)
            return
        for frame in pkt.decode():
            if self._start is None:
                self._start = frame.pts * frame.time_base if frame.pts is not None and frame.time_base else \
                    Fraction(0)
            frame.pts, frame.time_base = self._samples, Fraction(1, frame.sample_rate)
            self._samples += frame.samples
            self._encode(frame)

    def _encode(self, frame: object | None) -> None:
        for p in self._ost.encode(frame):
            if self._start and p.pts is not None:
                shift = round(self._start / p.time_base)
                p.pts += shift
                if p.dts is not None:
                    p.dts += shift
            self._out.mux(p)

    def _flush(self) -> None:
        if not self.copy:
            self._encode(None)

    def close(self) -> None:
        try:
            self._inp.close()
        except Exception:
            pass


def write_video(out: str | os.PathLike[str], frames: Iterable[np.ndarray] | np.ndarray,
                fps: float | Fraction = 25,
                audio_from: str | os.PathLike[str] | None = None, crf: float = 18, overwrite: bool = False, *,
                pts: Iterable[int | None] | None = None, time_base: Fraction | None = None,
                preset: str = "medium", color: tuple[int, int, int, int] | None = None) -> Path:
    """Write frames (an array [N, H, W, 3] or an iterable of [H, W, 3] / [n, H, W, 3]) in one call."""
    with VideoWriter(out, fps=fps, time_base=time_base, audio_from=audio_from, crf=crf, preset=preset,
                     overwrite=overwrite, color=color) as w:
        if isinstance(frames, np.ndarray):
            w.write(frames, pts)
        else:
            pts_it = iter(pts) if pts is not None else None
            for f in frames:
                f = np.asarray(f)
                n = 1 if f.ndim == 3 else len(f)
                w.write(f, [next(pts_it) for _ in range(n)] if pts_it is not None else None)
    return w.path

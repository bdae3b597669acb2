"""Real H.264 compression of frames in memory (libx264 encode -> h264 decode), streaming.

The encoder and the decoder are bare PyAV codec contexts (no container, no file): frames go in as
RGB uint8, come back as the decoded RGB uint8 frames, in order and with the same count. Both run
with one thread, and with glibc heap perturbation while they run (see ``deterministic_heap``), so the
result is bit-identical for the same input and settings on every run.
Odd frame sizes are padded by edge replication to even (yuv420p needs even sizes) and cropped back.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from fractions import Fraction

import numpy as np

_M_PERTURB = -6  # glibc mallopt parameter
_libc = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _libc.mallopt  # noqa: B018  (glibc only; musl has no mallopt)
    except (OSError, AttributeError):
        _libc = None


_heap_lock = threading.Lock()
_heap_users = 0  # sections inside `deterministic_heap` now, in all threads


@contextlib.contextmanager
def deterministic_heap() -> Iterator[None]:
    """Make fresh heap memory hold a fixed byte while the codecs run (glibc ``M_PERTURB``).

    Measured here (PyAV 18.1 / FFmpeg 8.1 / x264, one thread): the same frames gave up to 16
    different outputs in 18 runs in one process; with perturbation on during encode/decode calls every
    run was bit-identical. Something in the encode/decode path reads memory it did not initialise,
    so its contents have to be made fixed. No effect (and no guarantee) outside glibc.

    Safe with threads: the setting is process-wide, so it is counted: the first section to enter switches
    it on and the last to leave restores ``MALLOC_PERTURB_`` (a thread leaving never switches it off
    under another thread's codec). Other threads' allocations meanwhile get the fill byte too, which
    changes no correct program's result (it costs a memset per allocation).
    """
    global _heap_users
    if _libc is None or os.environ.get("BFVR_HEAP_PERTURB", "1") == "0":
        yield
        return
    with _heap_lock:
        _heap_users += 1
        if _heap_users == 1:
            _libc.mallopt(_M_PERTURB, 0x5A)
    try:
        yield
    finally:
        with _heap_lock:
            _heap_users -= 1
            if _heap_users == 0:
                _libc.mallopt(_M_PERTURB, int(os.environ.get("MALLOC_PERTURB_", "0") or 0) & 0xFF)


#: the smallest side x265 is given (smaller frames crash it, see `X264Roundtrip`)
X265_MIN_SIDE = 64
#: the encoders a roundtrip can use and the decoder of each
DECODERS = {"libx264": "h264", "libx265": "hevc"}


class X264Roundtrip:
    """Encode frames with libx264 (or ``codec="libx265"``) at a CRF and decode them back, chunk by chunk.

    ``push(frames)`` returns the decoded frames that are ready (x264 buffers a look-ahead, so the
    first calls may return fewer frames than given); ``flush()`` returns the rest. In total exactly
    as many frames come out as went in.
    """

    def __init__(self, width: int, height: int, crf: int, *, fps: Fraction | int = 25,
                 preset: str = "medium", pix_fmt: str = "yuv420p", threads: int = 1,
                 codec: str = "libx264") -> None:
        if codec not in DECODERS:
            raise ValueError(f"unknown codec {codec!r}; use one of {', '.join(DECODERS)}")
        if codec == "libx265" and min(width, height) < X265_MIN_SIDE:
            # measured (x265 in PyAV 18.1): frames of 34 px or less corrupt the heap, 8 px are refused
            raise ValueError(f"libx265 needs frames of at least {X265_MIN_SIDE} px a side, "
                             f"got {width}x{height}")
        with deterministic_heap():
            self._open(width, height, crf, fps, preset, pix_fmt, threads, codec)

    def _open(self, width, height, crf, fps, preset, pix_fmt, threads, codec) -> None:
        import av

        self.width, self.height = int(width), int(height)
        self._ew, self._eh = self.width + self.width % 2, self.height + self.height % 2
        fps = Fraction(fps).limit_denominator(1001 * 1000)
        enc = av.CodecContext.create(codec, "w")
        enc.width, enc.height, enc.pix_fmt = self._ew, self._eh, pix_fmt
        enc.time_base = 1 / fps
        enc.framerate = fps
        enc.thread_count = threads
        # threads=1 (and no sliced threads) makes x264 bit-exact run to run
        enc.options = {"crf": str(int(crf)), "preset": preset, "threads": str(threads)}
        if codec == "libx265":  # one worker pool and one frame thread: deterministic, and quiet
            enc.options = {"crf": str(int(crf)), "preset": preset,
                           "x265-params": f"pools={threads}:frame-threads=1:log-level=error"}
        dec = av.CodecContext.create(DECODERS[codec], "r")
        dec.thread_count = threads
        self._av, self._enc, self._dec, self._pix_fmt = av, enc, dec, pix_fmt
        self._n_in = 0
        self._n_out = 0

    def _decode(self, packets) -> list[np.ndarray]:
        out = []
        for pkt in packets:
            for fr in self._dec.decode(pkt):
                out.append(np.array(fr.to_ndarray(format="rgb24")[: self.height, : self.width], copy=True))
        return out

    def push(self, frames: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
        with deterministic_heap():
            return self._push(frames)

    def _push(self, frames: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
        out: list[np.ndarray] = []
        for f in frames:
            f = np.ascontiguousarray(f, dtype=np.uint8)
            if f.shape[:2] != (self.height, self.width):
                raise ValueError(f"frame {f.shape[:2]} != codec size {(self.height, self.width)}")
            if (self._eh, self._ew) != f.shape[:2]:
                f = np.pad(f, ((0, self._eh - self.height), (0, self._ew - self.width), (0, 0)), mode="edge")
            # RGB -> YUV with swscale, then copy the visible planes into a fresh frame: feeding the
            # reformatted frame directly made x264 output vary run to run (it saw buffer padding)
            yuv = self._av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format=self._pix_fmt)
            vf = self._av.VideoFrame.from_ndarray(np.array(yuv.to_ndarray(), copy=True), format=self._pix_fmt)
            vf.pts = self._n_in
            self._n_in += 1
            out += self._decode(self._enc.encode(vf))
        self._n_out += len(out)
        return _stack(out, self.height, self.width)

    def flush(self) -> np.ndarray:
        with deterministic_heap():
            return self._flush()

    def _flush(self) -> np.ndarray:
        out = self._decode(self._enc.encode(None))
        out += self._decode([None])
        self._n_out += len(out)
        if self._n_out != self._n_in:
            raise RuntimeError(f"x264 roundtrip returned {self._n_out} frames for {self._n_in}")
        return _stack(out, self.height, self.width)


def _stack(frames: list[np.ndarray], h: int, w: int) -> np.ndarray:
    if not frames:
        return np.zeros((0, h, w, 3), np.uint8)
    return np.stack(frames)


def x264_roundtrip(frames: np.ndarray, crf: int, *, fps: Fraction | int = 25, preset: str = "medium",
                   threads: int = 1) -> np.ndarray:
    """Compress a whole clip [N,H,W,3] uint8 RGB at ``crf`` and return the decoded clip (same shape)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames [N,H,W,3], got {frames.shape}")
    rt = X264Roundtrip(frames.shape[2], frames.shape[1], crf, fps=fps, preset=preset, threads=threads)
    parts = [rt.push(frames), rt.flush()]
    return np.concatenate(parts)

"""The streaming clip engine: feeds a `ClipModel` by its schedule (`bfvr.engine.base.Schedule`) and
stitches the results. Two schedules:

* ``clips`` (`ClipStream`): described below;
* ``window`` (`WindowStream`): a sliding window of L frames keeping `keep` centre outputs per call and
  moving by `keep` (keep=1: the official DicFace/PGTFormer schedule, edges replicated), see `Schedule`.

The clips schedule: clip k covers frames [k*S, k*S + T) with T = clip_len and S = T - overlap. The `overlap`
frames shared by consecutive clips are cross-faded: output = (1 - w_j) * previous + w_j * next, with w rising
over the overlap (linear: j/(O+1); "cosine": raised cosine 0.5 - 0.5 cos(pi j/(O+1)), j = 1..O). Frames are
yielded in order, with their pts, as soon as no later clip can change them.

Ends and short videos, never dropping or inventing output frames:
* a video shorter than T is padded to T by reflecting (or replicating) frames in time; the outputs of
  the padding are discarded (a model whose contract says `short_clips`, BFVR-Lite, gets it unpadded);
* the tail of a longer video is covered by one more clip that ends exactly at the last frame (it
  overlaps the previous clip by more than `overlap`; only the not-yet-final frames are used), so fixed
  -length models only ever see real frames there;
* models with `clip_len = None` (any length) get chunks of `chunk` frames and a shorter last chunk.

Canvas: when the model (or the caller) sets `canvas` = (H, W), frames are resized to it before the
model and the result back to the frame size (bicubic, antialiased). The face pipeline normally hands
the engine crops that already have the canvas size, making this a no-op.

Memory: at most T + S input frames plus `overlap` restored frames are held, whatever the video length
(window schedule: at most L + keep input frames), see `ClipStream.buffered` / `WindowStream.buffered`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from bfvr.engine.base import ClipModel, Schedule, WindowSession, contract_of
from bfvr.engine.device import autocast
from bfvr.engine.temporal import temporal_filter
from bfvr.errors import ConfigError
from bfvr.io.memory import model_call

log = logging.getLogger(__name__)

Frame = tuple[np.ndarray, "int | None"]


def blend_weights(overlap: int, kind: str = "cosine") -> np.ndarray:
    """Weights of the *later* clip over `overlap` shared frames, strictly between 0 and 1, rising."""
    if overlap <= 0:
        return np.zeros(0, np.float32)
    j = np.arange(1, overlap + 1, dtype=np.float64) / (overlap + 1)
    if kind == "linear":
        w = j
    elif kind == "cosine":
        w = 0.5 - 0.5 * np.cos(np.pi * j)
    else:
        raise ValueError(f"unknown blend {kind!r}; use 'linear' or 'cosine'")
    return w.astype(np.float32)


def pad_indices(n: int, length: int, mode: str = "reflect") -> list[int]:
    """Indices into n real frames giving `length` >= n frames: 0..n-1 then reflected (or replicated)."""
    if n <= 0:
        raise ValueError("no frames to pad")
    if mode not in ("reflect", "replicate"):
        raise ValueError(f"unknown pad mode {mode!r}; use 'reflect' or 'replicate'")
    out = []
    for i in range(length):
        if i < n:
            out.append(i)
        elif mode == "replicate" or n == 1:
            out.append(n - 1)
        else:
            period = 2 * (n - 1)
            k = i % period
            out.append(k if k < n else period - k)
    return out


class ClipEngine:
    """Run a `ClipModel` over a frame stream of any length: `run(iter of (frame, pts)) -> iter of (frame,
    pts)`.

    Frames are uint8 [H, W, 3] RGB, all of one size within a stream. The model's contract
    (`contract_of(model)`) gives the schedule, canvas, value range and precision handling; keyword arguments
    override the clip (or window) length `clip_len`, the clip `overlap`, the window's `keep` (centre frames
    kept per call; 1 = official) and the `canvas`. `chunk` is the clip length for models that take any
    length; `precision` ("fp32"/"bf16"/"fp16") is applied as autocast unless the model applies its own.
    """

    def __init__(self, model: ClipModel, *, clip_len: int | None = None, overlap: int | None = None,
                 keep: int | None = None, canvas: tuple[int, int] | None = None, blend: str = "cosine",
                 pad: str = "reflect", precision: str | None = None, chunk: int = 8,
                 native: bool = False, strength: float = 1.0) -> None:
        """`native=True`: frames go through at their own size (no canvas resize; for models that take any
        size, e.g. a background pass over whole frames). `strength` s in [0, 1]: the output is
        ``input + s * (model output - input)`` (1 = the model's output, 0 = the input)."""
        if not 0.0 <= float(strength) <= 1.0:
            raise ConfigError(f"strength must be between 0 and 1, got {strength}.")
        self.strength = float(strength)
        self.model = model
        self.contract = c = contract_of(model)
        sch = c.schedule
        if sch.kind == "window":
            if overlap:
                raise ConfigError(f"{c.name} keeps the centre of a sliding window: overlap does not apply; "
                                  "use keep for the faster schedule.")
            sch = Schedule.window(int(clip_len or sch.length), int(keep or sch.keep))
        else:
            if keep not in (None, 1):
                raise ConfigError(f"keep applies to sliding-window models; {c.name} restores whole clips "
                                  "(use overlap).")
            sch = Schedule.clips(clip_len or sch.length, int(overlap if overlap is not None else sch.overlap))
        self.schedule = sch
        self.fixed = sch.length is not None
        self.clip_len = int(sch.length or chunk)
        if self.clip_len < 1:
            raise ConfigError("clip_len must be >= 1")
        self.overlap = sch.overlap
        self.canvas = None if native else canvas if canvas is not None else c.canvas
        self.weights = blend_weights(self.overlap, blend)
        self.pad = pad
        pad_indices(1, 1, pad)  # validate
        # a model with its own `precision` applies it itself (e.g. STC: autocast + channels_last_3d);
        # otherwise the engine wraps the forward in autocast for `precision` (None = fp32)
        self.precision = "fp32" if precision is None or c.precision is not None else precision
        self.value_range = c.value_range
        self.device = c.device
        #: the model's temporal filter strength (`bfvr.engine.temporal`; 0 = off), applied to every clip
        self.temporal_filter = c.temporal_filter
        self.clips_run = 0
        log.debug("clip engine for %s: %s schedule, clip %d, overlap %d, canvas %s, %s", c.name, sch.kind,
                  self.clip_len, self.overlap, self.canvas, self.precision)

    # ------------------------------------------------------------------ one clip
    def new_window_session(self) -> WindowSession | None:
        """A fresh incremental session of the model's window schedule (`ModelContract.window_session`), or
        None when the model has none (or declines: e.g. DicFace with ``incremental=False``)."""
        f = self.contract.window_session
        return f() if f is not None and self.schedule.kind == "window" else None

    def forward_clip(self, frames: list[np.ndarray], session: WindowSession | None = None,
                     ids: list[int] | None = None, keep: list[int] | None = None,
                     real: int | None = None) -> torch.Tensor:
        """Model output for frames (uint8 [H, W, 3] each) as float32 [T, 3, H, W] in [0, 1] on the CPU.

        `real`: only the first `real` frames are the stream's (the rest pad a short stream in time): the
        model's temporal filter then looks at those only.

        With a window `session`: `ids` are the frames' indices in the stream and only the window positions
        `keep` are restored (``session.restore``), returned as [len(keep), 3, H, W]."""
        x = torch.from_numpy(np.stack(frames)).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        h, w = x.shape[-2:]
        resize = self.canvas is not None and tuple(self.canvas) != (h, w)
        x0 = x  # the input at its own size (the strength blend)
        with torch.no_grad():
            if resize:
                x = F.interpolate(x, size=tuple(self.canvas), mode="bicubic", align_corners=False,
                                  antialias=True).clamp_(0, 1)
            lo, hi = self.value_range
            unit = (lo, hi) == (0.0, 1.0)
            t0 = time.perf_counter()
            with model_call(), autocast(self.device, self.precision):
                xin = x if unit else x * (hi - lo) + lo
                if session is None:
                    y = self.model.restore_clip(xin)
                else:
                    y = session.restore(xin, list(ids or ()), list(keep or ()))
                    x, x0 = x[keep], x0[keep]
            # one line per model call (`bfvr -vv`): benchmarks/stc_overhead.py counts and sums these
            log.debug("model call %d: %d frames %dx%d in %.3f s", self.clips_run + 1, len(frames),
                      xin.shape[-1], xin.shape[-2], time.perf_counter() - t0)
            y = y.float()
            if not unit:
                y = (y - lo) / (hi - lo)
            if y.shape != x.shape:
                raise RuntimeError(f"model {getattr(self.model, 'name', '?')} returned {tuple(y.shape)} "
                                   f"for an input of {tuple(x.shape)}")
            if self.temporal_filter and session is None and self.schedule.kind == "clips":
                # the model's own flicker filter (engine.temporal), in place: never on the input's memory
                shared = {x.untyped_storage().data_ptr(), x0.untyped_storage().data_ptr()}
                if y.untyped_storage().data_ptr() in shared:
                    y = y.clone(memory_format=torch.contiguous_format)
                else:
                    y = y.contiguous()
                temporal_filter(y[:real], self.temporal_filter)
            if resize:
                y = F.interpolate(y, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
            if self.strength != 1.0:  # at the frame's own size: strength 0 gives the input back exactly
                y = x0 + self.strength * (y - x0)
            y = y.clamp_(0, 1).cpu()
        self.clips_run += 1
        return y

    @staticmethod
    def clip_to_uint8(a: torch.Tensor) -> np.ndarray:
        """float [N, 3, H, W] in [0, 1] -> uint8 [N, H, W, 3] (rounded), in one pass."""
        with torch.no_grad():
            u8 = a.mul(255.0).add_(0.5).clamp_(0, 255).to(torch.uint8)
            return u8.permute(0, 2, 3, 1).contiguous().numpy()

    # ------------------------------------------------------------------ the stream
    def stream(self) -> ClipStream | WindowStream:
        """A push/flush driver of this engine's schedule (for callers that feed several streams, e.g. face
        tracks)."""
        return WindowStream(self) if self.schedule.kind == "window" else ClipStream(self)

    def run(self, frames: Iterable[Frame]) -> Iterator[Frame]:
        """Restore a stream of (frame, pts); yields (restored frame uint8, pts) in the same order."""
        s = self.stream()
        for frame, p in frames:
            yield from s.push(frame, p)
        yield from s.flush()

    def restore_array(self, frames: np.ndarray,
                      run: Callable[[Iterable[Frame]], Iterable[Frame]] | None = None) -> np.ndarray:
        """Restore a whole clip held in memory: uint8 [N, H, W, 3] -> uint8 [N, H, W, 3]. `run`: the stream
        function the frames go through (default this engine's `run`; `bfvr.Restorer.restore_clip` passes
        its `restore_frames`, which adds the model's frame preparation and the face pipeline)."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 [N, H, W, 3], got {frames.dtype} {frames.shape}")
        out = [f for f, _ in (run or self.run)((f, i) for i, f in enumerate(frames))]
        return np.stack(out) if out else frames[:0].copy()

    def clips_for(self, n: int) -> int:
        """How many model calls a video of n frames takes."""
        T, S = self.clip_len, self.clip_len - self.overlap
        if n <= 0:
            return 0
        if self.schedule.kind == "window":
            return -(-n // self.schedule.keep)
        if n <= T:
            return 1
        full = (n - T) // S + 1
        return full + (1 if (full - 1) * S + T < n else 0)


__all__ = ["ClipEngine", "ClipStream", "WindowStream", "blend_weights", "pad_indices"]


class ClipStream:
    """The engine's clip schedule, driven by pushes: `push(frame, tag)` returns the frames that became
    final (restored uint8 [H, W, 3] with their tags, in push order), `flush()` the rest at the end.

    Clips of `clip_len` frames overlap by `overlap` frames, which are cross-faded; the tail of a
    fixed-length model is one more clip ending at the last frame; a stream shorter than `clip_len` is
    padded in time (unless the model's contract says `short_clips`). At most `clip_len` input frames and
    `overlap` restored frames are held.
    After `flush()` the stream is empty and can be reused.
    """

    def __init__(self, engine: ClipEngine) -> None:
        self.engine = engine
        self._w = torch.from_numpy(engine.weights).view(-1, 1, 1, 1)
        self._reset()

    def _reset(self) -> None:
        self._buf: list[np.ndarray] = []  # input frames [buf_start, n)
        self._tags: list[object] = []
        self._buf_start = 0
        self._n = 0
        self._next = 0  # first frame of the next clip
        self._pending: torch.Tensor | None = None  # restored [next, next + overlap) awaiting the blend

    @property
    def buffered(self) -> int:
        """Frames held now (input frames + restored frames awaiting the blend): bounded by the clip."""
        return len(self._buf) + (0 if self._pending is None else len(self._pending))

    def _emit(self, out: torch.Tensor, first: int, start: int, stop: int) -> list[tuple[np.ndarray, object]]:
        # out[k] is frame first + k; return frames [start, stop)
        if stop <= start:
            return []
        u8 = self.engine.clip_to_uint8(out[start - first:stop - first])
        return [(u8[i], self._tags[g - self._buf_start]) for i, g in enumerate(range(start, stop))]

    def _blend(self, out: torch.Tensor, first: int) -> None:
        # cross-fade the pending frames [next, next + overlap) into out
        if self._pending is not None:
            k, o = self._next - first, self.engine.overlap
            out[k:k + o] = (1 - self._w) * self._pending + self._w * out[k:k + o]

    def push(self, frame: np.ndarray, tag: object = None) -> list[tuple[np.ndarray, object]]:
        e = self.engine
        T, ov = e.clip_len, e.overlap
        S = T - ov
        self._buf.append(frame)
        self._tags.append(tag)
        self._n += 1
        if self._n < self._next + T:
            return []
        i0 = self._next - self._buf_start  # a full clip [next, next + T)
        out = e.forward_clip(self._buf[i0:i0 + T])
        self._blend(out, self._next)
        done = self._emit(out, self._next, self._next, self._next + S)
        self._pending = out[S:].clone() if ov else None
        self._next += S
        # keep the last T input frames (the tail clip may reach back that far) and >= the next clip's start
        keep_from = min(self._next, self._n - T)
        if keep_from > self._buf_start:
            del self._buf[: keep_from - self._buf_start]
            del self._tags[: keep_from - self._buf_start]
            self._buf_start = keep_from
        return done

    def flush(self) -> list[tuple[np.ndarray, object]]:
        e = self.engine
        T, n, nxt, bs = e.clip_len, self._n, self._next, self._buf_start
        try:
            if n == 0:
                return []
            if n <= nxt + (e.overlap if self._pending is not None else 0):  # all final or pending
                return self._emit(self._pending, nxt, nxt, n) if self._pending is not None else []
            if not e.fixed or (n < T and e.contract.short_clips):
                first = nxt  # the rest as it is (any length; or a short stream a model takes unpadded)
                out = e.forward_clip(self._buf[first - bs:n - bs])
            elif n >= T:
                first = n - T  # a last clip ending at the last frame, only real frames
                out = e.forward_clip(self._buf[first - bs:n - bs])
            else:
                first = 0  # the whole (short) stream, padded in time
                out = e.forward_clip([self._buf[i - bs] for i in pad_indices(n, T, e.pad)], real=n)[:n]
            self._blend(out, first)
            return self._emit(out, first, nxt, n)
        finally:
            self._reset()


class WindowStream:
    """The sliding-window schedule (`Schedule.window`), driven by pushes like `ClipStream`.

    Output frames come in blocks of K = `keep` frames starting at b = 0, K, 2K, ...; block b is the model's
    output positions a .. a+K-1 (a = `first_kept`) for the window of input frames b-a .. b-a+L-1, each index
    clamped to [0, n-1] (edge replication). A block runs as soon as its last input frame has arrived (at
    `flush()` for the blocks that reach past the end). At most L + K input frames are held.

    A model with a `window_session` (`ModelContract`) gets one session per stream (a new one after each
    `flush()`): the block's window goes to ``session.restore(window, frame indices, kept positions)``, which
    may reuse per-frame work from earlier windows and computes the kept outputs only.
    """

    def __init__(self, engine: ClipEngine) -> None:
        self.engine = engine
        self.L = engine.clip_len
        self.K = engine.schedule.keep
        self.a = engine.schedule.first_kept
        self._reset()

    def _reset(self) -> None:
        self._buf: list[np.ndarray] = []  # input frames [buf_start, n)
        self._tags: list[object] = []
        self._buf_start = 0
        self._n = 0
        self._next = 0  # first output frame of the next block
        self._session = self.engine.new_window_session()  # the model's per-stream cache, if it has one

    @property
    def buffered(self) -> int:
        """Input frames held now: at most L + K."""
        return len(self._buf)

    def _run_block(self, last: int) -> list[tuple[np.ndarray, object]]:
        b, bs, L, K, a = self._next, self._buf_start, self.L, self.K, self.a
        idx = [min(max(b - a + j, 0), last) for j in range(L)]
        stop = min(b + K, last + 1)
        window = [self._buf[i - bs] for i in idx]
        if self._session is None:
            out = self.engine.forward_clip(window)[a:a + stop - b]
        else:  # incremental: the model reuses per-frame work by frame index and restores the kept frames only
            out = self.engine.forward_clip(window, self._session, idx, list(range(a, a + stop - b)))
        u8 = self.engine.clip_to_uint8(out)
        done = [(u8[i], self._tags[g - bs]) for i, g in enumerate(range(b, stop))]
        self._next = stop
        keep_from = max(0, self._next - a)  # the next window's first real frame
        if keep_from > bs:
            del self._buf[: keep_from - bs]
            del self._tags[: keep_from - bs]
            self._buf_start = keep_from
        return done

    def push(self, frame: np.ndarray, tag: object = None) -> list[tuple[np.ndarray, object]]:
        self._buf.append(frame)
        self._tags.append(tag)
        self._n += 1
        done: list[tuple[np.ndarray, object]] = []
        # block `next` needs input frames up to next - a + L - 1
        while self._next - self.a + self.L <= self._n:
            done += self._run_block(self._n - 1)
        return done

    def flush(self) -> list[tuple[np.ndarray, object]]:
        try:
            done: list[tuple[np.ndarray, object]] = []
            while self._next < self._n:
                done += self._run_block(self._n - 1)
            return done
        finally:
            self._reset()

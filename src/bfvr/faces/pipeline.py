"""The face pipeline as a stream transformer: frames in -> faces restored and pasted back -> frames out.

```
frames -> shot-cut check -> detector (every k frames) -> FaceTracker (look-ahead window, smoothing)
       -> per frame and selected track: crop matrix -> warp crop -> track's ClipRunner (model clips)
       -> restored crops come back in order -> paste back (feathered mask, inverse warp) onto the
          background -> frames out
frames -> background runner (optional: whole frames through a model that takes any size) -> background
```

Memory is bounded: the tracker's look-ahead (`FaceTracker.lookahead` frames) plus, per track, one
model clip of crops (and the full frames those crops belong to), plus one background clip. Frames come out
in input order; frames without a selected face pass through bit-exact, or as the background pass made them.

The model side is a *runner* with a push/flush interface (`ClipRunner` wraps any `ClipModel`):
`push(crop) -> [restored crops ready]`, `flush() -> [the rest]`, FIFO. Each track gets its own runner,
so a model's temporal context never mixes two people.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from bfvr.errors import ConfigError
from bfvr.faces.align import CROP_MODES, crop_matrix, warp_crop
from bfvr.faces.detect import FaceDetector, make_detector
from bfvr.faces.paste import draw_box, match_color, paste_back, soft_mask
from bfvr.faces.track import FaceTracker, ShotCutDetector, TrackState

log = logging.getLogger(__name__)

SELECT_CHOICES = ("largest", "center", "all")
MASK_CHOICES = ("box", "ellipse", "parsing")


class NoFaceWarning(UserWarning):
    """No face was found in the whole video: it passed through unchanged."""


class Runner(Protocol):
    def push(self, crop: np.ndarray) -> list[np.ndarray]: ...
    def flush(self) -> list[np.ndarray]: ...


class ClipRunner:
    """Push/flush runner for one face track: the clip engine's own schedule (`ClipEngine.stream()`:
    clips of `clip_len` with `overlap` frames cross-faded, the tail clip, short tracks padded in time; or a
    sliding window keeping its centre frames, edges replicated),
    driven by pushes because the face pipeline feeds several tracks from one frame stream. FIFO:
    outputs come in push order.
    """

    def __init__(self, engine_or_model, *, chunk: int = 8):
        from bfvr.engine.chunker import ClipEngine

        self.engine = engine_or_model if isinstance(engine_or_model, ClipEngine) else ClipEngine(
            engine_or_model, chunk=chunk)
        self._stream = self.engine.stream()

    def push(self, crop: np.ndarray) -> list[np.ndarray]:
        return [f for f, _ in self._stream.push(crop)]

    def flush(self) -> list[np.ndarray]:
        return [f for f, _ in self._stream.flush()]


@dataclass
class FaceOptions:
    """Every knob of the face pipeline (the CLI exposes the common ones)."""

    detector: str = "auto"           # auto | dlib | opencv | mediapipe
    select: str = "largest"          # largest | center | all
    crop_mode: str = "proportion"    # proportion (STC) | align (FFHQ 5-point, DicFace) | auto (the model's
    #                                  `face_crop_mode`, else proportion)
    canvas: tuple[int, int] = (512, 512)
    expand: float = 1.3              # proportion crop: square side = expand x face box (STC used Haar x1.3)
    smooth: bool = True
    sigma: float = 4.0               # Gaussian smoothing of boxes/landmarks, in frames
    detect_every: int = 1            # run the detector every k frames (the tracker interpolates between)
    detect_size: int | None | str = "default"  # longer side the detector sees
    max_gap: int = 8                 # frames a face may be missed before its track ends
    min_hits: int = 3                # detections before a track is used
    iou_threshold: float = 0.3
    cut_threshold: float = 0.3       # shot cut: Bhattacharyya distance of colour histograms
    mask_shape: str = "box"          # box | ellipse | parsing (face + hair of a face-parsing net, inside
    #                                  the box; bfvr.faces.parsing_mask)
    parsing_weights: str | None = None  # mask_shape parsing: weights of the parsing net (default: the model's
    #                                  own, else the cached PGTFormer weights)
    erode: float = 0.04              # mask: shrink by this x canvas size per side
    feather: float = 0.06            # mask: Gaussian edge sigma, x canvas size
    color_match: bool = False        # match the restored face's colour statistics to the input crop
    border: str = "reflect"          # crop outside the frame: reflect | replicate | constant
    draw_box: bool = False           # draw each pasted crop's outline (debugging)
    upscale: int = 1                 # output size factor; the background is resized by `background`
    background_model: bool = True    # the model restores the whole frame too (the background), when it takes
    #                                  any frame size (BFVR-Lite); False = faces only (`--faces-only`)
    residual_paste: bool = True      # every face is pasted as frame + warp(restored - crop): only the model's
    #                                  change is resampled, the face keeps its own detail (False: the restored
    #                                  crop itself is warped back, resampling the face twice)
    # hook for a background upsampler: (frame, upscale) -> frame `upscale` times larger (default: bicubic)
    background: Callable[[np.ndarray, int], np.ndarray] | None = None

    def validate(self) -> None:
        from bfvr.faces.detect import DETECTOR_CHOICES

        if self.detector not in DETECTOR_CHOICES:
            raise ConfigError(f"unknown --detector '{self.detector}'; "
                              f"choose one of: {', '.join(DETECTOR_CHOICES)}.")
        if self.select not in SELECT_CHOICES:
            raise ConfigError(f"unknown --face-select '{self.select}'; "
                              f"choose one of: {', '.join(SELECT_CHOICES)}.")
        if self.crop_mode not in CROP_MODES + ("auto",):
            raise ConfigError(f"unknown --crop-mode '{self.crop_mode}'; "
                              f"choose one of: {', '.join(CROP_MODES + ('auto',))}.")
        if self.mask_shape not in MASK_CHOICES:
            raise ConfigError(f"unknown --paste-mask '{self.mask_shape}'; "
                              f"choose one of: {', '.join(MASK_CHOICES)}.")
        if self.detect_every < 1:
            raise ConfigError("--detect-every must be 1 or more.")
        if self.upscale < 1:
            raise ConfigError("--upscale must be 1 or more.")


@dataclass
class _Slot:
    index: int
    frame: np.ndarray
    pending: int = 0
    scheduled: bool = False
    boxes: list = field(default_factory=list)
    bg: np.ndarray | None = None          # the frame restored whole (background pass), when there is one
    faces: list = field(default_factory=list)  # restored faces to paste: (face, matrix, mask, crop or None)


_COLORS = [(0, 255, 0), (255, 64, 64), (64, 128, 255), (255, 200, 0), (255, 0, 255), (0, 255, 255)]


def _corners(m: np.ndarray, canvas) -> np.ndarray:
    """The canvas corners mapped into the frame by the inverse of `m`: [4, 2]."""
    import cv2

    h, w = canvas
    minv = cv2.invertAffineTransform(np.asarray(m, np.float64))
    return np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], np.float64) @ minv.T


def _resize_background(frame: np.ndarray, s: int) -> np.ndarray:
    import cv2

    return cv2.resize(frame, (frame.shape[1] * s, frame.shape[0] * s), interpolation=cv2.INTER_CUBIC)


class FacePipeline:
    """Restores the faces of a frame stream with a model runner per face track (see module doc).

    `runner_factory()` makes a fresh `Runner` (push/flush) for each track; with a `ClipModel` use
    `FacePipeline.for_model(model, ...)`. Call `process(frames)` once per video; `stats` tells what
    happened afterwards.
    """

    def __init__(self, runner_factory: Callable[[], Runner], options: FaceOptions | None = None, *,
                 detector: FaceDetector | None = None, progress: Callable[[int], None] | None = None,
                 record_boxes: bool = False, background_runner: Callable[[], Runner] | None = None):
        """`record_boxes`: keep every frame's smoothed and raw box in `stats["boxes"]` (for measurements;
        grows with the video, so off by default). `background_runner()`: a runner (push/flush, FIFO) that
        restores whole frames -- the background pass; the faces are pasted onto its output (None: the
        input frame is the background)."""
        self.background_runner = background_runner
        self.record_boxes = record_boxes
        self.opt = options or FaceOptions()
        self.opt.validate()
        if self.opt.crop_mode == "auto":  # no model to ask (see for_model): the STC-style default
            self.opt = dataclasses.replace(self.opt, crop_mode="proportion")
        self.runner_factory = runner_factory
        self._detector = detector
        self.progress = progress
        self.stats: dict = {}
        #: a face-parsing network for mask_shape "parsing" (for_model takes the model's own, if it has one)
        self.parsing_net = None

    @classmethod
    def for_model(cls, model, options: FaceOptions | None = None, **kw) -> FacePipeline:
        """A pipeline around a `ClipModel` (or a factory of `ClipEngine`s, e.g. `Restorer.engine`)."""
        opt = dataclasses.replace(options) if options is not None else FaceOptions()
        from bfvr.engine.base import contract_of
        from bfvr.engine.chunker import ClipEngine

        if hasattr(model, "restore_clip"):
            canvas, pref = contract_of(model).canvas, contract_of(model).face_crop_mode
            factory = lambda: ClipRunner(model)  # noqa: E731
            net_model = model
        else:  # a factory of ClipEngines or of runners
            probe = model()
            engine = probe if isinstance(probe, ClipEngine) else getattr(probe, "engine", None)
            if isinstance(engine, ClipEngine):
                canvas, pref = engine.canvas, engine.contract.face_crop_mode
            else:  # a custom runner: no model to ask
                canvas, pref = None, None
            net_model = engine.model if isinstance(engine, ClipEngine) else None
            factory = lambda: _as_runner(model())  # noqa: E731
        if opt.crop_mode == "auto":
            opt.crop_mode = pref or "proportion"
        if canvas:
            opt.canvas = tuple(canvas)
        pipe = cls(factory, opt, **kw)
        pipe.parsing_net = getattr(net_model, "parsing_net", None)
        return pipe

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:
            self._detector = make_detector(self.opt.detector, detect_size=self.opt.detect_size)
            log.info("face detector: %s", getattr(self._detector, "name", type(self._detector).__name__))
        return self._detector

    # ------------------------------------------------------------ the stream

    def process(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Yield the restored frames, in order, one per input frame (uint8 RGB [H, W, 3])."""
        opt = self.opt
        self._slots: deque[_Slot] = deque()
        self._by_index: dict[int, _Slot] = {}
        self._runners: dict[int, Runner] = {}
        self._pending: dict[int, deque] = {}
        self._selected: int | None = None
        self._mask = soft_mask(tuple(opt.canvas), "box" if opt.mask_shape == "parsing" else opt.mask_shape,
                               opt.erode, opt.feather)
        self._masker = None
        if opt.mask_shape == "parsing":
            from bfvr.faces.parsing_mask import ParsingMasker

            self._masker = ParsingMasker(self.parsing_net, self._mask) if self.parsing_net is not None else \
                ParsingMasker.load(self._mask, opt.parsing_weights)
        self.stats = {"frames": 0, "frames_with_face": 0, "crops": 0, "tracks": set(), "cuts": [],
                      "detect_seconds": 0.0, "max_buffered_frames": 0, "boxes": {}, "detector": None,
                      "detector_runs": 0, "frames_detected": 0}
        # with sparse detection a face is "missed" between detector runs: the gap must span them
        tracker = FaceTracker(iou_threshold=opt.iou_threshold, max_gap=max(opt.max_gap, 2 * opt.detect_every),
                              min_hits=opt.min_hits, sigma=opt.sigma, smooth=opt.smooth,
                              hold=opt.detect_every - 1)
        cuts = ShotCutDetector(threshold=opt.cut_threshold)
        detector = self.detector
        self.stats["detector"] = detector.name
        bg = self._bg = self.background_runner() if self.background_runner is not None else None
        self._bg_wait: deque[_Slot] = deque()
        self.stats["background"] = bg is not None
        for i, frame in enumerate(frames):
            frame = np.ascontiguousarray(frame)
            slot = _Slot(i, frame)
            self._slots.append(slot)
            self._by_index[i] = slot
            cut = cuts(frame)
            if cut:
                self.stats["cuts"].append(i)
            if bg is not None:
                if cut:  # a background clip never spans a shot cut (as a face track does not)
                    self._take_background(bg.flush())
                self._bg_wait.append(slot)
                self._take_background(bg.push(frame))
            faces = None
            if i % opt.detect_every == 0 or cut:
                t0 = time.perf_counter()
                faces = detector(frame)
                self.stats["detect_seconds"] += time.perf_counter() - t0
                self.stats["detector_runs"] += 1
                self.stats["frames_detected"] += bool(faces)
            for t, states in tracker.update(i, faces, cut):
                self._schedule(t, states)
            self.stats["max_buffered_frames"] = max(self.stats["max_buffered_frames"], len(self._slots))
            yield from self._drain()
        for t, states in tracker.flush():
            self._schedule(t, states)
        for tid in list(self._runners):
            self._flush_runner(tid)
        if bg is not None:
            self._take_background(bg.flush())
        yield from self._drain()
        assert not self._slots, "face pipeline lost frames"
        self._finish()

    def _finish(self) -> None:
        self.stats["tracks"] = len(self.stats["tracks"])
        if self.stats["frames"] and not self.stats["crops"] and self.stats["frames_detected"]:
            warnings.warn(NoFaceWarning(
                f"faces were detected in {self.stats['frames_detected']} of the "
                f"{self.stats['detector_runs']} frames the detector ran on, but "
                f"none often enough to be a face track (needs {self.opt.min_hits}), "
                + ("so only the whole-frame (background) pass restored them" if self.stats.get("background")
                   else "so the frames passed through unchanged") + " (try --detect-every 1)."),
                stacklevel=3)
        elif self.stats["frames"] and not self.stats["crops"]:
            how = ("only the whole-frame (background) pass restored them" if self.stats.get("background")
                   else "they passed through unchanged")
            warnings.warn(NoFaceWarning(
                f"no face was found in any of the {self.stats['frames']} frames; {how} "
                "(try --detector with another backend, or --has-aligned if the video is a face crop)."),
                stacklevel=3)

    # ------------------------------------------------------------ scheduling

    def _choose(self, states: list[TrackState], frame_shape) -> list[TrackState]:
        if not states or self.opt.select == "all":
            return states
        cur = next((s for s in states if s.track_id == self._selected), None)
        if self.opt.select == "largest":
            best = max(states, key=lambda s: s.area)
            # sticky: switch only when another face is clearly larger (no flip-flopping between faces)
            if cur is not None and cur.area * 1.5 >= best.area:
                best = cur
        else:  # center
            c = np.array([frame_shape[1] / 2, frame_shape[0] / 2])
            best = min(states, key=lambda s: np.linalg.norm(s.center - c))
            margin = 0.1 * min(frame_shape[:2])
            if cur is not None and np.linalg.norm(cur.center - c) <= np.linalg.norm(best.center - c) + margin:
                best = cur
        self._selected = best.track_id
        return [best]

    def _schedule(self, t: int, states: list[TrackState]) -> None:
        slot = self._by_index[t]
        slot.scheduled = True
        chosen = self._choose(states, slot.frame.shape)
        ids = {s.track_id for s in chosen}
        # a runner whose track is not in this frame: finish its clip now (bounded memory, in-order output)
        for tid in list(self._runners):
            if tid not in ids:
                self._flush_runner(tid)
        for s in chosen:
            m = crop_matrix(self.opt.crop_mode, tuple(self.opt.canvas), box=s.box, landmarks=s.landmarks,
                            expand=self.opt.expand)
            self._add_crop(slot, s.track_id, m)
            self.stats["tracks"].add(s.track_id)
            if self.record_boxes:  # (smoothed box, raw box, crop corners in the frame: smoothed, raw)
                raw_m = crop_matrix(self.opt.crop_mode, tuple(self.opt.canvas), box=s.raw_box,
                                    landmarks=s.raw_landmarks, expand=self.opt.expand)
                self.stats["boxes"].setdefault(s.track_id, {})[t] = (
                    s.box.copy(), s.raw_box.copy(), _corners(m, self.opt.canvas),
                    _corners(raw_m, self.opt.canvas))
        if chosen:
            self.stats["frames_with_face"] += 1

    def _take_background(self, restored: list[np.ndarray]) -> None:
        for frame in restored:
            self._bg_wait.popleft().bg = frame

    def _residual(self, m: np.ndarray) -> bool:
        return self.opt.residual_paste and self.opt.upscale == 1

    def _add_crop(self, slot: _Slot, tid: int, m: np.ndarray) -> None:
        crop = warp_crop(slot.frame, m, tuple(self.opt.canvas), border=self.opt.border)
        if tid not in self._runners:
            self._runners[tid] = self.runner_factory()
            self._pending[tid] = deque()
        slot.pending += 1
        slot.scheduled = True
        keep = self.opt.color_match or self._residual(m)
        self._pending[tid].append((slot, m, crop if keep else None))
        self.stats["crops"] += 1
        self._paste(tid, self._runners[tid].push(crop))

    def _flush_runner(self, tid: int) -> None:
        self._paste(tid, self._runners[tid].flush())
        assert not self._pending[tid], "runner returned fewer crops than it was given"
        del self._runners[tid], self._pending[tid]

    def _paste(self, tid: int, restored: list[np.ndarray]) -> None:
        for face in restored:
            slot, m, crop = self._pending[tid].popleft()
            s = self.opt.upscale
            if s > 1:  # the matrix maps original frame pixels; compose with the upscale
                up_inv = np.array([[1 / s, 0, (1 / s - 1) / 2], [0, 1 / s, (1 / s - 1) / 2], [0, 0, 1]])
                m = (np.vstack([m, [0, 0, 1]]) @ up_inv)[:2]
            mask = self._mask if self._masker is None else self._masker(face)
            if crop is not None and self.opt.color_match:
                face = match_color(face, crop, mask)
            # pasted when the frame is complete (its background pass may still be running)
            slot.faces.append((face, m, mask, crop if crop is not None and self._residual(m) else None))
            if self.opt.draw_box:
                slot.boxes.append((m, tid))
            slot.pending -= 1

    def _compose(self, slot: _Slot) -> np.ndarray:
        out = self._background(slot.bg if slot.bg is not None else slot.frame)
        for face, m, mask, crop in slot.faces:
            paste_back(out, face, m, mask, out=out, crop=crop, base=slot.frame if crop is not None else None)
        slot.faces.clear()
        return out

    def _background(self, frame: np.ndarray) -> np.ndarray:
        s = self.opt.upscale
        if s == 1:
            return frame.copy()
        fn = self.opt.background or _resize_background
        return fn(frame, s)

    def _drain(self) -> Iterator[np.ndarray]:
        while (self._slots and self._slots[0].scheduled and self._slots[0].pending == 0
               and (self._bg is None or self._slots[0].bg is not None)):
            slot = self._slots.popleft()
            del self._by_index[slot.index]
            out = self._compose(slot)
            for m, tid in slot.boxes:
                draw_box(out, m, tuple(self.opt.canvas), color=_COLORS[tid % len(_COLORS)],
                         label=f"face {tid}")
            self.stats["frames"] += 1
            if self.progress:
                self.progress(1)
            yield out


def _as_runner(obj) -> Runner:
    return obj if hasattr(obj, "push") and hasattr(obj, "flush") else ClipRunner(obj)


def restore_faces_stream(frames: Iterable[np.ndarray], model, options: FaceOptions | None = None, *,
                         progress: Callable[[int], None] | None = None, **kw) -> Iterator[np.ndarray]:
    """Restore the faces of a frame stream (uint8 RGB [H, W, 3], any length); yields one frame per input
    frame, in order, lazily.

    `model`: a `ClipModel`, or a zero-argument factory returning a `ClipEngine` (e.g. `Restorer.engine`,
    so the engine's clip length, overlap, blend and precision apply) or a push/flush runner; one is
    made per face track. Options as a `FaceOptions` or as its keyword arguments.
    """
    if options is None:
        options = FaceOptions(**kw)
    return FacePipeline.for_model(model, options, progress=progress).process(frames)

"""Face tracks over time: association, gap filling, temporal smoothing, shot cuts -- streaming.

`FaceTracker.update(i, faces, cut)` takes the detections of frame i (None when the detector did not run
on that frame) and returns the frames that are now final: frame t is final once frames up to
t + lookahead have been seen, so the smoothing window is centred (no lag) and bounded (the tracker never
holds more than ~2 x lookahead frames of geometry, and the caller only buffers `lookahead` frames).

Smoothing is a Gaussian-weighted average of the gap-filled (linearly interpolated) box and landmark
series over [t - lookahead, t + lookahead], truncated at the track's ends and at shot cuts, so a still
head gives a crop that does not move, while a moving head is followed without lag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from bfvr.faces.detect import Face


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes [x0, y0, x1, y1]."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / ua) if ua > 0 else 0.0


class ShotCutDetector:
    """Flags a frame whose colour histogram differs from the previous frame's by more than `threshold`
    (Bhattacharyya distance of hue-saturation histograms of a small copy; 0 = same, 1 = disjoint)."""

    def __init__(self, threshold: float = 0.3, size: int = 96, bins: tuple[int, int] = (24, 16)):
        self.threshold = threshold
        self.size = size
        self.bins = bins
        self._prev = None
        self.last_distance = 0.0

    def _hist(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        small = cv2.resize(frame, (self.size, self.size), interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
        h = cv2.calcHist([hsv], [0, 1], None, list(self.bins), [0, 180, 0, 256])
        v = cv2.calcHist([hsv], [2], None, [16], [0, 256])
        h = np.concatenate([h.ravel() / max(h.sum(), 1), v.ravel() / max(v.sum(), 1)]).astype(np.float32)
        return h

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        import cv2

        return float(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))

    def __call__(self, frame: np.ndarray) -> bool:
        h = self._hist(frame)
        prev, self._prev = self._prev, h
        if prev is None:
            self.last_distance = 0.0
            return False
        self.last_distance = self.distance(prev, h)
        return self.last_distance > self.threshold


@dataclass
class TrackState:
    """Geometry of one track at one frame: smoothed and raw (gap-filled, unsmoothed) box/landmarks."""

    track_id: int
    frame: int
    box: np.ndarray
    landmarks: np.ndarray | None
    raw_box: np.ndarray
    raw_landmarks: np.ndarray | None
    observed: bool  # a detection was associated at this very frame (False = filled gap)

    @property
    def area(self) -> float:
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))

    @property
    def center(self) -> np.ndarray:
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2])


@dataclass
class _Track:
    id: int
    obs: dict[int, Face] = field(default_factory=dict)  # frame -> associated detection (pruned as we go)
    first: int = 0
    last: int = 0
    hits: int = 0
    closed: bool = False
    end_limit: float = math.inf  # last frame before a shot cut that ended this track


class FaceTracker:
    """Associates detections into tracks (greedy IoU), fills gaps, smooths with a centred window.

    kwargs: `iou_threshold` to associate a detection with a track's last box; `max_gap` frames a track
    may go unseen before it ends (gaps up to that are filled by interpolation); `min_hits` detections a
    track needs before it is used (drops one-off false positives); `sigma` of the Gaussian smoothing in
    frames (0 or `smooth=False` = no smoothing); `lookahead` frames (default ceil(3 sigma), at least
    `max_gap`); `hold` frames a track keeps its last geometry after its last detection (use k - 1 when
    the detector runs every k frames, so the frames after the last detector run are covered).

    Short streams: a clip with fewer detector runs than it takes to confirm a face (a 1- or 2-frame video,
    or a short one with sparse detection) cannot give any track `min_hits` detections. So the frames that
    are still open at `flush()` (all of them, in a clip shorter than the look-ahead) need only
    min(`min_hits`, half the stream's detector runs, rounded up) detections: a face found in one frame of
    a one-frame clip or both frames of a two-frame clip is used, while in a long video the threshold stays.
    """

    def __init__(self, *, iou_threshold: float = 0.3, max_gap: int = 8, min_hits: int = 3, sigma: float = 4.0,
                 smooth: bool = True, lookahead: int | None = None, hold: int = 0):
        self.hold = hold
        self.iou_threshold = iou_threshold
        self.max_gap = max_gap
        self.min_hits = min_hits
        self.sigma = sigma if smooth else 0.0
        la = lookahead if lookahead is not None else max(int(math.ceil(3 * sigma)), max_gap)
        self.lookahead = max(la, max_gap, min_hits - 1, 0)
        self._tracks: dict[int, _Track] = {}
        self._next_id = 0
        self._seen = -1  # last frame index given to update()
        self._emitted = -1  # last frame index returned
        self._runs = 0  # frames the detector ran on
        self._need = min_hits  # detections a track needs now (lowered at flush for short streams)
        self.cuts: list[int] = []

    # ------------------------------------------------------------ input

    def update(self, index: int, faces: list[Face] | None,
               cut: bool = False) -> list[tuple[int, list[TrackState]]]:
        """Add frame `index` (consecutive from 0). Returns [(t, states)] for frames that became final."""
        if index != self._seen + 1:
            raise ValueError(f"frames must come in order: expected {self._seen + 1}, got {index}")
        self._seen = index
        if cut:
            self.cuts.append(index)
            for tr in self._tracks.values():
                if not tr.closed or tr.end_limit > index - 1:
                    tr.end_limit = index - 1
                tr.closed = True
        for tr in self._tracks.values():
            if not tr.closed and index - tr.last > self.max_gap:
                tr.closed = True
        if faces is not None:
            self._runs += 1
        if faces:
            self._associate(index, faces)
        out = []
        while self._emitted + 1 <= index - self.lookahead:
            out.append(self._emit(self._emitted + 1))
        return out

    def flush(self) -> list[tuple[int, list[TrackState]]]:
        """All remaining frames (end of the stream)."""
        self._need = min(self.min_hits, max(1, math.ceil(self._runs / 2)))
        out = []
        while self._emitted < self._seen:
            out.append(self._emit(self._emitted + 1))
        return out

    def _associate(self, index: int, faces: list[Face]) -> None:
        open_tracks = [t for t in self._tracks.values() if not t.closed]
        pairs = []
        for ti, tr in enumerate(open_tracks):
            last_box = tr.obs[tr.last].box
            for fi, f in enumerate(faces):
                v = iou(last_box, f.box)
                if v >= self.iou_threshold:
                    pairs.append((v, ti, fi))
        pairs.sort(reverse=True)
        used_t, used_f = set(), set()
        for _, ti, fi in pairs:
            if ti in used_t or fi in used_f:
                continue
            used_t.add(ti)
            used_f.add(fi)
            tr = open_tracks[ti]
            tr.obs[index] = faces[fi]
            tr.last = index
            tr.hits += 1
        for fi, f in enumerate(faces):
            if fi not in used_f:
                tr = _Track(id=self._next_id, obs={index: f}, first=index, last=index, hits=1)
                self._tracks[tr.id] = tr
                self._next_id += 1

    # ------------------------------------------------------------ output

    def _series(self, tr: _Track, frames: np.ndarray, what: str) -> np.ndarray | None:
        """Linearly interpolated values of `what` ('box' or 'landmarks') at `frames` (inside the track)."""
        keys = sorted(k for k, f in tr.obs.items() if getattr(f, what) is not None)
        if not keys:
            return None
        vals = np.stack([np.asarray(getattr(tr.obs[k], what), np.float64).ravel() for k in keys])
        xs = np.asarray(keys, np.float64)
        return np.stack([np.interp(frames, xs, vals[:, c]) for c in range(vals.shape[1])], axis=1)

    def _emit(self, t: int) -> tuple[int, list[TrackState]]:
        self._emitted = t
        states = []
        R = self.lookahead
        for tr in list(self._tracks.values()):
            end = min(tr.last + self.hold, tr.end_limit)
            if tr.closed and end < t:
                del self._tracks[tr.id]
                continue
            if tr.first > t or end < t or tr.hits < self._need:
                continue
            lo, hi = max(tr.first, t - R), min(end, t + R)
            frames = np.arange(lo, hi + 1, dtype=np.float64)
            box_s = self._series(tr, frames, "box")
            lm_s = self._series(tr, frames, "landmarks")
            k = t - lo
            if self.sigma > 0:
                w = np.exp(-0.5 * ((frames - t) / self.sigma) ** 2)
                w /= w.sum()
                box = w @ box_s
                lm = None if lm_s is None else (w @ lm_s).reshape(-1, 2)
            else:
                box = box_s[k]
                lm = None if lm_s is None else lm_s[k].reshape(-1, 2)
            states.append(TrackState(
                track_id=tr.id, frame=t, box=box.astype(np.float64), landmarks=lm,
                raw_box=box_s[k].copy(),
                raw_landmarks=None if lm_s is None else lm_s[k].reshape(-1, 2).copy(),
                observed=t in tr.obs))
            # prune: keep the last observation at or before t - R (needed to interpolate) and all after
            old = sorted(f for f in tr.obs if f <= t - R)
            for f in old[:-1]:
                del tr.obs[f]
        return t, states

"""Face detection backends behind one interface.

Every backend takes an RGB uint8 frame [H, W, 3] and returns a list of `Face` in frame pixels. Boxes of
all backends are brought to one convention (the OpenCV Haar box, which STC's face-proportion crops were
made from) by a per-backend calibrated scale around the box centre, so a crop made from a dlib box and
one made from a Haar box frame the face the same way. Landmarks are 5 points in image order: the eye on
the left of the image, the eye on the right, nose tip, mouth corner on the left, mouth corner on the
right (the order of the FFHQ 5-point template in `bfvr.faces.align`).

Backends:
- `DlibDetector`   dlib HOG (or MMOD CNN) boxes + 68-point landmarks (reduced to 5), needs `dlib-bin` and
                   the model files of `face-recognition-models` (or Debian `libdlib-data`).
- `HaarDetector`   OpenCV Haar cascade (ships with opencv-python-headless < 5); landmarks from dlib's
                   shape predictor on the Haar box when dlib is installed, otherwise none.
- `MediaPipeDetector` MediaPipe 0.10.21 face detection (full range) with 6 keypoints (optional extra).

Detection runs on a copy downscaled so that the longer side is at most `detect_size` pixels (faster,
and the detectors' accuracy does not need more), and results are mapped back to the full frame.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bfvr.errors import ConfigError, DependencyError

DETECTOR_CHOICES = ("auto", "dlib", "opencv", "mediapipe")


@dataclass
class Face:
    """One detected face: `box` [x0, y0, x1, y1] float32 in frame pixels, detector `score`, and
    `landmarks` [5, 2] float32 (see module doc for the order) or None."""

    box: np.ndarray
    score: float = 1.0
    landmarks: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))

    @property
    def center(self) -> np.ndarray:
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2], np.float32)


def scale_box(box: np.ndarray, s: float) -> np.ndarray:
    """Scale a box [x0, y0, x1, y1] by `s` around its centre."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    hw, hh = (box[2] - box[0]) * s / 2, (box[3] - box[1]) * s / 2
    return np.array([cx - hw, cy - hh, cx + hw, cy + hh], np.float32)


def five_from_68(pts: np.ndarray) -> np.ndarray:
    """The 5 template points from the 68-point iBUG layout (eye centres, nose tip, mouth corners)."""
    pts = np.asarray(pts, np.float32)
    return np.stack([pts[36:42].mean(0), pts[42:48].mean(0), pts[30], pts[48], pts[54]]).astype(np.float32)


def five_from_eyes_nose_mouth(left_eye, right_eye, nose, mouth_center) -> np.ndarray:
    """Estimate the mouth corners from the mouth centre with the FFHQ template's proportions
    (mouth width = 0.888 x eye distance, parallel to the eye line)."""
    le, re = np.asarray(left_eye, np.float32), np.asarray(right_eye, np.float32)
    mc = np.asarray(mouth_center, np.float32)
    half = 0.444 * (re - le)
    return np.stack([le, re, np.asarray(nose, np.float32), mc - half, mc + half]).astype(np.float32)


class FaceDetector:
    """Base class: subclasses implement `_detect(small_rgb) -> list[Face]` on the downscaled frame."""

    name = "base"
    #: multiply this backend's box (around its centre) to match the Haar box convention
    box_scale = 1.0
    #: then move it down by this fraction of its height (negative = up) to match Haar's centre
    box_shift = 0.0
    #: longer side of the frame copy the detector sees (None = full size)
    default_detect_size: int | None = 640

    def __init__(self, *, detect_size: int | None | str = "default", min_score: float = 0.0,
                 box_scale: float | None = None, box_shift: float | None = None):
        self.detect_size = self.default_detect_size if detect_size == "default" else detect_size
        if box_shift is not None:
            self.box_shift = box_shift
        self.min_score = min_score
        if box_scale is not None:
            self.box_scale = box_scale

    def _detect(self, rgb: np.ndarray) -> list[Face]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, frame: np.ndarray) -> list[Face]:
        """Detect faces in an RGB uint8 frame [H, W, 3]; boxes and landmarks in frame pixels."""
        import cv2

        h, w = frame.shape[:2]
        s = 1.0
        small = frame
        if self.detect_size and max(h, w) > self.detect_size:
            s = self.detect_size / max(h, w)
            small = cv2.resize(frame, (max(1, round(w * s)), max(1, round(h * s))),
                               interpolation=cv2.INTER_AREA)
        faces = self._detect(np.ascontiguousarray(small))
        out = []
        for f in faces:
            if f.score < self.min_score:
                continue
            box = scale_box(f.box / s, self.box_scale)
            if self.box_shift:
                box[[1, 3]] += self.box_shift * (box[3] - box[1])
            lm = None if f.landmarks is None else (f.landmarks / s).astype(np.float32)
            out.append(Face(box=box.astype(np.float32), score=float(f.score), landmarks=lm, extra=f.extra))
        return out


# ---------------------------------------------------------------- dlib

def dlib_model_dir() -> Path | None:
    """Folder holding dlib's .dat model files: $BFVR_DLIB_MODELS, the `face-recognition-models` package
    (found by path: importing it needs pkg_resources), or Debian's /usr/share/dlib."""
    cands = []
    if os.environ.get("BFVR_DLIB_MODELS"):
        cands.append(Path(os.environ["BFVR_DLIB_MODELS"]))
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        cands.append(Path(spec.origin).parent / "models")
    cands.append(Path("/usr/share/dlib"))
    for c in cands:
        if any((c / f"shape_predictor_{k}_face_landmarks.dat").exists() for k in (68, 5)):
            return c
    return None


def _dlib_available() -> bool:
    return importlib.util.find_spec("dlib") is not None


_SHAPE_PREDICTORS: dict[str, object] = {}


def dlib_landmarks(rgb: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """5 template points from dlib's 68-point (preferred) or 5-point shape predictor inside `box`,
    or None when dlib or its model files are missing."""
    if not _dlib_available():
        return None
    import dlib

    mdir = dlib_model_dir()
    if mdir is None:
        return None
    key = "68" if (mdir / "shape_predictor_68_face_landmarks.dat").exists() else "5"
    if key not in _SHAPE_PREDICTORS:
        _SHAPE_PREDICTORS[key] = dlib.shape_predictor(str(mdir / f"shape_predictor_{key}_face_landmarks.dat"))
    sp = _SHAPE_PREDICTORS[key]
    rect = dlib.rectangle(int(box[0]), int(box[1]), int(box[2]), int(box[3]))
    shape = sp(rgb, rect)
    pts = np.array([(p.x, p.y) for p in shape.parts()], np.float32)
    if key == "68":
        return five_from_68(pts)
    # 5-point model: 0,1 = corners of the eye on the image right, 2,3 = image left, 4 = below the nose
    re, le = pts[0:2].mean(0), pts[2:4].mean(0)
    nose = pts[4]
    # mouth centre: the FFHQ template puts it 0.74 eye-distances below the eye line's midpoint
    mid = (le + re) / 2
    d = re - le
    down = np.array([-d[1], d[0]], np.float32)
    mouth = mid + 1.04 * down
    return five_from_eyes_nose_mouth(le, re, nose, mouth)


class DlibDetector(FaceDetector):
    """dlib HOG (default) or MMOD CNN detector with landmarks from the 68-point shape predictor."""

    name = "dlib"
    # HOG boxes are tight (brow to chin); Haar boxes of the same faces are about 1.2x larger (measured
    # on the shared clips, see docs/faces.md)
    box_scale = 1.2
    # Haar boxes sit higher on the face (they include more forehead): centres 5-13% of the box higher
    box_shift = -0.08
    # HOG finds faces down to ~80 px: 800 keeps a 1080p full-body shot's face findable (measured)
    default_detect_size = 800

    def __init__(self, *, model: str = "hog", upsample: int = 0, landmarks: bool = True, **kw):
        super().__init__(**kw)
        if not _dlib_available():
            raise DependencyError("dlib is not installed; install it with `pip install dlib-bin` "
                                  "or choose --detector opencv.")
        import dlib

        self.upsample = upsample
        self.landmarks = landmarks
        self.model = model
        if model == "hog":
            self._det = dlib.get_frontal_face_detector()
        elif model == "mmod":
            mdir = dlib_model_dir()
            if mdir is None or not (mdir / "mmod_human_face_detector.dat").exists():
                raise DependencyError("dlib's MMOD model file is missing; `pip install "
                                      "face-recognition-models` or set BFVR_DLIB_MODELS to a folder with "
                                      "mmod_human_face_detector.dat.")
            self._det = dlib.cnn_face_detection_model_v1(str(mdir / "mmod_human_face_detector.dat"))
        else:
            raise ConfigError(f"unknown dlib model '{model}'; choose hog or mmod.")
        if landmarks and dlib_model_dir() is None:
            raise DependencyError("dlib's landmark model files are missing; "
                                  "`pip install face-recognition-models` "
                                  "(or apt-get install libdlib-data) or set BFVR_DLIB_MODELS.")

    def _detect(self, rgb):
        faces = []
        if self.model == "hog":
            rects, scores, _ = self._det.run(rgb, self.upsample, 0.0)
            items = [(r, s) for r, s in zip(rects, scores)]
        else:
            items = [(d.rect, d.confidence) for d in self._det(rgb, self.upsample)]
        for r, s in items:
            box = np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], np.float32)
            lm = dlib_landmarks(rgb, box) if self.landmarks else None
            faces.append(Face(box=box, score=float(s), landmarks=lm))
        return faces


# ---------------------------------------------------------------- OpenCV Haar

class HaarDetector(FaceDetector):
    """OpenCV Haar cascade (frontal face). Landmarks from dlib's shape predictor when available."""

    name = "opencv"
    box_scale = 1.0

    def __init__(self, *, cascade: str = "haarcascade_frontalface_default.xml", scale_factor: float = 1.1,
                 min_neighbors: int = 5, min_size: int = 30, landmarks: bool = True, **kw):
        super().__init__(**kw)
        import cv2

        path = Path(cascade)
        if not path.exists():
            base = getattr(getattr(cv2, "data", None), "haarcascades", "") or ""
            for d in (base, "/usr/share/opencv4/haarcascades"):
                if d and (Path(d) / cascade).exists():
                    path = Path(d) / cascade
                    break
        if not path.exists() or not hasattr(cv2, "CascadeClassifier"):
            raise DependencyError("OpenCV's Haar cascades are missing (opencv-python-headless 5.x ships "
                                  "none); "
                                  "install `opencv-python-headless<5`.")
        self._cc = cv2.CascadeClassifier(str(path))
        self.scale_factor, self.min_neighbors, self.min_size = scale_factor, min_neighbors, min_size
        self.landmarks = landmarks and _dlib_available() and dlib_model_dir() is not None

    def _detect(self, rgb):
        import cv2

        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        gray = cv2.equalizeHist(gray)
        rects, _, weights = self._cc.detectMultiScale3(gray, scaleFactor=self.scale_factor,
                                                       minNeighbors=self.min_neighbors,
                                                       minSize=(self.min_size, self.min_size),
                                                       outputRejectLevels=True)
        faces = []
        for (x, y, w, h), wt in zip(rects, np.ravel(weights) if len(rects) else []):
            box = np.array([x, y, x + w, y + h], np.float32)
            lm = None
            if self.landmarks:
                # the 68-point predictor was trained on dlib HOG boxes: give it a HOG-sized box
                hog = scale_box(box, 1 / DlibDetector.box_scale)
                hog[[1, 3]] -= DlibDetector.box_shift * (box[3] - box[1])
                lm = dlib_landmarks(rgb, hog)
            faces.append(Face(box=box, score=float(wt), landmarks=lm))
        return faces


# ---------------------------------------------------------------- MediaPipe

@contextlib.contextmanager
def _quiet_stderr():
    """Silence C++-level stderr (MediaPipe/TFLite print start-up chatter there) for a block."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (e.g. captured): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _mediapipe_available() -> bool:
    return importlib.util.find_spec("mediapipe") is not None


class MediaPipeDetector(FaceDetector):
    """MediaPipe 0.10.21 face detection (BlazeFace full range) with eyes, nose and mouth keypoints."""

    name = "mediapipe"
    # BlazeFace boxes are about 5% smaller than Haar boxes of the same faces (measured, see docs/faces.md)
    box_scale = 1.05
    box_shift = -0.08  # Haar centres are 5-12% of the box higher (measured like box_scale)

    def __init__(self, *, model_selection: int = 1, min_detection_confidence: float = 0.5,
                 landmarks: str = "auto", **kw):
        """`landmarks`: "keypoints" = MediaPipe's eyes/nose/mouth-centre keypoints (mouth corners
        estimated), "dlib" = dlib's 68-point predictor on the box, "auto" = dlib when installed."""
        super().__init__(**kw)
        if landmarks not in ("auto", "dlib", "keypoints"):
            raise ConfigError(f"unknown landmarks source '{landmarks}'; choose auto, dlib or keypoints.")
        have_dlib = _dlib_available() and dlib_model_dir() is not None
        if landmarks == "dlib" and not have_dlib:
            raise DependencyError("dlib landmarks need `pip install dlib-bin face-recognition-models`.")
        self.use_dlib = landmarks == "dlib" or (landmarks == "auto" and have_dlib)
        if not _mediapipe_available():
            raise DependencyError("mediapipe is not installed; `pip install --no-deps mediapipe==0.10.21` "
                                  "(see docs/faces.md) or choose --detector dlib/opencv.")
        try:
            with _quiet_stderr():
                import mediapipe as mp

                self._fd = mp.solutions.face_detection.FaceDetection(
                    model_selection=model_selection, min_detection_confidence=min_detection_confidence)
                self._fd.process(np.zeros((64, 64, 3), np.uint8))  # the graph starts (and chatters) here
        except Exception as e:  # newer mediapipe releases ship no solutions/models
            raise DependencyError(f"mediapipe cannot run its face detector ({type(e).__name__}: {e}); "
                                  "install mediapipe==0.10.21 or choose --detector dlib/opencv.") from e

    def _detect(self, rgb):
        h, w = rgb.shape[:2]
        res = self._fd.process(rgb)
        faces = []
        for d in res.detections or []:
            bb = d.location_data.relative_bounding_box
            box = np.array([bb.xmin * w, bb.ymin * h, (bb.xmin + bb.width) * w, (bb.ymin + bb.height) * h],
                           np.float32)
            kp = np.array([(k.x * w, k.y * h) for k in d.location_data.relative_keypoints], np.float32)
            # keypoints: 0 = eye on the image left, 1 = eye on the image right, 2 = nose tip, 3 = mouth centre
            if self.use_dlib:
                # the 68-point predictor wants a HOG-convention box (BlazeFace is ~12% smaller than HOG x1.2)
                lm = dlib_landmarks(rgb, scale_box(box, self.box_scale / DlibDetector.box_scale))
            else:
                lm = five_from_eyes_nose_mouth(kp[0], kp[1], kp[2], kp[3]) if len(kp) >= 4 else None
            faces.append(Face(box=box, score=float(d.score[0]), landmarks=lm))
        return faces

    def close(self):
        self._fd.close()


# ---------------------------------------------------------------- choice

def available_detectors() -> dict[str, str]:
    """Backend name -> '' when usable, else the reason it is not."""
    import cv2

    out = {}
    if not _dlib_available():
        out["dlib"] = "dlib is not installed (pip install dlib-bin)"
    elif dlib_model_dir() is None:
        out["dlib"] = "dlib model files missing (pip install face-recognition-models)"
    else:
        out["dlib"] = ""
    base = getattr(getattr(cv2, "data", None), "haarcascades", "") or ""
    ok = hasattr(cv2, "CascadeClassifier") and (
        (Path(base) / "haarcascade_frontalface_default.xml").exists()
        or Path("/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml").exists())
    out["opencv"] = "" if ok else "no Haar cascades (install opencv-python-headless<5)"
    if not _mediapipe_available():
        out["mediapipe"] = "mediapipe is not installed (pip install --no-deps mediapipe==0.10.21)"
    else:
        try:
            with _quiet_stderr():
                import mediapipe as mp

                mp.solutions.face_detection  # noqa: B018
            out["mediapipe"] = ""
        except Exception as e:
            out["mediapipe"] = f"mediapipe cannot be used ({type(e).__name__}: {e})"
    return out


#: `auto` tries these in order (see docs/faces.md for the measurements behind the order)
AUTO_ORDER = ("mediapipe", "dlib", "opencv")


def make_detector(name: str = "auto", **kw) -> FaceDetector:
    """Build the detector backend `name` (one of DETECTOR_CHOICES); `auto` picks the best installed."""
    if name not in DETECTOR_CHOICES:
        raise ConfigError(f"unknown detector '{name}'; choose one of: {', '.join(DETECTOR_CHOICES)}.")
    if name == "auto":
        avail = available_detectors()
        for n in AUTO_ORDER:
            if avail.get(n) == "":
                return make_detector(n, **kw)
        raise DependencyError("no face detector is usable; install `opencv-python-headless<5` or "
                              "`pip install dlib-bin face-recognition-models`.")
    cls = {"dlib": DlibDetector, "opencv": HaarDetector, "mediapipe": MediaPipeDetector}[name]
    return cls(**kw)

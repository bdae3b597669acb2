"""Face metrics: identity (IDS, Deg, Face-Cons) and landmarks (AKD/LMD, TLME).

Offline backend: dlib -- HOG face detector, 68-point and 5-point shape predictors and the 128-D
ResNet face descriptor from the ``face-recognition-models`` package (located by path, because
``import face_recognition_models`` needs ``pkg_resources``). ArcFace is used instead of the dlib
descriptor when an ONNX (needs ``onnxruntime``) or TorchScript file is given.

Definitions (per video; the report averages over videos):

* IDS: cosine similarity between the identity embeddings of the prediction and the GT, averaged
  over **all** frames where a face is found (the official script counted only frame 23).
* Deg (PGTFormer): the angle in degrees between the same two embeddings, ``arccos(cos)`` per frame,
  averaged like IDS. Lower is better; 0 for the same face.
* Face-Cons: cosine similarity of the embedding of the first frame with that of every later
  frame of the same video, averaged (no reference needed).
* AKD / LMD: mean Euclidean distance in pixels between the 68 landmarks of the prediction and of
  the GT, per frame, averaged. (AKD and LMD are the same measure under the two papers' names.)
* TLME: mean over t and over the 68 points of ``||(Lp[t]-Lp[t-1]) - (Lg[t]-Lg[t-1])||`` in pixels:
  how much the predicted landmark motion departs from the GT motion (jitter). 0 for identical videos.

Face boxes: the face is detected on the GT frame (largest HOG box; the previous box when the
detector misses) and the same box is given to the shape predictor on both GT and prediction, so the
landmark metrics measure landmark placement, not detector jitter on degraded frames. For identity,
the prediction uses its own detection and falls back to the GT box. Frames without any face box are
skipped and counted.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from bfvr.errors import DependencyError, ModelError, WeightsNotFoundError

__all__ = ["dlib_model_dir", "DlibFaces", "ArcFaceEmbedder", "cosine", "identity_angle",
           "tlme_from_landmarks", "landmark_distance"]

_INSTALL = ('install the face extras: pip install "bfvr[faces]" face-recognition-models '
            "(or set BFVR_DLIB_MODELS to a folder with the dlib .dat files)")


def dlib_model_dir() -> Path:
    """Folder holding dlib's 68-point and recognition .dat files (found by `bfvr.faces`)."""
    from bfvr.faces.detect import dlib_model_dir as find

    d = find()
    if d is None or not (d / "shape_predictor_68_face_landmarks.dat").is_file():
        raise DependencyError(f"dlib face models not found; {_INSTALL}.")
    return d


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def identity_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle in degrees between two embeddings (``arccos`` of their cosine), in [0, 180].

    Computed as ``2 atan2(|a' - b'|, |a' + b'|)`` of the unit vectors a', b': the same angle, but exact
    near 0 where ``arccos`` of a rounded cosine is not (``arccos(1 - 1e-16)`` is already ~1e-6 degrees).
    """
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    a, b = a / (np.linalg.norm(a) + 1e-300), b / (np.linalg.norm(b) + 1e-300)
    return float(np.degrees(2.0 * np.arctan2(np.linalg.norm(a - b), np.linalg.norm(a + b))))


class DlibFaces:
    """dlib detector + 68/5-point landmarks + 128-D descriptor, loaded once."""

    def __init__(self, model_dir: str | Path | None = None, need_identity: bool = True):
        try:
            import dlib
        except ImportError as e:
            raise DependencyError(f"dlib is not installed; {_INSTALL}.") from e
        self._dlib = dlib
        d = Path(model_dir) if model_dir else dlib_model_dir()
        self.detector = dlib.get_frontal_face_detector()
        self.sp68 = dlib.shape_predictor(str(d / "shape_predictor_68_face_landmarks.dat"))
        self.sp5 = self.rec = None
        if need_identity:
            for f in ("shape_predictor_5_face_landmarks.dat", "dlib_face_recognition_resnet_model_v1.dat"):
                if not (d / f).is_file():
                    raise DependencyError(f"dlib model {f} not found in {d}; {_INSTALL}.")
            self.sp5 = dlib.shape_predictor(str(d / "shape_predictor_5_face_landmarks.dat"))
            self.rec = dlib.face_recognition_model_v1(str(d / "dlib_face_recognition_resnet_model_v1.dat"))

    @staticmethod
    def _u8(frame: np.ndarray) -> np.ndarray:
        f = np.asarray(frame)
        return np.ascontiguousarray(f if f.dtype == np.uint8 else np.clip(f, 0, 255).astype(np.uint8))

    def detect(self, frame: np.ndarray):
        """Largest face rectangle (dlib.rectangle) or None."""
        img = self._u8(frame)
        rects = self.detector(img, 0)
        if len(rects) == 0 and max(img.shape[:2]) < 400:
            rects = self.detector(img, 1)
        if len(rects) == 0:
            return None
        return max(rects, key=lambda r: r.width() * r.height())

    def landmarks(self, frame: np.ndarray, rect) -> np.ndarray:
        """68 points [68,2] (x, y) in pixels."""
        s = self.sp68(self._u8(frame), rect)
        return np.array([[p.x, p.y] for p in s.parts()], dtype=np.float64)

    def chip(self, frame: np.ndarray, rect, size: int = 150) -> np.ndarray:
        """Aligned face crop (5-point similarity alignment) [size,size,3] uint8 RGB."""
        img = self._u8(frame)
        return np.asarray(self._dlib.get_face_chip(img, self.sp5(img, rect), size))

    def embed(self, frame: np.ndarray, rect) -> np.ndarray:
        """128-D dlib identity descriptor."""
        img = self._u8(frame)
        return np.asarray(self.rec.compute_face_descriptor(img, self.sp5(img, rect)), dtype=np.float64)


class ArcFaceEmbedder:
    """ArcFace-style embedder from an ONNX or TorchScript file: input 112x112 RGB, (x-127.5)/127.5."""

    def __init__(self, path: str | Path, faces: DlibFaces):
        p = Path(path)
        if not p.is_file():
            raise WeightsNotFoundError(f"ArcFace file {p} not found; give an existing .onnx "
                                       "or TorchScript .pt path or use --identity-model dlib.")
        self.faces = faces
        if p.suffix.lower() == ".onnx":
            try:
                import onnxruntime as ort
            except ImportError as e:
                raise DependencyError("an .onnx ArcFace needs onnxruntime: pip install onnxruntime.") from e
            try:
                sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
            except Exception as e:  # onnxruntime raises its own exception types for bad files
                raise ModelError(f"the identity model {p} is not a loadable ONNX file "
                                 f"({' '.join(str(e).split())[:160]}); give an ArcFace .onnx or use "
                                 "--identity-model dlib.") from None
            inputs = sess.get_inputs()
            if len(inputs) != 1 or len(inputs[0].shape) != 4:
                raise ModelError(f"the identity model {p} does not take one [N, 3, 112, 112] image input; "
                                 "give an ArcFace .onnx or use --identity-model dlib.")
            name = inputs[0].name
            self._run: Callable[[np.ndarray], np.ndarray] = lambda x: sess.run(None, {name: x})[0]
        else:
            import torch

            try:
                m = torch.jit.load(str(p), map_location="cpu").eval()
            except Exception as e:  # zip, pickle and TorchScript errors of a file that is not TorchScript
                raise ModelError(f"the identity model {p} is not a TorchScript file ({type(e).__name__}); "
                                 "give an ArcFace .onnx or TorchScript .pt, or use --identity-model "
                                 "dlib.") from None

            def run(x: np.ndarray) -> np.ndarray:
                with torch.inference_mode():
                    return m(torch.from_numpy(x)).float().numpy()

            self._run = run

    def embed(self, frame: np.ndarray, rect) -> np.ndarray:
        import cv2

        chip = self.faces.chip(frame, rect, size=150)
        chip = cv2.resize(chip, (112, 112), interpolation=cv2.INTER_AREA)
        x = ((chip.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None]
        return np.asarray(self._run(np.ascontiguousarray(x)), dtype=np.float64).ravel()


def landmark_distance(lp: np.ndarray, lg: np.ndarray) -> float:
    """Mean Euclidean distance between two landmark sets [P,2]."""
    return float(np.mean(np.linalg.norm(np.asarray(lp) - np.asarray(lg), axis=-1)))


def tlme_from_landmarks(lp: np.ndarray, lg: np.ndarray) -> np.ndarray:
    """Per-transition TLME of landmark tracks [T,P,2] (prediction, GT) -> [T-1]."""
    lp, lg = np.asarray(lp, np.float64), np.asarray(lg, np.float64)
    if lp.shape != lg.shape:
        raise ValueError(f"landmark tracks differ in shape: {lp.shape} vs {lg.shape}")
    d = np.diff(lp, axis=0) - np.diff(lg, axis=0)
    return np.linalg.norm(d, axis=-1).mean(-1)

"""bfvr.faces: find faces in real videos, follow them, crop/align them for a model, paste them back.

- `detect`: detector backends (dlib, OpenCV Haar, MediaPipe) behind `make_detector(name)`
- `track`: `FaceTracker` (association, gap filling, centred smoothing) and `ShotCutDetector`
- `align`: crop matrices (face-proportion square or FFHQ 5-point alignment) and the crop warp
- `paste`: feathered masks and paste-back through the inverse warp
- `pipeline`: `FacePipeline` / `restore_faces_stream`, the stream transformer the restorer uses
"""

from bfvr.faces.align import CROP_MODES, FFHQ_TEMPLATE_512
from bfvr.faces.detect import DETECTOR_CHOICES, Face, available_detectors, make_detector
from bfvr.faces.pipeline import (
    SELECT_CHOICES,
    ClipRunner,
    FaceOptions,
    FacePipeline,
    NoFaceWarning,
    restore_faces_stream,
)
from bfvr.faces.track import FaceTracker, ShotCutDetector

__all__ = [
    "CROP_MODES", "DETECTOR_CHOICES", "SELECT_CHOICES", "FFHQ_TEMPLATE_512", "Face", "available_detectors",
    "make_detector", "ClipRunner", "FaceOptions", "FacePipeline", "NoFaceWarning", "restore_faces_stream",
    "FaceTracker", "ShotCutDetector",
]

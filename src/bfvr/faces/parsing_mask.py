"""Paste-back masks from per-pixel labels (``--paste-mask parsing``), whatever network gives the labels.

The face layer knows no network: a method that offers a parsing paste mask (`bfvr.models.spec.PasteMask`, or
a model's own ``paste_masks()``) hands the pipeline a mask function, usually a `LabelMasker` subclass whose
``labels(face)`` runs its parsing network. The pixels of the chosen classes form the mask, which is eroded a
little, blurred, and multiplied by the pipeline's feathered box (`envelope`) so it still fades out before the
crop border. The face is then pasted only where it is (no restored background square around it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class LabelMasker:
    """`masker(face uint8 [h, w, 3]) -> float32 [h, w]` in [0, 1]: the pixels whose ``labels(face)`` is one of
    `classes`, eroded by `erode` and blurred by `feather` (fractions of the crop side), inside `envelope`."""

    def __init__(self, envelope: np.ndarray, *, classes: Sequence[int], erode: float = 0.01,
                 feather: float = 0.01) -> None:
        self.envelope = np.asarray(envelope, np.float32)
        self.classes = np.array(sorted({int(c) for c in classes}))
        self.erode, self.feather = erode, feather

    def labels(self, face: np.ndarray) -> np.ndarray:
        """Class id per pixel (int [h, w]) of `face`."""
        raise NotImplementedError

    def __call__(self, face: np.ndarray) -> np.ndarray:
        import cv2

        h, w = face.shape[:2]
        m = np.isin(self.labels(face), self.classes).astype(np.float32)
        size = min(h, w)
        e = round(self.erode * size)
        if e > 0:
            m = cv2.erode(m, np.ones((2 * e + 1, 2 * e + 1), np.uint8))
        sigma = max(self.feather * size, 0.5)
        k = int(2 * np.ceil(3 * sigma) + 1)
        m = cv2.GaussianBlur(m, (k, k), sigma)
        return m * self.envelope

"""Datasets and dataset preparation.

- :class:`ClipDataset`: random T-frame windows, on-the-fly degradation, paired LQ/GT tensors (torch)
- :mod:`bfvr.data.prepare`: `bfvr prepare` (face-proportion crop, orientation, text, motion, manifest)

``ClipDataset`` is imported lazily so ``import bfvr.data.prepare`` does not need torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ClipDataset", "read_manifest"]


def __getattr__(name: str) -> Any:
    if name == "ClipDataset":
        from bfvr.data.dataset import ClipDataset

        return ClipDataset
    if name == "read_manifest":
        from bfvr.data.prepare import read_manifest

        return read_manifest
    raise AttributeError(name)

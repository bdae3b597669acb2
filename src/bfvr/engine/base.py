"""The contract between the engine and the restoration models.

A *clip model* restores a short clip of frames on one canvas size. The engine (chunking, overlap
blending, padding) and the face pipeline (crop/align, paste-back) only talk to models through this
interface, so a new method plugs in by implementing it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class ClipModel(Protocol):
    #: short name used in logs and in `bfvr models`
    name: str
    #: frames per forward pass the model wants (STC: 24); None = any length (e.g. identity)
    clip_len: int | None
    #: frames shared by consecutive clips and cross-faded by the engine (0 = no overlap)
    overlap: int
    #: (H, W) the model needs as input; None = any size (the caller keeps the frame size)
    canvas: tuple[int, int] | None
    #: device the model runs on (the engine moves clips there)
    device: torch.device

    def restore_clip(self, clip: torch.Tensor) -> torch.Tensor:
        """Restore `clip` [T, 3, H, W] float32 in [0, 1] (on any device); return the same shape in [0, 1].

        T equals `clip_len` when that is set (the engine pads short tails), and H, W equal `canvas`
        when that is set (the engine or the face pipeline resizes).
        """
        ...


class IdentityModel:
    """Passes frames through unchanged: exercises the whole read -> model -> write path."""

    name = "identity"
    clip_len: int | None = None
    overlap = 0
    canvas: tuple[int, int] | None = None

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)

    def restore_clip(self, clip: torch.Tensor) -> torch.Tensor:
        return clip

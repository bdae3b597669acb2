"""The one place that maps a model name to a class, a configuration and weights.

`load_model(name, ...)` returns a ready `ClipModel` (see `bfvr.engine.base`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from bfvr.engine.base import ClipModel, IdentityModel
from bfvr.errors import ModelError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    builder: Callable[..., ClipModel]


def _build_identity(device: torch.device, **_: object) -> ClipModel:
    return IdentityModel(device)


MODELS: dict[str, ModelSpec] = {
    "identity": ModelSpec("identity", "frames pass through unchanged (tests the pipeline)", _build_identity),
}


def available_models() -> list[ModelSpec]:
    return list(MODELS.values())


def load_model(name: str, *, device: torch.device | str = "cpu", weights: str | None = None,
               precision: str = "fp32", offline: bool = False) -> ClipModel:
    """Build model `name` on `device` with weights from `weights` (a local file) or the cache."""
    spec = MODELS.get(name)
    if spec is None:
        raise ModelError(f"unknown model '{name}'; choose one of: {', '.join(MODELS)}.")
    return spec.builder(device=torch.device(device), weights=weights, precision=precision, offline=offline)

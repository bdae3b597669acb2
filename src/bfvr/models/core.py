"""The model of the engine itself: ``identity`` (frames pass through unchanged; tests the pipeline). Not a
method of face restoration, so it lives here and not in a method folder."""

from __future__ import annotations

from typing import Any

from bfvr.models.spec import Method, ModelSpec


def _build_identity(device: Any, **_: object) -> Any:
    from bfvr.engine.base import IdentityModel

    return IdentityModel(device)


METHOD = Method("core", models=(
    ModelSpec("identity", "frames pass through unchanged (tests the pipeline)", _build_identity,
              capabilities=frozenset({"overlap"})),
), description="the engine's pass-through model")

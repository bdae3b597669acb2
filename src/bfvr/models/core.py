"""The model of the engine itself: ``identity`` (frames pass through unchanged; tests the pipeline). Not a
method of face restoration, so it lives here and not in a method folder."""

from __future__ import annotations

from typing import Any

from bfvr.models.spec import Method, ModelSpec, reject_unknown_options


def _build_identity(device: Any, weights: str | None = None, precision: str = "fp32", offline: bool = False,
                    **unknown: object) -> Any:
    from bfvr.engine.base import IdentityModel

    reject_unknown_options("identity", unknown, "none")

    return IdentityModel(device)


METHOD = Method("core", models=(
    ModelSpec("identity", "frames pass through unchanged (tests the pipeline)", _build_identity,
              capabilities=frozenset({"overlap"})),
), description="the engine's pass-through model")

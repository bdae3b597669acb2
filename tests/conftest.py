"""Shared test fixtures. Real data comes from ../shared (override with BFVR_SHARED); tests that need it
skip with the reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BFVR_SHARED", REPO.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """Path inside ../shared, or skip the calling test with a clear reason when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not found: {p} (set BFVR_SHARED to the shared folder)")
    return p


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    return shared_path("data", "faces")


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return shared_path("golden")

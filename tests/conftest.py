"""Shared test fixtures. Real data comes from ../shared (override with BFVR_SHARED); tests that need it
skip with the reason when it is absent."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BFVR_SHARED", REPO.parent / "shared"))


def run_cli(*args: str) -> int:
    """Run `bfvr ARGS` in-process (as the console script would) and return its exit code."""
    from bfvr.cli import main

    try:
        main(list(args))
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


def shared_path(*parts: str) -> Path:
    """Path inside ../shared, or skip the calling test with a clear reason when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not found: {p} (set BFVR_SHARED to the shared folder)")
    return p


def golden_weights() -> ModuleType:
    """The shared golden-weights tool (../shared/tools/golden_weights.py, not a package) as a module; skips
    the calling test when ../shared is absent."""
    mod = sys.modules.get("golden_weights")
    if mod is None:
        spec = importlib.util.spec_from_file_location("golden_weights",
                                                      shared_path("tools", "golden_weights.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules["golden_weights"] = mod
        spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    return shared_path("data", "faces")


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return shared_path("golden")


@pytest.fixture(scope="session")
def synth_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real H.264 mp4 made here (no shared data needed): 48 frames, 256x256, 25 fps, a moving pattern
    (`bfvr.io.synth.pattern_frame(i, 256, 256)` is frame i before encoding, CRF 12) and a 440 Hz AAC
    stereo tone at 48 kHz lasting as long as the video (1.92 s). Read-only: copy it before modifying."""
    from bfvr.io.synth import synth_video

    return synth_video(tmp_path_factory.mktemp("synth") / "clip.mp4", frames=48, width=256, height=256,
                       fps=25, audio=True)


@pytest.fixture(scope="session")
def make_clip(tmp_path_factory: pytest.TempPathFactory):
    """Factory: `make_clip(name, **kwargs)` -> Path of a synthetic clip (`bfvr.io.synth.synth_video` kwargs:
    frames, width, height, fps, audio, pix_fmt, rotation, pts/time_base for VFR, ...)."""
    from bfvr.io.synth import synth_video

    root = tmp_path_factory.mktemp("clips")

    def _make(name: str = "clip.mp4", **kwargs: object) -> Path:
        return synth_video(root / name, **kwargs)

    return _make


@pytest.fixture(scope="module")
def faces():
    """dlib's detector, landmarks and identity models (skips with the reason when dlib or its model files
    are absent)."""
    pytest.importorskip("dlib")
    from bfvr.errors import DependencyError
    from bfvr.metrics.faces import DlibFaces

    try:
        return DlibFaces()
    except DependencyError as e:
        pytest.skip(str(e))

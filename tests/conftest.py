"""Shared test fixtures (plain helper functions and constants: tests/helpers.py). Real data comes from
../shared (override with BFVR_SHARED); tests that need it skip with the reason when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

# the shared helpers (tests/helpers.py), also importable from here
from helpers import REPO, SHARED, golden_weights, run_cli, shared_path  # noqa: F401

#: pytest-timeout's limit for tests marked slow (the default, `timeout` in pyproject.toml, is for the rest)
SLOW_TIMEOUT = 1800


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked slow get SLOW_TIMEOUT unless they set their own limit or --timeout is given."""
    if config.getoption("timeout", None) is not None:
        return
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT))


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


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module of small networks: they run hundreds of tiny ops, and on a busy 2-core
    machine two OpenMP threads wait for each other at every op (measured on a small PGTFormer: 5-13 s per
    forward with 2 threads, 0.4 s with 1). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

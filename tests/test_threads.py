"""Process state is safe with threads: bfvr never changes the process-wide umask (a file another thread
creates meanwhile would get mode 0666), and its codec heap setting is counted across threads."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import numpy as np
import pytest

from bfvr.io.paths import current_umask, set_default_mode


@pytest.fixture
def umask_027():
    """Run the test under umask 027 (files 0640, folders 0750), the process's umask restored afterwards."""
    old = os.umask(0o027)
    try:
        yield 0o027
    finally:
        os.umask(old)


@pytest.fixture
def slow_umask(monkeypatch):
    """`os.umask` that lingers 2 ms after each change: a read-by-setting of the umask (umask(0), then back)
    would then leave a window other threads' files fall into every time, not once in a million."""
    import time

    real = os.umask

    def slow(mask: int) -> int:
        old = real(mask)
        time.sleep(0.002)
        return old

    monkeypatch.setattr(os, "umask", slow)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


def _creator(folder: Path, stop: threading.Event, made: list[Path], pause: float = 0.005) -> None:
    """A third party's thread: create plain files until told to stop (at least 50)."""
    import time

    folder.mkdir()
    i = 0
    while not stop.is_set() or i < 50:
        p = folder / f"f{i}.txt"
        with open(p, "w") as f:
            f.write("x")
        made.append(p)
        i += 1
        if pause:
            time.sleep(pause)


def test_current_umask_reads_without_changing(umask_027):
    assert current_umask() == 0o027
    assert current_umask() == 0o027  # unchanged by reading
    os.umask(0o002)
    assert current_umask() == 0o002


def test_set_default_mode_never_opens_a_window_for_other_threads(tmp_path, umask_027, slow_umask):
    """set_default_mode called in a loop while another thread creates files: every file of that thread
    has mode 0640 (the old umask(0)/umask(old) read gave some of them 0666)."""
    targets = [tmp_path / f"t{i}" for i in range(100)]
    for t in targets:
        t.write_bytes(b"")
        t.chmod(0o600)
    stop, made = threading.Event(), []
    other = threading.Thread(target=_creator, args=(tmp_path / "other", stop, made, 0.0))
    other.start()
    for _ in range(2):
        for t in targets:
            set_default_mode(t)
    stop.set()
    other.join(30)
    assert {_mode(t) for t in targets} == {0o640}
    assert made and {_mode(p) for p in made} == {0o640}


def test_two_restores_in_threads_and_a_third_thread_all_get_the_umask_mode(tmp_path, faces_dir, umask_027,
                                                                          slow_umask):
    """The acceptance test of issue 25: two restores (a video and a PNG-frame folder, a real clip, the
    identity model) in threads while a third thread creates files: every file and folder gets the mode the
    umask says (0640 / 0750)."""
    from bfvr import Restorer

    src = faces_dir / "tpsmm_driving.mp4"
    outs = [tmp_path / "a.mp4", tmp_path / "frames"]
    errors: list[BaseException] = []

    def restore(out: Path) -> None:
        try:
            Restorer("identity", device="cpu", progress=False).restore_video(src, out, max_frames=4, crf=30)
        except BaseException as e:  # noqa: BLE001 -- reported below
            errors.append(e)

    stop, made = threading.Event(), []
    threads = [threading.Thread(target=restore, args=(o,)) for o in outs]
    other = threading.Thread(target=_creator, args=(tmp_path / "other", stop, made))
    other.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    stop.set()
    other.join(30)
    assert not errors, errors
    assert _mode(outs[0]) == 0o640 and _mode(outs[1]) == 0o750
    frames = sorted(outs[1].iterdir())
    assert len([f for f in frames if f.suffix == ".png"]) == 4
    assert {_mode(f) for f in frames} == {0o640}
    assert made and {_mode(p) for p in made} == {0o640}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "frames", "other"]  # no temporary left


def test_codec_heap_setting_is_counted_across_threads():
    """Two threads compressing at once (`deterministic_heap` inside) give the same frames as one thread
    alone, and the perturbation is off again once both are done (the count is back to 0)."""
    from bfvr.degrade import codec

    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (6, 48, 64, 3), dtype=np.uint8)
    alone = codec.x264_roundtrip(clip, 30, preset="ultrafast")
    results: list[np.ndarray] = []

    def one() -> None:
        results.append(codec.x264_roundtrip(clip, 30, preset="ultrafast"))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 2 and all(np.array_equal(r, alone) for r in results)
    assert codec._heap_users == 0

"""The web page's checks without a browser (`bfvr.ui.core`): pixel limits read from headers before any frame
is decoded, and a zip with a damaged member as one sentence (issue 27)."""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from bfvr.errors import InputError
from bfvr.ui.core import Limits, Workspace, open_source


def _gif(path: Path, width: int, height: int, frames: int = 2) -> Path:
    """A GIF whose logical screen is width x height, holding `frames` 1x1 images: a few hundred bytes that
    a decoder turns into width x height x 4 bytes per frame."""
    data = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    data += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # loop forever
    for _ in range(frames):
        data += b"\x21\xf9\x04\x04\x0a\x00\x00\x00"  # 0.1 s
        data += b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    path.write_bytes(data + b"\x3b")
    return path


def _png_header(width: int, height: int) -> bytes:
    """A PNG that states width x height (its pixel data is not needed to read the size)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def _png(rgb: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", rgb)
    assert ok
    return buf.tobytes()


def test_huge_gif_frames_are_refused_before_decoding(tmp_path, monkeypatch) -> None:
    import bfvr.io

    gif = _gif(tmp_path / "big.gif", 16000, 16000)
    assert gif.stat().st_size < 200

    def no_decoding(*a, **k):
        raise AssertionError("the upload was probed (its first frame decoded) before the size check")

    monkeypatch.setattr(bfvr.io, "probe", no_decoding)
    with pytest.raises(InputError) as e:
        open_source(gif, tmp_path / "work", Limits())
    msg = str(e.value)
    assert "16000x16000 (256 megapixels)" in msg and "--max-frame-megapixels" in msg and "\n" not in msg
    # the same check from the zip member headers, before anything is unpacked
    z = tmp_path / "frames.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("000001.png", _png(np.zeros((8, 8, 3), np.uint8)))
        zf.writestr("000002.png", _png_header(9000, 9000))
    with pytest.raises(InputError, match=r"frames.zip: 000002.png' are 9000x9000 \(81 megapixels\)"):
        open_source(z, tmp_path / "work", Limits())
    assert not (tmp_path / "work" / "frames").exists()


def test_pixel_count_of_a_run_is_limited(tmp_path) -> None:
    """width x height x frames over the page's limit: the run stops with one sentence before any model
    is loaded; a preview short enough passes that check."""
    from bfvr.ui.core import RestoreJob, RestorerCache, Settings

    gif = _gif(tmp_path / "small.gif", 100, 100, frames=6)
    limits = Limits(max_megapixels=0.04)  # 4 frames of 100x100
    src = open_source(gif, tmp_path / "work", limits)
    assert (src.info.width, src.info.height, src.info.frame_count) == (100, 100, 6)

    class NoModels(RestorerCache):
        def get(self, name, faces, **settings):
            raise AssertionError("a model was loaded")

    job = RestoreJob(src, Settings(model="identity", faces="aligned"), tmp_path / "out", NoModels(), limits)
    job.start().join(30)
    assert job.error == ("'small.gif' is 6 frames of 100x100 (0 megapixels); this page restores up to 0.04 "
                         "megapixels in one run: set a shorter preview (or start bfvr ui with a larger "
                         "--max-megapixels).")


def test_zip_with_a_damaged_member_is_one_sentence(tmp_path) -> None:
    frame = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    z = tmp_path / "frames.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(3):
            zf.writestr(f"{i:06d}.png", _png(frame))
    ok = open_source(z, tmp_path / "ok", Limits(), frames_fps=25)
    assert ok.info.frame_count == 3
    # flip bytes in the middle of the second member's compressed data
    data = bytearray(z.read_bytes())
    with zipfile.ZipFile(z) as zf:
        m = zf.getinfo("000001.png")
    start = m.header_offset + 30 + len(m.filename) + len(m.extra)
    for k in range(m.compress_size // 3, m.compress_size // 3 + 64):
        data[start + k] ^= 0xFF
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(data))
    with pytest.raises(InputError) as e:
        open_source(bad, tmp_path / "work", Limits(), frames_fps=25)
    msg = str(e.value)
    assert msg.startswith("'bad.zip' has a damaged member '000001.png' (") and msg.endswith(
        "zip the frames again.") and "\n" not in msg


def test_runs_of_one_session_keep_their_own_folders(tmp_path) -> None:
    """Issue 28: with --concurrency 2 a second run of a session removed the first run's folder while it
    wrote. A folder in use is removed by no other run; the session's end removes it once it is released."""
    ws = Workspace(tmp_path)
    first = ws.new_dir("s", "run")
    (first / "a_restored.mp4").write_bytes(b"x")
    second = ws.new_dir("s", "run")
    assert first != second
    ws.drop_old("s", "run", keep=second)  # what the second run does: the first still writes
    assert (first / "a_restored.mp4").is_file()
    ws.release(first)
    third = ws.new_dir("s", "run")
    ws.drop_old("s", "run", keep=third)  # the first is done: its folder goes; the second still runs
    assert not first.exists() and second.is_dir() and third.is_dir()
    ws.release(third)
    ws.drop_session("s")  # the tab closed while the second run still writes: only what is free goes
    assert second.is_dir() and not third.exists()
    ws.release(second)  # ... and the second run's folder (and the session's) when it ends
    assert not second.exists() and not second.parent.exists()
    ws.cleanup()
    assert list(tmp_path.iterdir()) == []


def test_strength_and_temporal_filter_of_a_run() -> None:
    """The page's strength and temporal-smoothing controls reach the restorer: BFVR-Lite is loaded once per
    filter strength (its default when none is given), the strength is per run, a model without a filter
    ignores the smoothing value, and a strength outside 0..1 is one sentence."""
    from bfvr.engine.base import contract_of
    from bfvr.ui.core import RestorerCache

    cache = RestorerCache("cpu")
    assert cache.default_temporal_filter("bfvr-lite") == 1.0
    assert cache.default_temporal_filter("identity") is None
    a = cache.get("bfvr-lite", None, strength=0.5, temporal_filter=0)
    assert a.strength == 0.5 and a.has_aligned and contract_of(a.model).temporal_filter == 0
    b = cache.get("bfvr-lite", None, temporal_filter=2.5)
    assert b.strength == 1.0 and contract_of(b.model).temporal_filter == 2.5
    default = cache.get("bfvr-lite", None)
    assert contract_of(default.model).temporal_filter == 1.0  # the model's own default is untouched
    # loaded once: the page's default value is the model itself, another value a copy sharing its network
    assert cache.get("bfvr-lite", None, temporal_filter=1.0).model is default.model
    assert a.model is not default.model and a.model.net is default.model.net
    assert contract_of(cache.get("identity", None, temporal_filter=3).model).temporal_filter == 0
    with pytest.raises(InputError, match="strength must be between 0 and 1, got 1.5"):
        cache.get("identity", None, strength=1.5)

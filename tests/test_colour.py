"""Colour round trip (issue 27): an identity restore keeps the input's brightness and colour tags, and loses
no more than a plain FFmpeg re-encode at the same CRF (benchmarks/colour_roundtrip.py prints the numbers)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from bfvr.io import probe, read_frames
from helpers import run_cli, shared_path

FRAMES = 8


def _reencode(src: Path, dst: Path, crf: int) -> None:
    """What `ffmpeg -i src -frames:v N -c:v libx264 -crf CRF dst` does: the decoded YUV re-encoded, tags
    kept."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        ist = inp.streams.video[0]
        ost = out.add_stream("libx264", rate=ist.average_rate)
        ost.width, ost.height, ost.pix_fmt = ist.width, ist.height, "yuv420p"
        ost.options = {"crf": str(crf)}
        for k in ("colorspace", "color_range", "color_primaries", "color_trc"):
            setattr(ost.codec_context, k, getattr(ist.codec_context, k))
        for i, f in enumerate(inp.decode(video=0)):
            if i == FRAMES:
                break
            g = av.VideoFrame.from_ndarray(f.to_ndarray(format="yuv420p"), format="yuv420p")
            g.pts = i
            for p in ost.encode(g):
                out.mux(p)
        for p in ost.encode(None):
            out.mux(p)


def _compare(out: Path, ref: np.ndarray) -> tuple[float, float]:
    got = read_frames(out, max_frames=FRAMES).astype(np.float64)
    diff = got - ref[: len(got)]
    return 10 * np.log10(255**2 / np.mean(diff**2)), float(diff.mean())


@pytest.mark.parametrize("name, tags", [
    # 1080x1920 HEVC, tagged BT.709: 10 s of CPU, OMP_NUM_THREADS=1 (measured 2026-12-06)
    pytest.param("latentsync_demo1_video.mp4", (1, 1, 1, 1), marks=pytest.mark.slow),
    ("lp_driving_d0.mp4", (2, 0, 2, 2)),           # 512x512 H.264, untagged
])
def test_identity_restore_keeps_colour(tmp_path: Path, name: str, tags: tuple[int, ...]) -> None:
    src = shared_path("data", "faces", name)
    assert probe(src).color == tags
    ref = read_frames(src, max_frames=FRAMES).astype(np.float64)
    out = tmp_path / "id.mp4"
    assert run_cli("restore", str(src), "-o", str(out), "--model", "identity", "--has-aligned",
                   "--max-frames", str(FRAMES), "--quiet") == 0
    _reencode(src, tmp_path / "ff.mp4", 18)
    p_id, shift_id = _compare(out, ref)
    p_ff, _ = _compare(tmp_path / "ff.mp4", ref)
    assert abs(shift_id) < 0.1, f"identity restore shifts the mean by {shift_id:+.3f} levels"
    assert p_id > p_ff - 0.5, f"identity {p_id:.2f} dB vs re-encode {p_ff:.2f} dB"
    assert probe(out).color == tags  # the input's tags: untagged stays untagged


def test_full_range_input_stays_full_range(tmp_path: Path) -> None:
    """A full-range (JPEG-range) input is read as full range and written back as full range."""
    from bfvr.io import VideoWriter

    ramp = np.linspace(0, 255, 64)  # smooth colours: 4:2:0 keeps them
    frames = np.stack([np.broadcast_to(ramp[None, :], (64, 64)), np.broadcast_to(ramp[:, None], (64, 64)),
                       np.full((64, 64), 90.0)], axis=-1)
    frames = np.repeat(frames[None], 4, axis=0).round().astype(np.uint8)
    frames[:, :16] = 0
    frames[:, 16:32] = 255
    src = tmp_path / "full.mp4"
    with VideoWriter(src, fps=25, codec_options={"qp": "0"}, color=(1, 2, 1, 1)) as w:
        w.write(frames)
    assert probe(src).color == (1, 2, 1, 1)
    back = read_frames(src)
    assert back[:, :8].max() <= 1 and back[:, 18:24].min() >= 254  # no range squeeze either way
    assert np.abs(back.astype(int) - frames).mean() < 1.0

"""Issue 2's acceptance on real face clips with audio from ../shared/data/faces (skipped when absent):
`bfvr restore CLIP -o out.mp4 --model identity --crf 10` keeps frame count, fps, duration (+-1 frame),
the audio stream (codec and duration) and the frames (PSNR >= 40 dB)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from bfvr.io import open_video, probe
from helpers import run_cli


def stream_psnr(a: Path, b: Path) -> tuple[int, float, float]:
    """(frames compared, overall PSNR, worst frame PSNR) without holding either video in memory."""
    se, n, worst = 0.0, 0, np.inf
    with open_video(a) as ra, open_video(b) as rb:
        for (fa, _), (fb, _) in zip(ra.frames(), rb.frames()):
            mse = np.mean((fa.astype(np.float64) - fb) ** 2)
            se += mse
            n += 1
            worst = min(worst, 10 * np.log10(255**2 / max(mse, 1e-12)))
    return n, 10 * np.log10(255**2 / (se / n)), worst


def audio_packets(p: Path) -> list[bytes]:
    with av.open(str(p)) as c:
        return [bytes(pkt) for pkt in c.demux(c.streams.audio[0]) if pkt.size]


def check_acceptance(src: Path, out: Path) -> None:
    a, b = probe(src), probe(out)
    assert b.frame_count == a.frame_count
    assert b.fps == a.fps
    assert abs(b.duration - a.duration) <= 1 / float(a.fps)
    assert b.has_audio and b.audio_codec == a.audio_codec
    assert abs(b.audio_duration - a.audio_duration) <= 1 / float(a.fps)
    assert audio_packets(out) == audio_packets(src)  # copied, not re-encoded
    n, overall, worst = stream_psnr(src, out)
    assert n == a.frame_count
    assert overall >= 40 and worst >= 38, (overall, worst)


def restore(argv: list[str]) -> None:
    code = run_cli(*argv)
    assert code == 0, code


def test_acceptance_short_real_clip(tmp_path: Path, faces_dir: Path) -> None:
    """lp_driving_d20 (480x480 face crop, 25 fps, 175 frames, AAC): whole frames, fast preset."""
    src = faces_dir / "lp_driving_d20.mp4"
    if not src.exists():
        pytest.skip(f"{src} not found")
    out = tmp_path / "d20.mp4"
    restore(["restore", str(src), "-o", str(out), "--model", "identity", "--crf", "10", "--preset",
             "ultrafast", "--has-aligned", "--quiet"])
    check_acceptance(src, out)


@pytest.mark.slow
def test_acceptance_d10_default_pipeline(tmp_path: Path, faces_dir: Path) -> None:
    """The issue's command on lp_driving_d10 (512x512, 30 fps, 448 frames, AAC) with the default face
    pipeline."""
    src = faces_dir / "lp_driving_d10.mp4"
    if not src.exists():
        pytest.skip(f"{src} not found")
    out = tmp_path / "d10.mp4"
    restore(["restore", str(src), "-o", str(out), "--model", "identity", "--crf", "10", "--quiet"])
    check_acceptance(src, out)


def test_acceptance_synthetic_clip(tmp_path: Path, synth_clip: Path) -> None:
    out = tmp_path / "synth.mp4"
    restore(["restore", str(synth_clip), "-o", str(out), "--model", "identity", "--crf", "10",
             "--has-aligned", "--quiet"])
    check_acceptance(synth_clip, out)

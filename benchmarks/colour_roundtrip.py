"""Colour round trip: an identity restore against a plain FFmpeg re-encode at the same CRF.

    python benchmarks/colour_roundtrip.py [VIDEO ...] [--frames 48] [--crf 18]

For each video: `bfvr restore --model identity --has-aligned` (the whole decode -> RGB -> encode path) and
an FFmpeg-style re-encode of the decoded YUV frames (libx264, same CRF, same colour tags; no RGB step).
Both are read back with bfvr's reader and compared with the input: PSNR over RGB and the mean shift in
levels (0..255). The identity restore should be within 0.5 dB of the re-encode with |shift| < 0.1.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

BFVR = shutil.which("bfvr") or "bfvr"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"


def reencode(src: Path, dst: Path, crf: int, frames: int) -> None:
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        ist = inp.streams.video[0]
        ost = out.add_stream("libx264", rate=ist.average_rate)
        ost.width, ost.height, ost.pix_fmt = ist.width, ist.height, "yuv420p"
        ost.options = {"crf": str(crf), "preset": "medium"}
        cc = ist.codec_context
        for k in ("colorspace", "color_range", "color_primaries", "color_trc"):
            setattr(ost.codec_context, k, getattr(cc, k))
        for i, f in enumerate(inp.decode(video=0)):
            if i >= frames:
                break
            g = av.VideoFrame.from_ndarray(f.to_ndarray(format="yuv420p"), format="yuv420p")
            g.pts = i
            for p in ost.encode(g):
                out.mux(p)
        for p in ost.encode(None):
            out.mux(p)


def read(path: Path, frames: int) -> np.ndarray:
    from bfvr.io import read_frames

    return read_frames(path, max_frames=frames).astype(np.float64)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("videos", nargs="*", type=Path)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--crf", type=int, default=18)
    a = ap.parse_args()
    videos = a.videos or [SHARED / "ghost_obama_short.mp4", SHARED / "latentsync_demo1_video.mp4",
                          SHARED / "lp_driving_d0.mp4"]
    print(f"{'video':32s} {'bfvr identity':>22s} {'ffmpeg re-encode':>22s}   (PSNR dB / mean shift, levels)")
    with tempfile.TemporaryDirectory() as tmp:
        for v in videos:
            ref = read(v, a.frames)
            subprocess.run([BFVR, "restore", str(v), "-o", str(Path(tmp) / "id.mp4"),
                            "--model", "identity", "--has-aligned", "--crf", str(a.crf), "--overwrite",
                            "--max-frames", str(a.frames), "--quiet"], check=True)
            reencode(v, Path(tmp) / "ff.mp4", a.crf, a.frames)
            row = []
            for name in ("id.mp4", "ff.mp4"):
                out = read(Path(tmp) / name, a.frames)
                n = min(len(out), len(ref))
                mse = np.mean((out[:n] - ref[:n]) ** 2)
                row.append(f"{10 * np.log10(255 ** 2 / mse):7.2f} dB / {np.mean(out[:n] - ref[:n]):+.3f}")
            print(f"{v.name:32s} {row[0]:>22s} {row[1]:>22s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

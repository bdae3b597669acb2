"""Peak memory of `bfvr restore --model identity` on a short and a long synthetic video.

Streaming means the peak RSS must not grow with the video's length. This script synthesises two
512x512 25 fps H.264 videos with an AAC tone (10 s and 10 min by default), restores each with the
identity model in a fresh process (so each peak is its own), and prints frames, wall time and peak
RSS (ru_maxrss) for both, plus the ratio.

    python benchmarks/io_memory.py                       # 10 s vs 600 s (about 10-20 min on 2 cores)
    python benchmarks/io_memory.py --seconds 4 40        # a quick check
    python benchmarks/io_memory.py --seconds 10 120 --faces   # with face detection on every frame
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def synth(path: Path, seconds: float, size: int, fps: int) -> None:
    """A synthetic clip in bounded memory: 50 precomputed pattern frames, cycled, each stamped with its
    index."""
    import av
    import numpy as np

    from bfvr.io.synth import pattern_frame

    cycle = [pattern_frame(i, size, size) for i in range(50)]
    n = int(round(seconds * fps))
    c = av.open(str(path), "w")
    vs = c.add_stream("libx264", rate=fps)
    vs.width = vs.height = size
    vs.pix_fmt = "yuv420p"
    vs.options = {"crf": "18", "preset": "ultrafast"}
    sr = 48000
    a = c.add_stream("aac", rate=sr)
    a.layout = "stereo"
    written = 0
    for i in range(n):
        img = cycle[i % 50].copy()
        img[: size // 16, : (i % size)] = 255  # a progress bar: every frame differs
        f = av.VideoFrame.from_ndarray(img, format="rgb24")
        f.pts = i
        for p in vs.encode(f):
            c.mux(p)
        target = int((i + 1) / fps * sr)
        while written < target:
            k = min(1024, target - written)
            t = (written + np.arange(k)) / sr
            s = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            af = av.AudioFrame.from_ndarray(np.stack([s, s]), format="fltp", layout="stereo")
            af.sample_rate, af.pts = sr, written
            for p in a.encode(af):
                c.mux(p)
            written += k
    for s in (vs, a):
        for p in s.encode():
            c.mux(p)
    c.close()


def restore_once(inp: str, out: str, preset: str, faces: bool) -> None:
    """Runs in a child process: exactly the console script `bfvr restore IN -o OUT --model identity --crf 18
    --preset P --quiet --overwrite` (plus `--has-aligned` unless `faces`), malloc tuning included, then prints
    JSON with frames, seconds and the process's peak RSS."""
    from bfvr.cli import main as cli_main
    from bfvr.io import probe
    from bfvr.io.memory import tune_malloc_for_streaming

    tune_malloc_for_streaming()  # as the console script does before `main` (main([...]) leaves malloc alone)
    t0 = time.perf_counter()
    try:
        cli_main(["restore", inp, "-o", out, "--model", "identity", "--crf", "18", "--preset", preset,
                  "--quiet", "--overwrite"] + ([] if faces else ["--has-aligned"]))
    except SystemExit as e:
        if e.code:
            raise
    seconds = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"frames": probe(out).frame_count, "seconds": seconds,
                      "cpu_seconds": ru.ru_utime + ru.ru_stime, "peak_rss_mb": ru.ru_maxrss / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, nargs="+", default=[10, 600], help="video lengths to compare")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--preset", default="veryfast", help="x264 preset of the restore output")
    ap.add_argument("--faces", action="store_true",
                    help="run the face pipeline too (detection on every frame: ~5x slower; the synthetic "
                         "video has no face, so frames pass through); default: --has-aligned, whole frames")
    ap.add_argument("--child", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        restore_once(*args.child, args.preset, args.faces)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="bfvr_io_memory_") as tmp:
        for sec in args.seconds:
            inp, out = Path(tmp) / f"in_{sec:g}s.mp4", Path(tmp) / f"out_{sec:g}s.mp4"
            t0 = time.perf_counter()
            synth(inp, sec, args.size, args.fps)
            gen = time.perf_counter() - t0
            r = subprocess.run([sys.executable, __file__, "--child", str(inp), str(out), "--preset",
                                args.preset]
                               + (["--faces"] if args.faces else []),
                               check=True, capture_output=True, text=True)
            row = json.loads(r.stdout.strip().splitlines()[-1])
            row.update(video_seconds=sec, synth_seconds=round(gen, 1))
            rows.append(row)
            print(f"{sec:>7g} s video: {row['frames']:>6} frames, restore {row['seconds']:.1f} s "
                  f"({row['frames'] / row['seconds']:.1f} frames/s), peak RSS {row['peak_rss_mb']:.1f} MB",
                  flush=True)
    if len(rows) >= 2:
        a, b = rows[0]["peak_rss_mb"], rows[-1]["peak_rss_mb"]
        print(f"peak RSS ratio longest/shortest: {b / a:.3f} ({(b / a - 1) * 100:+.1f} %)")


if __name__ == "__main__":
    main()

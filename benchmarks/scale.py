"""Segments of one long video across workers: speed-up and the difference from one process.

Restores a real clip once in one process (`Restorer.restore_video`, `--threads` torch threads) and once cut
into `--segments` pieces restored by `--workers` local processes (`bfvr.scale.run_segmented`, each worker
with `--threads // --workers` threads, at least 1), then compares the two outputs frame by frame
(decoded: max abs difference, frames that differ, PSNR), their timestamps and their audio packets, and
prints the wall times and the speed-up.

    python benchmarks/scale.py                                    # lp_driving_d9 (19.6 s, audio), bfvr-lite
    python benchmarks/scale.py --model identity --segments 3 --workers 2
    python benchmarks/scale.py --video ../shared/data/faces/lp_driving_d6.mp4 --max-frames 300
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def decoded(path: Path):
    import numpy as np

    from bfvr.io import open_video

    with open_video(path) as r:
        fr = list(r.frames())
    return np.stack([f for f, _ in fr]), [p for _, p in fr]


def audio_packets(path: Path) -> list[tuple]:
    import av

    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        return [(p.pts, bytes(p)) for p in c.demux(c.streams.audio[0]) if p.size]


def main() -> None:
    here = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, default=here.parent / "shared/data/faces/lp_driving_d9.mp4")
    ap.add_argument("--model", default="bfvr-lite")
    ap.add_argument("--segments", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the one-process run")
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--preset", default="medium")
    args = ap.parse_args()

    import numpy as np
    import torch

    from bfvr.api import Restorer
    from bfvr.scale import BatchOptions, RestoreSettings
    from bfvr.scale.batch import run_segmented

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        one, seg = Path(tmp) / "one.mp4", Path(tmp) / "seg.mp4"
        t0 = time.perf_counter()
        r = Restorer(args.model, precision="fp32", progress=False)
        load = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = r.restore_video(args.video, one, preset=args.preset, max_frames=args.max_frames)
        t_one = time.perf_counter() - t0
        settings = RestoreSettings(
            model=args.model,
            precision="fp32",
            preset=args.preset,
            max_frames=args.max_frames,
            threads=max(1, args.threads // args.workers),
        )
        t0 = time.perf_counter()
        s = run_segmented(
            args.video,
            seg,
            settings,
            BatchOptions(segments=args.segments, workers=args.workers, progress=False),
        )
        t_seg = time.perf_counter() - t0
        a, pa = decoded(one)
        b, pb = decoded(seg)
        same = a.shape == b.shape
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16)) if same else None
        mse = float((diff.astype(np.float64) ** 2).mean()) if same else float("nan")
        out = {
            "video": args.video.name,
            "model": args.model,
            "frames": res.frames,
            "segments": s.videos[0].segments,
            "workers": args.workers,
            "one_process_s": round(t_one, 1),
            "model_load_s": round(load, 1),
            "segmented_s": round(t_seg, 1),
            "speedup": round(t_one / t_seg, 2),
            "same_frame_count": same,
            "same_pts": pa == pb,
            "same_audio": audio_packets(one) == audio_packets(seg),
            "audio_packets": len(audio_packets(seg)),
            "max_abs_diff": int(diff.max()) if same else None,
            "frames_differing": int((diff.reshape(len(diff), -1).max(1) > 0).sum()) if same else None,
            "psnr_db": (float("inf") if mse == 0 else round(10 * np.log10(255**2 / mse), 2)),
            "files_identical": one.read_bytes() == seg.read_bytes(),
        }
        print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

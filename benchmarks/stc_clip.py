"""STC through the clip engine: seconds per 24-frame 512x512 clip, frames/s, peak RSS, and (with two
precisions) the deviation of the second from the first.

Weights: a real checkpoint (--weights ckpt-bfvr.pth) or, by default, the official-layout synthetic
weights of the golden manifest (../shared/golden/stc_stage2/manifest.json via
../shared/tools/golden_weights.py): same network, same cost, outputs are not faces. Frames: the first
N frames of a real 512x512 talking-head clip (../shared/data/faces/lp_driving_d11.mp4).

Each precision runs in a fresh process so each peak RSS is its own. `cpu_s` (user+system CPU time of
the run) is printed next to the wall time because a shared machine inflates wall time: with 2 threads,
cpu_s / 2 approximates an unloaded wall time.

    python benchmarks/stc_clip.py                          # 24 frames (1 clip), bf16 then fp32
    python benchmarks/stc_clip.py --frames 100 --precisions bf16
    python benchmarks/stc_clip.py --frames 3 --clip-len 2 --overlap 0   # a quick check of the script
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BFVR_SHARED", REPO.parent / "shared"))


def fixture_weights(out: Path) -> Path:
    import torch

    sys.path.insert(0, str(SHARED / "tools"))
    from golden_weights import make_state_dict

    sd = make_state_dict(str(SHARED / "golden" / "stc_stage2" / "manifest.json"))
    torch.save({"params_ema": sd}, out)
    return out


def worker(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from bfvr.engine.chunker import ClipEngine
    from bfvr.io.reader import read_frames
    from bfvr.models.hub import load_model

    torch.set_num_threads(args.threads)
    frames = read_frames(args.video, max_frames=args.frames)
    t0 = time.perf_counter()
    model = load_model("stc", weights=args.weights, precision=args.precision, offline=True, progress=False,
                       clip_len=args.clip_len, overlap=args.overlap)
    t_load = time.perf_counter() - t0
    eng = ClipEngine(model)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    out = np.stack([f for f, _ in eng.run((f, i) for i, f in enumerate(frames))])
    t_run = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    np.save(args.save, out)
    print(json.dumps({
        "precision": args.precision, "frames_in": int(len(frames)), "frames_out": int(len(out)),
        "clips": eng.clips_run, "load_s": round(t_load, 1), "run_s": round(t_run, 1),
        "s_per_clip": round(t_run / max(eng.clips_run, 1), 1), "frames_per_s": round(len(out) / t_run, 3),
        "cpu_s": round(cpu, 1), "cpu_s_per_clip": round(cpu / max(eng.clips_run, 1), 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "threads": args.threads,
    }))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=24, help="frames to restore (24 = one clip)")
    p.add_argument("--precisions", nargs="+", default=["bf16", "fp32"], help="fp32 / bf16 / fp16, in order")
    p.add_argument("--weights", type=Path, default=None, help="checkpoint (default: golden-manifest weights)")
    p.add_argument("--video", type=Path, default=SHARED / "data" / "faces" / "lp_driving_d11.mp4")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--clip-len", type=int, default=24, help="frames per clip (24 = the official length)")
    p.add_argument("--overlap", type=int, default=8, help="frames cross-faded between clips")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--precision", default="bf16", help=argparse.SUPPRESS)
    p.add_argument("--save", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = args.weights or fixture_weights(tmp / "stc-golden-layout.pth")
        results, outs = [], []
        for prec in args.precisions:
            save = tmp / f"out_{prec}.npy"
            cmd = [sys.executable, __file__, "--worker", "--precision", prec, "--weights", str(weights),
                   "--frames", str(args.frames), "--video", str(args.video), "--threads", str(args.threads),
                   "--clip-len", str(args.clip_len), "--overlap", str(args.overlap),
                   "--save", str(save)]
            line = subprocess.run(cmd, check=True, capture_output=True,
                                  text=True).stdout.strip().splitlines()[-1]
            results.append(json.loads(line))
            outs.append(save)
            print(line, flush=True)
        if len(outs) >= 2:
            import numpy as np

            a, b = (np.load(o).astype(np.int16) for o in outs[:2])
            d = np.abs(a - b)
            print(json.dumps({"compare": f"{args.precisions[0]} vs {args.precisions[1]}",
                              "max_abs_8bit": int(d.max()), "mean_abs_8bit": round(float(d.mean()), 3),
                              "speedup_wall": round(results[1]["run_s"] / results[0]["run_s"], 2),
                              "speedup_cpu": round(results[1]["cpu_s"] / max(results[0]["cpu_s"], 1e-9), 2)}))


if __name__ == "__main__":
    main()

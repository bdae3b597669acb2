"""Segments with the face pipeline: one process vs `--segments` segments (in this process), lossless outputs.

    python benchmarks/scale_faces.py     # lp_driving_d11 (225 frames, one face throughout), bfvr-lite
    python benchmarks/scale_faces.py --segments 3 --video ../shared/data/faces/tpsmm_driving.mp4

Prints the number of segments, the frame difference (max abs, frames differing, PSNR) and both wall times.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    here = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, default=here.parent / "shared/data/faces/lp_driving_d11.mp4")
    ap.add_argument("--model", default="bfvr-lite")
    ap.add_argument("--segments", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import numpy as np
    import torch

    from bfvr.api import Restorer
    from bfvr.faces import FaceOptions
    from bfvr.io import read_frames
    from bfvr.scale import BatchOptions, RestoreSettings
    from bfvr.scale.batch import run_segmented

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        one, seg = Path(tmp) / "one.mkv", Path(tmp) / "seg.mkv"
        t0 = time.perf_counter()
        Restorer(args.model, has_aligned=False, faces=FaceOptions(), progress=False).restore_video(
            args.video, one, lossless=True)
        t_one = time.perf_counter() - t0
        t0 = time.perf_counter()
        settings = RestoreSettings(model=args.model, faces=FaceOptions(), lossless=True)
        s = run_segmented(args.video, seg, settings,
                          BatchOptions(segments=args.segments, workers=1, progress=False))
        t_seg = time.perf_counter() - t0
        a, b = read_frames(one).astype(np.int16), read_frames(seg).astype(np.int16)
        d = np.abs(a - b).reshape(len(a), -1)
        mse = float((d.astype(np.float64) ** 2).mean())
        differing = np.nonzero(d.max(1))[0]
        print(json.dumps({
            "video": args.video.name, "model": args.model, "segments": s.videos[0].segments, "frames": len(a),
            "max_abs_diff": int(d.max()), "frames_differing": len(differing),
            "differing_range": [int(differing[0]), int(differing[-1])] if len(differing) else None,
            "psnr_db": round(10 * np.log10(255**2 / mse), 2) if mse else "inf",
            "one_process_s": round(t_one, 1), "segmented_s": round(t_seg, 1)}, indent=1))


if __name__ == "__main__":
    main()

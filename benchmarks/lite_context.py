"""What BFVR-Lite gets from neighbouring frames: the same clips restored with different temporal context.

Each clip (face crop, FRAMES frames at 512², degraded with a fixed recipe, default `bfvr-eval`) goes through
the engine (`Restorer(has_aligned=True)`, temporal filter off: the network alone) under several clip
schedules -- every frame alone (clip 1), three-frame clips, the default 24/4, one clip for the whole stream --
and, with `--mc K`, the default schedule followed by a motion-compensated average of each output frame with
its K neighbours each way (OpenCV DIS flow on the output's luma, neighbours warped onto the frame, weighted by
how well their blurred luma matches: the most a post-filter with real alignment could add). PSNR gain over
the input and flicker (mean |Δframe(out) − Δframe(gt)| on 0..255) per clip and on average.

Default clips are training clips (the analysis, not a validation: `lite_quality.py` measures held-out clips).

    python benchmarks/lite_context.py
    python benchmarks/lite_context.py --clips lp_driving_d5 hellomeme_nice --frames 48 --mc 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from lite_quality import flicker  # the benchmarks' one flicker measure (this folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT.parent / "shared" / "data" / "faces"
CLIPS = ("lp_driving_d5", "hellomeme_nice", "echomimic_a")
SCHEDULES = ((1, 0), (3, 0), (24, 4), (None, 0))  # (clip_len, overlap); None = the whole stream at once


def mc_average(frames: np.ndarray, k: int, sigma: float = 4.0) -> np.ndarray:
    """Each frame averaged with its k neighbours each way, warped onto it by DIS flow; a neighbour's weight
    per pixel is exp(-(d / sigma)^2), d = difference of the blurred lumas (8-bit levels) after warping."""
    import cv2

    from bfvr.metrics.temporal import dis_flow, warp

    t, h, w, _ = frames.shape
    guide = [cv2.GaussianBlur(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 1.5)
             for f in frames]
    f32 = frames.astype(np.float32)
    out = np.empty_like(f32)
    for i in range(t):
        num, den = f32[i].copy(), np.ones((h, w), np.float32)
        for j in range(max(0, i - k), min(t, i + k + 1)):
            if j == i:
                continue
            flow = dis_flow(frames[i], frames[j])  # frame i's pixels in frame j
            warped, wg = warp(f32[j], flow), warp(guide[j], flow)
            wt = np.exp(-((guide[i] - wg) / sigma) ** 2)
            num += wt[..., None] * warped
            den += wt
        out[i] = num / den[..., None]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", nargs="*", default=list(CLIPS), help="clip names in --data")
    ap.add_argument("--data", default=str(FACES))
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--recipe", default="bfvr-eval")
    ap.add_argument("--weights", default=None, help="a BFVR-Lite weights file (default: the bundled one)")
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--mc", type=int, default=0, help="also the default schedule + a motion-compensated "
                    "average over K neighbours each way (0 = skip)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from bfvr import Restorer
    from bfvr.degrade import recipe
    from bfvr.degrade.pipeline import clip_rng
    from bfvr.metrics import psnr
    from bfvr.train.data import load_clip

    deg = recipe(args.recipe)
    rows: list[dict] = []
    for name in args.clips:
        gt = load_clip(Path(args.data) / f"{name}.mp4", args.frames, 512, face_crop=True)
        draw = deg.draw(clip_rng(0, name), gt.shape[2], gt.shape[1], mid=args.recipe != "bfvr-eval")
        lq = deg.apply(gt, draw)
        p_in, f_in = psnr(lq, gt), flicker(lq, gt)
        for clip_len, overlap in SCHEDULES:
            r = Restorer("bfvr-lite", weights=args.weights, precision=args.precision, offline=True,
                         progress=False, clip_len=clip_len or len(gt), overlap=overlap,
                         model_options={"temporal_filter": 0})
            out = r.restore_clip(lq)
            label = f"clip {clip_len}/{overlap}" if clip_len else f"one clip of {len(gt)}"
            rows.append({"clip": name, "run": label, "gain_db": psnr(out, gt) - p_in,
                         "flicker_in": f_in, "flicker": flicker(out, gt)})
            if args.mc and (clip_len, overlap) == (24, 4):
                mc = mc_average(out, args.mc)
                rows.append({"clip": name, "run": f"clip 24/4 + mc {args.mc}", "gain_db": psnr(mc, gt) - p_in,
                             "flicker_in": f_in, "flicker": flicker(mc, gt)})
        for row in rows[-(len(SCHEDULES) + (1 if args.mc else 0)):]:
            if not args.json:
                print(f"{row['clip']:28} {row['run']:22} gain {row['gain_db']:+.3f} dB  "
                      f"flicker {row['flicker_in']:.3f} -> {row['flicker']:.3f}", flush=True)
    runs = list(dict.fromkeys(r["run"] for r in rows))
    means = {run: {key: float(np.mean([r[key] for r in rows if r["run"] == run]))
                   for key in ("gain_db", "flicker")} for run in runs}
    if args.json:
        print(json.dumps({"recipe": args.recipe, "frames": args.frames, "rows": rows, "mean": means},
                         indent=1))
        return
    print(f"mean over {len(args.clips)} clips ({args.recipe}, {args.frames} frames):")
    for run, m in means.items():
        print(f"  {run:22} gain {m['gain_db']:+.3f} dB  flicker {m['flicker']:.3f}")


if __name__ == "__main__":
    main()

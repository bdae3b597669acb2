"""Face pipeline acceptance numbers (issue 4) on the shared real clips.

    python benchmarks/faces_acceptance.py [--frames N] [--detectors dlib,opencv,mediapipe] [--skip-video]

1. Identity restore through the face pipeline, whole-frame PSNR vs the input:
   - "pipeline": frames in memory (no encoder): only the face crop's resampling differs;
   - "video": through `Restorer.restore_video` (x264 CRF 0 in yuv420p) vs the decoded input, next to
     "encoder only" = the same without faces (--has-aligned path), i.e. the encoder's own loss.
2. Crop stability on a still head (musetalk_sun): mean per-frame |change| of the crop box coordinates,
   smoothed vs unsmoothed, for every installed detector.
3. Detector time per frame at 512x512 and 1920x1080 (default detect sizes).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np

from bfvr.engine.base import IdentityModel
from bfvr.faces import FaceOptions, FacePipeline, available_detectors, make_detector
from bfvr.io import read_frames

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
CLIPS = ["lp_source_s13", "lp_source_s32", "musetalk_sun", "lp_driving_d13"]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def motion(boxes: list[np.ndarray]) -> float:
    return float(np.abs(np.diff(np.asarray(boxes, np.float64), axis=0)).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=None, help="first N frames of each clip (default: all)")
    ap.add_argument("--detectors", default="dlib,opencv,mediapipe")
    ap.add_argument("--skip-video", action="store_true", help="skip the encode/decode PSNR (slow)")
    ap.add_argument("--only", default="1,2,3", help="sections to run, e.g. 2 or 1,3")
    args = ap.parse_args()
    avail = available_detectors()
    dets = [d for d in args.detectors.split(",") if not avail.get(d)]
    print(f"detectors usable: {dets}; auto = {make_detector('auto').name}\n")

    only = set(args.only.split(","))
    if "1" in only:
        section1(args)
    if "2" in only:
        section2(args, dets)
    if "3" in only:
        section3(dets)


def section1(args) -> None:
    print("## 1. identity restore through the face pipeline: whole-frame PSNR vs input (dB)\n")
    print("| clip | size | frames | frames with a face | pipeline "
          "(no encoder) | video CRF 0 | encoder only | ms/frame |")
    print("|---|---|---|---|---|---|---|---|")
    from bfvr.api import Restorer

    for name in CLIPS:
        src = FACES / f"{name}.mp4"
        frames = read_frames(src, max_frames=args.frames)
        pipe = FacePipeline.for_model(IdentityModel(), FaceOptions())
        t0 = time.perf_counter()
        out = np.stack(list(pipe.process(iter(frames))))
        ms = (time.perf_counter() - t0) / len(frames) * 1000
        p_mem = psnr(out, frames)
        p_vid = p_enc = float("nan")
        if not args.skip_video:
            with tempfile.TemporaryDirectory() as tmp:
                r = Restorer(IdentityModel(), has_aligned=False, faces=FaceOptions(), progress=False,
                             precision="fp32")
                r.restore_video(src, Path(tmp) / "f.mp4", crf=0, max_frames=args.frames)
                p_vid = psnr(read_frames(Path(tmp) / "f.mp4"), frames)
                r = Restorer(IdentityModel(), has_aligned=True, progress=False, precision="fp32")
                r.restore_video(src, Path(tmp) / "e.mp4", crf=0, max_frames=args.frames)
                p_enc = psnr(read_frames(Path(tmp) / "e.mp4"), frames)
        h, w = frames.shape[1:3]
        print(f"| {name} | {w}x{h} | {len(frames)} | {pipe.stats['frames_with_face']} | {p_mem:.2f} | "
              f"{p_vid:.2f} | {p_enc:.2f} | {ms:.0f} |", flush=True)



def section2(args, dets) -> None:
    print("\n## 2. crop stability on a still head (musetalk_sun): "
          "mean |per-frame change| of the crop box (px)\n")
    print("(proportion: the box coordinates; align: the 4 crop corners in the frame)\n")
    print("| detector | crop mode | frames | smoothed | unsmoothed (raw, gap-filled) |")
    print("|---|---|---|---|---|")
    frames = read_frames(FACES / "musetalk_sun.mp4", max_frames=args.frames or 200)
    for d in dets:
        for mode in ("proportion", "align"):
            pipe = FacePipeline.for_model(IdentityModel(), FaceOptions(detector=d, crop_mode=mode),
                                          record_boxes=True)
            for _ in pipe.process(iter(frames)):
                pass
            boxes = max(pipe.stats["boxes"].values(), key=len)
            ts = sorted(boxes)
            k = 0 if mode == "proportion" else 2
            print(f"| {d} | {mode} | {len(ts)} | {motion([boxes[t][k] for t in ts]):.3f} | "
                  f"{motion([boxes[t][k + 1] for t in ts]):.3f} |", flush=True)



def section3(dets) -> None:
    print("\n## 3. detector time per frame (ms), default detect size\n")
    print("| detector | 512x512 | 1920x1080 |")
    print("|---|---|---|")
    base = read_frames(FACES / "lp_source_s32.mp4", max_frames=1)[0]
    f512 = cv2.resize(base[:, 280:1000], (512, 512), interpolation=cv2.INTER_AREA)
    f1080 = cv2.resize(base, (1920, 1080), interpolation=cv2.INTER_CUBIC)
    for d in dets:
        det = make_detector(d)
        row = []
        for f in (f512, f1080):
            det(f)
            t0 = time.perf_counter()
            for _ in range(5):
                n = len(det(f))
            row.append(f"{(time.perf_counter() - t0) / 5 * 1000:.1f} ({n} face)")
        print(f"| {d} | {row[0]} | {row[1]} |", flush=True)


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    sys.exit(main())

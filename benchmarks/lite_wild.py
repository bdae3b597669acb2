"""The default command on whole frames: degraded videos in the wild, and clean videos (do no harm).

Two measurements, both through `Restorer(has_aligned=False)` -- what `bfvr restore video.mp4 -o out.mp4` runs
(faces found, tracked, restored on their crop and pasted back; the background restored whole by a model that
takes any frame size, or kept with `--faces-only`) -- with the frames kept in memory (a lossless output):

* **wild**: the first FRAMES frames of each clip at its own size, degraded with a fixed recipe (default
  `bfvr-eval`); PSNR / SSIM / flicker of the whole output frame against the clean frame, next to the input's;
* **clean**: the clean frames themselves restored; inside the detected face box: the share of the input's
  high-frequency energy the output keeps (variance of the Laplacian of the luma, output / input) and the PSNR
  against the input (a restoration model should leave a clean face nearly as it is).

    python benchmarks/lite_wild.py                                 # bundled bfvr-lite, held-out clips
    python benchmarks/lite_wild.py --faces-only                    # today's faces-only behaviour
    python benchmarks/lite_wild.py --clips ghost_obama_short --frames 24 --json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from lite_quality import flicker  # the benchmarks' one flicker measure (this folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT.parent / "shared" / "data" / "faces"
#: the held-out clips (configs/lite/broad.yaml) that are whole frames, not face crops
WILD = ("ghost_obama_short", "latentsync_demo2_video", "lp_source_s32")
CLEAN = ("latentsync_demo2_video",)


def luma(x: np.ndarray) -> np.ndarray:
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114


def hf_energy(frames: np.ndarray, box: tuple[int, int, int, int]) -> float:
    import cv2

    x0, y0, x1, y1 = box
    return float(np.mean([cv2.Laplacian(luma(f[y0:y1, x0:x1].astype(np.float32)), cv2.CV_32F).var()
                          for f in frames]))


def face_box(frames: np.ndarray) -> tuple[int, int, int, int] | None:
    """The largest dlib face box of the middle frame, shrunk to its inner 80 % (skin, eyes, mouth)."""
    from bfvr.faces.detect import make_detector

    faces = make_detector("dlib")(frames[len(frames) // 2])
    if not faces:
        return None
    b = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1])).box
    w, h = b[2] - b[0], b[3] - b[1]
    H, W = frames.shape[1:3]
    return (max(0, int(b[0] + 0.1 * w)), max(0, int(b[1] + 0.1 * h)), min(W, int(b[2] - 0.1 * w)),
            min(H, int(b[3] - 0.1 * h)))


def main() -> None:
    from bfvr.metrics import psnr, ssim_frames

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="bfvr-lite")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--clips", nargs="*", default=list(WILD))
    ap.add_argument("--clean", nargs="*", default=list(CLEAN), help="clean clips for the do-no-harm check")
    ap.add_argument("--data", default=str(FACES))
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--recipe", default="bfvr-eval")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--faces-only", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--temporal-filter", type=float, default=None,
                    help="the model's temporal filter strength (bfvr-lite: default 1; 0 = off)")
    a = ap.parse_args()

    from bfvr import Restorer
    from bfvr.degrade import recipe
    from bfvr.degrade.pipeline import clip_rng
    from bfvr.faces import FaceOptions
    from bfvr.io import read_frames

    r = Restorer(a.model, weights=a.weights, offline=True, progress=False, has_aligned=False,
                 faces=FaceOptions(background_model=not a.faces_only),
                 model_options={} if a.temporal_filter is None else {"temporal_filter": a.temporal_filter})
    deg = recipe(a.recipe)
    res: dict = {"model": a.model, "faces_only": a.faces_only, "recipe": a.recipe, "frames": a.frames,
                 "wild": [], "clean": []}
    for name in a.clips:
        gt = read_frames(Path(a.data) / f"{name}.mp4", max_frames=a.frames)
        lq, _ = deg(gt, clip_rng(a.seed, name))
        t0 = time.perf_counter()
        pred = r.restore_clip(lq)
        dt = time.perf_counter() - t0
        res["wild"].append({"clip": name, "size": f"{gt.shape[2]}x{gt.shape[1]}", "fps": len(gt) / dt,
                            **{f"{k}_{side}": v for side, x in (("lq", lq), ("out", pred))
                               for k, v in (("psnr", psnr(x, gt)),
                                            ("ssim", float(np.mean(ssim_frames(x, gt)))),
                                            ("flicker", flicker(x, gt)))}})
    for name in a.clean:
        clean = read_frames(Path(a.data) / f"{name}.mp4", max_frames=a.frames)
        box = face_box(clean)
        pred = r.restore_clip(clean)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        res["clean"].append({"clip": name, "box": list(box),
                             "hf_kept": hf_energy(pred, box) / hf_energy(clean, box),
                             "face_psnr": psnr(pred[:, y0:y1, x0:x1], clean[:, y0:y1, x0:x1]),
                             "frame_psnr": psnr(pred, clean)})
    if a.json:
        print(json.dumps(res, indent=1))
        return
    print(f"model {a.model}, {'faces only' if a.faces_only else 'faces + background'}, recipe {a.recipe}, "
          f"{a.frames} frames")
    print(f"{'clip':24} {'size':>10} {'PSNR in':>8} {'out':>7} {'SSIM in':>8} {'out':>7} {'flick in':>8} "
          f"{'out':>6} {'frames/s':>8}")
    for w in res["wild"]:
        print(f"{w['clip']:24} {w['size']:>10} {w['psnr_lq']:8.2f} {w['psnr_out']:7.2f} {w['ssim_lq']:8.4f} "
              f"{w['ssim_out']:7.4f} {w['flicker_lq']:8.3f} {w['flicker_out']:6.3f} {w['fps']:8.2f}")
    if res["wild"]:
        m = {k: float(np.mean([w[k] for w in res["wild"]])) for k in res["wild"][0]
             if k not in ("clip", "size")}
        print(f"{'MEAN':24} {'':>10} {m['psnr_lq']:8.2f} {m['psnr_out']:7.2f} {m['ssim_lq']:8.4f} "
              f"{m['ssim_out']:7.4f} {m['flicker_lq']:8.3f} {m['flicker_out']:6.3f} {m['fps']:8.2f}"
              f"   gain {m['psnr_out'] - m['psnr_lq']:+.2f} dB")
    for c in res["clean"]:
        print(f"clean {c['clip']}: face box {c['box']}: high-frequency energy kept "
              f"{100 * c['hf_kept']:.1f} %, "
              f"PSNR vs input {c['face_psnr']:.2f} dB in the box, {c['frame_psnr']:.2f} dB whole frame")


if __name__ == "__main__":
    main()

"""PSNR (and SSIM) of degradation recipes over a folder of clips (default: the STC recipe at its mid-range).

    python benchmarks/degrade_psnr.py [FOLDER] [--recipe stc] [--frames 48] [--random] [--size 512]
    python benchmarks/degrade_psnr.py --recipe stc,stc-paper --random --frames 24 --ssim

Each clip's first N frames are centre-cropped to a square and resized to --size (what training sees;
--size 0 keeps the native frames), degraded, and compared with the clean frames (PSNR over RGB, 0..255,
from the MSE of the whole stack; --ssim adds the mean per-frame SSIM, BasicSR definition on RGB).
Several recipes (comma-separated) are applied to the same clean frames with the same per-clip seed, so
recipes that share their draws (stc / stc-paper) differ only in what the recipe does.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from bfvr.degrade import clip_rng, recipe
from bfvr.io import list_videos, open_video, read_frames
from bfvr.metrics.fullref import ssim_frames


def square(frames: np.ndarray, size: int) -> np.ndarray:
    if size <= 0:
        return frames
    h, w = frames.shape[1:3]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return np.stack([cv2.resize(f[y:y + s, x:x + s], (size, size),
                                interpolation=cv2.INTER_AREA) for f in frames])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-10))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "folder", nargs="?", default=str(Path(__file__).resolve().parents[2] / "shared/data/faces")
    )
    ap.add_argument("--recipe", default="stc", help="a recipe, or several separated by commas")
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--random", action="store_true", help="random draws (seed 0) instead of mid-range")
    ap.add_argument("--ssim", action="store_true", help="also the mean per-frame SSIM")
    a = ap.parse_args()
    names = [n.strip() for n in a.recipe.split(",") if n.strip()]
    degs = {n: recipe(n) for n in names}
    vals: dict[str, list[float]] = {n: [] for n in names}
    ssims: dict[str, list[float]] = {n: [] for n in names}
    for v in list_videos(Path(a.folder)):
        with open_video(v) as r:
            fps = r.info.fps
        gt = square(read_frames(v, max_frames=a.frames), a.size)
        for name, deg in degs.items():
            t = time.time()
            lq, params = deg(gt, clip_rng(0, v.stem), fps=fps, mid=not a.random)
            p = psnr(lq, gt)
            vals[name].append(p)
            s = ""
            if a.ssim:
                ssims[name].append(float(np.mean(ssim_frames(lq, gt))))
                s = f"SSIM {ssims[name][-1]:.4f}  "
            ops = {o["op"]: o for o in params["ops"]}
            extra = ""
            if "blur" in ops:
                extra = (f"sigma={ops['blur']['sigma_x']:.2f} scale={ops['downscale']['scale']:.2f} "
                         f"crf={ops['codec']['crf']}")
            print(f"{v.name:24s} {name:18s} {gt.shape[2]}x{gt.shape[1]} x{len(gt)}  "
                  f"PSNR {p:6.2f} dB  {s}{extra}  ({time.time() - t:.1f}s)")
    for name in names:
        q = np.percentile(vals[name], [0, 25, 50, 75, 100])
        s = f", SSIM mean {statistics.mean(ssims[name]):.4f}" if a.ssim else ""
        print(f"{name} {'random' if a.random else 'mid'}: n={len(vals[name])} "
              f"mean {statistics.mean(vals[name]):.2f} dB, "
              f"min/q1/median/q3/max = {' / '.join(f'{x:.2f}' for x in q)}{s}")
    if len(names) == 2:
        d = np.subtract(vals[names[1]], vals[names[0]])
        s = f"; SSIM {np.mean(np.subtract(ssims[names[1]], ssims[names[0]])):+.4f}" if a.ssim else ""
        print(f"{names[1]} - {names[0]} per clip: PSNR mean {d.mean():+.2f} dB "
              f"(min {d.min():+.2f}, max {d.max():+.2f}){s}")


if __name__ == "__main__":
    main()

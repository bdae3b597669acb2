"""Quality of a restoration model on held-out face clips, against their degraded input.

For each clip: its face crop (the face-proportion square of `bfvr prepare`) at 512x512, the first
FRAMES frames, degraded with a fixed seeded recipe (default `bfvr-eval`: blur s=4, x4 down, noise 4,
x264 CRF 25; not a training draw), restored through the clip engine exactly as `bfvr restore
--has-aligned` does, kept in memory as uint8 (i.e. as a lossless output would store it). Prints, per clip
and on average: PSNR, SSIM (RGB, BasicSR definitions), flicker = mean |(pred[t+1]-pred[t]) -
(gt[t+1]-gt[t])| (0..255), and IDS (cosine of dlib identity descriptors vs GT, mean over frames with a
face in both), for the degraded input and the model. `--strip PNG` saves an LQ / restored / GT picture.

    python benchmarks/lite_quality.py                                   # bundled bfvr-lite, held-out clips
    python benchmarks/lite_quality.py --model identity                  # the degraded input only
    python benchmarks/lite_quality.py --clips lp_driving_d0 --frames 48 --json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT.parent / "shared" / "data" / "faces"
HELD_OUT = ("lp_driving_d0", "lp_driving_d18", "lp_source_s32")
#: held out of stage 5 (configs/lite/broad.yaml) among the clips added 2026-12-06: phone, film, 720p, HDTF,
#: studio, news
HELD_OUT_NEW = ("latentsync_demo2_video", "hellomeme_jue", "ghost_obama_short", "sadtalker_WDA_KatieHill_000",
                "videoretalking_face4", "mimictalk_German_20s")


def flicker(pred: np.ndarray, gt: np.ndarray) -> float:
    """mean |Δpred − Δgt| over consecutive frames, 0..255 scale."""
    dp = np.diff(pred.astype(np.float32), axis=0)
    dg = np.diff(gt.astype(np.float32), axis=0)
    return float(np.abs(dp - dg).mean())


def ids(pred: np.ndarray, gt: np.ndarray, faces, every: int = 4) -> float:
    from bfvr.metrics.faces import cosine

    vals = []
    for p, g in zip(pred[::every], gt[::every]):
        rg = faces.detect(g)
        rp = faces.detect(p)
        if rg is None or rp is None:
            continue
        vals.append(cosine(faces.embed(p, rp), faces.embed(g, rg)))
    return float(np.mean(vals)) if vals else float("nan")


def scores(pred: np.ndarray, gt: np.ndarray, faces) -> dict[str, float]:
    from bfvr.metrics import psnr, ssim_frames

    out = {"psnr": psnr(pred, gt), "ssim": float(np.mean(ssim_frames(pred, gt))),
           "flicker": flicker(pred, gt)}
    if faces is not None:
        out["ids"] = ids(pred, gt, faces)
    return out


def main() -> None:
    from bfvr.metrics import psnr, ssim_frames

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="bfvr-lite")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--clips", nargs="*", default=list(HELD_OUT + HELD_OUT_NEW), help="clip "
                    "names in --data (default: both held-out groups, each averaged on its own too)")
    ap.add_argument("--data", default=str(FACES))
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--recipe", default="bfvr-eval", help="degradation recipe; a random one (e.g. stc, keep) "
                    "is fixed to the middle of its ranges (the same draw for every clip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-ids", action="store_true", help="skip the dlib identity score")
    ap.add_argument("--strip", default=None,
                    help="save an LQ | restored | GT picture (PNG) of the first clip")
    ap.add_argument("--crf", type=float, default=18,
                    help="also score the output after an x264 yuv420p round trip at "
                         "this CRF (what `bfvr restore` writes by default); 0 = skip")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--temporal-filter", type=float, default=None,
                    help="the model's temporal filter strength (bfvr-lite: default 1; 0 = off)")
    a = ap.parse_args()

    from bfvr import Restorer
    from bfvr.degrade import recipe
    from bfvr.degrade.pipeline import clip_rng
    from bfvr.train.data import load_clip

    faces = None
    if not a.no_ids:
        from bfvr.metrics.faces import DlibFaces

        faces = DlibFaces()
    opts = {} if a.temporal_filter is None else {"temporal_filter": a.temporal_filter}
    r = Restorer(a.model, weights=a.weights, precision=a.precision, offline=True, progress=False,
                 model_options=opts)
    deg = recipe(a.recipe)
    rows = []
    strip = None
    for name in a.clips:
        gt = load_clip(Path(a.data) / f"{name}.mp4", a.frames, 512, face_crop=True)
        params = deg.draw(clip_rng(a.seed, name), gt.shape[2], gt.shape[1], mid=a.recipe != "bfvr-eval")
        lq = deg.apply(gt, params)
        t0 = time.perf_counter()
        pred = r.restore_clip(lq)
        dt = time.perf_counter() - t0
        row = {"clip": name, "frames": len(gt), "s_per_frame": dt / len(gt),
               "lq": scores(lq, gt, faces), "out": scores(pred, gt, faces)}
        if a.crf:
            from bfvr.degrade.codec import X264Roundtrip

            rt = X264Roundtrip(pred.shape[2], pred.shape[1], int(a.crf))
            enc = np.concatenate([rt.push(pred), rt.flush()])
            row[f"out_crf{a.crf:g}"] = {"psnr": psnr(enc, gt), "ssim": float(np.mean(ssim_frames(enc, gt)))}
        rows.append(row)
        if a.strip and strip is None:
            i = len(gt) // 2
            strip = np.concatenate([lq[i], pred[i], gt[i]], axis=1)
    keys = rows[0]["out"].keys()
    mean = {side: {k: float(np.nanmean([rw[side][k] for rw in rows])) for k in keys}
            for side in ("lq", "out")}
    res = {"model": a.model, "precision": r.precision, "recipe": a.recipe, "seed": a.seed, "frames": a.frames,
           "clips": rows, "mean": mean,
           "gain": {"psnr_db": mean["out"]["psnr"] - mean["lq"]["psnr"],
                    "ssim": mean["out"]["ssim"] - mean["lq"]["ssim"],
                    "flicker": mean["out"]["flicker"] - mean["lq"]["flicker"]}}
    k = f"out_crf{a.crf:g}"
    if a.crf:
        res[k] = {m: float(np.mean([rw[k][m] for rw in rows])) for m in ("psnr", "ssim")}
    if a.strip and strip is not None:
        import cv2

        small = cv2.resize(strip, (strip.shape[1] // 2, strip.shape[0] // 2), interpolation=cv2.INTER_AREA)
        cv2.imwrite(a.strip, cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    groups = {"held out since stage 1": HELD_OUT, "held out, new clips": HELD_OUT_NEW}
    res["groups"] = {}
    for gname, members in groups.items():
        sel = [rw for rw in rows if rw["clip"] in members]
        if sel:
            res["groups"][gname] = {side: {k: float(np.nanmean([rw[side][k] for rw in sel])) for k in keys}
                                    for side in ("lq", "out")}
    res["flicker_above_input"] = [rw["clip"] for rw in rows if rw["out"]["flicker"] >= rw["lq"]["flicker"]]
    if a.json:
        print(json.dumps(res, indent=1))
        return
    cols = list(keys)
    print(f"model {a.model} ({r.precision}), recipe {a.recipe} seed {a.seed}, {a.frames} frames at 512x512")
    print(f"{'clip':28} {'side':5} " + " ".join(f"{c:>8}" for c in cols) + f" {'s/frame':>8}")
    for rw in rows:
        for side in ("lq", "out"):
            extra = f" {rw['s_per_frame']:8.3f}" if side == "out" else ""
            print(f"{rw['clip']:28} {side:5} " + " ".join(f"{rw[side][c]:8.4f}" for c in cols) + extra)
    for gname, gm in res["groups"].items():
        print(f"{gname}: PSNR {gm['lq']['psnr']:.2f} -> {gm['out']['psnr']:.2f} "
              f"({gm['out']['psnr'] - gm['lq']['psnr']:+.2f} dB), SSIM {gm['lq']['ssim']:.4f} -> "
              f"{gm['out']['ssim']:.4f}, flicker {gm['lq']['flicker']:.3f} -> {gm['out']['flicker']:.3f}")
    worse = ", ".join(res["flicker_above_input"]) or "none"
    print(f"clips whose flicker is not below the input's: {worse}")
    for side in ("lq", "out"):
        print(f"{'MEAN':28} {side:5} " + " ".join(f"{mean[side][c]:8.4f}" for c in cols))
    if a.crf:
        print(f"{'MEAN':28} crf{a.crf:<2g} {res[k]['psnr']:8.4f} {res[k]['ssim']:8.4f}   (output written as "
              f"yuv420p H.264 CRF {a.crf:g}: {res[k]['psnr'] - mean['out']['psnr']:+.2f} dB vs lossless)")
    g = res["gain"]
    print(f"gain: PSNR {g['psnr_db']:+.2f} dB, SSIM {g['ssim']:+.4f}, "
          f"flicker {g['flicker']:+.3f} (lower is better)")


if __name__ == "__main__":
    main()

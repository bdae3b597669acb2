"""Evaluate restored videos against ground truth: per-video metrics, means, Markdown/CSV/JSON report.

Videos are streamed in chunks (memory bounded by the chunk, not the video). Temporal metrics keep
the last few frames of the previous chunk so every transition is counted once.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bfvr.errors import ConfigError, InputError, OutputError
from bfvr.io.reader import VIDEO_SUFFIXES, list_videos

log = logging.getLogger(__name__)

__all__ = ["FULL_REFERENCE", "NO_REFERENCE", "ALL_METRICS", "EvalOptions", "evaluate_pair",
           "evaluate_dirs", "match_videos", "write_report"]

ALL_METRICS = ("psnr", "ssim", "lpips", "msrl", "msrl_scales", "tdiff_psnr", "ids", "deg", "face_cons", "akd",
               "lmd", "tlme", "flow_score", "warp_error", "fvd")
FULL_REFERENCE = ("psnr", "ssim", "msrl", "msrl_scales", "ids", "deg", "face_cons", "akd", "tlme",
                  "flow_score", "warp_error")
NO_REFERENCE = ("face_cons", "flow_score", "warp_error")
_NEED_GT = {"psnr", "ssim", "lpips", "msrl", "msrl_scales", "tdiff_psnr", "ids", "deg", "akd", "lmd", "tlme",
            "fvd"}
_IDENTITY = {"ids", "deg", "face_cons"}
_MSRL = {"msrl", "msrl_scales"}
_FACES = _IDENTITY | {"akd", "lmd", "tlme"}
HIGHER_BETTER = {"psnr": True, "ssim": True, "lpips": False, "msrl": True, "msrl_scales": True,
                 "tdiff_psnr": True, "ids": True,
                 "deg": False, "face_cons": True, "akd": False, "lmd": False, "tlme": False,
                 "flow_score": False, "warp_error": False, "fvd": False, "fvd_per_pair": False,
                 "runtime_s": False,
                 # `bfvr evaluate-codes` (bfvr.train.code_eval): code accuracy and cross-entropy
                 "top1_s": True, "top5_s": True, "top1_t": True, "top5_t": True, "ce_s": False, "ce_t": False}


@dataclass
class EvalOptions:
    metrics: Sequence[str] = FULL_REFERENCE
    no_reference: bool = False
    crop_border: int = 0
    y_channel: bool = False
    max_frames: int | None = None
    length: str = "error"          # "error" | "min"
    resize: str = "error"          # "error" | "pred-to-gt"
    face_every: int = 1            # identity embeddings on every k-th frame (dlib's ResNet is ~0.2 s/frame)
    identity_model: str = "dlib"   # "dlib" or a path to an ArcFace .onnx / TorchScript
    lpips_net: str = "vgg"
    lpips_backbone: str | None = None
    lpips_heads: str | None = None
    i3d: str | None = None
    chunk: int = 16
    extra: dict = field(default_factory=dict)


def match_videos(pred_dir: Path,
                 gt_dir: Path | None) -> tuple[list[tuple[str, Path, Path | None]], list[str]]:
    """Pair files by stem. Returns (pairs, warnings about unmatched files)."""
    def listing(d: Path) -> dict[str, Path]:
        if not d.is_dir():
            raise InputError(f"'{d}' is not a folder; give a folder of videos.")
        frame_dirs = [p for p in d.iterdir() if p.is_dir() and any(p.glob("*.png"))]
        return {p.stem: p for p in sorted([*list_videos(d), *frame_dirs])}

    pred = listing(pred_dir)
    if not pred:
        raise InputError(f"no videos found in '{pred_dir}' (looked for {', '.join(VIDEO_SUFFIXES)} and "
                         "folders of PNG frames).")
    if gt_dir is None:
        return [(k, v, None) for k, v in pred.items()], []
    gt = listing(gt_dir)
    common = sorted(set(pred) & set(gt))
    warns = [f"no GT for {k} (skipped)" for k in sorted(set(pred) - set(gt))]
    warns += [f"no prediction for GT {k} (skipped)" for k in sorted(set(gt) - set(pred))]
    if not common:
        raise InputError(f"no video in '{pred_dir}' has a GT of the same name in '{gt_dir}'; "
                         "name the restored files like their GT (same file stem).")
    return [(k, pred[k], gt[k]) for k in common], warns


class _Needs:
    def __init__(self, opts: EvalOptions):
        bad = [m for m in opts.metrics if m not in ALL_METRICS]
        if bad:
            raise ConfigError(f"unknown metric(s) {', '.join(bad)}; choose from {', '.join(ALL_METRICS)}.")
        if opts.no_reference:
            ref = [m for m in opts.metrics if m in _NEED_GT]
            if ref:
                raise ConfigError(f"--no-reference cannot compute {', '.join(ref)} (they need GT); "
                                  f"use --metrics from {', '.join(NO_REFERENCE)}.")
        self.m = set(opts.metrics)
        if self.m & _MSRL:  # the two readings of PGTFormer's MSRL come from the same residuals: always both
            self.m |= _MSRL
        self.faces = None
        self.embedder = None
        self.lpips = None
        self.i3d = None
        if self.m & _FACES:
            from bfvr.metrics.faces import ArcFaceEmbedder, DlibFaces

            self.faces = DlibFaces(need_identity=bool(self.m & _IDENTITY))
            if self.m & _IDENTITY:
                self.embedder = (self.faces if opts.identity_model == "dlib"
                                 else ArcFaceEmbedder(opts.identity_model, self.faces))
        if "lpips" in self.m:
            from bfvr.metrics.lpips import LPIPS

            self.lpips = LPIPS(opts.lpips_net, opts.lpips_backbone, opts.lpips_heads)
        if "fvd" in self.m:
            from bfvr.metrics.fvd import I3DFeatures

            self.i3d = I3DFeatures(opts.i3d)


def metric_backends(metrics: Sequence[str], opts: EvalOptions) -> dict[str, str]:
    """Which model or algorithm produces each column (metric -> one phrase), for the report header:
    identity metrics with dlib's descriptor or an ArcFace file, landmark metrics with dlib's 68 points, flow
    metrics with OpenCV DIS, LPIPS and FVD with the files given."""
    m = set(metrics)
    if m & _MSRL:
        m |= _MSRL
    out: dict[str, str] = {}
    ident = ("dlib 128-D face descriptor (dlib_face_recognition_resnet_model_v1)"
             if opts.identity_model == "dlib" else f"ArcFace embedder {Path(opts.identity_model).name}")
    for k in ("ids", "deg", "face_cons"):
        if k in m:
            out[k] = ident
    for k in ("akd", "lmd", "tlme"):
        if k in m:
            out[k] = "dlib 68-point landmarks (shape_predictor_68_face_landmarks), pixels"
    for k in ("flow_score", "warp_error"):
        if k in m:
            out[k] = "OpenCV DIS optical flow (preset medium)"
    if "lpips" in m:
        out["lpips"] = (f"LPIPS v0.1 {opts.lpips_net} from {Path(opts.lpips_backbone).name}"
                        if opts.lpips_backbone else f"LPIPS v0.1 {opts.lpips_net}")
    if "fvd" in m and opts.i3d:
        out["fvd"] = f"I3D {Path(opts.i3d).name}"
    return out


def _resize_to(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    w, h = size
    return np.stack([cv2.resize(f, (w, h),
                                interpolation=cv2.INTER_AREA if f.shape[1] > w else cv2.INTER_CUBIC)
                     for f in frames])


def evaluate_pair(name: str, pred_path: Path, gt_path: Path | None, opts: EvalOptions,
                  needs: _Needs | None = None, progress=None) -> tuple[dict, dict]:
    """Metrics of one video (pair). Returns (row, extras) where extras holds FVD features."""
    from bfvr.io import open_video
    from bfvr.metrics import fullref, temporal
    from bfvr.metrics.faces import cosine, identity_angle, landmark_distance

    needs = needs or _Needs(opts)
    m = needs.m
    log.info("evaluating %s: %s against %s", name, pred_path, gt_path)
    pr = open_video(pred_path)
    gr = open_video(gt_path) if gt_path is not None else None
    try:
        pi = pr.info
        if gr is not None:
            gi = gr.info
            if (pi.width, pi.height) != (gi.width, gi.height) and opts.resize != "pred-to-gt":
                raise InputError(f"{name}: prediction is {pi.width}x{pi.height} but "
                                 f"GT is {gi.width}x{gi.height}; pass --resize "
                                 "pred-to-gt to resize the prediction to the GT size.")
            need = opts.max_frames or 10**12
            short = min(pi.frame_count, gi.frame_count) < need
            if pi.frame_count != gi.frame_count and opts.length != "min" and short:
                raise InputError(f"{name}: prediction has {pi.frame_count} frames but "
                                 f"GT has {gi.frame_count}; pass --length min to "
                                 "compare the common first frames (or --max-frames N).")
        if m & _MSRL and gr is not None and min(gi.width, gi.height) < max(fullref.MSRL_SCALES):
            s = max(fullref.MSRL_SCALES)
            raise InputError(f"{name}: MSRL needs frames of at least {s}x{s} pixels (its coarsest scale "
                             f"averages {s}x{s} blocks) but the GT is {gi.width}x{gi.height}; leave msrl "
                             "and msrl_scales out of --metrics.")
        if gr is not None and min(gi.width, gi.height) - 2 * opts.crop_border < 1:
            raise InputError(f"{name}: --crop-border {opts.crop_border} leaves no pixel of the "
                             f"{gi.width}x{gi.height} GT; lower it.")
        if "ssim" in m and gr is not None and min(gi.width, gi.height) - 2 * opts.crop_border < 11:
            raise InputError(f"{name}: SSIM needs frames of at least 11x11 pixels (its Gaussian window) but "
                             f"the GT is {gi.width}x{gi.height} with --crop-border {opts.crop_border}; "
                             "leave ssim out of --metrics.")
        acc: dict[str, list[float]] = {k: [] for k in ("psnr", "ssim", "lpips", "ids", "deg",
                                                       "face_cons", "akd", "lmd", "tlme", "flow_score",
                                                       "warp_error")}
        msrl_mse: list[np.ndarray] = []  # [T, scales] per chunk; pooled over the video at the end
        tdiff = {s: [] for s in fullref.TDIFF_STRIDES}
        tail_p = tail_g = None
        first_emb = None
        prev_lm: tuple[np.ndarray, np.ndarray] | None = None
        last_rect = None
        faces_missing = 0
        fvd_p: list[np.ndarray] = []
        fvd_g: list[np.ndarray] = []
        clip_p: list[np.ndarray] = []
        clip_g: list[np.ndarray] = []
        n_frames = 0
        git = gr.chunks(opts.chunk) if gr is not None else None
        for ch in pr.chunks(opts.chunk):
            p = ch.frames
            g = None
            if git is not None:
                gch = next(git, None)
                g = gch.frames if gch is not None else np.zeros((0,) + p.shape[1:], np.uint8)
            if opts.max_frames is not None:
                room = opts.max_frames - n_frames
                p = p[:room]
                g = g[:room] if g is not None else None
            if g is not None and len(g) != len(p):
                k = min(len(g), len(p))
                p, g = p[:k], g[:k]
            if len(p) == 0:
                break
            if g is not None and p.shape[1:3] != g.shape[1:3]:
                p = _resize_to(p, (g.shape[2], g.shape[1]))
            start = n_frames
            n_frames += len(p)
            # -- per-frame full reference
            if "psnr" in m:
                acc["psnr"] += list(fullref.psnr_frames(p, g, opts.crop_border, opts.y_channel))
            if "ssim" in m:
                acc["ssim"] += list(fullref.ssim_frames(p, g, opts.crop_border, opts.y_channel))
            if "lpips" in m:
                acc["lpips"] += list(needs.lpips.frames(p, g))
            # -- temporal (with the previous chunk's tail)
            k_tail = 0 if tail_p is None else len(tail_p)
            pp = p if tail_p is None else np.concatenate([tail_p, p])
            gg = None if g is None else (g if tail_g is None else np.concatenate([tail_g, g]))
            if m & _MSRL:
                msrl_mse.append(fullref.msrl_mse(pp, gg, first_end=max(1, k_tail), y_channel=opts.y_channel))
            if "tdiff_psnr" in m:
                for s in fullref.TDIFF_STRIDES:
                    tdiff[s] += list(fullref.tdiff_mse(pp, gg, s, first_end=k_tail, y_channel=opts.y_channel))
            if "flow_score" in m:
                acc["flow_score"] += list(temporal.flow_magnitudes(pp, first_end=max(1, k_tail)))
            if "warp_error" in m:
                acc["warp_error"] += list(temporal.warp_errors(pp, gg, first_end=max(1, k_tail)))
            # -- faces
            if needs.faces is not None:
                for i in range(len(p)):
                    ref = g[i] if g is not None else p[i]
                    rect = needs.faces.detect(ref)
                    if rect is None:
                        rect = last_rect
                    if rect is None:
                        faces_missing += 1
                        prev_lm = None
                        continue
                    last_rect = rect
                    if m & {"akd", "lmd", "tlme"}:
                        lp, lg = needs.faces.landmarks(p[i], rect), needs.faces.landmarks(g[i], rect)
                        acc["akd"].append(landmark_distance(lp, lg))
                        acc["lmd"].append(acc["akd"][-1])  # the same measure under PGTFormer's name
                        if prev_lm is not None:
                            d = (lp - prev_lm[0]) - (lg - prev_lm[1])
                            acc["tlme"].append(float(np.linalg.norm(d, axis=-1).mean()))
                        prev_lm = (lp, lg)
                    if needs.embedder is not None and (start + i) % max(1, opts.face_every) == 0:
                        prect = needs.faces.detect(p[i]) if g is not None else rect
                        ep = needs.embedder.embed(p[i], prect or rect)
                        if first_emb is None:
                            first_emb = ep
                        elif "face_cons" in m:
                            acc["face_cons"].append(cosine(first_emb, ep))
                        if m & {"ids", "deg"}:
                            eg = needs.embedder.embed(g[i], rect)
                            acc["ids"].append(cosine(ep, eg))
                            acc["deg"].append(identity_angle(ep, eg))
            # -- FVD clips
            if needs.i3d is not None:
                for i in range(len(p)):
                    clip_p.append(p[i])
                    clip_g.append(g[i])
                    if len(clip_p) == needs.i3d.clip_len:
                        fvd_p.append(needs.i3d.clip_features(np.stack(clip_p)))
                        fvd_g.append(needs.i3d.clip_features(np.stack(clip_g)))
                        clip_p, clip_g = [], []
            kt = max(fullref.TDIFF_STRIDES)
            tail_p = pp[-kt:]
            tail_g = None if gg is None else gg[-kt:]
            if progress is not None:
                progress.update(len(p))
            if opts.max_frames is not None and n_frames >= opts.max_frames:
                break
        if n_frames == 0:
            raise InputError(f"{name}: no frames to compare.")
        if needs.i3d is not None and clip_p and not fvd_p:  # shorter than one clip: use what there is
            fvd_p.append(needs.i3d.clip_features(np.stack(clip_p)))
            fvd_g.append(needs.i3d.clip_features(np.stack(clip_g)))
    finally:
        pr.close()
        if gr is not None:
            gr.close()

    row: dict[str, object] = {"video": name, "frames": n_frames}
    for k, v in acc.items():
        if k in m:
            row[k] = float(np.mean(v)) if v else float("nan")
    if m & _MSRL:  # per scale: squared residuals pooled over all transitions; then both readings
        rows_mse = np.concatenate(msrl_mse) if msrl_mse else np.zeros((0, 1))
        row["msrl"] = fullref.msrl_from_mse(rows_mse)
        row["msrl_scales"] = fullref.msrl_scales_from_mse(rows_mse)
    if "tdiff_psnr" in m:
        row["tdiff_psnr"] = fullref.tdiff_psnr_from_mse(tdiff)
    if needs.faces is not None:
        row["faces_missing"] = faces_missing
    extras = {}
    if needs.i3d is not None:
        from bfvr.metrics.fvd import fvd_per_pair

        extras = {"fvd_pred": np.stack(fvd_p), "fvd_gt": np.stack(fvd_g)}
        row["fvd_per_pair"] = fvd_per_pair([(extras["fvd_pred"], extras["fvd_gt"])])
    return row, extras


def evaluate_dirs(pred_dir: str | Path, gt_dir: str | Path | None, opts: EvalOptions,
                  runtime: dict | None = None, quiet: bool = False) -> dict:
    """Evaluate every matched video. Returns {"rows": [...], "mean": {...}, "warnings": [...], "options":
    {...}}."""
    from tqdm import tqdm

    from bfvr.io import probe

    pairs, warns = match_videos(Path(pred_dir), None if gt_dir is None or opts.no_reference else Path(gt_dir))
    needs = _Needs(opts)
    total = 0
    for _, p, _g in pairs:
        n = probe(p).frame_count
        total += min(n, opts.max_frames) if opts.max_frames else n
    rows, feats = [], []
    t0 = time.perf_counter()
    with tqdm(total=total, unit="frame", desc="evaluate", disable=quiet) as bar:
        for name, p, g in pairs:
            bar.set_postfix_str(name)
            row, extras = evaluate_pair(name, p, g, opts, needs, progress=bar)
            if runtime is not None and name in runtime:
                row["runtime_s"] = float(runtime[name])
            rows.append(row)
            if extras:
                feats.append(extras)
    mean: dict[str, object] = {"video": "mean", "frames": int(sum(r["frames"] for r in rows))}
    keys = [k for k in rows[0] if k not in ("video", "frames")]
    left_out = []
    for k in keys:
        if k == "faces_missing":
            mean[k] = int(sum(r[k] for r in rows if k in r))
            continue
        vals = [(r["video"], float(r[k])) for r in rows if k in r]
        have = [v for _, v in vals if not math.isnan(v)]
        mean[k] = float(np.mean(have)) if have else float("nan")
        missing = [name for name, v in vals if math.isnan(v)]
        if missing:
            left_out.append(f"{k} ({', '.join(missing)})")
    if left_out:  # e.g. deg/lmd when no face was found, msrl of a 1-frame video
        warns = [*warns, "the mean row leaves out videos without a value: " + "; ".join(left_out)]
    if feats:
        from bfvr.metrics.fvd import fvd_from_features

        mean["fvd"] = fvd_from_features(np.concatenate([f["fvd_pred"] for f in feats]),
                                        np.concatenate([f["fvd_gt"] for f in feats]))
    return {"rows": rows, "mean": mean, "warnings": warns, "seconds": time.perf_counter() - t0,
            "backends": metric_backends(opts.metrics, opts),
            "options": {"metrics": list(opts.metrics), "no_reference": opts.no_reference,
                        "crop_border": opts.crop_border, "y_channel": opts.y_channel,
                        "max_frames": opts.max_frames,
                        "length": opts.length, "resize": opts.resize, "face_every": opts.face_every,
                        "identity_model": opts.identity_model, "pred": str(pred_dir),
                        "gt": None if gt_dir is None else str(gt_dir)}}


def _fmt(v: object) -> str:
    if isinstance(v, float):
        if math.isinf(v):
            return "inf"
        if math.isnan(v):
            return "n/a"
        return f"{v:.4f}"
    return str(v)


def _json_safe(v: object) -> object:
    if isinstance(v, float) and (math.isinf(v) or math.isnan(v)):
        return "inf" if math.isinf(v) and v > 0 else ("-inf" if math.isinf(v) else None)
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_safe(x) for x in v]
    return v


REPORT_NAMES = ("metrics.md", "metrics.csv", "metrics.json")


def check_report_dir(out_dir: str | Path, overwrite: bool) -> None:
    """Before any work: an existing report in ``out_dir`` needs `overwrite`, and is replaced only when its
    files are plain files (never a link: see `bfvr.io.paths.check_replaceable`)."""
    from bfvr.io.paths import check_replaceable

    paths = [Path(out_dir) / n for n in REPORT_NAMES]
    if any(p.exists() or p.is_symlink() for p in paths) and not overwrite:
        raise OutputError(f"'{out_dir}' already holds a report; pass --overwrite or choose another --out.")
    for p in paths:
        check_replaceable(p, "file")


def write_report(result: dict, out_dir: str | Path) -> list[Path]:
    """Write metrics.md, metrics.csv and metrics.json into ``out_dir`` (each to a new temporary file beside
    it, all renamed into place once all are written)."""
    from bfvr.io.paths import atomic_output, check_replaceable, make_folder

    out = make_folder(out_dir, "report")
    rows = result["rows"] + [result["mean"]]
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    md = []
    groups: dict[str, list[str]] = {}
    backends = result.get("backends") or {}
    for k in cols:  # in the table's column order
        if k in backends:
            groups.setdefault(backends[k], []).append(k)
    if groups:  # which model/algorithm produced which column
        md += ["Back-ends: " + "; ".join(f"{', '.join(ks)}: {v}" for v, ks in groups.items()) + ".", ""]
    md += ["| " + " | ".join(c + ("" if c not in HIGHER_BETTER else (" ↑" if HIGHER_BETTER[c] else " ↓"))
                            for c in cols) + " |",
          "|" + "---|" * len(cols)]
    for r in rows:
        cells = [_fmt(r.get(c, "")) for c in cols]
        if r is result["mean"]:
            cells = [f"**{c}**" if c else c for c in cells]
        md.append("| " + " | ".join(cells) + " |")
    notes = [""]
    if "fvd" in result["mean"]:
        notes.append("FVD (mean row) is the Fréchet distance between the I3D "
                     "feature sets of all predictions and all GTs; fvd_per_pair "
                     "is the papers' per-video-pair variant (no covariance term).")
    notes += [f"- warning: {w}" for w in result["warnings"]]
    paths = [out / n for n in REPORT_NAMES]
    for p in paths:
        check_replaceable(p, "file")
    try:
        with contextlib.ExitStack() as stack:  # all three renamed into place only when all are written
            tmps = [stack.enter_context(atomic_output(p)) for p in paths]
            _write_reports(tmps, md + notes, cols, rows, result)
    except OSError as e:  # a folder the system does not let us write into
        raise OutputError(f"cannot write the report into '{out}' ({e.strerror or type(e).__name__}); "
                          "choose a writable location.") from None
    return paths


def _write_reports(tmps: list[Path], md: list[str], cols: list[str], rows: list[dict], result: dict) -> None:
    """The markdown, CSV and JSON reports of `write_report` into the files `tmps`."""
    tmps[0].write_text("\n".join(md) + "\n", encoding="utf-8")
    with tmps[1].open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({c: _fmt(r[c]) if c in r else "" for c in cols})
    tmps[2].write_text(json.dumps(_json_safe(result), indent=2) + "\n", encoding="utf-8")

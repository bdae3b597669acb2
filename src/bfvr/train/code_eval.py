"""Stage-II diagnostics for STC: how often the lookup transformers predict the code the frozen Stage-I
encoder assigns to the GT clip, per codebook (spatial and temporal), as top-1 and top-5 accuracy.

`topk_accuracy` is used by the Stage-II training task (logged as `acc_s`/`acc_t` = top-1 and
`acc5_s`/`acc5_t` = top-5) and by `evaluate_codes`, the held-out report behind `bfvr evaluate-codes`:
for each clip, the first `max_frames` frames are framed at the run's data.size as in training and cut into
consecutive `clip_len` windows; like a training item, each window is degraded with its own seeded draw of
a `bfvr.degrade` recipe (window w of a clip: child w of `clip_rng(seed, clip stem)`) at data.size and
then centre-cut to data.crop; the frozen Stage-I network gives the target codes of the GT window and the
Stage-II network the logits of the LQ window. See docs/training.md ("Stage-II code accuracy").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bfvr.errors import ConfigError, InputError, ModelError, WeightsNotFoundError
from bfvr.train.accuracy import topk_accuracy

log = logging.getLogger(__name__)

#: the accuracies reported by `evaluate_codes`, in table order
CODE_METRICS = ("top1_s", "top5_s", "top1_t", "top5_t", "ce_s", "ce_t")

__all__ = ["CODE_METRICS", "evaluate_codes", "load_stage2_run", "stage2_run_config", "topk_accuracy"]


def _training_stems(cfg: Any, warns: list[str]) -> set[str]:
    """Stems of the videos the run trained on (data.paths minus data.exclude); when data.paths cannot be
    read, a warning in `warns` and an empty set."""
    from bfvr.train.data import expand_paths

    try:
        files = expand_paths(cfg.data.paths)
    except (InputError, OSError) as e:
        why = " ".join(str(e).split())
        warns.append(f"could not read the run's data.paths ({why}); cannot check whether the clips are "
                     "held out.")
        return set()
    return {f.stem for f in files} - set(cfg.data.exclude)


def load_stage2_run(source: str | Path, *, stage1: str | Path | None = None, raw: bool = False,
                    device: torch.device | str = "cpu") -> tuple[Any, Any, dict[str, Any]]:
    """The Stage-II task of a `bfvr train` run (its frozen Stage-I teacher and the Stage-II network with
    the checkpoint's EMA weights, or the raw ones with `raw`), its config and the checkpoint's meta.json.

    `source`: a run folder or one of its checkpoint folders. `stage1` replaces the run's
    model.stage1_weights (e.g. when the Stage-I run has moved)."""
    cfg, meta = stage2_run_config(source, stage1=stage1)
    return _build_stage2(cfg, meta, raw=raw, device=device), cfg, meta


def stage2_run_config(source: str | Path, *, stage1: str | Path | None = None) -> tuple[Any, dict[str, Any]]:
    """The config of the Stage-II run behind `source` (checked: an STC Stage-II run whose Stage-I weights
    exist) and its checkpoint's meta.json (+ "checkpoint", "step"), without building a network."""
    from bfvr.train.checkpoint import find_checkpoint
    from bfvr.train.config import load_config

    ck = find_checkpoint(source)
    run = ck.parent.parent
    try:
        meta = json.loads((ck / "meta.json").read_text())
    except (OSError, ValueError):
        meta = {}
    task = meta.get("task") or (f"stc-{meta['stage']}" if meta.get("stage") else None)
    cfg_file = run / "config.yaml"
    if not cfg_file.is_file():
        raise ConfigError(f"{run} has no config.yaml; give the folder of a `bfvr train` run "
                          "(or one of its checkpoint folders).")
    cfg = load_config(cfg_file)
    task = task or cfg.task_name
    if task != "stc-stage2":
        raise ModelError(f"{ck} is a {task} checkpoint, not an STC Stage-II one; code accuracy needs a run "
                         "trained with an STC Stage-II config (task stc-stage2, e.g. "
                         "configs/stc/tiny_stage2.yaml).")
    if stage1 is not None:
        cfg.model.stage1_weights = str(stage1)
    if not Path(cfg.model.stage1_weights).expanduser().exists():
        raise WeightsNotFoundError(f"the run's Stage-I weights {cfg.model.stage1_weights} are not there "
                                   "(model.stage1_weights, relative to the folder training ran in); pass "
                                   "--stage1 PATH with the Stage-I run folder or weights file.")
    # the Stage-I init_weights of a later run are not needed: the checkpoint replaces all weights
    cfg.model.init_weights = None
    meta.setdefault("step", int(ck.name.split("_")[-1]) if ck.name.startswith("step_") else None)
    meta["checkpoint"] = str(ck)
    return cfg, meta


def _build_stage2(cfg: Any, meta: dict[str, Any], *, raw: bool, device: torch.device | str) -> Any:
    """The Stage2Task of `cfg` with the EMA (or `raw`) weights of the checkpoint in meta["checkpoint"], in
    eval mode; records the weights used in meta["weights"]."""
    from bfvr.train.checkpoint import load_weights
    from bfvr.train.stc import Stage2Task

    t = Stage2Task(cfg, torch.device(device))
    name = "model" if raw else "ema"
    sd = load_weights(meta["checkpoint"], prefer=(name,))
    try:
        t.model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise ModelError(f"{meta['checkpoint']}/{name}.safetensors does not fit the run's model settings "
                         f"({str(e).splitlines()[0][:200]}); give an intact run folder.") from None
    t.model.eval()
    meta["weights"] = name
    return t


def _clip_frames(path: Path, cfg: Any, max_frames: int) -> tuple[np.ndarray, Any]:
    """The first `max_frames` frames of `path` framed as the run trained on them: uint8 [N, S, S, 3] at
    S = data.size (stretched, face-cropped with data.face_crop, or, for data.crop_mode center/random with
    bfvr.data.ClipDataset, the centre square), and the video's frame rate."""
    from bfvr.data.dataset import center_square, cut_and_resize
    from bfvr.io import probe
    from bfvr.train.data import load_clip

    if cfg.data.backend != "builtin" and cfg.data.crop_mode in ("center", "random"):
        from bfvr.io.reader import read_frames

        arr = read_frames(path, max_frames=max_frames)
        if not len(arr):
            raise InputError(f"{path} has no decodable video frames.")
        frames = cut_and_resize(arr, center_square(*arr.shape[1:3]), cfg.data.size)
    else:
        frames = load_clip(path, max_frames, cfg.data.size, cfg.data.face_crop)
    return frames, probe(path).fps


def _center_cut(frames: np.ndarray, crop: int | None) -> np.ndarray:
    """The central crop x crop square of uint8 [N, H, W, 3] frames (all of them when crop is None or not
    smaller): the held-out counterpart of data.crop's random square in training."""
    if crop is None or crop >= min(frames.shape[1:3]):
        return frames
    y0, x0 = (frames.shape[1] - crop) // 2, (frames.shape[2] - crop) // 2
    return np.ascontiguousarray(frames[:, y0:y0 + crop, x0:x0 + crop])


def _to_tensor(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float32 [1, 3, T, H, W] in [0, 1]."""
    return torch.from_numpy(frames).to(device).permute(3, 0, 1, 2).unsqueeze(0).float().div_(255.0)


@torch.no_grad()
def evaluate_codes(source: str | Path, videos: Sequence[str | Path], *, recipe: str | None = None,
                   seed: int = 0, max_frames: int = 24, stage1: str | Path | None = None, raw: bool = False,
                   device: str = "cpu", threads: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Top-1/top-5 code accuracy (and cross-entropy) of a Stage-II run on held-out videos.

    Returns {"rows": [{"video", "frames", "tokens", top1_s, top5_s, top1_t, top5_t, ce_s, ce_t}],
    "mean": (the same, mean over videos), "warnings": [...], "options": {...}} — the layout of
    `bfvr.metrics.evaluate.write_report`. `recipe` defaults to the run's data.recipe; window w of a video
    is degraded with child w of `clip_rng(seed, stem)`, so a report is reproducible."""
    from bfvr.degrade import clip_rng
    from bfvr.degrade import recipe as make_recipe
    from bfvr.engine.device import resolve_device
    from bfvr.train.data import expand_paths

    if max_frames < 1:
        raise ConfigError(f"--max-frames must be at least 1, got {max_frames}.")
    from bfvr.engine.device import check_threads

    check_threads(threads)
    missing = [str(v) for v in videos if not Path(v).expanduser().exists()]
    if missing or not videos:
        what = f"video not found: {missing[0]}" if missing else "no video given"
        raise InputError(f"{what}; give video files, folders of videos or a `bfvr prepare` manifest.")
    try:
        files = expand_paths([str(v) for v in videos])
    except InputError:
        raise InputError(f"no videos found in {', '.join(str(v) for v in videos)}; give video files, folders "
                         "of videos or a `bfvr prepare` manifest.") from None
    if recipe not in (None, "none"):
        make_recipe(recipe)  # an unknown name is a ConfigError before any model is built
    dev = resolve_device(device)
    cfg, meta = stage2_run_config(source, stage1=stage1)
    clip_len = cfg.data.clip_len
    if max_frames < clip_len:
        raise ConfigError(f"--max-frames {max_frames} is shorter than the run's clip length "
                          f"{clip_len}; give at least {clip_len}.")
    recipe = recipe or cfg.data.recipe
    deg = None if recipe == "none" else make_recipe(recipe)
    warns: list[str] = []
    seen = _training_stems(cfg, warns)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        task = _build_stage2(cfg, meta, raw=raw, device=dev)
        rows: list[dict[str, Any]] = []
        it = files
        if progress:
            from tqdm import tqdm

            it = tqdm(files, desc="code accuracy", unit="video", leave=False)
        for f in it:
            if f.stem in seen:
                warns.append(f"{f.name} is in the run's training data (data.paths, not in data.exclude): "
                             "its scores are not held-out ones.")
            try:
                gt_all, fps = _clip_frames(f, cfg, max_frames)
            except InputError as e:
                warns.append(f"{f.name} skipped: {' '.join(str(e).split())}")
                continue
            n_win = len(gt_all) // clip_len
            if n_win == 0:
                warns.append(f"{f.name} skipped: {len(gt_all)} frames < clip length {clip_len}.")
                continue
            # like a training item: each window degraded with its own draw at data.size, then cut
            rngs = clip_rng(seed, f.stem).spawn(n_win)
            hits = dict.fromkeys(CODE_METRICS, 0.0)
            tokens = 0
            for w in range(n_win):
                gt = gt_all[w * clip_len:(w + 1) * clip_len]
                lq = gt if deg is None else deg(gt, rngs[w], fps=fps)[0]
                gt, lq = _center_cut(gt, cfg.data.crop), _center_cut(lq, cfg.data.crop)
                _, idx_s, idx_t = task.targets(_to_tensor(gt, dev))
                logits_s, logits_t, _ = task.model(_to_tensor(lq, dev), w=0, code_only=True)
                n_tok = idx_s.numel()
                for key, logits, idx in (("s", logits_s, idx_s), ("t", logits_t, idx_t)):
                    acc = topk_accuracy(logits.float(), idx, (1, 5))
                    hits[f"top1_{key}"] += acc[1] * n_tok
                    hits[f"top5_{key}"] += acc[5] * n_tok
                    ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), idx.reshape(-1),
                                         reduction="sum")
                    hits[f"ce_{key}"] += float(ce)
                tokens += n_tok
            rows.append({"video": f.name, "frames": n_win * clip_len, "tokens": tokens,
                         **{k: v / tokens for k, v in hits.items()}})
    finally:
        torch.set_num_threads(old_threads)
    if not rows:
        raise InputError(f"no video could be scored ({'; '.join(warns) or 'none given'}).")
    mean: dict[str, Any] = {"video": "mean", "frames": sum(r["frames"] for r in rows),
                            "tokens": sum(r["tokens"] for r in rows)}
    mean.update({k: float(np.mean([r[k] for r in rows])) for k in CODE_METRICS})
    options = {"checkpoint": meta["checkpoint"], "step": meta.get("step"), "weights": meta["weights"],
               "recipe": recipe, "seed": seed, "max_frames": max_frames, "clip_len": clip_len,
               "size": min(cfg.data.crop or cfg.data.size, cfg.data.size),
               "stage1_weights": cfg.model.stage1_weights, "codebook_size": cfg.model.codebook_size}
    return {"rows": rows, "mean": mean, "warnings": warns, "options": options}

"""File and folder level: read a video with bfvr.io, degrade it with a recipe, write the LQ video plus a
JSON sidecar with the drawn parameters (and, for inpainting, the mask as a PNG)."""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bfvr.degrade.pipeline import Degradation, clip_rng, recipe
from bfvr.errors import InputError, OutputError
from bfvr.io.paths import check_name_fits, check_replaceable, mark_png, write_atomic
from bfvr.io.reader import list_videos
from bfvr.io.writer import CONTAINERS

log = logging.getLogger(__name__)


def sidecar_path(out: Path) -> Path:
    return out.with_suffix(".json")


def mask_path(out: Path) -> Path:
    return out.with_name(out.stem + ".mask.png")


def outputs(dst: Path, deg: Degradation, *, pregenerated: bool = False) -> list[tuple[Path, str]]:
    """Every file `degrade_video` writes for `dst`, with its kind for `bfvr.io.paths.check_replaceable`: the
    video, its JSON sidecar and, for recipes that paint a mask (not with a pre-generated video), the mask."""
    out = [(dst, "video"), (sidecar_path(dst), "json")]
    if not pregenerated and any(op.name == "inpaint_mask" for op in deg.ops):
        out.append((mask_path(dst), "png"))
    return out


def check_writable(path: Path, kind: str, overwrite: bool) -> None:
    """The video's rule for every file degrade writes: an existing one is refused without `overwrite`, and
    with it replaced only when bfvr wrote it (never through a link)."""
    check_name_fits(path, {"json": "sidecar", "png": "mask"}.get(kind, "output"))
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise OutputError(f"'{path}' already exists; pass --overwrite "
                              "to replace it or choose another output.")
        check_replaceable(path, kind)


def find_pregenerated(folder: Path, name: str) -> Path:
    """The pre-generated LQ video for clip ``name`` (same stem, any video suffix) in ``folder``."""
    for p in list_videos(folder):
        if p.stem == name:
            return p
    raise InputError(f"no pre-generated flickering video named '{name}.*' in '{folder}'; "
                     "give a folder with one video per input clip (same file names).")


def degrade_video(src: str | os.PathLike[str], dst: str | os.PathLike[str], deg: Degradation | str, seed: int,
                  *, mid: bool = False, name: str | None = None, out_crf: float = 0, chunk: int = 16,
                  overwrite: bool = False, keep_audio: bool = True,
                  flicker_dir: str | os.PathLike[str] | None = None,
                  progress: Callable[[int], Any] | None = None) -> dict[str, Any]:
    """Degrade one video file (streaming, bounded memory) and write ``dst`` + ``dst.json``.

    The clip's generator is seeded from (``seed``, ``name`` or the file stem), so a clip gets the same
    degradation whatever folder it is processed in. The LQ video is written with x264 at ``out_crf``
    (0 = lossless, so the file holds the degraded frames up to yuv420p rounding; the recipe's own
    compression step has already happened in memory). Returns the sidecar dict.
    """
    from bfvr.io import VideoWriter, open_video

    src, dst = Path(src), Path(dst)
    deg = recipe(deg) if isinstance(deg, str) else deg
    name = name or src.stem
    if dst.suffix.lower() not in CONTAINERS:
        raise OutputError(f"cannot write '{dst.name}': give a .mp4/.mov/.mkv output file or a folder.")
    side, mpath = sidecar_path(dst), mask_path(dst)
    for p, kind in outputs(dst, deg, pregenerated=flicker_dir is not None):  # before any work
        check_writable(p, kind, overwrite)
    log.info("degrading %s into %s (seed %d, clip name %s)", src, dst, seed, name)

    with open_video(src) as reader:
        info = reader.info
        if flicker_dir is not None:
            params = {"version": 1, "recipe": deg.name, "source": "pre-generated",
                      "path": str(find_pregenerated(Path(flicker_dir), name)),
                      "size": [info.width, info.height], "fps": str(info.fps), "ops": []}
            lq_reader = open_video(params["path"])
            if lq_reader.info.size != info.size:
                raise InputError(f"pre-generated '{params['path']}' is "
                                 f"{lq_reader.info.width}x{lq_reader.info.height} but '{src}' is "
                                 f"{info.width}x{info.height}; they must match frame for frame.")
        else:
            params = deg.draw(clip_rng(seed, name), info.width, info.height, fps=info.fps, mid=mid)
            lq_reader = None
        params = {"tool": "bfvr", **params}  # how --overwrite knows the sidecar is bfvr's
        params.update({"seed": int(seed), "clip": name, "input": str(src), "output": str(dst),
                       "out_crf": out_crf})
        pts_queue: deque[int | None] = deque()

        def source() -> Iterator[np.ndarray]:
            for c in reader.chunks(chunk):
                pts_queue.extend(c.pts if c.pts is not None else [None] * len(c.frames))
                yield c.frames

        if lq_reader is None:
            out_chunks = deg.stream(source(), params)
        else:
            out_chunks = _zip_pregenerated(source(), lq_reader, chunk)
        from bfvr.degrade.codec import deterministic_heap

        n = 0
        with VideoWriter(dst, fps=info.fps, time_base=info.time_base, vfr=info.vfr, crf=out_crf,
                         overwrite=overwrite,
                         audio_from=src if keep_audio and info.has_audio else None,
                         inputs=[src, params.get("path")], color=info.color) as w:
            for frames in out_chunks:
                with deterministic_heap():  # the writer's x264 too (see bfvr.degrade.codec)
                    w.write(frames, [pts_queue.popleft() for _ in range(len(frames))])
                n += len(frames)
                if progress:
                    progress(len(frames))
        if lq_reader is not None:
            lq_reader.close()
    if n == 0:
        raise InputError(f"'{src}' has no decodable frames; give a video with at least one frame.")
    if lq_reader is None:
        deg.summarize(params, n)
    else:
        params["frames"] = n
    if "inpaint_mask" in [o["op"] for o in params["ops"]]:
        import cv2

        from bfvr.degrade.ops import BrushMask

        p = next(o for o in params["ops"] if o["op"] == "inpaint_mask")
        ok, png = cv2.imencode(".png", BrushMask.mask(p))
        if not ok:
            raise OutputError(f"cannot encode the mask '{mpath}' as PNG.")
        check_writable(mpath, "png", overwrite)  # again: the folder may have changed while writing
        write_atomic(mpath, mark_png(png.tobytes()))
        params["mask"] = str(mpath)
    check_writable(side, "json", overwrite)
    write_atomic(side, json.dumps(params, indent=1) + "\n")
    return params


def _zip_pregenerated(gt_chunks: Iterator[np.ndarray], lq_reader: Any, chunk: int) -> Iterator[np.ndarray]:
    """Frames of the pre-generated LQ video, one for each GT frame (the LQ must be at least as long)."""
    lq_frames = (f for f, _ in lq_reader.frames())
    for gt in gt_chunks:
        out = []
        for _ in range(len(gt)):
            f = next(lq_frames, None)
            if f is None:
                raise InputError(f"the pre-generated video '{lq_reader.path}' has fewer "
                                 "frames than its input; regenerate it with all frames.")
            out.append(f)
        yield np.stack(out)

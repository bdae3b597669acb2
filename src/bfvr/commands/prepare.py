"""`bfvr prepare`: the STC paper's data preparation (face-proportion crop, orientation, text, motion)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bfvr.errors import ConfigError, InputError


def register(app: typer.Typer) -> None:
    @app.command("prepare", help="Prepare training clips: crop each video to its faces (union of Haar boxes "
                 "x1.3, square, resized), drop clips whose 68-point eye/nose ratio leaves [0.4, 2.5] or "
                 "whose nose leaves the eyes, drop clips with text on the first cropped frame (OCR score > "
                 "0.95) when an OCR backend is installed, score motion; writes the crops and "
                 "OUT/manifest.jsonl.")
    def _cmd(
        inp: Annotated[Path, typer.Argument(help="A video file or a folder of videos.", show_default=False)],
        out: Annotated[Path, typer.Argument(help="Output folder (crops + manifest.jsonl).",
                                            show_default=False)],
        size: Annotated[int, typer.Option("--size", help="Side of the square output frames.")] = 512,
        expand: Annotated[float,
                          typer.Option("--expand", help="Scale of each face box before the union.")] = 1.3,
        stretch: Annotated[bool, typer.Option("--stretch", help="Stretch the union box to a square like the "
                                              "official code (default: square crop, aspect kept).")] = False,
        detect_every: Annotated[int,
                                typer.Option("--detect-every", help="Detect faces on every k-th frame.")] = 5,
        check_every: Annotated[int, typer.Option("--check-every", help="Check "
                                                 "orientation on every k-th frame.")] = 5,
        ratio_min: Annotated[float,
                             typer.Option("--ratio-min", help="Lowest allowed eye/nose side ratio.")] = 0.4,
        ratio_max: Annotated[float,
                             typer.Option("--ratio-max", help="Highest allowed eye/nose side ratio.")] = 2.5,
        no_orientation: Annotated[bool, typer.Option("--no-orientation", help="Skip the orientation filter "
                                                     "(no dlib needed).")] = False,
        ocr: Annotated[str, typer.Option("--ocr", help="Text filter backend: auto (the first installed of "
                                         "rapidocr, paddleocr, easyocr), none, rapidocr, paddleocr, easyocr.")
                       ] = "auto",
        min_motion: Annotated[float, typer.Option("--min-motion", help="Drop clips whose motion score (mean "
                                                  "fraction of changed pixels) is below this.")] = 0.0,
        motion_threshold: Annotated[float, typer.Option("--motion-threshold", help="Gray-level "
                                                        "change (0-255) that counts as motion.")] = 15.0,
        max_frames: Annotated[int | None, typer.Option("--max-frames", help="Use only "
                                                       "the first N frames of each clip.")] = None,
        crf: Annotated[float, typer.Option("--crf", help="x264 CRF of the written crops.")] = 15,
        keep_dropped: Annotated[bool, typer.Option("--keep-dropped", help="Keep crops of dropped clips in "
                                                   "OUT/dropped/.")] = False,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ) -> None:
        from tqdm import tqdm

        from bfvr.data.prepare import PrepareOptions, installed_ocr, prepare_clips
        from bfvr.io import list_videos, probe
        from bfvr.io.paths import check_not_url

        check_not_url(inp)
        if not inp.exists():
            raise InputError(f"'{inp}' does not exist; give a video file or a folder of videos.")
        if ocr not in ("auto", "none", "rapidocr", "paddleocr", "easyocr"):
            raise ConfigError(f"unknown --ocr '{ocr}'; choose auto, none, rapidocr, paddleocr or easyocr.")
        if not (0 < ratio_min < ratio_max):
            raise ConfigError("--ratio-min must be positive and below --ratio-max.")
        if detect_every < 1 or check_every < 1 or size < 16:
            raise ConfigError("--detect-every/--check-every must be >= 1 and --size >= 16.")
        if max_frames is not None and max_frames < 1:
            raise ConfigError(f"--max-frames must be 1 or more, got {max_frames}.")
        from bfvr.io.paths import check_separate

        check_separate([inp], out, out_is_dir=True)
        inputs = list_videos(inp) if inp.is_dir() else [inp]
        if not inputs:
            raise InputError(f"'{inp}' holds no video files; give a video file or a folder of videos.")
        opts = PrepareOptions(size=size, expand=expand, keep_aspect=not stretch, detect_every=detect_every,
                              check_every=check_every, ratio_range=(ratio_min, ratio_max),
                              min_motion=min_motion, motion_threshold=motion_threshold, text_backend=ocr,
                              crf=crf, max_frames=max_frames, keep_dropped=keep_dropped)
        if ocr == "auto" and installed_ocr("auto") is None and not quiet:
            typer.echo("text filter: no OCR backend is installed (rapidocr-onnxruntime, paddleocr or "
                       "easyocr; see docs/data.md); every clip is recorded as 'text: not checked'.", err=True)
        total = 0
        for v in inputs:
            n = probe(v).frame_count
            total += min(n, max_frames) if max_frames else n  # the crop pass counts each real frame once
        with tqdm(total=total, unit="frame", desc="prepare", disable=quiet) as bar:
            def show(rec: dict) -> None:
                if not quiet:
                    state = "kept" if rec["kept"] else "dropped: " + "; ".join(rec["reasons"])
                    earlier = " (prepared earlier)" if rec.get("resumed") else ""
                    bar.write(f"{rec['name']}: {state}{earlier}")

            manifest = prepare_clips(inputs, out, opts, orientation_check=not no_orientation,
                                     overwrite=overwrite, progress=bar.update, on_record=show)
        if not quiet:
            typer.echo(f"manifest: {manifest}")

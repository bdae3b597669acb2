"""`bfvr restore`: restore a video (file, GIF or PNG/JPG folder) into an H.264 video with the input's
audio."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bfvr.models import DEFAULT_MODEL


def register(app: typer.Typer) -> None:
    @app.command("restore", help="Restore a face video: same frame count, fps, "
                 "timestamps and audio; streaming (any length, bounded memory). The "
                 "output is written to a temporary file and renamed when complete.")
    def _cmd(
        inp: Annotated[Path, typer.Argument(help="Input video file, GIF, or folder of PNG/JPG frames; or a "
                                            "batch: a folder of videos, a list (.txt, one path a line) or a "
                                            "manifest (.jsonl).", show_default=False)],
        out: Annotated[Path, typer.Option("--output", "-o", help="Output .mp4/.mov/.mkv file, or a path "
                                          "without suffix for a folder of PNG frames; for a batch, the "
                                          "output folder (relative paths mirrored).", show_default=False)],
        model: Annotated[str, typer.Option("--model", "-m", help="Model name (see `bfvr models`); 'identity' "
                                           "passes frames through unchanged.")] = DEFAULT_MODEL,
        weights: Annotated[Path | None, typer.Option("--weights", help="Local weights file for the model "
                                                     "(default: the model's cache, downloaded if "
                                                     "allowed).")] = None,
        device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
        precision: Annotated[str, typer.Option("--precision", help="auto, fp32, bf16 or fp16 (auto: bf16 on "
                                               "GPUs and AMX/AVX512-BF16 CPUs, else fp32/fp16).")] = "auto",
        crf: Annotated[float, typer.Option("--crf", help="x264 quality, 0 (lossless) "
                                           ".. 51 (worst); 10-18 keeps detail.", min=0, max=51)] = 18,
        lossless: Annotated[bool, typer.Option("--lossless", help="Store the restored frames exactly (RGB): "
                                               "FFV1 in .mkv, RGB H.264 in .mp4/.mov (for archives and "
                                               "evaluation; --crf is then unused). PNG-folder outputs are "
                                               "always lossless.")] = False,
        backend: Annotated[str, typer.Option("--backend", help="torch, or onnxruntime to run an ONNX export "
                                             "of the model (`bfvr export`; pass the .onnx file with "
                                             "--weights).")] = "torch",
        preset: Annotated[str, typer.Option("--preset", help="x264 speed/size preset: ultrafast .. veryslow.")
                          ] = "medium",
        clip_len: Annotated[int | None, typer.Option("--clip-len", help="Frames per model call (default: the "
                                                     "model's own, e.g. 24 for STC).", min=1)] = None,
        overlap: Annotated[int | None, typer.Option("--overlap", help="Frames shared and cross-faded between "
                                                    "consecutive clips (default: the model's own).",
                                                    min=0)] = None,
        keep: Annotated[int | None, typer.Option("--keep", help="Sliding-window models (e.g. a 5-frame "
                                                 "window): centre frames kept per model call; 1 (default) is "
                                                 "the official schedule, K makes about K times fewer calls "
                                                 "(see docs/architecture.md).", min=1)] = None,
        fps: Annotated[float | None, typer.Option("--fps", help="Frame rate of an "
                                                  "image-folder input (default 25, at most 1000).")
                       ] = None,
        max_frames: Annotated[int | None, typer.Option("--max-frames", help="Only the first N frames "
                                                       "(a preview; audio is then left out).", min=1)] = None,
        overwrite: Annotated[bool,
                             typer.Option("--overwrite", help="Replace the output if it exists.")] = False,
        offline: Annotated[bool, typer.Option("--offline", help="Never download weights; fail if not cached.")
                           ] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
        has_aligned: Annotated[bool, typer.Option("--has-aligned", help="The input is already a face "
                                                  "crop (e.g. 512x512 aligned): skip face detection and "
                                                  "restore whole frames.", rich_help_panel="Faces")] = False,
        face_select: Annotated[str, typer.Option("--face-select", help="Which faces to restore: largest, "
                                                 "center (nearest the frame centre) or all.",
                                                 rich_help_panel="Faces")] = "largest",
        crop_mode: Annotated[str, typer.Option("--crop-mode", help="proportion: a stable square "
                                               "around the face, as STC was trained; align: 5-point "
                                               "alignment to the FFHQ template (DicFace-style); "
                                               "auto: the model's preference, else proportion.",
                                               rich_help_panel="Faces")] = "auto",
        detector: Annotated[str, typer.Option("--detector", help="Face detector: auto (best installed: "
                                              "mediapipe, dlib, opencv), dlib, opencv or mediapipe.",
                                              rich_help_panel="Faces")] = "auto",
        detect_every: Annotated[int, typer.Option("--detect-every", help="Run the detector every N frames; "
                                                  "the tracker interpolates between.", min=1,
                                                  rich_help_panel="Faces")] = 1,
        no_smooth: Annotated[bool, typer.Option("--no-smooth", help="Do not smooth face boxes/landmarks over "
                                                "time (the crop then follows every detector jitter).",
                                                rich_help_panel="Faces")] = False,
        paste_mask: Annotated[str, typer.Option(
            "--paste-mask", help="Where the restored face replaces the frame: box (feathered square), "
            "ellipse, or parsing (face and hair as labelled by a face-parsing net a method offers, e.g. "
            "PGTFormer's; needs its weights).",
            rich_help_panel="Faces")] = "box",
        draw_box: Annotated[bool, typer.Option("--draw-box", help="Draw each restored face's crop outline "
                                               "(debugging).", rich_help_panel="Faces")] = False,
        strength: Annotated[float, typer.Option(
            "--strength", help="How much of the restoration to keep, 0..1: the output is input + strength x "
            "(restored - input); lower keeps more of the input's own texture.", min=0.0, max=1.0)] = 1.0,
        faces_only: Annotated[bool, typer.Option(
            "--faces-only", help="Restore the faces only and keep the rest of the frame as it is (default: a "
            "model that takes any frame size, e.g. bfvr-lite, also restores the whole frame, the background, "
            "and the faces are pasted onto it).", rich_help_panel="Faces")] = False,
        upscale: Annotated[int, typer.Option("--upscale", help="Output N times larger: the background is "
                                             "resized (bicubic), faces are pasted at the new size.", min=1,
                                             rich_help_panel="Faces")] = 1,
        container: Annotated[str, typer.Option("--container", help="Batch: output container, mp4, mov, "
                                               "mkv or png (a folder of PNG frames per video).",
                                               rich_help_panel="Batch and cluster")] = "mp4",
        segments: Annotated[int | None, typer.Option(
            "--segments", help="Cut each video into N segments on the model's clip grid, restore them in "
            "parallel and join them (the same frames as one process).", min=1,
            rich_help_panel="Batch and cluster")] = None,
        segment_seconds: Annotated[float | None, typer.Option(
            "--segment-seconds", help="Like --segments, with one segment per this many seconds of video.",
            min=0.001, rich_help_panel="Batch and cluster")] = None,
        workers: Annotated[int | None, typer.Option(
            "--workers", help="Parallel workers, each loading the model once: local processes (default 1; "
            "with --segments one per core), or Ray actors (default: as many as the cluster holds).", min=1,
            rich_help_panel="Batch and cluster")] = None,
        ray: Annotated[str | None, typer.Option(
            "--ray", help="Run on a Ray cluster: auto (the one `ray start` made here, or RAY_ADDRESS), local "
            "(a private Ray on this machine) or HOST:PORT. Needs Ray (the cluster extra).",
            rich_help_panel="Batch and cluster")] = None,
        cpus_per_worker: Annotated[float, typer.Option(
            "--cpus-per-worker", help="Ray CPUs each worker reserves (and its torch threads).", min=0,
            rich_help_panel="Batch and cluster")] = 1,
        gpus_per_worker: Annotated[float, typer.Option(
            "--gpus-per-worker", help="Ray GPUs each worker reserves (e.g. 1, or 0.5 to share a GPU).", min=0,
            rich_help_panel="Batch and cluster")] = 0,
        retries: Annotated[int, typer.Option(
            "--retries", help="Ray: times a video is retried after its worker died (the worker is restarted "
            "and reloads the model).", min=0, rich_help_panel="Batch and cluster")] = 3,
        max_failures: Annotated[int | None, typer.Option(
            "--max-failures", help="Batch: stop starting new videos after N failures (default: never).",
            min=1, rich_help_panel="Batch and cluster")] = None,
        summary: Annotated[Path | None, typer.Option("--summary", help="Where the JSON summary goes (batch "
                                                     "default: OUT_DIR/bfvr-summary.json).",
                                                     rich_help_panel="Batch and cluster")] = None,
        mask: Annotated[Path | None, typer.Option(
            "--mask", help="Inpainting models (e.g. dicface-inpaint): the missing pixels (white), one PNG "
            "for all frames or a mask video/folder (one per frame), the video's size.", show_default=False,
            rich_help_panel="Window models")] = None,
        sampling: Annotated[str | None, typer.Option("--sampling", help="Sampling models (DicFace): code "
                                                     "weights, mean (the "
                                                     "Dirichlet mean, deterministic; default) or official (a "
                                                     "Dirichlet draw, seeded).", show_default=False,
                                                     rich_help_panel="Window models")] = None,
        temporal_filter: Annotated[float | None, typer.Option(
            "--temporal-filter", help="Models with a temporal filter (bfvr-lite): its strength in 8-bit "
            "levels; pixels whose brightness changes by less between frames are averaged with their "
            "neighbours' (less flicker where the picture stands still). 0 = off; default: the model's "
            "(bfvr-lite: 1).",
            min=0, max=255, show_default=False)] = None,
    ) -> None:
        from bfvr.api import Restorer
        from bfvr.engine.base import contract_of
        from bfvr.errors import ConfigError
        from bfvr.faces.pipeline import SHAPE_MASKS
        from bfvr.io.writer import X264_PRESETS, output_kind, prepare_output

        if preset not in X264_PRESETS:
            raise ConfigError(f"--preset {preset!r} is not an x264 preset; "
                              f"use one of: {', '.join(X264_PRESETS)}.")
        from bfvr.io.reader import fps_problem

        why = None if fps is None else fps_problem(fps)
        if why:
            raise ConfigError(f"--fps {fps:g} {why}; give the frame rate of the image folder, e.g. 25.")
        # check the cheap things (output path, input) before loading a model
        from bfvr.io.paths import check_not_url
        from bfvr.scale.plan import source_kind

        check_not_url(inp)
        batch = inp.exists() and source_kind(inp) in ("folder", "list", "manifest")
        scale = batch or segments or segment_seconds or ray or (workers or 1) > 1
        if not batch:
            output_kind(out)
        if not batch:
            prepare_output(out, overwrite, create=False, inputs=[inp])
            from bfvr.io import probe

            probe(inp) if not inp.is_dir() else None
        faces = None
        if has_aligned and faces_only:
            raise ConfigError("--faces-only works with the face pipeline; drop --has-aligned or "
                              "--faces-only.")
        if has_aligned and upscale != 1:
            raise ConfigError("--upscale works with the face pipeline only; drop --has-aligned or --upscale.")
        if not has_aligned:
            from bfvr.faces import FaceOptions

            faces = FaceOptions(select=face_select, crop_mode=crop_mode, detector=detector,
                                detect_every=detect_every, smooth=not no_smooth, draw_box=draw_box,
                                upscale=upscale, mask_shape=paste_mask,
                                background_model=not faces_only)
            faces.validate()  # bad face flags fail before a model is loaded
            if paste_mask not in SHAPE_MASKS:  # a mask a method offers (face parsing): here, or one sentence
                from bfvr.models.hub import check_paste_mask

                check_paste_mask(model, paste_mask)
        options = {} if backend == "torch" else {"backend": backend}
        from bfvr.models.hub import MODELS, require

        # what the model accepts comes from its spec (--keep / --overlap: from its schedule, in the engine)
        for value, capability, flag in ((mask, "mask", "--mask"), (sampling, "sampling", "--sampling"),
                                        (temporal_filter, "temporal-filter", "--temporal-filter")):
            if value is not None:
                require(model, capability, flag)
        if mask is not None:
            if batch:
                raise ConfigError("--mask goes with one input video, not a batch.")
            options["mask"] = mask
        if sampling is not None:
            options["sampling"] = sampling
        if temporal_filter is not None:
            options["temporal_filter"] = temporal_filter
        spec = MODELS.get(model)
        if spec is not None and spec.check_options is not None and backend == "torch":  # its own input checks
            from bfvr.io import probe

            info = None if batch else probe(inp)
            spec.check_options(options, info, None if max_frames or info is None else info.frame_count)
        if scale:
            _run_scaled(inp, out, batch, quiet, fps, dict(
                model=model, device=device, precision=precision, weights=str(weights) if weights else None,
                offline=offline, clip_len=clip_len, overlap=overlap, keep=keep, faces=faces,
                strength=strength,
                model_options=options, crf=crf,
                preset=preset, lossless=lossless, max_frames=max_frames), dict(
                container=container, overwrite=overwrite, segments=segments, segment_seconds=segment_seconds,
                workers=workers, ray=ray, cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker,
                retries=retries, max_failures=max_failures, summary=summary, progress=not quiet))
            return
        r = Restorer(model, device=device, precision=precision, weights=weights, offline=offline,
                     clip_len=clip_len, overlap=overlap, keep=keep, progress=not quiet,
                     has_aligned=has_aligned, faces=faces, model_options=options, strength=strength)
        res = r.restore_video(inp, out, overwrite=overwrite, crf=crf, preset=preset, max_frames=max_frames,
                              fps=fps, lossless=lossless)
        if not quiet:
            if res.faces is None:
                faces_note = "whole frames (--has-aligned)"
            else:
                n = res.faces.get("tracks", 0)
                faces_note = (f"detector {res.faces.get('detector')}, {n} face track{'s' if n != 1 else ''} "
                              f"restored in {res.faces.get('frames_with_face', 0)} frames"
                              f"{', background restored' if res.faces.get('background') else ', faces only'}")
            audio = {"copied": "audio copied", "re-encoded": "audio re-encoded to AAC"}.get(
                res.audio_mode or "", "no audio" if not res.input_info.has_audio else "audio left out")
            print(f"{res.output}: {res.frames} frames in {res.seconds:.1f} s ({res.fps:.1f} frames/s), "
                  f"model {r.name} on {r.device} ({contract_of(r.model).precision or r.precision}"
                  f"{', onnxruntime' if backend == 'onnxruntime' else ''}), {faces_note}, {audio}")


def _run_scaled(inp: Path, out: Path, batch: bool, quiet: bool, fps: float | None, settings: dict,
                options: dict) -> None:
    """A batch (folder / list / manifest), or one video in segments or on Ray: `bfvr.scale`."""
    from bfvr.scale import BatchOptions, RestoreSettings, run_batch
    from bfvr.scale.batch import run_segmented

    s, o = RestoreSettings(**settings), BatchOptions(**options)
    if batch:
        res = run_batch(inp, out, s, o)
    else:
        res = run_segmented(inp, out, s, o, fps=fps)
    if not quiet or res.exit_code:
        for line in res.lines():
            print(line)
    if res.exit_code:
        raise typer.Exit(res.exit_code)

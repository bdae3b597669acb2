"""`bfvr evaluate`: metrics of restored videos against GT (or no-reference), as Markdown + CSV + JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bfvr.errors import ConfigError, InputError


def register(app: typer.Typer) -> None:
    @app.command("evaluate", help="Score restored videos against ground truth matched by file name: PSNR, "
                 "SSIM, LPIPS, MSRL, IDS, Deg, Face-Cons, AKD/LMD, TLME, Flow-Score, warping error, FVD. "
                 "Writes metrics.md, metrics.csv and metrics.json (per video and mean). See docs/metrics.md.")
    def _cmd(
        pred: Annotated[Path, typer.Option("--pred", help="Folder of restored (or LQ) videos.",
                                           show_default=False)],
        gt: Annotated[Path | None, typer.Option("--gt", help="Folder of ground-truth videos with "
                                                "the same file names (stems).", show_default=False)] = None,
        metrics: Annotated[str | None, typer.Option(
            "--metrics", "-m", help="Comma-separated metrics. Default: "
            "psnr,ssim,msrl,msrl_scales,ids,deg,face_cons,akd,tlme,flow_score,warp_error "
            "(+lpips/fvd when their weights are given); with --no-reference: "
            "face_cons,flow_score,warp_error. Also: lmd (= akd under PGTFormer's name), tdiff_psnr. "
            "msrl and msrl_scales (two readings of PGTFormer's MSRL) always come together. The "
            "report's first line names the model behind each column.",
            show_default=False)] = None,
        no_reference: Annotated[bool, typer.Option("--no-reference", help="No GT (real LQ inputs): only "
                                                   "flicker/flow/identity-consistency metrics.")] = False,
        out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")] = Path("eval_report"),
        crop_border: Annotated[int, typer.Option("--crop-border", help="Pixels "
                                                 "cut at each side for PSNR/SSIM.")] = 0,
        y_channel: Annotated[bool, typer.Option("--y", help="PSNR/SSIM/MSRL/tdiff_psnr on the BT.601 Y "
                                                "channel (16-235) instead of RGB.")] = False,
        max_frames: Annotated[int | None, typer.Option("--max-frames", help="Use only the first N "
                                                       "frames of each video (the papers use 24).",
                                                       show_default=False)] = None,
        length: Annotated[str, typer.Option("--length", help="When pred and GT lengths differ: "
                                            "'error' or 'min' (compare the common first frames).")] = "error",
        resize: Annotated[str, typer.Option("--resize", help="When sizes differ: 'error' or 'pred-to-gt' "
                                            "(resize "
                                            "the prediction to the GT size, area/bicubic).")] = "error",
        face_every: Annotated[int, typer.Option("--face-every", help="Identity embeddings "
                                                "(IDS/Deg/Face-Cons) on every "
                                                "k-th frame (dlib's descriptor costs ~0.2 s/frame).")] = 1,
        identity_model: Annotated[str, typer.Option("--identity-model", help="'dlib' (128-D "
                                                    "ResNet, offline) or the path of an "
                                                    "ArcFace .onnx / TorchScript file.")] = "dlib",
        lpips_backbone: Annotated[Path | None, typer.Option("--lpips-backbone", help="torchvision "
                                                            "VGG16/AlexNet weights file for LPIPS.",
                                                            show_default=False)] = None,
        lpips_heads: Annotated[Path | None, typer.Option("--lpips-heads", help="LPIPS v0.1 linear-head file "
                                                         "(default: from an installed lpips package).",
                                                         show_default=False)] = None,
        lpips_net: Annotated[str, typer.Option("--lpips-net", help="LPIPS backbone: vgg or alex.")] = "vgg",
        i3d: Annotated[Path | None, typer.Option("--i3d", help="I3D TorchScript file for FVD.",
                                                 show_default=False)] = None,
        runtime: Annotated[Path | None, typer.Option("--runtime", help="JSON file {video name: seconds} "
                                                     "to add a runtime column.", show_default=False)] = None,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing report.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ) -> None:
        import json

        from bfvr.metrics.evaluate import (
            FULL_REFERENCE,
            NO_REFERENCE,
            EvalOptions,
            check_report_dir,
            evaluate_dirs,
            write_report,
        )

        if gt is None and not no_reference:
            raise InputError("give --gt DIR with the ground-truth videos, "
                             "or --no-reference for real LQ inputs.")
        if length not in ("error", "min"):
            raise ConfigError(f"--length must be 'error' or 'min', got {length!r}.")
        if resize not in ("error", "pred-to-gt"):
            raise ConfigError(f"--resize must be 'error' or 'pred-to-gt', got {resize!r}.")
        if lpips_net not in ("vgg", "alex"):
            raise ConfigError(f"--lpips-net must be 'vgg' or 'alex', got {lpips_net!r}.")
        if metrics:
            names = [m.strip().lower().replace("-", "_") for m in metrics.split(",") if m.strip()]
        else:
            names = list(NO_REFERENCE if no_reference else FULL_REFERENCE)
            if not no_reference:
                names += (["lpips"] if lpips_backbone else []) + (["fvd"] if i3d else [])
        from bfvr.io.paths import check_output_folder, check_separate

        check_separate([pred, gt, runtime], out, out_is_dir=True, what="report")
        check_output_folder(out, "report")
        check_report_dir(out, overwrite)
        rt = None
        if runtime is not None:
            try:
                rt = {str(k): float(v) for k, v in json.loads(runtime.read_text()).items()}
            except (OSError, ValueError, AttributeError) as e:
                raise InputError(f"--runtime '{runtime}' is not a JSON object of name -> seconds "
                                 f"({e}).") from None
        if crop_border < 0:
            raise ConfigError(f"--crop-border must be 0 or more pixels, got {crop_border}.")
        opts = EvalOptions(metrics=names, no_reference=no_reference, crop_border=crop_border,
                           y_channel=y_channel,
                           max_frames=max_frames, length=length, resize=resize, face_every=face_every,
                           identity_model=identity_model, lpips_net=lpips_net,
                           lpips_backbone=str(lpips_backbone) if lpips_backbone else None,
                           lpips_heads=str(lpips_heads) if lpips_heads else None,
                           i3d=str(i3d) if i3d else None)
        result = evaluate_dirs(pred, None if no_reference else gt, opts, runtime=rt, quiet=quiet)
        paths = write_report(result, out)
        typer.echo(paths[0].read_text(encoding="utf-8").rstrip())
        typer.echo(f"report: {', '.join(str(p) for p in paths)}")

"""`bfvr degrade`: synthesise low-quality videos (the papers' degradations) with per-clip seeded
parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bfvr.errors import ConfigError, InputError, OutputError


def register(app: typer.Typer) -> None:
    @app.command("degrade", help="Degrade a video or a folder of videos with a paper's recipe (stc, "
                 "stc-nonoise, stc-paper, stc-paper-nonoise, keep, flicker-brightness, flicker-pixel, "
                 "inpaint, gray; join with '+'); writes LQ videos plus a JSON sidecar of the drawn "
                 "parameters. Deterministic for a seed.")
    def _cmd(
        inp: Annotated[Path, typer.Argument(help="Input video, or a folder of videos.", show_default=False)],
        out: Annotated[Path, typer.Argument(help="Output video (.mp4) for one input, or an output folder.",
                                            show_default=False)],
        recipe: Annotated[str, typer.Option("--recipe", "-r", help="Degradation recipe; several can "
                                            "be chained with '+', e.g. 'stc+flicker-brightness'.")] = "stc",
        seed: Annotated[int, typer.Option("--seed", "-s", help="Run seed; each clip "
                                          "is seeded from (seed, clip file name).")] = 0,
        mid: Annotated[bool, typer.Option("--mid", help="Use the middle of every parameter range instead of "
                                          "random draws (e.g. STC: blur 3.5, scale 3, noise 2.5, CRF "
                                          "21).")] = False,
        flicker_dir: Annotated[Path | None, typer.Option("--flicker-dir", help="For flicker-pixel: "
                                                         "a folder of pre-generated flickering "
                                                         "videos with the same file names, used "
                                                         "instead of our synthetic pixel flicker.")
                               ] = None,
        out_crf: Annotated[float, typer.Option("--out-crf", help="x264 CRF of the written LQ file (0 = "
                                               "lossless; "
                                               "the recipe's own compression already happened).")] = 0,
        no_audio: Annotated[bool, typer.Option("--no-audio", help="Do not copy the input's audio.")] = False,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ) -> None:
        from tqdm import tqdm

        from bfvr.degrade.files import check_writable, degrade_video, outputs
        from bfvr.degrade.pipeline import recipe as get_recipe
        from bfvr.io import list_videos
        from bfvr.io.writer import CONTAINERS

        deg = get_recipe(recipe)
        if flicker_dir is not None and recipe != "flicker-pixel":
            raise ConfigError("--flicker-dir replaces the flicker-pixel "
                              "recipe; use it with --recipe flicker-pixel.")
        if flicker_dir is not None and not flicker_dir.is_dir():
            raise InputError(f"--flicker-dir '{flicker_dir}' is not a folder; "
                             "give the folder of pre-generated videos.")
        from bfvr.io.paths import check_not_url, check_separate

        check_not_url(inp)
        if not inp.exists():
            raise InputError(f"'{inp}' does not exist; give a video file or a folder of videos.")
        videos = list_videos(inp) if inp.is_dir() else []
        if inp.is_dir() and videos:
            if out.suffix:
                raise OutputError("the input is a folder, so the output "
                                  f"'{out}' must be a folder (no suffix).")
            check_separate([inp], out, out_is_dir=True)
            jobs = [(v, out / (v.stem + ".mp4")) for v in videos]
        else:  # a file, or a folder of image frames (one clip)
            if out.suffix == "" or out.is_dir():
                out = out / ((inp.stem if inp.is_file() else inp.name) + ".mp4")
            jobs = [(inp, out)]
        for v, o in jobs:
            if o.suffix.lower() not in CONTAINERS:
                raise OutputError(f"cannot write '{o.name}': give a .mp4/.mov/.mkv output file or a folder.")
            check_separate([v, inp, flicker_dir], o, out_is_dir=False)
            # the video, its sidecar and mask: refused before any work unless --overwrite may replace them
            for path, kind in outputs(o, deg, pregenerated=flicker_dir is not None):
                check_writable(path, kind, overwrite)
        from bfvr.io import probe

        total = 0
        for v, _ in jobs:
            total += probe(v).frame_count
        with tqdm(total=total, unit="frame", desc=f"degrade ({recipe})", disable=quiet) as bar:
            for v, o in jobs:
                bar.set_postfix_str(v.name)
                params = degrade_video(v, o, deg, seed, mid=mid, overwrite=overwrite, out_crf=out_crf,
                                       keep_audio=not no_audio, flicker_dir=flicker_dir, progress=bar.update)
                if quiet:
                    continue
                bar.write(f"{v.name} -> {o} ({params['frames']} frames; {_summary(params)})")


def _summary(params: dict) -> str:
    if params.get("source") == "pre-generated":
        return f"pre-generated {Path(params['path']).name}"
    parts = []
    for op in params["ops"]:
        keys = {"blur": ("kernel", "sigma_x"), "downscale": ("scale", "interp"), "noise": ("sigma",),
                "codec": ("crf",), "flicker_pixel": ("strength",)}.get(op["op"], ())
        vals = ", ".join(f"{k}={op[k]:.2f}" if isinstance(op[k], float) else f"{k}={op[k]}" for k in keys)
        if op["op"] == "flicker_brightness":
            vals = f"{len(op.get('flickered', []))} frames"
        parts.append(f"{op['op']}({vals})" if vals else op["op"])
    return " -> ".join(parts)

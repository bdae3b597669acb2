"""`bfvr compare`: a side-by-side video (input | output [| GT]) with labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("compare", help="Write a side-by-side video of the input, the output and (optionally) "
                 "the GT, each labelled, resized to the output's height, frames paired by index; stops at "
                 "the shortest video; keeps the input's timestamps and audio. Says how sizes, lengths and "
                 "audio were matched.")
    def _cmd(
        inp: Annotated[Path, typer.Argument(help="Input (LQ) video.", show_default=False)],
        output: Annotated[Path, typer.Argument(help="Restored video.", show_default=False)],
        gt: Annotated[Path | None,
                      typer.Argument(help="Ground-truth video (optional).", show_default=False)] = None,
        out: Annotated[Path, typer.Option("--out", "-o",
                                          help="Side-by-side video (.mp4).")] = Path("side_by_side.mp4"),
        labels: Annotated[str | None, typer.Option("--labels", help="Comma-separated labels (default: input, "
                                                   "output, GT).", show_default=False)] = None,
        max_frames: Annotated[int | None, typer.Option("--max-frames", help="Only the first N frames.",
                                                       show_default=False)] = None,
        crf: Annotated[float, typer.Option("--crf", help="x264 CRF of the written video.")] = 18,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ) -> None:
        from tqdm import tqdm

        from bfvr.metrics.pictures import side_by_side_video

        paths = [inp, output] + ([gt] if gt is not None else [])
        names = [s.strip() for s in labels.split(",")] if labels else None
        with tqdm(total=max_frames, unit="frame", desc="compare", disable=quiet) as bar:
            done = side_by_side_video(paths, out, labels=names, max_frames=max_frames, crf=crf,
                                      overwrite=overwrite, on_frames=bar.update, say=tqdm.write)
        typer.echo(f"{out} ({done} frames)")

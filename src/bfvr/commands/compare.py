"""`bfvr compare`: a side-by-side video (input | output [| GT]) with labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bfvr.errors import InputError


def register(app: typer.Typer) -> None:
    @app.command("compare", help="Write a side-by-side video of the input, the output and (optionally) the GT, "
                 "each labelled, resized to the output's height; stops at the shortest video.")
    def _cmd(
        inp: Annotated[Path, typer.Argument(help="Input (LQ) video.", show_default=False)],
        output: Annotated[Path, typer.Argument(help="Restored video.", show_default=False)],
        gt: Annotated[Path | None, typer.Argument(help="Ground-truth video (optional).", show_default=False)] = None,
        out: Annotated[Path, typer.Option("--out", "-o", help="Side-by-side video (.mp4).")] = Path("side_by_side.mp4"),
        labels: Annotated[str | None, typer.Option("--labels", help="Comma-separated labels (default: input, "
                                                   "output, GT).", show_default=False)] = None,
        max_frames: Annotated[int | None, typer.Option("--max-frames", help="Only the first N frames.",
                                                       show_default=False)] = None,
        crf: Annotated[float, typer.Option("--crf", help="x264 CRF of the written video.")] = 18,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ) -> None:
        import numpy as np
        from tqdm import tqdm

        from bfvr.io import VideoWriter, open_video
        from bfvr.metrics.pictures import hstack_labeled

        paths = [inp, output] + ([gt] if gt is not None else [])
        names = [s.strip() for s in labels.split(",")] if labels else ["input", "output", "GT"][:len(paths)]
        if len(names) != len(paths):
            raise InputError(f"--labels has {len(names)} entries for {len(paths)} videos.")
        from bfvr.io.paths import check_not_url
        from bfvr.io.writer import prepare_output

        for p in paths:
            check_not_url(p)
        prepare_output(out, overwrite, create=False, inputs=paths)  # before any decoding
        readers = [open_video(p) for p in paths]
        try:
            infos = [r.info for r in readers]
            n = min(i.frame_count for i in infos)
            if max_frames is not None:
                n = min(n, max_frames)
            height = infos[1].height
            height -= height % 2
            its = [r.chunks(16) for r in readers]
            done = 0
            with VideoWriter(out, fps=infos[1].fps, crf=crf, overwrite=overwrite, inputs=paths) as w, \
                    tqdm(total=n, unit="frame", desc="compare", disable=quiet) as bar:
                while done < n:
                    chunks = [next(it, None) for it in its]
                    if any(c is None for c in chunks):
                        break
                    k = min(min(len(c) for c in chunks), n - done)
                    frames = [hstack_labeled([c.frames[i] for c in chunks], names, height) for i in range(k)]
                    w.write(np.stack(frames))
                    done += k
                    bar.update(k)
                    if any(len(c) != k for c in chunks):
                        break  # chunk boundaries drifted (a shorter video); stop at the common frames
        finally:
            for r in readers:
                r.close()
        typer.echo(f"{out} ({done} frames)")

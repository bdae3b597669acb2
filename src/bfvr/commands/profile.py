"""`bfvr profile`: the temporal-profile image (one pixel column over time), side by side for several
videos."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bfvr.errors import OutputError


def register(app: typer.Typer) -> None:
    @app.command("profile", help="Write the temporal profile the papers show: one pixel column (or row) "
                 "of every frame stacked over time, for several videos side by side with their names.")
    def _cmd(
        videos: Annotated[list[Path], typer.Argument(help="One or more videos (same "
                                                     "content, e.g. LQ, restored, GT).", show_default=False)],
        out: Annotated[Path, typer.Option("--out", "-o", help="Output image (.png).")] = Path("profile.png"),
        column: Annotated[float | None, typer.Option("--column", "-x", help="Pixel column: an "
                                                     "index, or a fraction of the width (0<x<1); "
                                                     "default the middle. Given for the first "
                                                     "video's width and scaled for the others.",
                                                     show_default=False)] = None,
        row: Annotated[float | None, typer.Option("--row", "-y", help="Use a pixel row instead (index or "
                                                  "fraction); time then runs downwards.",
                                                  show_default=False)] = None,
        max_frames: Annotated[int | None, typer.Option("--max-frames", help="Only the first N frames.",
                                                       show_default=False)] = None,
        labels: Annotated[str | None, typer.Option("--labels", help="Comma-separated labels (default: file "
                                                   "names).", show_default=False)] = None,
        scale: Annotated[int, typer.Option("--scale", help="Enlarge the time axis by this "
                                           "factor (nearest) so short clips stay visible.")] = 1,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing image.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ) -> None:
        import cv2
        from tqdm import tqdm

        from bfvr.io.paths import (
            atomic_output,
            check_output_file,
            check_replaceable,
            check_separate,
            make_folder,
        )
        from bfvr.metrics.pictures import profile_image

        check_output_file(out, "image")
        if (out.exists() or out.is_symlink()) and not overwrite:
            raise OutputError(f"'{out}' already exists; pass --overwrite or choose another --out.")
        check_replaceable(out, "file")  # never a link, nor a folder
        if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            raise OutputError(f"'{out}' should end in .png (or .jpg).")
        names = [s.strip() for s in labels.split(",")] if labels else None
        check_separate(videos, out, out_is_dir=False)
        with tqdm(total=len(videos), desc="profile", unit="video", disable=quiet) as bar:
            img = profile_image(videos, column=column, row=row, max_frames=max_frames, labels=names,
                                scale=scale, on_video=lambda _i: bar.update(1))
        make_folder(out.parent, "image")
        with atomic_output(out) as tmp:  # a new temporary file, renamed into place only when written
            if not cv2.imwrite(str(tmp), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
                raise OutputError(f"could not write '{out}'; check the folder is writable.")
        typer.echo(f"{out} ({img.shape[1]}x{img.shape[0]})")

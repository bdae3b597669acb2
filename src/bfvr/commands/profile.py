"""`bfvr profile`: the temporal-profile image (one pixel column over time), side by side for several videos."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bfvr.errors import InputError, OutputError


def register(app: typer.Typer) -> None:
    @app.command("profile", help="Write the temporal profile the papers show: one pixel column (or row) of every "
                 "frame stacked over time, for several videos side by side with their names.")
    def _cmd(
        videos: Annotated[list[Path], typer.Argument(help="One or more videos (same content, e.g. LQ, restored, "
                                                     "GT).", show_default=False)],
        out: Annotated[Path, typer.Option("--out", "-o", help="Output image (.png).")] = Path("profile.png"),
        column: Annotated[float | None, typer.Option("--column", "-x", help="Pixel column: an index, or a "
                                                     "fraction of the width (0<x<1); default the middle. Given "
                                                     "for the first video's width and scaled for the others.",
                                                     show_default=False)] = None,
        row: Annotated[float | None, typer.Option("--row", "-y", help="Use a pixel row instead (index or "
                                                  "fraction); time then runs downwards.", show_default=False)] = None,
        max_frames: Annotated[int | None, typer.Option("--max-frames", help="Only the first N frames.",
                                                       show_default=False)] = None,
        labels: Annotated[str | None, typer.Option("--labels", help="Comma-separated labels (default: file "
                                                   "names).", show_default=False)] = None,
        scale: Annotated[int, typer.Option("--scale", help="Enlarge the time axis by this factor (nearest) so "
                                           "short clips stay visible.")] = 1,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing image.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ) -> None:
        import cv2
        import numpy as np
        from tqdm import tqdm

        from bfvr.io import open_video
        from bfvr.metrics.pictures import hstack_labeled, temporal_profile

        if out.exists() and not overwrite:
            raise OutputError(f"'{out}' already exists; pass --overwrite or choose another --out.")
        if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            raise OutputError(f"'{out}' should end in .png (or .jpg).")
        names = [s.strip() for s in labels.split(",")] if labels else [v.stem for v in videos]
        if len(names) != len(videos):
            raise InputError(f"--labels has {len(names)} entries for {len(videos)} videos.")
        for v in videos:
            if not v.exists():
                raise InputError(f"'{v}' does not exist; check the path.")
        if column is not None and row is not None:
            raise InputError("give --column or --row, not both.")
        from bfvr.io.paths import check_separate

        check_separate(videos, out, out_is_dir=False)
        profiles = []
        first_w = first_h = None
        for v in tqdm(videos, desc="profile", unit="video", disable=quiet):
            with open_video(v) as r:
                w, h = r.info.width, r.info.height
                first_w, first_h = first_w or w, first_h or h
                for name, value, size in (("--column", column, first_w), ("--row", row, first_h)):
                    if value is not None and not (0 < value < 1) and not (0 <= value < size):
                        raise InputError(f"{name} {value:g} is outside the first video's frame (0..{size - 1}); "
                                         "give a pixel index inside it or a fraction between 0 and 1.")
                c = rw = None
                if row is not None:
                    rw = row if 0 < row < 1 else min(h - 1, int(round(row * h / first_h)))
                else:
                    c = column if column is None or 0 < column < 1 else min(w - 1, int(round(column * w / first_w)))

                def chunks(r=r):
                    n = 0
                    for ch in r.chunks(32):
                        f = ch.frames if max_frames is None else ch.frames[:max_frames - n]
                        n += len(f)
                        if len(f):
                            yield f
                        if max_frames is not None and n >= max_frames:
                            return

                try:
                    p = temporal_profile(chunks(), column=c, row=rw)
                except ValueError as e:
                    raise InputError(f"{v}: {e}.") from None
            if scale > 1:
                p = np.repeat(p, scale, axis=0 if row is not None else 1)
            profiles.append(p)
        height = max(p.shape[0] for p in profiles)
        img = hstack_labeled(profiles, names, height)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.stem}.partial{out.suffix}")  # renamed into place only when written
        try:
            if not cv2.imwrite(str(tmp), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
                raise OutputError(f"could not write '{out}'; check the folder is writable.")
            tmp.replace(out)
        finally:
            tmp.unlink(missing_ok=True)
        typer.echo(f"{out} ({img.shape[1]}x{img.shape[0]})")

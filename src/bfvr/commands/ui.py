"""`bfvr ui`: a local web page (Gradio) for restoring one video at a time; see docs/ui.md."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer


def _default_samples() -> Path | None:
    """$BFVR_SAMPLES, else the shared faces folder next to the working directory (a project checkout)."""
    env = os.environ.get("BFVR_SAMPLES")
    if env:
        return Path(env)
    for base in (Path.cwd(), Path.cwd().parent):
        p = base / "shared" / "data" / "faces"
        if p.is_dir():
            return p
    return None


def register(app: typer.Typer) -> None:
    @app.command("ui", help="Start a local web page for restoring a face video: upload (or pick a sample), "
                 "choose model/faces/quality, watch the progress, cancel, then play and download the "
                 "result, a side-by-side video, a before/after slider and the temporal profile. Needs "
                 "Gradio (the optional extra \"ui\"). Stop it with Ctrl+C: its temporary files are removed.")
    def _cmd(
        host: Annotated[str, typer.Option("--host", help="Address to listen on; the default serves this "
                                          "computer "
                                          "only (0.0.0.0 exposes the page to the network).")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", "-p", help="TCP port of the page.", min=1,
                                          max=65535)] = 7860,
        max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="Largest upload accepted, in MB "
                                                     "(a zip of frames may unpack to 4x this).",
                                                     min=1)] = 500,
        max_seconds: Annotated[float, typer.Option("--max-seconds", help="Longest part of a video one run "
                                                   "restores, in seconds (longer videos need a preview).",
                                                   min=1)] = 600,
        max_frame_megapixels: Annotated[float, typer.Option("--max-frame-megapixels", help="Largest frame "
                                                            "accepted, in megapixels (checked before "
                                                            "decoding).", min=0.01)] = 16.8,
        max_megapixels: Annotated[float, typer.Option("--max-megapixels", help="Most pixels one run restores "
                                                      "(width x height x frames), in megapixels.",
                                                      min=1)] = 40_000,
        concurrency: Annotated[int, typer.Option("--concurrency", help="Restores running at the same time in "
                                                 "this process; further runs (other tabs) wait in the queue.",
                                                 min=1)] = 1,
        queue_size: Annotated[int, typer.Option("--queue-size", help="Runs that may wait in the queue; more "
                                                "are refused with a 'queue is full' message.", min=1)] = 16,
        samples: Annotated[Path | None, typer.Option("--samples", help="Folder of sample "
                                                     "clips the page offers (default: "
                                                     "$BFVR_SAMPLES, else ./shared/data/faces "
                                                     "or ../shared/data/faces if present).",
                                                     show_default=False)] = None,
        temp_dir: Annotated[Path | None, typer.Option("--temp-dir", help="Where the page makes its own "
                                                      "bfvr-ui-* folder for uploads and results (default: "
                                                      "the system temp folder); removed on exit.",
                                                      show_default=False)] = None,
        device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
        open_browser: Annotated[bool, typer.Option("--open", help="Open the page in the default browser.")
                                ] = False,
    ) -> None:
        import importlib.util

        from bfvr.errors import DependencyError, InputError

        if importlib.util.find_spec("gradio") is None:
            raise DependencyError('the web page needs Gradio, which is not installed; install it with '
                                  'pip install "bfvr[ui]" (in a checkout: pip install -e ".[ui]").')
        folder = samples if samples is not None else _default_samples()
        if samples is not None and not samples.is_dir():
            raise InputError(f"--samples '{samples}' is not a folder; give a folder of video files.")
        from bfvr.ui.app import UIConfig, serve
        from bfvr.ui.core import Limits

        serve(UIConfig(host=host, port=port,
                       limits=Limits(max_upload_mb=max_upload_mb, max_seconds=max_seconds,
                                     max_frame_megapixels=max_frame_megapixels,
                                     max_megapixels=max_megapixels),
                       concurrency=concurrency, queue_size=queue_size,
                       samples=folder if folder is not None and folder.is_dir() else None,
                       temp_dir=temp_dir, device=device, open_browser=open_browser))

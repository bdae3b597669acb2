"""`bfvr info`: what the reader sees in a video (size, fps, frames, duration, rotation, audio, ...)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("info", help="Print a video's metadata as bfvr reads it: upright size, exact "
                 "fps, frame count, duration, time base, rotation, pixel format, codec and audio.")
    def _cmd(
        video: Annotated[Path, typer.Argument(help="Video file, GIF, or folder of PNG/JPG frames.",
                                              show_default=False)],
        as_json: Annotated[bool,
                           typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
        count: Annotated[bool, typer.Option("--count", help="Decode every frame to count them exactly "
                                            "(slow for long videos).")] = False,
    ) -> None:
        from bfvr.io import open_video

        with open_video(video) as r:
            d = r.info.as_dict()
            if count:
                d["frames_decoded"] = sum(1 for _ in r.frames())
        if as_json:
            print(json.dumps(d, default=str))
            return
        fps = r.info.fps
        lines = [
            ("path", d["path"]),
            ("kind", f"{d['kind']} ({d['container']})"),
            ("size", f"{d['width']}x{d['height']}" + (f" (coded {d['coded_size'][0]}x{d['coded_size'][1]})"
                                                      if d["coded_size"] else "")),
            ("fps", f"{d['fps']} (~{float(fps):.3f}{', variable: the average' if d['vfr'] else ''})"),
            ("frames", f"{d['frame_count']}" + ("" if d["frame_count_exact"] else " (estimated)")),
            ("duration", f"{d['duration']:.3f} s"),
            ("time_base", d["time_base"]),
            ("rotation", f"{d['rotation']} deg"),
            ("video", f"{d['codec']} {d['pix_fmt']} ({d['bit_depth']}-bit)"),
            ("audio", f"{d['audio_codec']} {d['audio_sample_rate']} Hz, {d['audio_channels']} ch"
                      + (f", {d['audio_duration']:.3f} s" if d["audio_duration"] else "")
                      if d["has_audio"] else "none"),
        ]
        if "frames_decoded" in d:
            lines.append(("decoded", f"{d['frames_decoded']} frames"))
        for k, v in lines:
            print(f"{k:<10} {v}")

"""`bfvr bench`: measure speed and memory of the parts (decode, encode, the whole restore path)."""

from __future__ import annotations

from typing import Annotated

import typer

bench_app = typer.Typer(help="Benchmarks: speed and peak memory of bfvr's parts.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")


@bench_app.command("io", help="Decode, encode and identity-restore a synthetic H.264 clip (with AAC audio) and "
                   "print frames/s and the process's peak RSS.")
def _io(
    size: Annotated[int, typer.Option("--size", help="Frame width and height in pixels.", min=16)] = 512,
    frames: Annotated[int, typer.Option("--frames", help="Number of frames of the synthetic clip.", min=1)] = 250,
    fps: Annotated[int, typer.Option("--fps", help="Frame rate of the synthetic clip.", min=1)] = 25,
    crf: Annotated[float, typer.Option("--crf", help="x264 CRF of the encode and restore steps.")] = 18,
    preset: Annotated[str, typer.Option("--preset", help="x264 preset of the encode and restore steps.")] = "medium",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    import json
    import resource
    import tempfile
    import time
    from pathlib import Path

    from tqdm import tqdm

    from bfvr.api import Restorer
    from bfvr.io import VideoWriter, open_video
    from bfvr.io.synth import synth_video

    res: dict[str, object] = {"size": size, "frames": frames, "crf": crf, "preset": preset}

    def bar(desc: str, total: int, unit: str = "frame"):  # on stderr (stdout keeps the results, e.g. --json)
        return tqdm(total=total, desc=f"bench io: {desc}", unit=unit, disable=quiet, leave=False,
                    dynamic_ncols=True)

    with tempfile.TemporaryDirectory(prefix="bfvr_bench_") as tmp:
        src = Path(tmp) / "src.mp4"
        with bar("make the test clip", 1, "clip") as b:
            synth_video(src, frames=frames, width=size, height=size, fps=fps, audio=True, crf=18,
                        preset="ultrafast")
            b.update(1)
        t0 = time.perf_counter()
        n = 0
        with open_video(src) as r, bar("decode", frames) as b:
            for _ in r.frames():
                n += 1
                b.update(1)
        res["decode_fps"] = n / (time.perf_counter() - t0)
        with open_video(src) as r:
            decoded = [f for f, _ in r.frames()][: min(n, 50)]  # encode from memory: measures the encoder only
        t0 = time.perf_counter()
        with VideoWriter(Path(tmp) / "enc.mp4", fps=fps, crf=crf, preset=preset) as w, bar("encode", n) as b:
            for i in range(n):
                w.write(decoded[i % len(decoded)])
                b.update(1)
        res["encode_fps"] = n / (time.perf_counter() - t0)
        rest = Restorer("identity", device="cpu", progress=not quiet).restore_video(
            src, Path(tmp) / "out.mp4", crf=crf, preset=preset)
        res["restore_identity_fps"] = rest.fps
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if as_json:
        print(json.dumps(res))
        return
    print(f"synthetic {size}x{size}, {frames} frames, x264 crf {crf:g} preset {preset}")
    print(f"decode            {res['decode_fps']:8.1f} frames/s")
    print(f"encode            {res['encode_fps']:8.1f} frames/s")
    print(f"restore identity  {res['restore_identity_fps']:8.1f} frames/s (decode + engine + encode + audio)")
    print(f"peak RSS          {res['peak_rss_mb']:8.1f} MB (whole process)")

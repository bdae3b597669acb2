"""`bfvr bench`: measure speed and memory of the parts (decode, encode, the whole restore path)."""

from __future__ import annotations

from typing import Annotated

import typer

from bfvr.models import DEFAULT_MODEL

bench_app = typer.Typer(help="Benchmarks: speed and peak memory of bfvr's parts.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")


@bench_app.command("io", help="Decode, encode and identity-restore a synthetic H.264 "
                   "clip (with AAC audio) and print frames/s and the process's peak RSS.")
def _io(
    size: Annotated[int, typer.Option("--size", help="Frame width and height in pixels.", min=16)] = 512,
    frames: Annotated[int, typer.Option("--frames", help="Number of frames of the synthetic clip.",
                                        min=1)] = 250,
    fps: Annotated[int, typer.Option("--fps", help="Frame rate of the synthetic clip.", min=1)] = 25,
    crf: Annotated[float, typer.Option("--crf", help="x264 CRF of the encode and restore steps.")] = 18,
    preset: Annotated[str, typer.Option("--preset",
                                        help="x264 preset of the encode and restore steps.")] = "medium",
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
            # encode from memory: measures the encoder only
            decoded = [f for f, _ in r.frames()][: min(n, 50)]
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


def _model_run(model: str, weights: str | None, backend: str, precision: str, frames: int, size: int,
               repeats: int, threads: int) -> dict[str, object]:
    """One backend/precision in its own process: frames/s of `restore_clip` and the process's peak RSS."""
    import resource
    import time

    import numpy as np
    import torch

    from bfvr.models.hub import load_model

    torch.set_num_threads(threads)
    options = {} if backend == "torch" else {"backend": backend}
    m = load_model(model, weights=weights, precision=precision, offline=True, progress=False, **options)
    t = m.clip_len or frames
    rng = np.random.default_rng(0)
    clip = torch.from_numpy(rng.random((t, 3, size, size), dtype=np.float32))
    out = m.restore_clip(clip)  # warm-up (oneDNN kernel selection, ORT graph optimisation)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = m.restore_clip(clip)
        times.append(time.perf_counter() - t0)
    return {"backend": backend, "precision": m.precision if backend == "torch" else "fp32",
            "clip": t, "fps": t / float(np.median(times)), "s_per_frame": float(np.median(times)) / t,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "out": out.numpy() if backend != "torch" or m.precision == "fp32" else None}


@bench_app.command("model", help="Model throughput at SIZE x SIZE: frames/s of one clip "
                   "call for each backend and precision (PyTorch fp32 / bf16, ONNX "
                   "Runtime on an export made on the fly), each in its own process with "
                   "its peak RSS, and the largest ONNX-vs-PyTorch-fp32 output difference.")
def _model(
    model: Annotated[str, typer.Option("--model", "-m",
                                       help="Model name (see `bfvr models`).")] = DEFAULT_MODEL,
    weights: Annotated[str | None,
                       typer.Option("--weights", help="Weights file (default: bundled/cached).")] = None,
    size: Annotated[int, typer.Option("--size", help="Frame side in pixels.", min=16)] = 512,
    frames: Annotated[int, typer.Option("--frames", help="Frames per call for models without a clip length.",
                                        min=1)] = 24,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed calls per backend (median reported).",
                                         min=1)] = 3,
    threads: Annotated[int, typer.Option("--threads", help="Intra-op threads.")] = 2,
    onnx: Annotated[bool, typer.Option("--onnx/--no-onnx", help="Also time ONNX Runtime (needs bfvr[onnx]).")
                    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    import json
    import multiprocessing as mp
    import tempfile
    from pathlib import Path

    import numpy as np

    from bfvr.engine.device import check_threads
    from bfvr.errors import DependencyError

    check_threads(threads)
    ctx = mp.get_context("spawn")
    runs = [("torch", "fp32"), ("torch", "bf16")]
    rows: list[dict[str, object]] = []
    from bfvr.models.hub import load_model

    m = load_model(model, weights=weights, offline=True, precision="fp32", progress=False)
    exportable = hasattr(m, "onnx_module")
    if m.canvas is not None and not (exportable and "H" in m.onnx_module()[2]):
        size = m.canvas[0]  # a model that only runs on its canvas (STC): time it there
    with tempfile.TemporaryDirectory(prefix="bfvr_bench_") as tmp:
        if onnx and exportable:
            try:
                import onnx as _onnx  # noqa: F401
                import onnxruntime  # noqa: F401
            except ImportError:
                raise DependencyError("ONNX Runtime is not installed: pip install 'bfvr[onnx]', or pass "
                                      "--no-onnx.") from None
            from bfvr.models.onnx import export_onnx

            onnx_path = Path(tmp) / "model.onnx"
            export_onnx(m, onnx_path, frames=m.clip_len or frames, size=size)
            runs.append(("onnxruntime", str(onnx_path)))
        del m
        for backend, extra in runs:
            w = extra if backend == "onnxruntime" else weights
            prec = "fp32" if backend == "onnxruntime" else extra
            with ctx.Pool(1) as pool:
                rows.append(pool.apply(_model_run, (model, w, backend, prec, frames, size, repeats, threads)))
    ref = next((r["out"] for r in rows if r["backend"] == "torch" and r["precision"] == "fp32"), None)
    for r in rows:
        out = r.pop("out")
        if r["backend"] == "onnxruntime" and ref is not None and out is not None:
            r["max_abs_diff_vs_torch_fp32"] = float(np.abs(out - ref).max())
    if as_json:
        print(json.dumps({"model": model, "size": size, "threads": threads, "runs": rows}))
        return
    print(f"{model} at {size}x{size}, {threads} threads, median of {repeats} calls")
    print(f"{'backend':12} {'precision':9} {'clip':>4} {'frames/s':>9} {'s/frame':>8} {'peak RSS':>9}  "
          "parity")
    for r in rows:
        par = r.get("max_abs_diff_vs_torch_fp32")
        parity = f"max |ORT - torch fp32| = {par:.2e}" if par is not None else ""
        print(f"{r['backend']:12} {r['precision']:9} {r['clip']:>4} {r['fps']:>9.2f} "
              f"{r['s_per_frame']:>8.3f} {r['peak_rss_mb']:>7.0f}MB  {parity}")

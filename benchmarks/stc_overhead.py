"""STC end to end against its model cost: does `bfvr restore` of a real clip spend about (model calls x one
bare forward), or does time go elsewhere (start-up, weights, decode, colour conversion, blending, encode)?

For each precision, two processes on the same real frames, weights and thread count:

1. **end to end**: the real command, ``python -m bfvr.cli -vv restore CLIP -o out.mp4 -m stc --weights W
   --offline --has-aligned --precision P --quiet`` on a clip cut from a real 512x512 talking-head video
   (first N frames of ../shared/data/faces/lp_driving_d11.mp4, re-encoded with x264 crf 18). Wall time, CPU
   time (user+system, all threads) and peak RSS of the whole command come from ``os.wait4``; the model calls
   are counted from the engine's ``model call k: ...`` debug lines (each with its own duration), the load time
   from the ``ready in`` info line.
2. **bare forward**: the same network (`load_model("stc", ...)`, so the same weights layout, channels-last
   and autocast as in the engine) called directly, ``run_net(to_layout(x))`` under the engine's autocast and
   ``no_grad``, on the first `clip_len` real frames of the clip: one warm-up call, then one timed call.
   The same process also times decoding the clip and encoding N frames (x264 crf 18, preset medium, as
   `bfvr restore` writes them) for the breakdown.

``ratio = end-to-end wall / (calls x bare forward wall)`` (and the same with CPU seconds, which a shared
machine inflates less). Breakdown of the end-to-end wall time: ``startup`` (interpreter, imports, argument
checks, input probe: up to the model's load), ``load`` (weights file -> network), ``model`` (the sum of the
engine's model calls), ``rest`` (decode, uint8 <-> float, cross-fade, encode, rename: everything else), and
``first_call_extra`` = first model call - median of the others (oneDNN's first-call kernel set-up).

Weights: the golden manifest's official-layout synthetic weights (../shared/tools/golden_weights.py; same
network, same cost, outputs are not faces) or ``--weights``. Threads: ``OMP_NUM_THREADS`` = ``--threads`` in
both processes.

    python benchmarks/stc_overhead.py --frames 48 --precisions fp32 bf16     # the measurement (3 calls each)
    python benchmarks/stc_overhead.py --frames 2 --clip-len 2 --overlap 0 --threads 1 --precisions bf16
                                                                              # quick check of the script
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BFVR_SHARED", REPO.parent / "shared"))
CALL_RE = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) \S+ DEBUG: model call (\d+): (\d+) frames (\d+)x(\d+) "
                     r"in ([0-9.]+) s")
READY_RE = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) .*ready in ([0-9.]+) s")


def fixture_weights(out: Path) -> Path:
    import torch

    sys.path.insert(0, str(SHARED / "tools"))
    from golden_weights import make_state_dict

    sd = make_state_dict(str(SHARED / "golden" / "stc_stage2" / "manifest.json"))
    torch.save({"params_ema": sd}, out)
    return out


def cut_clip(video: Path, frames: int, out: Path) -> Path:
    """The first `frames` frames of `video` as an H.264 clip (x264 crf 18, the input's frame rate)."""
    from bfvr.io import VideoWriter, open_video

    with open_video(video) as r, VideoWriter(out, fps=r.info.fps, crf=18) as w:
        n = 0
        for f, _ in r.frames():
            w.write(f)
            n += 1
            if n == frames:
                break
    if n < frames:
        sys.exit(f"{video} has only {n} frames; ask for at most that many with --frames.")
    return out


def seconds_of_day(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def run_measured(cmd: list[str], env: dict[str, str]) -> dict:
    """Run `cmd`; its wall time, CPU seconds (children's rusage), peak RSS, stderr and start time."""
    now = datetime.now()
    start_tod = now.hour * 3600 + now.minute * 60 + now.second + now.microsecond / 1e6
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        out = p.stdout.read()
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read()
    if p.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{stderr[-3000:]}")
    return {"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "rss_gb": ru.ru_maxrss / 2**20, "stdout": out,
            "stderr": stderr, "start_tod": start_tod}


def end_to_end(args: argparse.Namespace, clip: Path, weights: Path, prec: str, out: Path, env: dict) -> dict:
    cmd = [sys.executable, "-m", "bfvr.cli", "-vv", "restore", str(clip), "-o", str(out), "-m", "stc",
           "--weights", str(weights), "--offline", "--has-aligned", "--precision", prec, "--quiet"]
    if args.clip_len is not None:
        cmd += ["--clip-len", str(args.clip_len)]
    if args.overlap is not None:
        cmd += ["--overlap", str(args.overlap)]
    r = run_measured(cmd, env)
    calls, load_s, t_ready = [], None, None
    for line in r["stderr"].splitlines():
        m = CALL_RE.match(line)
        if m:
            calls.append({"frames": int(m[6]), "size": f"{m[7]}x{m[8]}", "s": float(m[9]),
                          "end": seconds_of_day(*m.groups()[:4])})
        m = READY_RE.match(line)
        if m:
            load_s, t_ready = float(m[5]), seconds_of_day(*m.groups()[:4])
    if not calls or load_s is None:
        sys.exit(f"no model calls / load line in the log of {' '.join(cmd)}:\n{r['stderr'][-3000:]}")

    def rel(tod: float) -> float:  # seconds since launch (a run may cross midnight)
        return (tod - r["start_tod"]) % 86400

    from bfvr.io import probe

    info = probe(out)
    secs = [c["s"] for c in calls]
    model_s = sum(secs)
    startup = rel(t_ready) - load_s
    return {"cmd": cmd, "frames_out": info.frame_count, "calls": len(calls),
            "call_shape": f"{calls[0]['frames']}x{calls[0]['size']}", "call_s": [round(s, 2) for s in secs],
            "wall_s": r["wall"], "cpu_s": r["cpu"], "peak_rss_gb": r["rss_gb"], "startup_s": startup,
            "load_s": load_s, "model_s": model_s, "rest_s": r["wall"] - startup - load_s - model_s,
            "after_last_call_s": r["wall"] - rel(calls[-1]["end"]),
            "first_call_extra_s": secs[0] - statistics.median(secs[1:]) if len(secs) > 1 else None}


def bare_worker(args: argparse.Namespace) -> None:
    import resource

    import numpy as np
    import torch

    from bfvr.engine.device import autocast
    from bfvr.io import VideoWriter
    from bfvr.io.reader import read_frames
    from bfvr.models.hub import load_model

    t0 = time.perf_counter()
    frames = read_frames(args.video)  # the whole clip: its decode time
    decode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, VideoWriter(Path(tmp) / "enc.mp4", fps=25, crf=18) as w:
        for f in frames:  # x264 crf 18 preset medium, as `bfvr restore` writes
            w.write(f)
    encode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    options = {k: v for k, v in (("clip_len", args.clip_len), ("overlap", args.overlap)) if v is not None}
    model = load_model("stc", weights=str(args.weights), precision=args.precision, offline=True,
                       progress=False, **options)
    load_s = time.perf_counter() - t0
    t = model.clip_len
    x = torch.from_numpy(np.ascontiguousarray(frames[:t])).permute(0, 3, 1, 2).float().div_(255.0)
    if t % 2:  # the adapter pads an odd T with the last frame (the network halves T)
        x = torch.cat([x, x[-1:]])
    xin = model.to_layout(x)

    def forward() -> tuple[float, float]:
        r0, c0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        with torch.no_grad(), autocast(model.device, model.precision):
            model.run_net(xin)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        return time.perf_counter() - c0, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)

    warm_s, _ = forward()
    bare_s, bare_cpu = forward()
    print(json.dumps({"precision": model.precision, "threads": torch.get_num_threads(),
                      "shape": list(xin.shape), "decode_s": decode_s, "encode_s": encode_s, "load_s": load_s,
                      "warmup_s": warm_s, "bare_s": bare_s, "bare_cpu_s": bare_cpu,
                      "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=48, help="frames of the clip (48: three 24-frame calls)")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--weights", type=Path, default=None, help="checkpoint (default: golden-manifest weights)")
    p.add_argument("--video", type=Path, default=SHARED / "data" / "faces" / "lp_driving_d11.mp4")
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of both processes")
    p.add_argument("--clip-len", type=int, default=None, help="frames per call (default: STC's 24)")
    p.add_argument("--overlap", type=int, default=None, help="cross-faded frames (default: STC's 8)")
    p.add_argument("--json", action="store_true", help="one JSON line per precision only")
    p.add_argument("--bare-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--precision", default="bf16", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.bare_worker:
        bare_worker(args)
        return
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": os.pathsep.join(
        [str(REPO / "src")] + [q for q in os.environ.get("PYTHONPATH", "").split(os.pathsep) if q])}
    with tempfile.TemporaryDirectory(prefix="stc_overhead_") as tmp:
        tmp = Path(tmp)
        weights = args.weights or fixture_weights(tmp / "stc-golden-layout.pth")
        clip = cut_clip(args.video, args.frames, tmp / "clip.mp4")
        for prec in args.precisions:
            e = end_to_end(args, clip, weights, prec, tmp / f"out_{prec}.mp4", env)
            cmd = [sys.executable, __file__, "--bare-worker", "--precision", prec, "--weights", str(weights),
                   "--video", str(clip)]
            for flag, v in (("--clip-len", args.clip_len), ("--overlap", args.overlap)):
                if v is not None:
                    cmd += [flag, str(v)]
            b = run_measured(cmd, env)
            bare = json.loads(b["stdout"].strip().splitlines()[-1])
            calls = e["calls"]
            res = {
                "precision": prec, "frames": args.frames, "frames_out": e["frames_out"],
                "threads": bare["threads"],
                "calls": calls, "call_shape": e["call_shape"], "bare_forward_s": round(bare["bare_s"], 2),
                "end_to_end_s": round(e["wall_s"], 2),
                "ratio": round(e["wall_s"] / (calls * bare["bare_s"]), 3),
                "ratio_cpu": round(e["cpu_s"] / (calls * bare["bare_cpu_s"]), 3),
                "end_to_end_cpu_s": round(e["cpu_s"], 1), "bare_forward_cpu_s": round(bare["bare_cpu_s"], 1),
                "peak_rss_gb": {"end_to_end": round(e["peak_rss_gb"], 2), "bare": round(b["rss_gb"], 2)},
                "breakdown_s": {"startup": round(e["startup_s"], 2), "load": round(e["load_s"], 2),
                                "model": round(e["model_s"], 2), "rest": round(e["rest_s"], 2),
                                "after_last_call": round(e["after_last_call_s"], 2),
                                "first_call_extra": None if e["first_call_extra_s"] is None
                                else round(e["first_call_extra_s"], 2)},
                "model_calls_s": e["call_s"],
                "bare_process_s": {"warmup": round(bare["warmup_s"], 2), "load": round(bare["load_s"], 2),
                                   "decode_clip": round(bare["decode_s"], 3),
                                   "encode_clip": round(bare["encode_s"], 3)},
                "command": " ".join(e["cmd"]),
            }
            if e["frames_out"] != args.frames:
                sys.exit(f"bfvr restore wrote {e['frames_out']} frames for {args.frames}")
            print(json.dumps(res), flush=True)
            if not args.json:
                print(f"  {prec}: {calls} calls x {res['bare_forward_s']} s bare = "
                      f"{calls * bare['bare_s']:.1f} s; end to end {res['end_to_end_s']} s -> ratio "
                      f"{res['ratio']} (CPU {res['ratio_cpu']}); peak RSS "
                      f"{res['peak_rss_gb']['end_to_end']} GB end to end, "
                      f"{res['peak_rss_gb']['bare']} GB bare", flush=True)


if __name__ == "__main__":
    main()

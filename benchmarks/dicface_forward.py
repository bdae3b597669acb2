"""DicFace at 512x512 on this machine: speed and memory of the two window schedules, the bf16 deviation, and
what the two sampling modes do to temporal stability. Prints tables (and JSON lines with --json).

    python benchmarks/dicface_forward.py speed       # s per output frame + peak RSS: official (keep=1)
                                                     # and fast (keep=5) schedules, fp32 and bf16 (a
                                                     # subprocess each)
    python benchmarks/dicface_forward.py deviation   # bf16 vs fp32 on the golden input (both sampling
                                                     # modes)
    python benchmarks/dicface_forward.py flicker     # sampling official vs mean on a real clip: flicker,
                                                     # warping error, output difference (15 frames,
                                                     # keep=5, bf16)

Weights: the golden `dicface` manifest's SYNTHETIC deterministic weights (../shared/tools/golden_weights.py),
in the official layout; no official weights exist offline. Speed and memory do not depend on the values;
the quality of the output does (these weights restore nothing: they only pin down the arithmetic), so the
`flicker` numbers compare the two sampling modes on the same network, not DicFace's real quality.
Frames: the first frames of ../shared/data/faces/lp_driving_d0.mp4 (a real 512x512 face clip), run as
aligned crops (whole frames, like --has-aligned) through the engine (`bfvr.engine.chunker.ClipEngine`).
Official reference (issue 14): the official forward takes 37-43 s per 5-frame call on this kind of CPU (fp32,
2 threads), i.e. 37-43 s per output frame with its stride-1 schedule. The machine is shared: `cpu_s` (user+
system CPU time) / threads approximates an unloaded wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BFVR_SHARED", REPO.parent / "shared"))
CLIP = SHARED / "data" / "faces" / "lp_driving_d0.mp4"
OFFICIAL_S_PER_CALL = (37, 43)


def peak_rss_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def fixture_net(**kw):
    """The official-layout DicFace with the golden manifest's synthetic weights (built on meta, then
    assigned)."""
    import torch

    from bfvr.models.dicface import DicFace

    sys.path.insert(0, str(SHARED / "tools"))
    from golden_weights import make_state_dict

    meta = json.loads((SHARED / "golden" / "dicface" / "meta.json").read_text())
    with torch.device("meta"):
        net = DicFace(**meta["constructor"]["kwargs"], **kw)
    net.load_state_dict(
        make_state_dict(str(SHARED / "golden" / "dicface" / "manifest.json")), strict=True, assign=True
    )
    return net.eval()


def clip_model(precision: str, keep: int, sampling: str, seed: int | None = 0):
    from bfvr.models.dicface.clip import DicFaceClipModel

    return DicFaceClipModel(fixture_net(), keep=keep, precision=precision, sampling=sampling, seed=seed)


def real_frames(n: int):
    from bfvr.io import read_frames

    return read_frames(CLIP, max_frames=n)


# ------------------------------------------------------------------------------------------------ speed


def speed_child(a: argparse.Namespace) -> None:
    import torch

    from bfvr.engine.chunker import ClipEngine

    torch.set_num_threads(a.threads)
    frames = real_frames(a.frames)
    eng = ClipEngine(clip_model(a.precision, a.keep, a.sampling))
    t0, c0 = time.perf_counter(), time.process_time()
    out = eng.restore_array(frames)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert out.shape == frames.shape
    print(
        json.dumps(
            {
                "schedule": "official keep=1" if a.keep == 1 else f"fast keep={a.keep}",
                "precision": a.precision,
                "frames": len(frames),
                "calls": eng.clips_run,
                "s_per_frame": round(wall / len(frames), 1),
                "cpu_s_per_frame": round(cpu / len(frames), 1),
                "s_per_call": round(wall / eng.clips_run, 1),
                "peak_rss_gb": round(peak_rss_gb(), 2),
                "threads": a.threads,
                "load_avg": round(os.getloadavg()[0], 1),
            }
        ),
        flush=True,
    )


def speed(a: argparse.Namespace) -> list[dict]:
    rows = []
    for keep, frames in ((1, a.official_frames), (a.keep, a.fast_frames)):
        for precision in a.precision:
            cmd = [
                sys.executable,
                __file__,
                "speed-child",
                "--keep",
                str(keep),
                "--frames",
                str(frames),
                "--precision",
                precision,
                "--threads",
                str(a.threads),
                "--sampling",
                a.sampling,
            ]
            res = subprocess.run(cmd, check=False, capture_output=True, text=True, env={**os.environ})
            if res.returncode:
                sys.exit(res.stderr)
            row = json.loads(res.stdout.strip().splitlines()[-1])
            rows.append(row)
            if a.json:
                print(json.dumps(row), flush=True)
    print(
        f"\nDicFace 512x512, {a.threads} threads, synthetic fixture weights; official forward: "
        f"{OFFICIAL_S_PER_CALL[0]}-{OFFICIAL_S_PER_CALL[1]} s per 5-frame call = s per output frame (fp32)"
    )
    print(
        f"{'schedule':18} {'prec':5} {'frames':>6} {'calls':>5} {'s/frame':>8} {'cpu_s/frame':>11} "
        f"{'s/call':>7} {'peak RSS':>9} {'load':>5}"
    )
    for r in rows:
        print(
            f"{r['schedule']:18} {r['precision']:5} {r['frames']:6d} {r['calls']:5d} "
            f"{r['s_per_frame']:8.1f} {r['cpu_s_per_frame']:11.1f} {r['s_per_call']:7.1f} "
            f"{r['peak_rss_gb']:7.2f}GB {r['load_avg']:5.1f}"
        )
    return rows


# -------------------------------------------------------------------------------------------- deviation


def deviation(a: argparse.Namespace) -> dict:
    """bf16 autocast (+ channels-last, the precision policy) vs fp32 on the golden input, both sampling
    modes."""
    import torch

    from bfvr.engine.device import autocast
    from bfvr.models.adapter import to_channels_last

    torch.set_num_threads(a.threads)
    sys.path.insert(0, str(SHARED / "tools"))
    from golden_weights import load_safetensors

    x = load_safetensors(str(SHARED / "golden" / "dicface" / "io.safetensors"))["input"]
    net = fixture_net(seed=0)
    res: dict = {}
    outs = {}
    for precision in ("fp32", "bf16"):
        if precision == "bf16":
            to_channels_last(net)
        xin = x.contiguous(memory_format=torch.channels_last) if precision == "bf16" else x
        for sampling in ("mean", "official"):
            net.reset_rng()  # the same seeded draw in both precisions
            t0 = time.perf_counter()
            with torch.no_grad(), autocast(x.device, precision):
                out, _, alpha = net(xin, w=1.0, sampling=sampling)
            res[f"{precision}_{sampling}_seconds"] = round(time.perf_counter() - t0, 1)
            outs[precision, sampling] = (out.float(), alpha.float())
    for sampling in ("mean", "official"):
        (o32, a32), (o16, a16) = outs["fp32", sampling], outs["bf16", sampling]
        c32, c16 = o32.clamp(-1, 1), o16.clamp(-1, 1)
        res[sampling] = {
            "output_max_abs": round((o16 - o32).abs().max().item(), 4),
            "output_mean_abs": round((o16 - o32).abs().mean().item(), 5),
            "clamped_max_abs": round((c16 - c32).abs().max().item(), 4),
            "clamped_mean_abs": round((c16 - c32).abs().mean().item(), 5),
            "clamped_mean_abs_8bit": round((c16 - c32).abs().mean().item() * 127.5, 3),
            "alpha_max_rel": round(((a16 - a32).abs() / a32).max().item(), 4),
        }
    print(json.dumps(res, indent=1))
    return res


# ---------------------------------------------------------------------------------------------- flicker


def flicker(a: argparse.Namespace) -> dict:
    """Temporal stability of the two sampling modes on the same network and input.

    The Dirichlet draw is independent for every (frame, latent position), so sampling noise reaches every
    frame transition whatever the schedule; the default keep=5 schedule is used (5x fewer calls than keep=1).
    Transitions are split into those inside one call and those across two calls (the keep-K seams)."""
    import numpy as np
    import torch

    from bfvr.engine.chunker import ClipEngine
    from bfvr.metrics.temporal import warp_errors

    torch.set_num_threads(a.threads)
    frames = real_frames(a.frames)
    seam = np.array([(t % a.keep) == 0 for t in range(1, len(frames))])  # transition t-1 -> t crosses calls

    def stats(v: np.ndarray) -> dict:
        d = np.abs(np.diff(v.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
        w = warp_errors(v, reference=frames)
        out = {
            "flicker_mean_abs_dframe": round(float(d.mean()), 2),
            "warp_error_input_flow": round(float(np.nanmean(w)), 2),
        }
        if a.keep > 1 and seam.any():
            out["flicker_inside_calls"] = round(float(d[~seam].mean()), 2)
            out["flicker_across_calls"] = round(float(d[seam].mean()), 2)
        return out

    res = {"frames": len(frames), "keep": a.keep, "precision": a.flicker_precision, "input": stats(frames)}
    outs = {}
    for sampling, seed in (("mean", 0), ("official", 0), ("official", 1)):
        t0 = time.perf_counter()
        eng = ClipEngine(clip_model(a.flicker_precision, a.keep, sampling, seed=seed))
        outs[sampling, seed] = eng.restore_array(frames)
        res[f"{sampling}_seed{seed}"] = {
            **stats(outs[sampling, seed]),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(json.dumps({f"{sampling}_seed{seed}": res[f"{sampling}_seed{seed}"]}), flush=True)

    def diff(p, q):
        return round(float(np.abs(outs[p].astype(np.float32) - outs[q].astype(np.float32)).mean()), 2)

    res["mean_abs_official_vs_mean"] = diff(("official", 0), ("mean", 0))
    res["mean_abs_official_seed0_vs_seed1"] = diff(("official", 0), ("official", 1))
    print(json.dumps(res, indent=1))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["speed", "deviation", "flicker", "speed-child"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--keep", type=int, default=5, help="the fast schedule's K (flicker: the schedule's K)")
    ap.add_argument(
        "--frames",
        type=int,
        default=None,
        help="speed-child / flicker: frames of the real clip (default 5 / 15)",
    )
    ap.add_argument(
        "--official-frames", type=int, default=3, help="speed: frames through keep=1 (1 call each)"
    )
    ap.add_argument("--fast-frames", type=int, default=10, help="speed: frames through the fast schedule")
    ap.add_argument("--sampling", default="mean", choices=["mean", "official"], help="speed: sampling mode")
    ap.add_argument("--flicker-precision", default="bf16", choices=["fp32", "bf16"])
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.what == "speed-child":
        a.precision = a.precision[0]
        a.frames = a.frames or 5
        speed_child(a)
    elif a.what == "speed":
        speed(a)
    elif a.what == "deviation":
        deviation(a)
    else:
        a.frames = a.frames or 15
        flicker(a)


if __name__ == "__main__":
    main()

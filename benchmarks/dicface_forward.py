"""DicFace at 512x512 on this machine: speed and memory of the two window schedules, the bf16 deviation, and
what the two sampling modes do to temporal stability. Prints tables (and JSON lines with --json).

    python benchmarks/dicface_forward.py speed       # s per output frame + peak RSS: official (keep=1)
                                                     # and fast (keep=5) schedules, fp32 and bf16 (a
                                                     # subprocess each)
    python benchmarks/dicface_forward.py deviation   # bf16 vs fp32 on the golden input (both sampling
                                                     # modes)
    python benchmarks/dicface_forward.py schedules   # issue 24: naive official loop vs incremental official
                                                     # schedule vs keep=5, fp32 and bf16 (+ bf16 with fp32
                                                     # transformers): s/frame, cpu s/frame/thread, peak RSS,
                                                     # x the official code (estimated: 1.22 x naive fp32),
                                                     # fp32 max diff incremental vs naive, code agreement,
                                                     # cpu time by stage (a subprocess each)
    python benchmarks/dicface_forward.py profile     # stage times of one incremental step (in-process)
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
    from bfvr.io.memory import tune_malloc_for_streaming

    tune_malloc_for_streaming()  # as the `bfvr` console script does (the engine's model calls use the heap)
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


# ---------------------------------------------------------------------------------------------- profile


def _timed(fn, repeat: int):
    """(result, best wall seconds, CPU seconds of that run) of fn() over `repeat` runs."""
    best, cpu, res = float("inf"), 0.0, None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        res = fn()
        w = time.perf_counter() - t0
        if w < best:
            best, cpu = w, time.process_time() - c0
    return res, best, cpu


def _profile_stages(net, x, tr32: bool, repeat: int):
    """alpha of the window x [5, 3, S, S] and the (wall, cpu) seconds of: encode 1 frame, the transformers on
    5 frames, head + official draw + the kept frame's code mixture, decode 1 frame."""

    (lq, feats), t_enc, c_enc = _timed(lambda: net.encode_frames(x[:1]), repeat)
    lq5 = net.encode_frames(x)[0]

    def tr():
        net.fp32_transformer = tr32
        try:
            return net.transform(lq5)
        finally:
            net.fp32_transformer = False

    tok, t_tr, c_tr = _timed(tr, repeat)

    def head():
        net.reset_rng()
        alpha = net.head(tok)
        return alpha, net.code_mixture(net.code_weights(alpha, "official")[2:3])

    (alpha, quant), t_head, c_head = _timed(head, repeat)
    _, t_dec, c_dec = _timed(lambda: net.decode(quant, feats, 1.0), repeat)
    return alpha, (t_enc, t_tr, t_head, t_dec), (c_enc, c_tr, c_head, c_dec)


def profile(a: argparse.Namespace) -> dict:
    """Where one output frame's time goes on the incremental official schedule (encode 1 new frame, the
    transformers over the 5-frame window, the Dirichlet head + draw + code mixture, decode 1 frame), fp32 and
    bf16 (autocast + channels-last; and bf16 with the transformers in fp32), plus the naive loop's per-frame
    work (5 encodes + 5 decodes) derived from the same stage times. Also: the share of code indices (argmax
    of alpha, every token of the window) equal to fp32's."""
    import torch

    from bfvr.engine.device import autocast
    from bfvr.models.adapter import to_channels_last

    torch.set_num_threads(a.threads)
    frames = real_frames(5)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    net = fixture_net(seed=0)
    res: dict = {"threads": a.threads, "load_avg_start": round(os.getloadavg()[0], 1), "stages": {}}
    codes = {}
    variants = [("fp32", False, False), ("fp32", False, True), ("bf16", False, True), ("bf16", True, True)]
    for precision, tr32, cl in variants:
        if cl:
            to_channels_last(net)
        name = f"{precision}{' channels-last' if cl and precision == 'fp32' else ''}"
        name += " (transformer fp32)" if tr32 else ""
        xin = x.contiguous(memory_format=torch.channels_last) if cl else x
        with torch.no_grad(), autocast(x.device, precision):
            alpha, times, cpus = _profile_stages(net, xin, tr32, a.repeat)
        t_enc, t_tr, t_head, t_dec = times
        c_enc, c_tr, c_head, c_dec = cpus
        codes[name] = alpha.argmax(-1)
        inc = t_enc + t_tr + t_head + t_dec
        naive = 5 * t_enc + t_tr + t_head + 5 * t_dec
        row = {
            "encode_1_frame_s": round(t_enc, 2),
            "transformers_5_frames_s": round(t_tr, 2),
            "head_draw_mixture_s": round(t_head, 2),
            "decode_1_frame_s": round(t_dec, 2),
            "incremental_s_per_frame": round(inc, 2),
            "naive_s_per_frame_derived": round(naive, 2),
            "cpu_s_per_frame_incremental": round(c_enc + c_tr + c_head + c_dec, 2),
            "share_incremental": {
                k: round(v / inc, 3)
                for k, v in (("encoder", t_enc), ("transformers", t_tr), ("head", t_head), ("decoder", t_dec))
            },
        }
        res["stages"][name] = row
        print(json.dumps({name: row}), flush=True)
    ref = codes["fp32"]
    res["code_agreement_vs_fp32"] = {k: round((v == ref).float().mean().item(), 4) for k, v in codes.items()}
    res["load_avg_end"] = round(os.getloadavg()[0], 1)
    print(json.dumps(res, indent=1))
    return res


# -------------------------------------------------------------------------------------------- schedules

#: the official code's s/frame over our naive fp32 loop's, measured side by side on one machine (issue 24:
#: 21.8 vs 17.8 s/frame); the official code cannot run here, so its speed is estimated from our naive loop
OFFICIAL_OVER_NAIVE_FP32 = 1.22
#: bf16 with the transformers in fp32 (`DicFace.fp32_transformer`)
BF16_T32 = "bf16-fp32-transformer"
SCHEDULES = {  # name -> (keep, incremental)
    "naive official": (1, False),
    "incremental official": (1, True),
    "fast keep=5": (5, True),
}


def _cpu_timed(fn, acc: dict, key: str):
    """fn, adding its CPU seconds (all threads) to acc[key] (the naive forward calls the same methods)."""

    def wrapped(*args, **kw):
        c0 = time.process_time()
        try:
            return fn(*args, **kw)
        finally:
            acc[key] += time.process_time() - c0

    return wrapped


def schedule_child(a: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from bfvr.engine.chunker import ClipEngine
    from bfvr.io.memory import tune_malloc_for_streaming

    tune_malloc_for_streaming()  # as the `bfvr` console script does (the engine's model calls use the heap)
    torch.set_num_threads(a.threads)
    keep, incremental = SCHEDULES[a.schedule]
    frames = real_frames(a.frames)
    model = clip_model("bf16" if a.precision == BF16_T32 else a.precision, keep, a.sampling)
    model.incremental = incremental
    model.net.fp32_transformer = a.precision == BF16_T32
    eng = ClipEngine(model)
    outs, codes = [], []

    def capture(x):
        outs.append(x.clone())
        return ClipEngine.clip_to_uint8(x)

    eng.clip_to_uint8 = capture
    head = model.net.head

    def recording_head(tok):
        alpha = head(tok)
        codes.append(alpha.argmax(-1).to(torch.int16))
        return alpha

    model.net.head = recording_head
    stages = {"encoder": 0.0, "transformers": 0.0, "head": 0.0, "decoder": 0.0}
    net = model.net
    for stage, attr in (("encoder", "encode_frames"), ("transformers", "transform"), ("head", "head"),
                        ("head", "code_weights"), ("head", "code_mixture"), ("decoder", "decode")):
        setattr(net, attr, _cpu_timed(getattr(net, attr), stages, stage))
    t0, c0 = time.perf_counter(), time.process_time()
    out = eng.restore_array(frames)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert out.shape == frames.shape
    np.savez(a.out, out=torch.cat(outs).numpy(), codes=torch.stack(codes).numpy())
    n = len(frames)
    print(json.dumps({
        "schedule": a.schedule, "precision": a.precision, "frames": n, "calls": eng.clips_run,
        "s_per_frame": round(wall / n, 2), "cpu_s_per_frame_per_thread": round(cpu / a.threads / n, 2),
        "peak_rss_gb": round(peak_rss_gb(), 2), "threads": a.threads,
        "load_avg": round(os.getloadavg()[0], 1),
        "cpu_s_per_frame_by_stage": {k: round(v / n, 2) for k, v in stages.items()},
    }), flush=True)


def schedules(a: argparse.Namespace) -> dict:
    """Naive official loop vs incremental official schedule vs fast keep=5, fp32 and bf16, each in its own
    process on the same real frames; fp32 max difference incremental vs naive; code agreement with fp32."""
    import tempfile

    import numpy as np

    rows, res = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = [(p, name) for p in a.precision for name in SCHEDULES]
        if "bf16" in a.precision:
            runs.append((BF16_T32, "incremental official"))
        for precision, name in runs:
            out = Path(tmp) / f"{precision}-{name.replace(' ', '_').replace('=', '')}.npz"
            n = a.fast_frames if name.startswith("fast") else a.frames
            cmd = [sys.executable, __file__, "schedule-child", "--schedule", name,
                   "--frames", str(n), "--precision", precision, "--threads", str(a.threads),
                   "--sampling", a.sampling, "--out", str(out)]
            r = subprocess.run(cmd, check=False, capture_output=True, text=True, env={**os.environ})
            if r.returncode:
                sys.exit(r.stderr)
            row = json.loads(r.stdout.strip().splitlines()[-1])
            rows[precision, name] = row
            res[precision, name] = np.load(out)
            print(json.dumps(row), flush=True)
        naive = rows.get(("fp32", "naive official"))
        official = OFFICIAL_OVER_NAIVE_FP32 * naive["s_per_frame"] if naive else None
        official_cpu = OFFICIAL_OVER_NAIVE_FP32 * naive["cpu_s_per_frame_per_thread"] if naive else None
        summary: dict = {"frames": a.frames, "fast_frames": a.fast_frames, "sampling": a.sampling,
                         "threads": a.threads}
        for (precision, name), row in rows.items():
            if official:
                row["x_official_wall"] = round(official / row["s_per_frame"], 1)
                row["x_official_cpu"] = round(official_cpu / row["cpu_s_per_frame_per_thread"], 1)
            if ("fp32", name) in res and precision != "fp32":
                c, c32 = res[precision, name]["codes"], res["fp32", name]["codes"]
                row["code_agreement_vs_fp32"] = round(float((c == c32).mean()), 4)
        for precision in a.precision:
            if (precision, "naive official") in res and (precision, "incremental official") in res:
                inc, nai = res[precision, "incremental official"], res[precision, "naive official"]
                d = np.abs(inc["out"] - nai["out"])
                summary[f"{precision}_max_abs_diff_incremental_vs_naive"] = float(d.max())
                summary[f"{precision}_max_abs_diff_8bit_levels"] = round(float(d.max()) * 255, 4)
    print(f"\nDicFace 512x512 ({a.frames} frames of {CLIP.name}, fast: {a.fast_frames}), "
          f"{a.threads} threads, synthetic fixture weights, sampling {a.sampling}; official code estimated "
          f"at {OFFICIAL_OVER_NAIVE_FP32} x our naive fp32 = {official and round(official, 1)} s/frame "
          f"(cpu {official_cpu and round(official_cpu, 1)})")
    print(f"{'schedule':22} {'prec':5} {'calls':>5} {'s/frame':>8} {'cpu s/frame/thr':>15} "
          f"{'x official':>10} {'x off (cpu)':>11} {'peak RSS':>9} {'codes=fp32':>10} {'load':>5}")
    for (precision, name), r in rows.items():
        print(f"{name:22} {precision:5} {r['calls']:5d} {r['s_per_frame']:8.2f} "
              f"{r['cpu_s_per_frame_per_thread']:15.2f} {r.get('x_official_wall', float('nan')):10.1f} "
              f"{r.get('x_official_cpu', float('nan')):11.1f} {r['peak_rss_gb']:7.2f}GB "
              f"{r.get('code_agreement_vs_fp32', float('nan')):10.4f} {r['load_avg']:5.1f}")
    print("\nCPU seconds per output frame by stage (all threads)")
    for (precision, name), r in rows.items():
        st = r["cpu_s_per_frame_by_stage"]
        tot = sum(st.values()) or 1.0
        parts = " ".join(f"{k} {v:6.2f} ({v / tot:4.0%})" for k, v in st.items())
        print(f"{name:22} {precision:22} {parts}")
    print(json.dumps(summary, indent=1))
    return {"rows": [dict(r) for r in rows.values()], **summary}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["speed", "deviation", "flicker", "speed-child", "profile", "schedules",
                                     "schedule-child"])
    ap.add_argument("--schedule", choices=list(SCHEDULES), help="schedule-child: which schedule")
    ap.add_argument("--out", help="schedule-child: where to save the float outputs and code indices (.npz)")
    ap.add_argument("--repeat", type=int, default=2, help="profile: runs per stage (the best is kept)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", BF16_T32])
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
    ap.add_argument("--fast-frames", type=int, default=None,
                    help="speed / schedules: frames through the fast schedule (default 10 / 5)")
    ap.add_argument("--sampling", default=None, choices=["mean", "official"],
                    help="speed: sampling mode (default mean); schedules: (default official, seed 0)")
    ap.add_argument("--flicker-precision", default="bf16", choices=["fp32", "bf16"])
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.what in ("speed", "speed-child"):
        a.sampling = a.sampling or "mean"
    a.fast_frames = a.fast_frames or (5 if a.what == "schedules" else 10)
    if a.what == "speed-child":
        a.precision = a.precision[0]
        a.frames = a.frames or 5
        speed_child(a)
    elif a.what == "speed":
        speed(a)
    elif a.what == "deviation":
        deviation(a)
    elif a.what == "profile":
        profile(a)
    elif a.what == "schedules":
        a.frames = a.frames or 3
        a.sampling = a.sampling or "official"
        schedules(a)
    elif a.what == "schedule-child":
        a.precision = a.precision[0]
        schedule_child(a)
    else:
        a.frames = a.frames or 15
        flicker(a)


if __name__ == "__main__":
    main()

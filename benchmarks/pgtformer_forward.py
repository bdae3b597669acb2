"""Speed and peak memory of PGTFormer at 512x512: seconds per output frame for the official 3-frame window
schedule (keep=1: one window per output frame) and the fast one (keep=3: one window per three frames),
fp32 and bf16 autocast (+ channels-last), each measured configuration in its own subprocess so the peak
RSS figures do not mix; plus the bf16 deviation from fp32 on the same window.

    python benchmarks/pgtformer_forward.py                      # fp32 and bf16, one window per call
    python benchmarks/pgtformer_forward.py --batch 1,2          # also two windows per call
    python benchmarks/pgtformer_forward.py --precision fp32 --repeat 1 --threads 1
    python benchmarks/pgtformer_forward.py schedules --frames 9   # naive vs incremental vs --keep 3
    python benchmarks/pgtformer_forward.py profile               # seconds per stage of one window
    python benchmarks/pgtformer_forward.py roofline              # fp32: work, GEMM peak, best possible

`schedules`: restores the same real frames through the engine (`ClipEngine`, as `bfvr restore` does) with
the naive official loop (one full 3-frame network call per output frame, `incremental=False`), the
incremental official schedule (the default: per-frame work cached, only the kept frame decoded) and the
fast `--keep 3` schedule, in fp32 and bf16, each in its own subprocess; prints wall and CPU seconds per
frame, peak RSS, the fp32 max difference incremental vs naive, the share of code indices equal to fp32,
and an estimate of the official code's time (1.19 x our naive fp32 of the same run: the ratio measured
side by side in issue 24, official 23.1 vs naive 19.4 s/frame).
`profile`: exclusive wall and CPU seconds per stage of the incremental schedule on one window
(parsing, encoder convolutions, Swin-3D window attention, code predictor, TFR, decoder convolutions).
`roofline` (fp32): counts the multiply-accumulates of one output frame (naive window; incremental =
one frame's per-frame part + one window decoding its middle frame) with `torch.utils.flop_counter`, times
the same calls, times a large fp32 matrix product (this CPU's practical fp32 peak), and prints the
fastest the incremental schedule could possibly be at 100 % of that peak, against the official estimate.

Input: three real 512x512 face frames (../shared/data/faces/lp_driving_d0.mp4) when present, else noise.
Weights: the golden fixture's synthetic weights (../shared/tools/golden_weights.py), else random ones
(time and memory do not depend on the values; the bf16 deviation does, a little).
Official reference (../shared/reference/official_models.md, measured on this machine): 40.9 s per
3-frame window in fp32 = 40.9 s per output frame with the official schedule. The machine is shared:
`cpu_s` (user+system CPU seconds of the call) is printed beside the wall time: when it is much lower than
threads x wall, other processes had the cores and the wall times are inflated.
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
OFFICIAL_S_PER_WINDOW = 40.9
#: official s/frame / our naive fp32 s/frame, measured side by side on one machine (issue 24: 23.1 / 19.4)
OFFICIAL_OVER_NAIVE = 23.1 / 19.4


def peak_rss_gb() -> float:
    """VmHWM (peak resident set) of this process in GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def build_net():
    import torch

    from bfvr.models.pgtformer import OFFICIAL_CONFIG, PGTFormer

    manifest = SHARED / "golden" / "pgtformer" / "manifest.json"
    if manifest.exists():
        sys.path.insert(0, str(SHARED / "tools"))
        from golden_weights import make_state_dict

        with torch.device("meta"):
            net = PGTFormer(**OFFICIAL_CONFIG)
        sd = make_state_dict(str(manifest), overrides=str(manifest.parent / "int_buffers.safetensors"))
        net.load_state_dict(sd, strict=True, assign=True)
        del sd
        weights = "golden fixture"
    else:
        torch.manual_seed(0)
        net = PGTFormer(**OFFICIAL_CONFIG)
        weights = "random"
    return net.eval().requires_grad_(False), weights


def window(batch: int):
    import numpy as np
    import torch

    clip = SHARED / "data" / "faces" / "lp_driving_d0.mp4"
    if clip.exists():
        from bfvr.io import read_frames

        fr = read_frames(clip, max_frames=3 * batch + 3)
        x = torch.from_numpy(np.ascontiguousarray(fr[: 3 * batch])).permute(0, 3, 1, 2).float() / 255
        return x, "lp_driving_d0 frames"
    return torch.rand(3 * batch, 3, 512, 512, generator=torch.Generator().manual_seed(0)), "noise"


def child(args: argparse.Namespace) -> None:
    """One configuration: `repeat` calls on `batch` windows; JSON on stdout."""
    import torch

    from bfvr.engine.device import autocast, uses_channels_last
    from bfvr.models.adapter import to_channels_last

    torch.set_num_threads(args.threads)
    net, weights = build_net()
    x, source = window(args.batch)
    if uses_channels_last(args.precision):
        to_channels_last(net)
        x = x.contiguous(memory_format=torch.channels_last)
    times, cpus = [], []
    with torch.no_grad(), autocast(torch.device("cpu"), args.precision):
        for _ in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            out, logits, _ = net(x, w=1.0)
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    if args.save:
        torch.save({"out": out.float().contiguous(), "codes": logits.argmax(-1)}, args.save)
    print(
        json.dumps(
            {
                "precision": args.precision,
                "batch": args.batch,
                "threads": args.threads,
                "times": times,
                "cpu": cpus,
                "peak_rss_gb": peak_rss_gb(),
                "weights": weights,
                "input": source,
            }
        )
    )


def real_frames(n: int):
    """n real 512x512 frames (uint8 [n, 512, 512, 3]) of lp_driving_d0."""
    from bfvr.io import read_frames

    clip = SHARED / "data" / "faces" / "lp_driving_d0.mp4"
    if not clip.exists():
        raise SystemExit(f"{clip} is missing: the schedule benchmark needs the real clip.")
    return read_frames(clip, max_frames=n)


def schedule_child(args: argparse.Namespace) -> None:
    """One schedule x precision through the engine; JSON on stdout, float outputs + codes to --save."""
    import torch

    from bfvr.engine import ClipEngine
    from bfvr.io.memory import tune_malloc_for_streaming
    from bfvr.models.pgtformer.clip import PGTFormerClipModel

    tune_malloc_for_streaming()  # as the `bfvr` console script does (the engine's model calls use the heap)
    torch.set_num_threads(args.threads)
    net, weights = build_net()
    frames = real_frames(args.frames)
    mode, keep = args.schedule.split(":")
    model = PGTFormerClipModel(net, keep=int(keep), incremental=mode == "incremental",
                               precision=args.precision)
    codes, outs = [], []
    predict = net.predict_logits

    def recording(*a, **k):
        logits = predict(*a, **k)
        codes.append(logits.argmax(-1).cpu())
        return logits

    net.predict_logits = recording
    encoded = [0]
    frame_features = net.frame_features

    def counting(x):
        encoded[0] += len(x)
        return frame_features(x)

    net.frame_features = counting
    engine = ClipEngine(model, keep=int(keep))

    def to_u8(a):
        outs.append(a.clone())
        return ClipEngine.clip_to_uint8(a)

    engine.clip_to_uint8 = to_u8
    t0, c0 = time.perf_counter(), time.process_time()
    res = list(engine.run((f, i) for i, f in enumerate(frames)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert len(res) == len(frames)
    if args.save:
        torch.save({"out": torch.cat(outs), "codes": codes}, args.save)
    print(json.dumps({"schedule": args.schedule, "precision": args.precision, "frames": len(frames),
                      "calls": engine.clips_run, "wall": wall, "cpu": cpu, "threads": args.threads,
                      "peak_rss_gb": peak_rss_gb(), "weights": weights,
                      "frames_encoded": encoded[0]}))


def schedules(args: argparse.Namespace) -> None:
    import tempfile

    import torch

    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    scheds = ["naive:1", "incremental:1", "incremental:3"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    rows, saved = {}, {}
    configs = [(p, sc) for p in precisions for sc in scheds]
    with tempfile.TemporaryDirectory() as tmp:
        for start in range(0, len(configs), args.jobs):  # --jobs configs at a time (CPU time is per process)
            procs = {}
            for p, sc in configs[start:start + args.jobs]:
                save = str(Path(tmp) / f"{p}-{sc.replace(':', '-')}.pt")
                cmd = [sys.executable, __file__, "--child-schedule", sc, "--precision", p, "--frames",
                       str(args.frames), "--threads", str(args.threads), "--save", save]
                procs[(p, sc)] = (subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                   text=True, env=env), save)
            for (p, sc), (proc, save) in procs.items():
                out, err = proc.communicate()
                if proc.returncode:
                    raise SystemExit(f"{p} {sc} failed:\n{err[-2000:]}")
                r = json.loads(out.strip().splitlines()[-1])
                rows[(p, sc)] = r
                saved[(p, sc)] = torch.load(save)
                print(f"  done: {p} {sc}: {r['wall'] / r['frames']:.2f} s/frame wall, "
                      f"{r['cpu'] / r['frames']:.2f} CPU s/frame", file=sys.stderr, flush=True)
    rows = {k: rows[k] for k in configs}
    names = {"naive:1": "naive official loop", "incremental:1": "incremental official schedule",
             "incremental:3": "fast --keep 3"}
    first = next(iter(rows.values()))
    print(f"PGTFormer schedules: {first['frames']} real 512x512 frames of lp_driving_d0, weights: "
          f"{first['weights']}, {args.threads} thread(s), through ClipEngine (as bfvr restore)")
    naive32 = rows.get(("fp32", "naive:1"))
    official = naive32["wall"] / naive32["frames"] * OFFICIAL_OVER_NAIVE if naive32 else None
    if official:
        print(f"official_estimate = {OFFICIAL_OVER_NAIVE:.2f} x naive fp32 = {official:.2f} s/frame "
              "(issue 24: official 23.1 vs our naive fp32 19.4 s/frame on one machine)")
    print(f"{'precision':9} {'schedule':30} {'calls':>5} {'wall s/frame':>12} {'cpu s/frame':>11} "
          f"{'cpu/threads':>11} {'vs official':>11} {'peak RSS GB':>11} {'codes = fp32':>12}")
    for (p, sc), r in rows.items():
        n = r["frames"]
        wall, cpu = r["wall"] / n, r["cpu"] / n
        vs = f"{official / wall:.2f}x" if official else "-"
        ref = saved.get(("fp32", sc))
        agree = "-"
        if ref is not None and p != "fp32":
            a = torch.cat([c.reshape(-1) for c in ref["codes"]])
            b = torch.cat([c.reshape(-1) for c in saved[(p, sc)]["codes"]])
            agree = f"{(a == b).float().mean().item() * 100:.2f} %"
        print(f"{p:9} {names[sc]:30} {r['calls']:>5} {wall:>12.2f} {cpu:>11.2f} {cpu / r['threads']:>11.2f} "
              f"{vs:>11} {r['peak_rss_gb']:>11.2f} {agree:>12}")
    for p in precisions:
        a, b = saved.get((p, "naive:1")), saved.get((p, "incremental:1"))
        if a is not None and b is not None:
            d = (a["out"] - b["out"]).abs()
            same = all(torch.equal(x, y) for x, y in zip(a["codes"], b["codes"]))
            print(f"{p}: incremental vs naive official loop, all {len(a['out'])} frames (clamped to [0, 1]): "
                  f"max |diff| {d.max().item():.2e}, mean {d.mean().item():.2e}; codes identical: {same}")
    print("wall s/frame: whole-run wall time / frames (the machine is shared: cpu s/frame = user+sys CPU "
          "seconds of the process per frame; cpu/threads is what the wall time would be on free cores). "
          "'vs official' = official_estimate / wall s/frame.")


def profile(args: argparse.Namespace) -> None:
    """Exclusive wall/CPU seconds per stage of the incremental schedule on one window (3 new frames'
    per-frame work counted once per frame, i.e. divided by 3, as in a long video)."""
    import torch

    from bfvr.engine.device import autocast
    from bfvr.models.pgtformer.clip import PGTFormerClipModel
    from bfvr.models.pgtformer.swin import SwinLayer3D

    torch.set_num_threads(args.threads)
    net, weights = build_net()
    model = PGTFormerClipModel(net, precision=args.precision)  # its memory layout for this precision
    fr = real_frames(3)
    x = model.to_layout(torch.from_numpy(fr).permute(0, 3, 1, 2).float().div(255))
    # modules that never nest in one another, by stage (the network calls some parents by method, so
    # the hooks sit on the pieces)
    cats: dict = {}
    bis = net.conditionnet
    for m in (bis.cp, bis.ffm, bis.conv_out, bis.conv_out16, bis.conv_out32):
        cats[m] = "parsing (BiSeNet)"
    for m in list(net.ft_layers) + [net.feat_emb, net.convpos, net.idx_pred_layer]:
        cats[m] = "code predictor (9 layers + heads)"
    for part, name in ((net.encoder, "encoder"), (net.decoder, "decoder")):
        for m in part.modules():
            if isinstance(m, SwinLayer3D):
                cats[m] = "Swin-3D window attention"
        for i, lvl in enumerate(part.down if name == "encoder" else part.up):
            res = net.ddconfig["resolution"] // 2**i
            for m in list(lvl.block) + [getattr(lvl, "downsample", None), getattr(lvl, "upsample", None)]:
                if m is not None:
                    cats[m] = f"{name} convolutions {res}x{res}"
        for m in (part.conv_in, part.mid.block_1, part.mid.block_2, part.norm_out, part.conv_out):
            cats[m] = f"{name} convolutions (in/mid/out)"
    cats[net.quant_conv] = "encoder convolutions (in/mid/out)"
    cats[net.post_quant_conv] = "decoder convolutions (in/mid/out)"
    for s_, block in net.fuse_convs_dict.items():
        cats[block] = f"TFR (fidelity block {s_}x{s_})"
    totals: dict[str, list[float]] = {}
    stack: list[list] = []

    def pre(mod, _inp):
        stack.append([cats[mod], time.perf_counter(), time.process_time(), 0.0, 0.0])

    def post(mod, _inp, _out):
        name, t0, c0, child_t, child_c = stack.pop()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        tot = totals.setdefault(name, [0.0, 0.0])
        tot[0] += dt - child_t
        tot[1] += dc - child_c
        if stack:
            stack[-1][3] += dt
            stack[-1][4] += dc

    for m in cats:
        m.register_forward_pre_hook(pre)
        m.register_forward_hook(post)
    with torch.no_grad(), autocast(torch.device("cpu"), args.precision):
        feats = net.frame_features(x)  # 3 frames: the per-frame work of 3 output frames
        per_frame = {k: list(v) for k, v in totals.items()}
        totals.clear()
        net.forward_window(feats, keep=[1], w=1.0)  # one window, its middle frame decoded
    rows = {f"{k} [per frame]": [v[0] / 3, v[1] / 3] for k, v in per_frame.items()}
    rows.update({f"{k} [window]": v for k, v in totals.items()})
    total = sum(v[0] for v in rows.values())
    print(f"PGTFormer incremental schedule, one output frame (the window + 1/3 of 3 frames' per-frame work), "
          f"{args.precision}, {args.threads} thread(s), weights {weights}: {total:.2f} s wall, "
          f"{sum(v[1] for v in rows.values()):.2f} s CPU")
    print(f"{'stage':45} {'wall s':>8} {'cpu s':>8} {'share':>6}")
    for k, (t, c) in sorted(rows.items(), key=lambda kv: -kv[1][0]):
        print(f"{k:45} {t:>8.2f} {c:>8.2f} {t / total * 100:>5.1f}%")


def roofline(args: argparse.Namespace) -> None:
    """fp32 work per output frame, achieved GMAC/s, the machine's fp32 GEMM peak, and the bound it puts on
    the speed-up over the official code (see the module doc)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bfvr.models.pgtformer.clip import PGTFormerClipModel

    torch.set_num_threads(args.threads)
    net, weights = build_net()
    model = PGTFormerClipModel(net, precision="fp32")
    x = model.to_layout(torch.from_numpy(real_frames(3)).permute(0, 3, 1, 2).float().div(255))

    def naive():
        net(x, w=1.0)

    def incremental():
        one = net.frame_features(x[1:2])  # one new frame's per-frame part (each frame's is computed once)
        feats = net.stack_features([one, one, one])
        net.forward_window(feats, keep=[1], w=1.0)

    def gemm():
        a = torch.randn(2048, 2048)
        for _ in range(8):
            a @ a

    rows = {}
    with torch.no_grad():
        for name, fn in (("naive window", naive), ("incremental", incremental)):
            with FlopCounterMode(display=False) as fc:
                fn()
            gmac = fc.get_total_flops() / 2e9
            t0 = time.perf_counter()
            fn()
            rows[name] = (gmac, time.perf_counter() - t0)
        gemm()
        t0 = time.perf_counter()
        gemm()
        peak = 8 * 2048**3 / 1e9 / (time.perf_counter() - t0)
    print(f"PGTFormer fp32 roofline, {args.threads} thread(s), weights {weights}, 512x512, one output frame:")
    print(f"  fp32 GEMM 2048^3 on this machine: {peak:.0f} GMAC/s (the practical fp32 peak)")
    for name, (gmac, t) in rows.items():
        rate = gmac / t
        print(f"  {name:13} {gmac:7.0f} GMAC in {t:6.2f} s = {rate:5.0f} GMAC/s "
              f"({rate / peak * 100:.0f} % of the GEMM peak)")
    official = OFFICIAL_OVER_NAIVE * rows["naive window"][1]
    best = rows["incremental"][0] / peak
    print(f"  official estimate {official:.2f} s/frame ({OFFICIAL_OVER_NAIVE:.2f} x the naive window); "
          f"incremental now {rows['incremental'][1]:.2f} s = {official / rows['incremental'][1]:.2f}x; "
          f"incremental at 100 % of the GEMM peak {best:.2f} s = at most {official / best:.2f}x")


def run_child(precision: str, batch: int, args: argparse.Namespace, save: str | None) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--precision",
        precision,
        "--batch",
        str(batch),
        "--repeat",
        str(args.repeat),
        "--threads",
        str(args.threads),
    ] + (["--save", save] if save else [])
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode:
        raise SystemExit(f"{precision} batch {batch} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", nargs="?", default="forward", choices=("forward", "schedules", "profile",
                                                                               "roofline"))
    ap.add_argument("--frames", type=int, default=9, help="schedules: real frames restored per config")
    ap.add_argument("--jobs", type=int, default=1, help="schedules: configurations run at once (default 1)")
    ap.add_argument("--child-schedule", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--precision", default="fp32,bf16")
    ap.add_argument("--batch", default="1", help="windows per call, comma-separated (e.g. 1,2)")
    ap.add_argument("--repeat", type=int, default=2, help="calls per configuration (the best is reported)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-profile", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--save", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_schedule:
        args.schedule = args.child_schedule
        schedule_child(args)
        return
    if args.command == "schedules":
        schedules(args)
        return
    if args.command == "roofline":
        roofline(args)
        return
    if args.command == "profile":
        for p in [p.strip() for p in args.precision.split(",") if p.strip()]:
            cmd = [sys.executable, __file__, "--child-profile", "--precision", p, "--threads",
                   str(args.threads)]
            path = str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")
            subprocess.run(cmd, env={**os.environ, "PYTHONPATH": path}, check=True)
        return
    if args.child_profile:
        profile(args)
        return
    if args.child:
        args.batch = int(args.batch)
        child(args)
        return
    import tempfile

    import torch

    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    batches = [int(b) for b in args.batch.split(",")]
    rows, saved = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for p in precisions:
            for b in batches:
                save = str(Path(tmp) / f"{p}.pt") if b == 1 else None
                r = run_child(p, b, args, save)
                rows.append(r)
                if save:
                    saved[p] = torch.load(save)
                print(f"  done: {p} batch {b}: {min(r['times']):.1f} s per call", file=sys.stderr, flush=True)
        print(
            f"PGTFormer forward, 512x512, {args.threads} thread(s), weights: {rows[0]['weights']}, "
            f"input: {rows[0]['input']}; official reference {OFFICIAL_S_PER_WINDOW} s per window (fp32)"
        )
        print(
            f"{'precision':9} {'windows/call':>12} {'wall s/call':>11} {'cpu_s/call':>10} "
            f"{'s/frame keep=1':>14} {'s/frame keep=3':>14} {'vs official':>11} {'peak RSS GB':>11}"
        )
        for r in rows:
            i = min(range(len(r["times"])), key=r["times"].__getitem__)
            t, c, b = r["times"][i], r["cpu"][i], r["batch"]
            per_window = t / b
            speedup = OFFICIAL_S_PER_WINDOW / per_window
            print(f"{r['precision']:9} {b:>12} {t:>11.1f} {c:>10.1f} {per_window:>14.1f} "
                  f"{per_window / 3:>14.1f} {speedup:>10.2f}x {r['peak_rss_gb']:>11.2f}")
        print("s/frame = wall seconds per window (the best of --repeat calls): keep=1 runs one window per "
              "output frame (the official schedule), keep=3 a third of that. 'vs official' = "
              f"{OFFICIAL_S_PER_WINDOW} s (the official fp32 forward of one window, wall, this machine) / "
              f"ours (keep=1). cpu_s near {args.threads} x wall means the machine was free; far below, it "
              "was busy.")
        if "fp32" in saved:
            ref = saved["fp32"]
            for p, s in saved.items():
                if p == "fp32":
                    continue
                a, b = ref["out"].clamp(0, 1), s["out"].clamp(0, 1)
                d = (a - b).abs()
                agree = (ref["codes"] == s["codes"]).float().mean().item()
                mid = d[1]  # the middle frame, the one the official schedule keeps
                print(
                    f"{p} vs fp32 (output clamped to [0,1], one window): max |diff| {d.max():.4f}, mean "
                    f"{d.mean():.5f}; middle frame max {mid.max():.4f} mean {mid.mean():.5f} "
                    f"(= {mid.mean() * 255:.2f} / 255); codes equal {agree * 100:.1f} %"
                )


if __name__ == "__main__":
    main()

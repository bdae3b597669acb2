"""Speed and peak memory of PGTFormer at 512x512: seconds per output frame for the official 3-frame window
schedule (keep=1: one window per output frame) and the fast one (keep=3: one window per three frames),
fp32 and bf16 autocast (+ channels-last), each measured configuration in its own subprocess so the peak
RSS figures do not mix; plus the bf16 deviation from fp32 on the same window.

    python benchmarks/pgtformer_forward.py                      # fp32 and bf16, one window per call
    python benchmarks/pgtformer_forward.py --batch 1,2          # also two windows per call
    python benchmarks/pgtformer_forward.py --precision fp32 --repeat 1 --threads 1

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
    ap.add_argument("--precision", default="fp32,bf16")
    ap.add_argument("--batch", default="1", help="windows per call, comma-separated (e.g. 1,2)")
    ap.add_argument("--repeat", type=int, default=2, help="calls per configuration (the best is reported)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--save", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
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

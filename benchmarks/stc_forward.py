"""Time and peak memory of one BFVR-STC stage-II forward (default: 24 frames at 512x512, the official
clip), fp32 vs bf16 autocast + channels_last_3d, each configuration in its own subprocess so the peak
RSS figures do not mix. With --golden it also reports the bf16 deviation from fp32 (and both from the
official output) on the `stc_stage2` golden input (4 frames).

    python benchmarks/stc_forward.py                         # 24x512^2, fp32 and bf16
    python benchmarks/stc_forward.py --frames 8 --precision bf16
    python benchmarks/stc_forward.py --golden                # bf16 vs fp32 deviation on the golden input
    python benchmarks/stc_forward.py --parity                # fp32 parity numbers for the 3 STC fixtures

Weights: the `stc_stage2` fixture's synthetic weights (../shared/tools/golden_weights.py) when ../shared
is present, else random ones (time and memory do not depend on the values). Official reference on this
kind of machine (from the issue): 354 s and 21 GB peak RSS for 24x512^2 in fp32; ~24 GB on GPU per the
authors. `cpu_seconds` (user+system CPU time of the forward) is printed next to the wall time because a
shared machine inflates wall time: with 2 threads, cpu_seconds / 2 approximates an unloaded wall time.
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


def peak_rss_gb() -> float:
    """VmHWM of this process (peak resident set), in GB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def rss_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def build_net(name: str = "stc_stage2"):
    import torch

    from bfvr.models.stc import STCStage2

    n_head, n_layers = (2, 9) if name == "stc_stage2" else (4, 6)
    manifest = SHARED / "golden" / name / "manifest.json"
    if manifest.exists():
        sys.path.insert(0, str(SHARED / "tools"))
        from golden_weights import make_state_dict

        net = STCStage2.from_state_dict(make_state_dict(str(manifest)), n_head=n_head, n_layers=n_layers,
                                        official_residual=True)
        weights = f"golden {name}"
    else:
        torch.manual_seed(0)
        net = STCStage2(n_head=n_head, n_layers=n_layers, official_residual=True)
        weights = "random"
    return net.eval(), weights


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    net, weights = build_net()
    x = torch.rand((1, 3, args.frames, args.size, args.size), generator=torch.Generator().manual_seed(1234))
    rss_before = rss_gb()
    t0, c0 = time.perf_counter(), time.process_time()
    out = net.infer(x, precision=args.precision)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert out.shape == x.shape and torch.isfinite(out).all()
    print(json.dumps({"precision": args.precision, "frames": args.frames, "size": args.size,
                      "threads": args.threads, "weights": weights, "seconds": round(seconds, 1),
                      "cpu_seconds": round(cpu, 1), "load_avg_1min": round(os.getloadavg()[0], 1),
                      "rss_before_forward_gb": round(rss_before, 2), "peak_rss_gb": round(peak_rss_gb(), 2),
                      "torch": torch.__version__}))


def golden(args: argparse.Namespace) -> None:
    import torch

    from bfvr.engine.device import autocast, uses_channels_last

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(SHARED / "tools"))
    from golden_weights import load_safetensors

    net, _ = build_net("stc_stage2")
    io = load_safetensors(str(SHARED / "golden" / "stc_stage2" / "io.safetensors"))
    x, ref = io["input"], io["output"]
    res = {}
    outs = {}
    for precision in ("fp32", "bf16"):
        t0 = time.perf_counter()
        with torch.no_grad():  # the one precision policy (bfvr.engine.device), as STCStage2.infer applies it
            xin = x
            if uses_channels_last(precision):
                net.to_channels_last_3d()
                xin = x.contiguous(memory_format=torch.channels_last_3d)
            with autocast(x.device, precision):
                out, ls, lt, lq = net(xin)
        res[f"{precision}_seconds"] = round(time.perf_counter() - t0, 1)
        outs[precision] = (out.float(), ls.argmax(-1), lt.argmax(-1), lq.float())
    o32, s32, t32, lq32 = outs["fp32"]
    o16, s16, t16, lq16 = outs["bf16"]
    res.update({
        "fp32_vs_official_max_abs": (o32 - ref).abs().max().item(),
        "bf16_vs_fp32_output_max_abs": (o16 - o32).abs().max().item(),
        "bf16_vs_fp32_output_mean_abs": (o16 - o32).abs().mean().item(),
        "bf16_vs_fp32_lq_feat_max_abs": (lq16 - lq32).abs().max().item(),
        "bf16_vs_fp32_lq_feat_mean_abs": (lq16 - lq32).abs().mean().item(),
        "bf16_index_mismatch_s": f"{int((s16 != s32).sum())}/{s32.numel()}",
        "bf16_index_mismatch_t": f"{int((t16 != t32).sum())}/{t32.numel()}",
    })
    # the generator alone in bf16, fed the fp32 indices: deviation without index flips
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        feat = net.quantize.get_codebook_feat(s32, t32, (1, 2, 64, 64, 256)).contiguous(
            memory_format=torch.channels_last_3d)
        dec = net.decode(feat).float()
    res["bf16_decoder_same_indices_max_abs"] = (dec - o32).abs().max().item()
    res["bf16_decoder_same_indices_mean_abs"] = (dec - o32).abs().mean().item()
    print(json.dumps(res, indent=1))


def parity(args: argparse.Namespace) -> None:
    """fp32 max abs differences from the official outputs, per saved tensor, for the three STC fixtures."""
    import torch

    from bfvr.models.stc import STCVQGAN, STCStage2

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(SHARED / "tools"))
    from golden_weights import load_safetensors, make_state_dict

    def diff(a, b):
        return float((a.float() - b.float()).abs().max())

    def mism(a, b, fragile=None):
        bad = a.reshape(-1) != b.reshape(-1)
        n_all = int(bad.sum())
        if fragile is not None:
            bad[fragile] = False
        return f"{int(bad.sum())} outside fragile ({n_all} in all) / {b.numel()}"

    report = {}
    for name in args.fixtures:
        d = SHARED / "golden" / name
        io = load_safetensors(str(d / "io.safetensors"))
        sd = make_state_dict(str(d / "manifest.json"))
        r = {}
        t0 = time.perf_counter()
        with torch.no_grad():
            if name == "stc_stage1_small":
                net = STCVQGAN.from_state_dict(sd, mpr="official").eval()
                z = net.encode(io["input"])
                z_q, loss, mpr, st = net.quantize(z)
                out = net.decode(z_q)
                r.update(output=diff(out, io["output"]), z=diff(z, io["z"]), z_q=diff(z_q, io["z_q"]),
                         idx_s=mism(st["min_encoding_indices_s"], io["idx_s"]),
                         idx_t=mism(st["min_encoding_indices_t"], io["idx_t"]),
                         codebook_loss=diff(loss, io["codebook_loss"]), mpr_loss=diff(mpr, io["mpr_loss"]),
                         perplexity_s=diff(st["perplexity_s"], io["perplexity_s"]),
                         perplexity_t=diff(st["perplexity_t"], io["perplexity_t"]))
            else:
                nh, nl = (2, 9) if name == "stc_stage2" else (4, 6)
                net = STCStage2.from_state_dict(sd, n_head=nh, n_layers=nl, official_residual=True).eval()
                out, ls, lt, lq = net(io["input"])
                r.update(output=diff(out, io["output"]),
                         logits_s_first16=diff(ls[:, :16], io["logits_s_first16"]),
                         logits_t_first16=diff(lt[:, :16], io["logits_t_first16"]),
                         idx_s=mism(ls.argmax(-1), io["idx_s"], io["fragile_s"]),
                         idx_t=mism(lt.argmax(-1), io["idx_t"], io["fragile_t"]))
                if "lq_feat" in io:
                    tok = net.frame_tokens(net.temporal_latent(lq)).transpose(0, 1)[:1024]
                    r.update(lq_feat=diff(lq, io["lq_feat"]),
                             t_tokens_in_first1024=diff(tok, io["t_tokens_in_first1024"]))
        r["seconds"] = round(time.perf_counter() - t0, 1)
        report[name] = r
        print(json.dumps({name: r}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=24, help="clip length (even)")
    ap.add_argument("--size", type=int, default=512, help="frame size (stage II needs 512)")
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"],
                    help="configurations to run, each in its own subprocess")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--golden", action="store_true", help="bf16 vs fp32 deviation on the golden input")
    ap.add_argument("--parity", action="store_true",
                    help="fp32 max abs diff from the official outputs for each golden fixture")
    ap.add_argument("--fixtures", nargs="+",
                    default=["stc_stage1_small", "stc_stage2", "stc_deflicker_stage2"],
                    help="fixtures for --parity")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.parity:
        return parity(args)
    if args.golden:
        return golden(args)
    if args.child:
        args.precision = args.precision[0]
        return child(args)
    for precision in args.precision:
        cmd = [sys.executable, __file__, "--child", "--precision", precision, "--frames", str(args.frames),
               "--size", str(args.size), "--threads", str(args.threads)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            print(f"{precision}: failed\n{r.stderr[-2000:]}", file=sys.stderr)
            continue
        print(r.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()

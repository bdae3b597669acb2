"""Codebook usage of the same tiny STC Stage-I run with each MPR form (off / official / paper / gaussian).

    python benchmarks/mpr_usage.py --out /tmp/mpr_runs --picture docs/stc_mpr_usage.png

Each variant trains configs/stc/tiny_stage1.yaml for --steps steps (default 120, same seed, GAN off: the
codebook collapses well before the GAN would start) with only the MPR settings changed; an existing run
folder with its final checkpoint is reused. Then the final (raw, not EMA: 0.995 over 120 steps still
weighs the initial weights 0.55) weights quantise every 4-frame clip of the first 48 frames of each
../shared/data/faces video at 64x64 (the training frames) and we report, per codebook, the codes used,
the perplexity (exp of the usage entropy) and the reconstruction PSNR. --picture draws the usage
histograms (one row per variant, spatial and temporal codebook, codes sorted by index).

    python benchmarks/mpr_usage.py --out /tmp/mpr_runs --probe off

--probe RUN looks inside one trained variant instead: on 16 training clips it prints how far the tokens are
from their nearest / second / median code and the MPR term of each form (the printed inverse distance with
a temperature, q ~ D^(-1/tau); the Gaussian form with its temperature) beside log(N / perplexity), the
value a marginal that follows the hard usage would give.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
#: name -> (config overrides, label)
VARIANTS = {
    "off": (["model.mpr=none"], "MPR off"),
    "official": (["model.mpr=official"], "official form (x0.1)"),
    "paper": (["model.mpr=paper", "loss.mpr=10"], "paper form, weight 1"),
    "gaussian": (["model.mpr=gaussian", "model.mpr_temperature=1.0"], "gaussian, tau 1 (x0.1)"),
    # other settings of the Gaussian form (not drawn by default)
    "gaussian-t03": (["model.mpr=gaussian", "model.mpr_temperature=0.3"], "gaussian, tau 0.3 (x0.1)"),
    "gaussian-t03-w1": (
        ["model.mpr=gaussian", "model.mpr_temperature=0.3", "loss.mpr=10"],
        "gaussian, tau 0.3, weight 1",
    ),
}


def train(name: str, out: Path, steps: int) -> Path:
    from bfvr.errors import BfvrError
    from bfvr.train.checkpoint import find_checkpoint
    from bfvr.train.config import load_config
    from bfvr.train.trainer import train as run

    rd = out / name
    try:
        if find_checkpoint(rd).name == f"step_{steps:08d}":
            return rd
    except BfvrError:  # no checkpoint yet: train
        pass
    over = VARIANTS[name][0] + ["loss.gan=0", f"max_steps={steps}", f"ckpt_every={steps}", f"out_dir={rd}"]
    cfg = load_config(REPO / "configs/stc/tiny_stage1.yaml", over)
    t = time.time()
    run(cfg, progress=False)
    print(f"trained {name} in {time.time() - t:.0f} s")
    return rd


@torch.no_grad()
def evaluate(rd: Path, videos: list[Path]) -> dict:
    from bfvr.io import read_frames
    from bfvr.train.checkpoint import find_checkpoint, load_safetensors
    from bfvr.train.config import load_config
    from bfvr.train.stc import build_stage1_model

    cfg = load_config(rd / "config.yaml")
    net = build_stage1_model(cfg).eval()
    net.load_state_dict(load_safetensors(find_checkpoint(rd) / "model.safetensors"))
    n = cfg.model.codebook_size
    counts = {"s": torch.zeros(n, dtype=torch.int64), "t": torch.zeros(n, dtype=torch.int64)}
    mse = []
    for v in videos:
        fr = read_frames(v, max_frames=cfg.data.max_frames)
        fr = np.stack([cv2.resize(f, (cfg.data.size,) * 2, interpolation=cv2.INTER_AREA) for f in fr])
        x = torch.from_numpy(fr).permute(3, 0, 1, 2).float().div(255)
        L = cfg.data.clip_len
        clips = torch.stack([x[:, i : i + L] for i in range(0, x.shape[1] - L + 1, L)])
        out, _, _, stats = net(clips)
        for k in counts:
            counts[k] += torch.bincount(stats[f"min_encoding_indices_{k}"].reshape(-1), minlength=n)
        mse.append(((out - clips) ** 2).mean(dim=(1, 2, 3, 4)))
    res = {}
    for k, c in counts.items():
        p = c.double() / c.sum()
        res[f"active_{k}"] = int((c > 0).sum())
        res[f"perplexity_{k}"] = float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
        res[f"counts_{k}"] = c.tolist()
    res["psnr"] = float((10 * torch.log10(1 / torch.cat(mse))).mean())
    res["tokens"] = int(counts["s"].sum())
    last = [json.loads(x) for x in (rd / "metrics.jsonl").read_text().splitlines() if x.strip()][-1]
    res["train_mpr"] = last.get("mpr", 0.0)
    res["train_l1"] = last.get("l1", float("nan"))
    return res


@torch.no_grad()
def probe(rd: Path) -> None:
    from bfvr.models.stc.quantizer import (
        _sq_distances,
        gaussian_assignment,
        marginal_prior_kl,
        mpr_term,
        soft_marginal,
        usage_stats,
    )
    from bfvr.train.checkpoint import find_checkpoint, load_safetensors
    from bfvr.train.config import load_config
    from bfvr.train.data import BuiltinClipDataset
    from bfvr.train.stc import build_stage1_model

    cfg = load_config(rd / "config.yaml")
    net = build_stage1_model(cfg).eval()
    net.load_state_dict(load_safetensors(find_checkpoint(rd) / "model.safetensors"))
    d = cfg.data
    ds = BuiltinClipDataset(d.paths, clip_len=d.clip_len, size=d.size, max_frames=d.max_frames, seed=0)
    z = net.encode(torch.stack([ds[p]["gt"] for p in range(16)]))
    q = net.quantize
    c = z.shape[1]
    for key, feat, emb in (
        ("spatial", z, q.embedding_s.weight),
        ("temporal", q.temporal_latent(z), q.embedding_t.weight),
    ):
        dist = _sq_distances(feat.permute(0, 2, 3, 4, 1).reshape(-1, c), emb)
        n = dist.shape[1]
        u = usage_stats(dist.argmin(1), n)
        srt = dist.sqrt().sort(1).values
        ppl = float(u["perplexity"])
        print(
            f"{key}: {dist.shape[0]} tokens, {int(u['active'])} codes used, perplexity {ppl:.1f}, "
            f"log(N/perplexity) {math.log(n / ppl):.3f}; token-code distance: "
            f"nearest {srt[:, 0].mean():.3f}, "
            f"2nd {srt[:, 1].mean():.3f}, median {srt[:, n // 2].mean():.3f}; code norm "
            f"{emb.norm(dim=1).mean():.3f}"
        )
        print(f"  official form (unweighted): {float(mpr_term(dist, 'official')):.2e}")
        for tau in (1.0, 0.5, 0.2, 0.1, 0.05, 0.02):
            what = {1.0: " (the printed form)", 0.5: " (inverse squared distances)"}.get(tau, "")
            kl = float(marginal_prior_kl(soft_marginal(dist, tau)))
            print(f"  inverse distance, tau {tau:<4}: KL {kl:.2e}{what}")
        for tau in (3.0, 1.0, 0.3, 0.1, 0.03):
            kl = float(marginal_prior_kl(gaussian_assignment(dist, tau).mean(0)))
            print(f"  gaussian, tau {tau:<4}: KL {kl:.3g}")


def picture(results: dict[str, dict], path: Path) -> None:
    rows = list(results)
    n = len(results[rows[0]]["counts_s"])
    bw = 2  # pixels per code
    pw, ph, left, top, gap = n * bw, 90, 200, 30, 28
    img = np.full((top + len(rows) * (ph + gap) + 10, left + 2 * pw + 40, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for j, k in enumerate(("s", "t")):
        cv2.putText(
            img,
            f"{'spatial' if k == 's' else 'temporal'} codebook: share of tokens per code (0..{n - 1})",
            (left + j * (pw + 20), 18),
            font,
            0.42,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    for i, name in enumerate(rows):
        r = results[name]
        y0 = top + i * (ph + gap)
        cv2.putText(img, VARIANTS[name][1], (6, y0 + 30), font, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, f"PSNR {r['psnr']:.2f} dB", (6, y0 + 50), font, 0.42, (60, 60, 60), 1, cv2.LINE_AA)
        for j, k in enumerate(("s", "t")):
            x0 = left + j * (pw + 20)
            c = np.asarray(r[f"counts_{k}"], np.float64)
            share = c / c.sum()
            cv2.rectangle(img, (x0, y0), (x0 + pw, y0 + ph), (200, 200, 200), 1)
            scale = ph / max(share.max(), 1e-9)
            for code, s in enumerate(share):
                if s > 0:
                    h = max(1, round(s * scale))
                    cv2.rectangle(
                        img,
                        (x0 + code * bw, y0 + ph - h),
                        (x0 + code * bw + bw - 1, y0 + ph),
                        (170, 90, 30),
                        -1,
                    )
            label = (
                f"{r[f'active_{k}']} codes used, perplexity {r[f'perplexity_{k}']:.1f}, "
                f"max share {share.max():.3f}"
            )
            cv2.putText(img, label, (x0, y0 + ph + 16), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/bfvr_mpr_usage", help="folder of the runs (reused when complete)")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--variants", default="off,official,paper,gaussian")
    ap.add_argument("--faces", default=str(REPO.parent / "shared/data/faces"))
    ap.add_argument("--picture", default=None, help="write the usage histograms to this PNG")
    ap.add_argument("--probe", default=None, help="print the distances and MPR terms of this trained variant")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.probe:
        probe(Path(a.out) / a.probe)
        return
    from bfvr.io import list_videos

    videos = list_videos(Path(a.faces))
    results = {}
    for name in a.variants.split(","):
        rd = train(name, Path(a.out), a.steps)
        results[name] = evaluate(rd, videos)
    print(
        f"\n{len(videos)} videos, {results[next(iter(results))]['tokens']} tokens per codebook, "
        f"{a.steps} training steps each"
    )
    print(
        "| variant | spatial: codes used / perplexity | temporal: codes used / perplexity | PSNR (dB) | "
        "MPR term at the end |"
    )
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {VARIANTS[name][1]} | {r['active_s']} / {r['perplexity_s']:.1f} | {r['active_t']} / "
            f"{r['perplexity_t']:.1f} | {r['psnr']:.2f} | {r['train_mpr']:.3g} |"
        )
    n = len(results[name]["counts_s"])
    print(f"(uniform usage: {n} / {n}; log N = {math.log(n):.2f})")
    if a.picture:
        main4 = {k: v for k, v in results.items() if k in ("off", "official", "paper", "gaussian")}
        picture(main4 or results, Path(a.picture))
        print(f"picture: {a.picture}")


if __name__ == "__main__":
    main()

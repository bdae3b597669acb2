"""Speed and deviation of the sliding-window schedules (`bfvr.engine.Schedule.window`).

A cheap temporal test model with a 5-frame window (DicFace's L): a small per-frame conv (so a call costs
about as much per frame as a real network would, relatively) followed by a temporal mix in which output
j leans on input j and its neighbours (weights exp(-(k - j)^2 / 2)), the way a restorer's output frame
is mostly its own input frame. It restores a real clip through the engine with the official schedule
(keep=1: one call per frame) and with the faster ones (keep=K: one call per K frames), and reports wall
time per frame and the PSNR of each fast output against the official one.

    python benchmarks/window_schedule.py                         # lp_driving_d11, 100 frames at 256x256
    python benchmarks/window_schedule.py --frames 200 --size 512
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bfvr.engine import ClipEngine, Schedule


class TestWindowModel:
    name, canvas, device, overlap = "test-window", None, torch.device("cpu"), 0

    def __init__(self, length: int = 5) -> None:
        self.clip_len, self.schedule = length, Schedule.window(length)
        g = torch.Generator().manual_seed(0)
        self.conv = torch.randn(3, 3, 5, 5, generator=g) * 0.02
        self.conv[:, :, 2, 2] += torch.eye(3)
        k = torch.arange(length, dtype=torch.float32)
        w = torch.exp(-((k[None] - k[:, None]) ** 2) / 2)
        self.mix = w / w.sum(dim=1, keepdim=True)

    def restore_clip(self, clip: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(clip, self.conv, padding=2)
        return torch.einsum("jk,kchw->jchw", self.mix, y)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(os.environ.get("BFVR_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--clip", type=Path, default=shared / "data" / "faces" / "lp_driving_d11.mp4")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--keep", type=int, nargs="+", default=[1, 2, 3, 5])
    a = ap.parse_args()
    from bfvr.io import read_frames

    frames = read_frames(a.clip, max_frames=a.frames)
    if frames.shape[1] != a.size:
        t = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
        t = F.interpolate(t, size=(a.size, a.size), mode="area")
        frames = t.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    model = TestWindowModel()
    ref = None
    print(f"{a.clip.name}: {len(frames)} frames {a.size}x{a.size}, "
          f"window 5, torch threads {torch.get_num_threads()}")
    for keep in a.keep:
        eng = ClipEngine(model, keep=keep)
        t0 = time.perf_counter()
        out = eng.restore_array(frames)
        dt = time.perf_counter() - t0
        if keep == 1:
            ref = out
        dev = "official" if keep == 1 or ref is None else f"PSNR vs official {psnr(out, ref):.2f} dB, " \
            f"max |diff| {int(np.abs(out.astype(int) - ref).max())}"
        print(f"keep={keep}: {eng.clips_run} calls, {1000 * dt / len(frames):.1f} ms/frame; {dev}")


if __name__ == "__main__":
    main()

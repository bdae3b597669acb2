"""Seconds per ClipDataset item (decode window + crop/resize + on-the-fly degradation + tensors).

    python benchmarks/clip_dataset_speed.py [SOURCE] [--recipe stc] [--clip-len 24] [--size 512] [--items 6]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bfvr.data import ClipDataset


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("source", nargs="?",
                    default=str(Path(__file__).resolve().parents[2] / "shared/data/faces"))
    ap.add_argument("--recipe", default="stc")
    ap.add_argument("--clip-len", type=int, default=24)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--items", type=int, default=6)
    a = ap.parse_args()
    ds = ClipDataset(a.source, clip_len=a.clip_len, size=a.size, recipe=a.recipe, seed=0)
    times = []
    for i in range(min(a.items, len(ds))):
        t = time.perf_counter()
        it = ds[i]
        times.append(time.perf_counter() - t)
        print(f"item {i} {it['name']:18s} start {it['start']:4d}  {times[-1]:.2f} s")
    print(f"{a.recipe} T={a.clip_len} {a.size}px: median {statistics.median(times):.2f} "
          f"s/item ({a.clip_len / statistics.median(times):.1f} frames/s), min "
          f"{min(times):.2f}, max {max(times):.2f}")


if __name__ == "__main__":
    main()

"""The text filter of `bfvr prepare` (rapidocr) on the first frame of every shared clip, with and without a
news-style caption burned in with OpenCV: the highest text score of each (a clip is dropped above 0.95)
and the time per frame.

    python benchmarks/ocr_text_filter.py [FOLDER] [--size 512] [--backend rapidocr]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np


def main() -> None:
    from bfvr.data.prepare import text_backend
    from bfvr.io import list_videos, read_frames
    from bfvr.io.synth import burn_caption

    ap = argparse.ArgumentParser()
    ap.add_argument(
        "folder", nargs="?", default=str(Path(__file__).resolve().parents[2] / "shared/data/faces")
    )
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--backend", default="rapidocr")
    a = ap.parse_args()
    t = time.time()
    name, ocr = text_backend(a.backend)
    print(f"{name}: loaded in {time.time() - t:.2f} s")
    clean, caption, times = [], [], []
    for v in list_videos(Path(a.folder)):
        f = read_frames(v, max_frames=1)[0]
        row = []
        for img in (f, burn_caption(f)):
            img = cv2.resize(img, (a.size, a.size), interpolation=cv2.INTER_AREA)
            t = time.time()
            found = ocr(img)
            times.append(time.time() - t)
            row.append(max((s for _, s in found), default=0.0))
        clean.append(row[0])
        caption.append(row[1])
        print(f"{v.name:24s} no text: max score {row[0]:.3f}   caption: max score {row[1]:.3f}")
    print(
        f"no text: max {max(clean):.3f} (dropped: {sum(s > 0.95 for s in clean)} of {len(clean)}); caption: "
        f"min {min(caption):.3f} (dropped: {sum(s > 0.95 for s in caption)} of {len(caption)}); "
        f"time per frame median {np.median(times):.2f} s, max {max(times):.2f} s"
    )


if __name__ == "__main__":
    main()

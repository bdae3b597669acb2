"""Draw the validation curve of a `bfvr train` run (PNG, OpenCV only): the validation PSNR gain over
the degraded input (dB, EMA weights) and the training Charbonnier loss, against the step.

    python benchmarks/lite_curve.py runs/lite -o docs/lite_val_curve.png
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np


def plot(steps_a, a, steps_b, b, out: str, title: str, label_a: str, label_b: str) -> None:
    w, h, m = 720, 340, 60
    img = np.full((h, w, 3), 255, np.uint8)
    x0, x1, y0, y1 = m, w - m, 66, h - 45
    smax = max(max(steps_a), max(steps_b))
    cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 0), 1)
    font = cv2.FONT_HERSHEY_SIMPLEX

    def series(steps, vals, color, side):
        lo, hi = float(np.min(vals)), float(np.max(vals))
        pad = (hi - lo) * 0.08 or 1e-3
        lo, hi = lo - pad, hi + pad
        pts = [(int(x0 + (s / smax) * (x1 - x0)), int(y1 - (v - lo) / (hi - lo) * (y1 - y0))) for s, v in
               zip(steps, vals)]
        cv2.polylines(img, [np.array(pts, np.int32)], False, color, 2, cv2.LINE_AA)
        for k in range(5):
            v = lo + (hi - lo) * k / 4
            y = int(y1 - k / 4 * (y1 - y0))
            xt = 4 if side == "left" else x1 + 4
            cv2.putText(img, f"{v:.3g}", (xt, y + 4), font, 0.38, color, 1, cv2.LINE_AA)

    series(steps_b, b, (40, 140, 40), "right")
    series(steps_a, a, (200, 60, 30), "left")
    for k in range(5):
        s = smax * k / 4
        x = int(x0 + k / 4 * (x1 - x0))
        cv2.putText(img, f"{s:.0f}", (x - 12, y1 + 16), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "step", (w // 2 - 15, h - 10), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, title, (x0, 20), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, label_a, (x0, 40), font, 0.45, (200, 60, 30), 1, cv2.LINE_AA)
    cv2.putText(img, label_b, (x0, 58), font, 0.45, (40, 140, 40), 1, cv2.LINE_AA)
    cv2.imwrite(out, cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("-o", "--out", required=True)
    a = ap.parse_args()
    from bfvr.train.tracking import read_metrics

    recs = read_metrics(a.run)
    val = [(r["step"], r["val_gain_db"]) for r in recs if "val_gain_db" in r]
    tr = [(r["step"], r["l1"]) for r in recs if "l1" in r]
    k = 8  # moving average over 8 logged points (each already a mean over log_every steps)
    l1 = np.convolve([v for _, v in tr], np.ones(k) / k, mode="valid")
    plot([s for s, _ in val], [v for _, v in val], [s for s, _ in tr][k - 1:], l1, a.out,
         "BFVR-Lite training (configs/lite/train.yaml)", "validation PSNR gain over the "
                                                         "input, dB (EMA weights, left axis)",
         "training Charbonnier loss, moving mean (right axis)")
    print(a.out)


if __name__ == "__main__":
    main()

"""bfvr.metrics: the papers' metrics, each defined once, and the evaluation report.

Modules (numpy in, floats out; heavy dependencies load inside them):

* :mod:`bfvr.metrics.fullref` -- PSNR, SSIM (BasicSR definitions, RGB or Y, crop border), MSRL, tdiff_psnr
* :mod:`bfvr.metrics.lpips` -- LPIPS from a backbone file you give (never a random backbone)
* :mod:`bfvr.metrics.faces` -- dlib/ArcFace identity (IDS, Deg, Face-Cons), 68-point AKD/LMD and TLME
* :mod:`bfvr.metrics.temporal` -- Flow-Score and flow-warping error (OpenCV DIS)
* :mod:`bfvr.metrics.fvd` -- Fréchet distance, FVD over feature sets, the papers' per-pair variant
* :mod:`bfvr.metrics.evaluate` -- match folders, stream videos, per-video + mean tables (md/csv/json)
* :mod:`bfvr.metrics.pictures` -- temporal profiles and labelled side-by-side frames

See docs/metrics.md for the definitions.
"""

from bfvr.metrics.fullref import psnr, psnr_frames, ssim, ssim_frames
from bfvr.metrics.fvd import frechet_distance, fvd_from_features, fvd_per_pair

__all__ = ["psnr", "psnr_frames", "ssim", "ssim_frames", "frechet_distance", "fvd_from_features",
           "fvd_per_pair"]

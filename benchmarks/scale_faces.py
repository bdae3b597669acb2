"""Segments with the face pipeline: one process vs 2 segments (in this process), BFVR-Lite, lossless outputs.

    python benchmarks/scale_faces.py          # lp_driving_d11 (225 frames, one face throughout)

Prints the number of segments, the frame difference (max abs, frames differing, PSNR) and both wall times.
"""

import tempfile
import time, numpy as np, torch
from bfvr.api import Restorer
from bfvr.faces import FaceOptions
from bfvr.io import read_frames
from bfvr.scale import BatchOptions, RestoreSettings
from bfvr.scale.batch import run_segmented
torch.set_num_threads(2)
from pathlib import Path
D = Path(__file__).resolve().parents[2] / "shared/data/faces/lp_driving_d11.mp4"
tmp = tempfile.mkdtemp()
t = time.time(); Restorer("bfvr-lite", faces=FaceOptions(), progress=False).restore_video(D, f"{tmp}/g1.mkv", lossless=True, overwrite=True); t1 = time.time() - t
t = time.time(); s = run_segmented(D, f"{tmp}/g2.mkv", RestoreSettings(model="bfvr-lite", faces=FaceOptions(), lossless=True), BatchOptions(segments=2, workers=1, overwrite=True, progress=False)); t2 = time.time() - t
a = read_frames(f"{tmp}/g1.mkv").astype(int); b = read_frames(f"{tmp}/g2.mkv").astype(int)
d = np.abs(a - b).reshape(len(a), -1)
mse = ((a - b) ** 2).mean()
print({"segments": s.videos[0].segments, "frames": len(a), "max_abs_diff": int(d.max()), "frames_differing": int((d.max(1) > 0).sum()),
       "differing_range": [int(x) for x in np.nonzero(d.max(1))[0][[0, -1]]] if d.max() else None,
       "psnr_db": float(10 * np.log10(255**2 / mse)) if mse else "inf", "one_s": round(t1), "seg_s": round(t2)})

"""Fréchet distances and FVD (Fréchet Video Distance) done properly.

FVD compares the *distributions* of I3D features of two sets of videos: fit a Gaussian (mean,
covariance) to each set and take the Fréchet distance
``||mu1-mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`` (matrix square root by ``scipy.linalg.sqrtm``).

The official BFVR-STC script computes it for one video against one video, where the covariance of a
single sample is zero, so only ``||mu1-mu2||^2`` remains, then averages over videos. That number is
offered here as :func:`fvd_per_pair` and reported as ``fvd_per_pair`` -- never under the name FVD.

I3D: the StyleGAN-V TorchScript (``i3d_torchscript.pt``, 400-d features) loaded from a local path;
each clip of ``clip_len`` frames is resized so its short side is 224, centre-cropped to 224x224 and
mapped to [-1, 1]. No weights ship with bfvr and none are downloaded.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from bfvr.errors import InputError, WeightsNotFoundError

__all__ = ["frechet_distance", "gaussian_stats", "fvd_from_features", "fvd_per_pair", "I3DFeatures"]

I3D_HINT = ("FVD needs the I3D TorchScript (StyleGAN-V 'i3d_torchscript.pt', 400-d features); "
            "download it yourself and pass its path with --i3d PATH")


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D,D] (unbiased; zeros for a single sample) of features [N,D]."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] == 0:
        raise ValueError(f"expected features [N,D] with N >= 1, got {f.shape}")
    mu = f.mean(0)
    cov = np.cov(f, rowvar=False) if f.shape[0] > 1 else np.zeros((f.shape[1], f.shape[1]))
    return mu, np.atleast_2d(cov)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError("the two Gaussians have different dimensions")
    diff = mu1 - mu2
    with warnings.catch_warnings():  # singular products (fewer samples than dimensions) are expected here
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            # singular product (few samples): regularise both covariances a little
            off = np.eye(s1.shape[0]) * eps
            covmean = linalg.sqrtm((s1 + off) @ (s2 + off))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean), 0.0))


def fvd_from_features(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """FVD between two feature sets [N,D] and [M,D] (one row per clip)."""
    return frechet_distance(*gaussian_stats(feats_a), *gaussian_stats(feats_b))


def fvd_per_pair(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> float:
    """The papers' variant: per video pair, ``||mean(f_pred) - mean(f_gt)||^2``; averaged over pairs."""
    vals = [float(np.sum((np.mean(a, 0) - np.mean(b, 0)) ** 2)) for a, b in pairs]
    return float(np.mean(vals)) if vals else float("nan")


class I3DFeatures:
    """I3D feature extractor around a TorchScript file given by path."""

    def __init__(self, path: str | Path | None, clip_len: int = 16, device: str = "cpu", size: int = 224):
        if path is None:
            raise WeightsNotFoundError(f"FVD unavailable: {I3D_HINT}.")
        p = Path(path)
        if not p.is_file():
            raise WeightsNotFoundError(f"FVD unavailable: I3D file {p} not found; {I3D_HINT}.")
        import torch

        try:
            self.model = torch.jit.load(str(p), map_location=device).eval()
        except Exception as e:  # not a TorchScript archive
            raise WeightsNotFoundError(f"{p} is not a TorchScript module ({type(e).__name__}); "
                                       f"{I3D_HINT}.") from e
        self.clip_len, self.device, self.size = clip_len, device, size

    def _prep(self, clip: np.ndarray):
        import cv2
        import torch

        t, h, w = clip.shape[:3]
        s = self.size / min(h, w)
        nh, nw = max(self.size, round(h * s)), max(self.size, round(w * s))
        y0, x0 = (nh - self.size) // 2, (nw - self.size) // 2
        frames = [cv2.resize(f, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
                  [y0:y0 + self.size, x0:x0 + self.size] for f in clip]
        x = torch.from_numpy(np.stack(frames)).float().div(127.5).sub(1.0)  # T,H,W,C in [-1,1]
        return x.permute(3, 0, 1, 2)[None].to(self.device)                 # 1,C,T,H,W

    def clip_features(self, clip: np.ndarray) -> np.ndarray:
        """Features [D] of one clip [T,H,W,3] uint8 RGB."""
        import torch

        x = self._prep(clip)
        with torch.inference_mode():
            try:
                y = self.model(x, rescale=False, resize=False, return_features=True)
            except Exception:
                y = self.model(x)
        return y.reshape(-1).float().cpu().numpy().astype(np.float64)

    def video_clips(self, frames: np.ndarray) -> list[np.ndarray]:
        """Non-overlapping clips of ``clip_len`` frames (a video shorter than that is one short clip)."""
        n = len(frames)
        if n == 0:
            raise InputError("cannot compute FVD features of a video with no frames.")
        if n < self.clip_len:
            return [frames]
        return [frames[i:i + self.clip_len] for i in range(0, n - self.clip_len + 1, self.clip_len)]

    def features(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        return np.stack([self.clip_features(c) for c in clips])

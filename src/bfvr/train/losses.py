"""Training losses: hinge GAN, the perceptual loss (LPIPS-VGG when weights are given) and its explicit
offline substitute (SSIM + image-gradient L1).

All image losses take clips as BCTHW tensors in [0, 1] and work frame by frame.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bfvr.errors import WeightsNotFoundError
from bfvr.metrics.fullref import ssim_map
from bfvr.metrics.lpips import CHANNELS, LPIPSBackbone, load_state

log = logging.getLogger("bfvr.train")


def frames(x: torch.Tensor) -> torch.Tensor:
    """BCTHW -> (B*T)CHW."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


# ----------------------------------------------------------------------------------------------------
# GAN


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator hinge loss: -mean(D(fake))."""
    return -fake_logits.mean()


# ----------------------------------------------------------------------------------------------------
# offline substitute: SSIM + gradient


def gradient_l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L1 between horizontal and vertical finite differences of two NCHW batches."""
    dxx, dxy = x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]
    dyx, dyy = y[..., :, 1:] - y[..., :, :-1], y[..., 1:, :] - y[..., :-1, :]
    return (dxx - dyx).abs().mean() + (dxy - dyy).abs().mean()


class SSIMGradientLoss(nn.Module):
    """Offline stand-in for LPIPS: (1 - SSIM) + L1 of image gradients, per frame. Needs no weights."""

    name = "ssim+grad"

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p, t = frames(pred.float()), frames(target.float())
        # the SSIM of the metrics (bfvr.metrics.fullref), 11-tap window (smaller for tiny frames)
        s = ssim_map(p, t, 1.0, window=min(11, p.shape[-2], p.shape[-1])).mean()
        return (1.0 - s) + gradient_l1(p, t)


# ----------------------------------------------------------------------------------------------------
# LPIPS-VGG from local weights

_LPIPS_CH = CHANNELS["vgg"]


class LPIPSVGG(nn.Module):
    """LPIPS with a VGG16 trunk: unit-normalised features, optional learned 1x1 linear heads
    (`lin0..lin4`, the lpips package's `vgg.pth`), spatial mean, summed over the five taps.
    Without head weights every channel has weight 1 (the "baseline" VGG distance)."""

    name = "lpips-vgg"

    def __init__(self, vgg_weights: str | Path, lpips_weights: str | Path | None = None) -> None:
        super().__init__()
        self.net = LPIPSBackbone("vgg")
        sd = {k: v for k, v in load_state(vgg_weights).items() if k.startswith("features.")}
        missing, _ = self.net.load_state_dict(sd, strict=False)
        if missing:
            raise WeightsNotFoundError(f"{vgg_weights} is not a torchvision VGG16 state_dict "
                                       f"(missing {missing[:3]}...); give vgg16 weights.")
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _LPIPS_CH)
        if lpips_weights is not None:
            lsd = load_state(lpips_weights)
            for i, head in enumerate(self.heads):
                w = lsd.get(f"lin{i}.model.1.weight")
                if w is None:
                    raise WeightsNotFoundError(f"{lpips_weights} has no lin{i}.model.1.weight; "
                                               "give the lpips package's weights/v0.1/vgg.pth.")
                head.weight.data.copy_(w)
        else:
            for head in self.heads:
                nn.init.ones_(head.weight)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LPIPSVGG:  # always frozen / eval
        return super().train(False)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = (frames(pred) * 2 - 1 - self.shift) / self.scale
        t = (frames(target) * 2 - 1 - self.shift) / self.scale
        total = p.new_zeros(())
        for fp, ft, head in zip(self.net(p), self.net(t), self.heads):
            fp = fp / (fp.norm(dim=1, keepdim=True) + 1e-10)
            ft = ft / (ft.norm(dim=1, keepdim=True) + 1e-10)
            total = total + head((fp - ft) ** 2).mean()
        return total


def build_perceptual(vgg_weights: str | None, lpips_weights: str | None, fallback: str) -> nn.Module | None:
    """LPIPS-VGG when `vgg_weights` is given, else the named offline substitute (logged, never silent)."""
    if vgg_weights:
        mod = LPIPSVGG(vgg_weights, lpips_weights)
        log.info("perceptual loss: LPIPS-VGG from %s (heads: %s)", vgg_weights, lpips_weights or "uniform")
        return mod
    if fallback == "none":
        log.warning("perceptual loss: OFF (no VGG weights given and perceptual_fallback=none)")
        return None
    log.warning("perceptual loss: no VGG/LPIPS weights given (loss.vgg_weights), using the offline "
                "substitute SSIM + gradient L1 instead of LPIPS")
    return SSIMGradientLoss()

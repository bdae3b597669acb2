"""Training losses: hinge GAN (official STC) and the non-saturating log GAN loss (the STC paper), the
perceptual loss (LPIPS-VGG when weights are given, official) and its explicit offline substitute
(SSIM + image-gradient L1), and the paper's VGG19 feature loss from a local weights file.

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
from bfvr.metrics.lpips import LPIPSDistance, load_state

log = logging.getLogger(__name__)


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


def log_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator log loss on logits l (D = sigmoid(l)): -mean(log D(real)) - mean(log(1 - D(fake)))."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def log_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: -mean(log D(fake)) = mean(softplus(-l))."""
    return F.softplus(-fake_logits).mean()


#: GAN loss name -> (discriminator loss, generator loss)
GAN_LOSSES = {"hinge": (hinge_d_loss, hinge_g_loss), "log": (log_d_loss, log_g_loss)}


# ----------------------------------------------------------------------------------------------------
# PGTFormer's multi-scale residual loss (Eq. 7)

#: ↓_n of Eq. 7 for n = 1, 2, 3: area downscale by 2^(n-1) (full size, 1/2, 1/4; s x s block means)
MSRL_FACTORS = (1, 2, 4)


def msrl_loss(pred: torch.Tensor, target: torch.Tensor,
              factors: tuple[int, ...] = MSRL_FACTORS) -> torch.Tensor:
    """PGTFormer Eq. 7 on BCTHW clips:
    1/3 sum_n | ((x_h^{t+1})↓_n - (x_h^t)↓_n) - ((x_o^{t+1})↓_n - (x_o^t)↓_n) |_1, x_h = `target` (GT),
    x_o = `pred`. ↓_n = the mean over non-overlapping s x s blocks, s = 2^(n-1) (`factors`; the paper
    does not define ↓_n). The L1 norm is taken as a mean over pixels, channels and the T-1 transitions
    (as every L1 term here), so the value does not depend on the clip size. 0 for a clip of one frame."""
    if pred.shape[2] < 2:
        return pred.new_zeros(())
    b, c, t, h, w = pred.shape
    p, g = frames(pred.float()), frames(target.float())
    total = p.new_zeros(())
    for s in factors:
        ps = F.avg_pool2d(p, s) if s > 1 else p
        gs = F.avg_pool2d(g, s) if s > 1 else g
        ps, gs = ps.reshape(b, t, *ps.shape[1:]), gs.reshape(b, t, *gs.shape[1:])
        total = total + ((gs[:, 1:] - gs[:, :-1]) - (ps[:, 1:] - ps[:, :-1])).abs().mean()
    return total / len(factors)


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

class LPIPSVGG(LPIPSDistance):
    """LPIPS-VGG16 as a loss: `bfvr.metrics.lpips.LPIPSDistance` (the one LPIPS implementation) on frames
    in [0, 1], averaged over the batch. The lpips package's learned heads (`vgg.pth`) are optional;
    without them every channel has weight 1 (the "baseline" VGG distance)."""

    name = "lpips-vgg"

    def __init__(self, vgg_weights: str | Path, lpips_weights: str | Path | None = None) -> None:
        super().__init__("vgg")
        self.load_backbone(vgg_weights)
        if lpips_weights is not None:
            self.load_heads(lpips_weights)

    def train(self, mode: bool = True) -> LPIPSVGG:  # always frozen / eval
        return super().train(False)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(frames(pred) * 2 - 1, frames(target) * 2 - 1).mean()


# ----------------------------------------------------------------------------------------------------
# VGG19 feature loss (the STC paper's perceptual loss) from local weights

# torchvision vgg19 `features`: conv output channels, "M" = max-pool; ReLU after every conv
_VGG19 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512]
#: name -> index in `features` of the ReLU after that conv (torchvision numbering)
VGG19_LAYERS = {"relu1_1": 1, "relu1_2": 3, "relu2_1": 6, "relu2_2": 8, "relu3_1": 11, "relu3_2": 13,
                "relu3_3": 15, "relu3_4": 17, "relu4_1": 20, "relu4_2": 22, "relu4_3": 24, "relu4_4": 26,
                "relu5_1": 29, "relu5_2": 31, "relu5_3": 33, "relu5_4": 35}


def vgg19_features(upto: int = 35) -> nn.Sequential:
    """torchvision's VGG19 `features` (parameter names features.N.weight/bias) up to index `upto`."""
    layers: list[nn.Module] = []
    cin = 3
    for v in _VGG19:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=False)]
            cin = int(v)
    return nn.Sequential(*layers[: upto + 1])


class VGG19PerceptualLoss(nn.Module):
    """Perceptual loss on VGG19 features: sum over `layers` of weight * mean |phi(x_hat) - phi(x)|
    (``distance="l1"``) or weight * mean (phi(x_hat) - phi(x))^2 (``"l2sq"``, the papers' squared L2 norm
    taken as a mean over feature values) on ImageNet-normalised frames (inputs in [0, 1]). The weights
    come from a local torchvision-layout VGG19 state_dict (`vgg19-dcbb9e9d.pth` or a .safetensors copy);
    nothing is downloaded."""

    name = "vgg19"

    def __init__(self, weights: str | Path | None,
                 layers: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_4", "relu4_4", "relu5_4"),
                 layer_weights: tuple[float, ...] | None = None, distance: str = "l1") -> None:
        super().__init__()
        if distance not in ("l1", "l2sq"):
            raise ValueError(f"distance must be 'l1' or 'l2sq', not {distance!r}")
        self.distance = distance
        if not weights:
            raise WeightsNotFoundError("the VGG19 perceptual loss needs a local VGG19 weights file "
                                       "(loss.vgg19_weights, torchvision layout such as vgg19-dcbb9e9d.pth); "
                                       "nothing is downloaded.")
        if not Path(weights).is_file():
            raise WeightsNotFoundError(f"VGG19 weights not found: {weights}; fix loss.vgg19_weights.")
        bad = [n for n in layers if n not in VGG19_LAYERS]
        if bad:
            raise ValueError(f"unknown VGG19 layers {bad}; use names like relu3_4")
        self.taps = [VGG19_LAYERS[n] for n in layers]
        self.layer_weights = tuple(layer_weights) if layer_weights is not None else (1.0,) * len(layers)
        self.features = vgg19_features(max(self.taps))
        own = self.features.state_dict()
        sd = {
            k.removeprefix("features."): v
            for k, v in load_state(weights).items()
            if k.startswith("features.")
        }
        missing = [k for k in own if k not in sd]
        wrong = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
        if missing or wrong:
            raise WeightsNotFoundError(f"{weights} is not a torchvision VGG19 state_dict (missing "
                                       f"{['features.' + k for k in missing[:2]]}, wrong shape "
                                       f"{['features.' + k for k in wrong[:2]]}); give vgg19 weights.")
        self.features.load_state_dict({k: sd[k] for k in own})
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG19PerceptualLoss:  # always frozen / eval
        return super().train(False)

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = (frames(pred.float()) - self.mean) / self.std
        t = (frames(target.float()) - self.mean) / self.std
        total = p.new_zeros(())
        for w, fp, ft in zip(self.layer_weights, self._taps(p), self._taps(t)):
            d = fp - ft
            total = total + w * (d.abs().mean() if self.distance == "l1" else d.pow(2).mean())
        return total


def perceptual_from_config(cfg, device: torch.device | str = "cpu") -> nn.Module | None:
    """The perceptual loss a training config asks for (`loss.perceptual_net`): the VGG19 feature loss from
    `loss.vgg19_weights` with `loss.perceptual_distance`, or LPIPS-VGG / its named offline substitute."""
    lw = cfg.loss
    if lw.perceptual_net == "vgg19":
        mod: nn.Module | None = VGG19PerceptualLoss(lw.vgg19_weights, distance=lw.perceptual_distance)
        log.info("perceptual loss: VGG19 features (%s) from %s", lw.perceptual_distance, lw.vgg19_weights)
    else:
        mod = build_perceptual(lw.vgg_weights, lw.lpips_weights, lw.perceptual_fallback)
    return None if mod is None else mod.to(device)


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

"""BFVR-Lite training task: the compact temporal U-Net (`bfvr.models.lite.LiteNet`) learns to restore
degraded face clips directly (no codebook):

    L = l1 * Charbonnier(pred, gt) + temporal * Charbonnier(pred[t+1] - pred[t], gt[t+1] - gt[t])
        + ssim * (1 - SSIM(pred, gt))

Validation (every ``val.every`` steps, on the EMA and on the raw weights): PSNR of the restored held-out clips
against the clean ones, next to the degraded input's PSNR (the gain is what the shipped model is judged by).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bfvr.errors import ConfigError, InputError
from bfvr.train.config import Bool, ModelBase, Num, Section, TrainConfig

log = logging.getLogger(__name__)

CHARBONNIER_EPS = 1e-3


class LiteModel(ModelBase):
    """`extra` holds the `LiteNet` arguments (widths, enc_blocks, dec_blocks, temporal, mid_fuse)."""

    #: `init_weights` comes from a smaller network (fewer res blocks / fusions, no fourth level); the parts
    #: it lacks start as the identity, so training starts from exactly what that network computed
    init_grow: Bool = False


class LiteLoss(Section):
    """Loss weights of BFVR-Lite (see the module doc)."""

    #: Charbonnier reconstruction
    l1: Num = 1.0
    #: the temporal term |(pred_t+1 - pred_t) - (gt_t+1 - gt_t)| (Charbonnier)
    temporal: Num = 0.0
    #: 1 - SSIM(pred, gt) (Gaussian window 11, per frame and channel, in fp32)
    ssim: Num = 0.0


class LiteConfig(TrainConfig):
    """A BFVR-Lite training config."""

    model: LiteModel = LiteModel()
    loss: LiteLoss = LiteLoss()

    def check(self) -> None:
        super().check()
        for name, v in (("data.crop", self.data.crop), ("data.size", self.data.size),
                        ("val.size", self.val.size)):
            if v is not None and v % 16:
                raise ConfigError(f"{name} must be a multiple of 16 for BFVR-Lite, not {v}.")


def charbonnier(a: torch.Tensor, b: torch.Tensor, eps: float = CHARBONNIER_EPS) -> torch.Tensor:
    return torch.sqrt((a - b) ** 2 + eps * eps).mean()


def _lite_net(cfg: LiteConfig) -> nn.Module:
    from bfvr.models.hub import build_lite_net

    try:
        return build_lite_net(cfg.model.extra)
    except TypeError as e:
        raise ConfigError(f"model.extra does not fit LiteNet: {e}; it takes widths, enc_blocks, dec_blocks, "
                          "temporal, mid_fuse.") from None


class LiteTask:
    """Direct restoration with Charbonnier + temporal-difference losses; no discriminator."""

    Config = LiteConfig
    has_disc = False
    disc = None

    def __init__(self, cfg: LiteConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.device = device
        self.model = _lite_net(cfg).to(device).to(memory_format=torch.channels_last)
        if cfg.model.init_weights:  # fine-tuning: start from earlier weights (e.g. the shipped ones)
            from bfvr.models.weights import check_state_dict
            from bfvr.train.checkpoint import load_weights

            sd = load_weights(cfg.model.init_weights)
            expected = {k: tuple(v.shape) for k, v in self.model.state_dict().items()}
            new_keys = set(expected) - set(sd) if cfg.model.init_grow else set()
            check_state_dict(sd, {k: s for k, s in expected.items() if k not in new_keys},
                             what=f"model.init_weights {cfg.model.init_weights}",
                             model=f"BFVR-Lite ({cfg.model.extra or 'default widths'})")
            self.model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=not new_keys)
            if new_keys:
                zeroed = self.model.start_as_identity(new_keys)
                log.info("BFVR-Lite: grown from %s; %d new tensors, starting as the identity: %s",
                         cfg.model.init_weights, len(new_keys), ", ".join(zeroed))
            else:
                log.info("BFVR-Lite: started from %s", cfg.model.init_weights)
        n = sum(p.numel() for p in self.model.parameters())
        log.info("BFVR-Lite: %d parameters (%s)", n, cfg.model.extra or "default widths")
        self._val: list[tuple[str, np.ndarray, np.ndarray]] | None = None
        if cfg.val.every:
            self._val_clips()  # a bad validation setting fails now, not after val.every steps

    def gan_on(self, step: int) -> bool:
        return False

    def generator_loss(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int,
                       disc_fn=None) -> tuple[torch.Tensor, dict[str, torch.Tensor], None]:
        lw = self.cfg.loss
        lq = batch["lq"].transpose(1, 2)  # [B,3,T,H,W] -> [B,T,3,H,W]
        gt = batch["gt"].transpose(1, 2)
        out = model(lq).float()
        rec = charbonnier(out, gt)
        total = lw.l1 * rec
        logs = {"l1": rec}
        if lw.temporal > 0 and out.shape[1] > 1:
            tmp = charbonnier(out[:, 1:] - out[:, :-1], gt[:, 1:] - gt[:, :-1])
            total = total + lw.temporal * tmp
            logs["temporal"] = tmp
        if lw.ssim > 0:
            from bfvr.metrics.fullref import ssim_map

            with torch.autocast(out.device.type, enabled=False):  # bf16 variances cancel to garbage
                sim = ssim_map(out.flatten(0, 1), gt.flatten(0, 1).float(), 1.0).mean()
            total = total + lw.ssim * (1 - sim)
            logs["ssim"] = sim.detach()
        logs["loss"] = total
        return total, logs, None

    # ------------------------------------------------------------------------------------ validation
    def _val_clips(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        if self._val is None:
            from bfvr.degrade import recipe
            from bfvr.degrade.pipeline import clip_rng
            from bfvr.train.data import expand_paths, load_clip

            v = self.cfg.val
            files = [f for f in expand_paths(v.paths) if f.stem in set(v.names)]
            missing = sorted(set(v.names) - {f.stem for f in files})
            if missing:
                raise InputError(f"validation clips not found in {v.paths}: "
                                 f"{', '.join(missing)}; fix val.names.")
            deg = recipe(v.recipe)
            self._val = []
            for f in files:
                gt = load_clip(Path(f), v.frames, v.size, v.face_crop)
                lq, _ = deg(gt, clip_rng(v.seed, f.stem))
                self._val.append((f.stem, lq, gt))
            log.info("validation: %d clips x %d frames (%s), recipe %s", len(self._val), v.frames,
                     ", ".join(n for n, _, _ in self._val), v.recipe)
        return self._val

    @torch.no_grad()
    def validate(self, model: nn.Module) -> dict[str, float]:
        from bfvr.metrics import psnr
        from bfvr.metrics.fullref import ssim_frames

        was_training = model.training
        model.eval()
        gains, outs, ins, ssim_gains = [], [], [], []
        for _name, lq, gt in self._val_clips():
            x = torch.from_numpy(lq).permute(0, 3, 1, 2).float().div(255).unsqueeze(0).to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16):
                y = model(x.contiguous())
            pred = (y.float().clamp(0, 1)[0].permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
            p_out, p_in = psnr(pred, gt), psnr(lq, gt)
            outs.append(p_out)
            ins.append(p_in)
            gains.append(p_out - p_in)
            ssim_gains.append(float(ssim_frames(pred, gt).mean() - ssim_frames(lq, gt).mean()))
        model.train(was_training)
        return {"val_psnr": float(np.mean(outs)), "val_psnr_lq": float(np.mean(ins)),
                "val_gain_db": float(np.mean(gains)), "val_ssim_gain": float(np.mean(ssim_gains))}

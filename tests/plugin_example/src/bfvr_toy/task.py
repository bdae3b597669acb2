"""The toy's training task (``task: toy`` in a `bfvr train` config): L1 between the restored and the clean
clip.

A task object has ``model`` (the trained module), ``disc`` (None: no discriminator), ``gan_on(step)`` and
``generator_loss(model, batch, step, disc_fn) -> (loss, logs, fake)``; the batch holds ``lq`` and ``gt`` clips
``[B, 3, T, H, W]`` in [0, 1] made by bfvr's data pipeline (`data:` section of the config).
"""

from __future__ import annotations

from typing import Any

import torch

from bfvr.train.config import TrainConfig
from bfvr_toy.method import CONFIG, build_net


class ToyTask:
    #: its config: bfvr's common sections only (data, optimiser, schedule, checkpoints, logging, validation)
    Config = TrainConfig
    has_disc = False
    disc = None

    def __init__(self, cfg: Any, device: torch.device) -> None:
        self.cfg = cfg
        self.model = build_net(CONFIG).to(device)

    def gan_on(self, step: int) -> bool:
        return False

    def generator_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], step: int,
                       disc_fn: Any = None) -> tuple[torch.Tensor, dict[str, torch.Tensor], None]:
        lq = batch["lq"].transpose(1, 2)  # [B, 3, T, H, W] -> [B, T, 3, H, W]
        gt = batch["gt"].transpose(1, 2)
        loss = (model(lq).float() - gt).abs().mean()
        return loss, {"l1": loss.detach(), "loss": loss.detach()}, None

"""Exponential moving average of a network's weights (the official recipe keeps EMA 0.995)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """`shadow = decay * shadow + (1 - decay) * param` after each optimizer step; buffers are copied.

    The shadow network is a frozen deep copy of the model (`ema.module`); it is what checkpoints save as
    the EMA weights and what Stage II loads from a Stage-I run.
    """

    def __init__(self, model: nn.Module, decay: float = 0.995) -> None:
        super().__init__()
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)

    def train(self, mode: bool = True) -> EMA:
        return super().train(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        src = dict(model.named_parameters())
        for name, p in self.module.named_parameters():
            p.lerp_(src[name].detach(), 1.0 - self.decay)
        srcb = dict(model.named_buffers())
        for name, b in self.module.named_buffers():
            b.copy_(srcb[name])

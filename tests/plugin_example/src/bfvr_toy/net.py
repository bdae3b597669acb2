"""The toy network: a residual 3x3 convolution of each frame plus a temporal mean of its neighbours."""

from __future__ import annotations

import torch
from torch import nn


class ToyNet(nn.Module):
    """``[B, T, 3, H, W]`` in [0, 1] -> the same: ``x + conv(x) + mix * (temporal mean - x)``. With zero
    weights (how it starts) it is the identity, so two training steps cannot make the input much worse."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.inp = nn.Conv2d(3, width, 3, padding=1)
        self.out = nn.Conv2d(width, 3, 3, padding=1)
        self.mix = nn.Parameter(torch.zeros(1))
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        f = x.flatten(0, 1)
        y = f + self.out(torch.relu(self.inp(f)))
        y = y.unflatten(0, (b, t))
        return y + self.mix * (x.mean(1, keepdim=True) - x)

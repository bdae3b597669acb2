"""BFVR-Lite: a compact temporal U-Net for face clips, fast enough for a laptop CPU.

Layout (per frame unless noted; ``c = widths``)::

    frame 512x512x3 --pixel-unshuffle x4--> 128x128x48 --conv--> c0
      level 0 (H/4):  temporal fusion, res blocks                       --skip0-->
      down (stride-2 conv) -> level 1 (H/8): temporal fusion, res blocks  --skip1-->
      down -> level 2 (H/16): res blocks with temporal fusion between them
      up (conv + pixel-shuffle x2) + skip1 -> res blocks
      up + skip0 -> res blocks -> conv to 48 -> pixel-shuffle x4 -> + input frame (residual, fp32)

*Temporal fusion* concatenates each frame's features with those of its neighbours t-1 and t+1 (the
clip's first/last frame repeated at its edges) and mixes them with a 3x3 convolution: a 3x3x3
spatio-temporal convolution written with 2-D convolutions (no Conv3d, whose bf16 weight gradient is
unreliable on CPU oneDNN). Each fusion widens the temporal receptive field by one frame each way.

Inputs and outputs are clips ``[B, T, 3, H, W]`` in [0, 1]; H and W must be multiples of 16 (the
`ClipModel` adapter pads). The network predicts a residual that is added to the input in fp32, so
bf16 inference keeps the input's precision where the network changes little.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def _act() -> nn.Module:
    return nn.LeakyReLU(0.1, inplace=True)


class ResBlock(nn.Module):
    """conv-act-conv with an identity shortcut."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.act = _act()
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class TemporalFusion(nn.Module):
    """x_t + conv3x3([x_{t-1}, x_t, x_{t+1}]) over the frames of each clip (edges repeated)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3 * ch, ch, 3, padding=1)
        self.act = _act()

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        f = rearrange(x, "(b t) c h w -> b t c h w", t=t)
        prev = torch.cat([f[:, :1], f[:, :-1]], dim=1)
        nxt = torch.cat([f[:, 1:], f[:, -1:]], dim=1)
        mixed = torch.cat([prev, f, nxt], dim=2).flatten(0, 1)
        return x + self.act(self.conv(mixed))


class Level(nn.Module):
    """Res blocks with a temporal fusion before each of the positions in `fuse_at`."""

    def __init__(self, ch: int, blocks: int, fuse_at: Sequence[int]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(ch) for _ in range(blocks))
        self.fuse_at = tuple(fuse_at)
        self.fusions = nn.ModuleList(TemporalFusion(ch) for _ in self.fuse_at)

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        fusions = dict(zip(self.fuse_at, self.fusions))
        for i, block in enumerate(self.blocks):
            if i in fusions:
                x = fusions[i](x, t)
            x = block(x)
        if len(self.blocks) in fusions:
            x = fusions[len(self.blocks)](x, t)
        return x


class LiteNet(nn.Module):
    """The BFVR-Lite network. ``forward(x [B,T,3,H,W] in [0,1]) -> [B,T,3,H,W]`` (not clamped)."""

    #: spatial size multiple the network needs (pixel-unshuffle x4, then two stride-2 levels; three with a
    #: fourth width: `multiple` becomes 32)
    multiple = 16

    def __init__(self, widths: Sequence[int] = (64, 96, 128), enc_blocks: Sequence[int] = (1, 2, 4),
                 dec_blocks: Sequence[int] = (2, 2), temporal: bool = True,
                 mid_fuse: Sequence[int] | None = None) -> None:
        """`widths`: 3 levels (H/4, H/8, H/16) or 4 (adds H/32, with ``enc_blocks[3]`` res blocks);
        `mid_fuse`: positions of the temporal fusions among the H/16 res blocks (default: before the first
        and the middle one)."""
        super().__init__()
        if len(widths) not in (3, 4) or len(enc_blocks) != len(widths) or len(dec_blocks) != 2:
            raise TypeError(f"LiteNet takes 3 or 4 widths with one enc_blocks entry each and 2 dec_blocks; "
                            f"got widths={list(widths)}, enc_blocks={list(enc_blocks)}, "
                            f"dec_blocks={list(dec_blocks)}")
        c0, c1, c2 = widths[:3]
        self.widths, self.temporal = tuple(widths), temporal
        self.head = nn.Conv2d(48, c0, 3, padding=1)
        self.act = _act()
        fuse = (lambda *pos: pos) if temporal else (lambda *pos: ())
        self.enc0 = Level(c0, enc_blocks[0], fuse(0))
        self.down0 = nn.Conv2d(c0, c1, 3, stride=2, padding=1)
        self.enc1 = Level(c1, enc_blocks[1], fuse(0))
        self.down1 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.mid = Level(c2, enc_blocks[2], fuse(*(mid_fuse if mid_fuse is not None
                                                   else (0, enc_blocks[2] // 2))))
        if len(widths) == 4:
            self.down2 = nn.Conv2d(c2, widths[3], 3, stride=2, padding=1)
            self.deep = Level(widths[3], enc_blocks[3], fuse(0))
            self.up2 = nn.Conv2d(widths[3], 4 * c2, 3, padding=1)
            nn.init.zeros_(self.up2.weight)  # the deep level starts as a no-op
            nn.init.zeros_(self.up2.bias)
        self.up1 = nn.Conv2d(c2, 4 * c1, 3, padding=1)
        self.dec1 = Level(c1, dec_blocks[0], ())
        self.up0 = nn.Conv2d(c1, 4 * c0, 3, padding=1)
        self.dec0 = Level(c0, dec_blocks[1], ())
        if len(widths) == 4:
            self.multiple = 32
        self.tail = nn.Conv2d(c0, 48, 3, padding=1)
        nn.init.zeros_(self.tail.weight)  # start as the identity: the residual grows from zero
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = x.shape
        if not torch.jit.is_tracing() and (h % self.multiple or w % self.multiple):
            raise ValueError(f"LiteNet needs H and W divisible by {self.multiple}; got {h}x{w}")
        frames = x.reshape(b * t, c, h, w)
        f0 = self.enc0(self.act(self.head(F.pixel_unshuffle(frames, 4))), t)
        f1 = self.enc1(self.act(self.down0(f0)), t)
        f2 = self.mid(self.act(self.down1(f1)), t)
        if len(self.widths) == 4:
            f2 = f2 + F.pixel_shuffle(self.up2(self.deep(self.act(self.down2(f2)), t)), 2)
        g1 = self.dec1(F.pixel_shuffle(self.up1(f2), 2) + f1, t)
        g0 = self.dec0(F.pixel_shuffle(self.up0(g1), 2) + f0, t)
        res = F.pixel_shuffle(self.tail(g0), 4)
        return (frames.float() + res.float()).reshape(b, t, c, h, w)

    def start_as_identity(self, new_keys: set[str]) -> list[str]:
        """Make the parts whose parameters are in `new_keys` (absent from the weights a grown network starts
        from) pass their input through: a new res block's second conv, a new temporal fusion's conv and the
        deep level's output conv are zeroed, so the grown network computes exactly what the smaller one did.
        Returns the names of the modules zeroed."""
        layers = {"up2": self.up2} if len(self.widths) == 4 else {}
        for name, m in self.named_modules():
            if isinstance(m, ResBlock):
                layers[f"{name}.conv2"] = m.conv2
            elif isinstance(m, TemporalFusion):
                layers[f"{name}.conv"] = m.conv
        zeroed = [name for name in layers if f"{name}.weight" in new_keys]
        with torch.no_grad():
            for name in zeroed:
                layers[name].weight.zero_()
                layers[name].bias.zero_()
        return zeroed

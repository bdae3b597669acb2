"""CodeFormer's 2D VQ autoencoder parts as DicFace uses them: encoder, codebook and generator.

Block indices (`encoder.blocks.i`, `generator.blocks.i`) follow the official layout: a 3x3 stem, per level
`res_blocks` ResBlocks (+ attention at the nominal `attn_resolutions`) and a /2 between levels, a mid
Res-Attn-Res, GroupNorm and a 3x3 conv to `emb_dim`; the generator mirrors it (from the lowest level,
x2 nearest upsampling) and has no output activation. Levels are laid out for the nominal `img_size`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bfvr.models.blocks.conv2d import AttnBlock2d, Downsample2d, ResBlock2d, Upsample2d
from bfvr.models.blocks.conv3d import normalize


class Encoder2d(nn.Module):
    """Per-frame encoder. `taps[size]` is the index of the last ResBlock at the level of nominal spatial
    size `size` (official `fuse_encoder_block`, e.g. {'512': 2, ..., '32': 14, '16': 18} for DicFace)."""

    def __init__(
        self,
        in_channels: int = 3,
        nf: int = 64,
        emb_dim: int = 256,
        ch_mult: Sequence[int] = (1, 2, 2, 4, 4, 8),
        res_blocks: int = 2,
        img_size: int = 512,
        attn_resolutions: Sequence[int] = (16,),
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(in_channels, nf, kernel_size=3, stride=1, padding=1)]
        self.taps: dict[str, int] = {}
        self.channels: dict[str, int] = {}
        res, ch = img_size, nf
        for i, mult in enumerate(ch_mult):
            out_ch = nf * mult
            for _ in range(res_blocks):
                blocks.append(ResBlock2d(ch, out_ch))
                ch = out_ch
                self.taps[str(res)] = len(blocks) - 1
                if res in attn_resolutions:
                    blocks.append(AttnBlock2d(ch))
            self.channels[str(res)] = ch
            if i != len(ch_mult) - 1:
                blocks.append(Downsample2d(ch))
                res //= 2
        blocks += [ResBlock2d(ch, ch), AttnBlock2d(ch), ResBlock2d(ch, ch)]
        blocks += [normalize(ch), nn.Conv2d(ch, emb_dim, kernel_size=3, stride=1, padding=1)]
        self.blocks = nn.ModuleList(blocks)
        self.latent_size = res

    def forward(
        self, x: torch.Tensor, keep: Sequence[str] = ()
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """x [N,3,H,W] -> (latent [N,emb_dim,H/2^L,W/2^L], {size: feature after its tap} for `keep`)."""
        want = {self.taps[s]: s for s in keep}
        feats: dict[str, torch.Tensor] = {}
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in want:
                feats[want[i]] = x
        return x, feats


class Generator2d(nn.Module):
    """Per-frame decoder (no output activation). `taps[size]` is where the fusion with encoder features
    of that nominal size happens (official `fuse_generator_block`: the first ResBlock after each upsample,
    and the second ResBlock of the lowest level: {'16': 6, '32': 9, ..., '512': 21} for DicFace)."""

    def __init__(
        self,
        out_channels: int = 3,
        nf: int = 64,
        emb_dim: int = 256,
        ch_mult: Sequence[int] = (1, 2, 2, 4, 4, 8),
        res_blocks: int = 2,
        img_size: int = 512,
        attn_resolutions: Sequence[int] = (16,),
    ) -> None:
        super().__init__()
        ch = nf * ch_mult[-1]
        res = img_size // 2 ** (len(ch_mult) - 1)
        blocks: list[nn.Module] = [
            nn.Conv2d(emb_dim, ch, kernel_size=3, stride=1, padding=1),
            ResBlock2d(ch, ch),
            AttnBlock2d(ch),
            ResBlock2d(ch, ch),
        ]
        self.taps: dict[str, int] = {}
        self.channels: dict[str, int] = {}
        lowest = True
        for i in reversed(range(len(ch_mult))):
            out_ch = nf * ch_mult[i]
            level_res = []
            for _ in range(res_blocks):
                blocks.append(ResBlock2d(ch, out_ch))
                ch = out_ch
                level_res.append(len(blocks) - 1)
                if res in attn_resolutions:
                    blocks.append(AttnBlock2d(ch))
            self.taps[str(res)] = level_res[min(1, len(level_res) - 1)] if lowest else level_res[0]
            self.channels[str(res)] = ch
            lowest = False
            if i != 0:
                blocks.append(Upsample2d(ch))
                res *= 2
        blocks += [normalize(ch), nn.Conv2d(ch, out_channels, kernel_size=3, stride=1, padding=1)]
        self.blocks = nn.ModuleList(blocks)


class Codebook(nn.Module):
    """The VQ codebook (official `quantize.embedding.weight`, [codebook_size, emb_dim])."""

    def __init__(self, codebook_size: int = 1024, emb_dim: int = 256) -> None:
        super().__init__()
        self.embedding = nn.Embedding(codebook_size, emb_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / codebook_size, 1.0 / codebook_size)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices [...] -> code vectors [..., emb_dim] (nearest-code decoding, for
        training/inspection)."""
        return self.embedding(indices)

"""BFVR-STC stage I: the 3D VQGAN (`STCVQGAN`) with spatial + temporal codebooks.

Layout (official block indices, `encoder.blocks.*` / `generator.blocks.*`): all convolutions are 3x3x3
Conv3d on B C T H W tensors; level 0 ends in a spatio-temporal /2 (T, H, W), the next levels in
spatial-only /2; full 3D self-attention at the lowest level(s); the generator mirrors it and ends in a
sigmoid. With the official settings a [B,3,T,H,W] clip (T even, H and W divisible by 8) has the latent
[B,256,T/2,H/8,W/8]. Levels are laid out for a nominal `resolution` (256 in the official code, whatever
the real input size): `attn_resolutions=(32,)` means attention at the 1/8 level.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bfvr.models.blocks import AttnBlock, Downsample, Downsample2D, ResBlock, Upsample, Upsample2D, normalize
from bfvr.models.blocks.conv3d import to_channels_last_3d
from bfvr.models.stc.quantizer import MPRForm, VectorQuantizerST


class Encoder3D(nn.Module):
    """Conv3d stem, `res_blocks` ResBlocks (+attention at `attn_resolutions`) per level with a downsample
    between levels (3D after the levels in `temporal_down`, spatial-only otherwise), a mid
    Res-Attn-Res, GroupNorm and a Conv3d to `emb_dim`."""

    def __init__(self, in_channels: int = 3, nf: int = 32, emb_dim: int = 256,
                 ch_mult: Sequence[int] = (1, 2, 4, 8), res_blocks: int = 2, resolution: int = 256,
                 attn_resolutions: Sequence[int] = (32,), temporal_down: Sequence[int] = (0,)) -> None:
        super().__init__()
        n_levels = len(ch_mult)
        in_mult = (1, *ch_mult)
        blocks: list[nn.Module] = [nn.Conv3d(in_channels, nf, kernel_size=3, stride=1, padding=1)]
        res = resolution
        ch = nf
        for i in range(n_levels):
            ch, out_ch = nf * in_mult[i], nf * ch_mult[i]
            for _ in range(res_blocks):
                blocks.append(ResBlock(ch, out_ch))
                ch = out_ch
                if res in attn_resolutions:
                    blocks.append(AttnBlock(ch))
            if i != n_levels - 1:
                blocks.append(Downsample(ch) if i in temporal_down else Downsample2D(ch))
                res //= 2
        blocks += [ResBlock(ch, ch), AttnBlock(ch), ResBlock(ch, ch)]
        blocks += [normalize(ch), nn.Conv3d(ch, emb_dim, kernel_size=3, stride=1, padding=1)]
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class Generator3D(nn.Module):
    """Mirror of `Encoder3D`: Conv3d from `emb_dim`, mid Res-Attn-Res, per level (from the lowest)
    `res_blocks` ResBlocks (+attention) and an upsample after every level but the lowest (3D after the
    levels in `temporal_up`), then GroupNorm and a Conv3d to `out_channels` (no output activation here)."""

    def __init__(self, out_channels: int = 3, nf: int = 32, emb_dim: int = 256,
                 ch_mult: Sequence[int] = (1, 2, 4, 8), res_blocks: int = 2, resolution: int = 256,
                 attn_resolutions: Sequence[int] = (32,), temporal_up: Sequence[int] = (0,)) -> None:
        super().__init__()
        n_levels = len(ch_mult)
        ch = nf * ch_mult[-1]
        res = resolution // 2 ** (n_levels - 1)
        blocks: list[nn.Module] = [nn.Conv3d(emb_dim, ch, kernel_size=3, stride=1, padding=1),
                                   ResBlock(ch, ch), AttnBlock(ch), ResBlock(ch, ch)]
        for i in reversed(range(n_levels)):
            out_ch = nf * ch_mult[i]
            for _ in range(res_blocks):
                blocks.append(ResBlock(ch, out_ch))
                ch = out_ch
                if res in attn_resolutions:
                    blocks.append(AttnBlock(ch))
            if i != n_levels - 1:
                blocks.append(Upsample(ch) if i in temporal_up else Upsample2D(ch))
                res *= 2
        blocks += [normalize(ch), nn.Conv3d(ch, out_channels, kernel_size=3, stride=1, padding=1)]
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class STCVQGAN(nn.Module):
    """Stage-I 3D VQGAN of BFVR-STC (official `VQAutoEncoder3D`; same state_dict keys).

    forward(x [B,3,T,H,W] in [0,1]) -> (out in (0,1), codebook_loss, mpr_loss, stats) where stats holds
    perplexity_s/t and min_encoding_indices_s/t ([(B*T'), H'*W']).

    ``mpr="paper"`` (default) is the paper's printed MPR, ``"gaussian"`` a Gaussian soft assignment with
    the temperature `mpr_temperature` (the form that acts), ``"official"`` the released code's (see
    `quantizer`).
    `resolution` is the nominal size the levels are laid out for (official: 256, whatever the input);
    `temporal_scale_levels` are the levels whose down/upsampling also halves/doubles T.
    """

    def __init__(self, nf: int = 32, ch_mult: Sequence[int] = (1, 2, 4, 8), res_blocks: int = 2,
                 codebook_size: int = 1024, emb_dim: int = 256, beta: float = 0.25, *,
                 mpr: MPRForm = "paper", mpr_weight: float = 0.1, mpr_temperature: float = 1.0,
                 attn_resolutions: Sequence[int] = (32,),
                 resolution: int = 256, in_channels: int = 3, temporal_scale_levels: Sequence[int] = (0,),
                 img_size: int | None = None, commitment: str = "official") -> None:
        super().__init__()
        self.emb_dim = emb_dim
        self.img_size = img_size  # stored like the official `img_size`; the layout never depends on it
        self.encoder = Encoder3D(in_channels, nf, emb_dim, ch_mult, res_blocks, resolution,
                                 attn_resolutions, temporal_scale_levels)
        self.quantize = VectorQuantizerST(codebook_size, emb_dim, beta, mpr=mpr, mpr_weight=mpr_weight,
                                          mpr_temperature=mpr_temperature, commitment=commitment)
        self.generator = Generator3D(in_channels, nf, emb_dim, ch_mult, res_blocks, resolution,
                                     attn_resolutions, temporal_scale_levels)

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, torch.Tensor], *, strict: bool = True, **kwargs: object):
        """Build with `kwargs` on the meta device and adopt `state_dict`'s tensors (no random init, no copy).

        Much faster than constructing then loading for the 40-70 M parameter STC networks. The buffers and
        parameters not covered (strict=False) stay on the meta device, so use strict=True for real use.
        """
        with torch.device("meta"):
            net = cls(**kwargs)
        net.load_state_dict(state_dict, strict=strict, assign=True)
        return net

    def to_channels_last_3d(self) -> STCVQGAN:
        """Store every 5-D weight as channels_last_3d (values unchanged; faster bf16 Conv3d on CPU)."""
        to_channels_last_3d(self)
        return self

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[B,3,T,H,W] -> latent z [B,emb_dim,T',H',W']."""
        return self.encoder(x)

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """Quantised latent -> clip in (0,1) (generator + sigmoid)."""
        return torch.sigmoid(self.generator(z_q))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        z = self.encode(x)
        z_q, codebook_loss, mpr_loss, stats = self.quantize(z)
        return self.decode(z_q), codebook_loss, mpr_loss, stats

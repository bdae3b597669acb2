"""DicFace (ICCV 2025): CodeFormer with Dirichlet code mixtures and spatio-temporal transformers.

One forward restores whole groups of `frame_length` (5) aligned 512x512 face frames, stacked in the batch
dimension: ``x [(B*5), 3, 512, 512]`` in [-1, 1] ->

1. the CodeFormer encoder (2D, per frame) to a 16x16x256 latent, plus the multi-scale fusion
   (`MultiScaleFuse`: the 64x64 and 32x32 encoder features space-to-depth'd onto the 16x16 grid) -> `lq_feat`;
2. `feat_emb` to 512-wide tokens, then `n_layers` interleaved pairs of transformer layers: `ft_layers[i]`
   over the 256 tokens of each frame (frozen spatial position table `position_emb`) and `dir_dist_layers[i]`
   over the 5 frames at each latent position (learned `position_emb_temporal`);
3. the Dirichlet head: ``alpha = softplus(Linear(LN(tokens))) + 0.01`` over the 1024 codes; code weights are
   a Dirichlet sample (``sampling="official"``: reparameterised, as the official forward does even at test
   time) or the Dirichlet mean ``alpha / sum(alpha)`` (``sampling="mean"``, deterministic; not official);
4. ``quant_feat = weights @ codebook`` (optionally AdaIN'd to `lq_feat`), decoded by the CodeFormer
   generator with the controllable fusion blocks (`fuse_convs_dict`, fidelity weight `w`; official
   inference uses w = 1) fed by the encoder features at 32..256.

Parameter names equal the official `TemporalCodeFormerDirDistMultiScale` state_dict keys, so
`bfr_100k.pth`, `color_100k.pth` and `inpainting_100k.pth` (`params_ema`) load with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from bfvr.models.blocks.adain import adaptive_instance_normalization
from bfvr.models.blocks.attention import TransformerSALayer
from bfvr.models.blocks.conv2d import ResBlock2d
from bfvr.models.dicface.vqgan import Codebook, Encoder2d, Generator2d

Sampling = Literal["official", "mean"]
SAMPLING_MODES: tuple[str, ...] = ("official", "mean")
#: added to softplus(logits) (official)
ALPHA_FLOOR = 1e-2
#: the official forward returns alpha + this (not used for sampling)
ALPHA_RETURN_EPS = 1e-6


class FuseSFTBlock2d(nn.Module):
    """CodeFormer's controllable feature transformation (official `Fuse_sft_block`):
    ``dec + w * (dec * scale(h) + shift(h))`` with ``h = ResBlock(cat(enc, dec))``."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.encode_enc = ResBlock2d(2 * in_ch, out_ch)
        self.scale = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(out_ch, out_ch, 3, padding=1)
        )
        self.shift = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(out_ch, out_ch, 3, padding=1)
        )

    def forward(self, enc: torch.Tensor, dec: torch.Tensor, w: float = 1.0) -> torch.Tensor:
        h = self.encode_enc(torch.cat([enc, dec], dim=1))
        return dec + w * (dec * self.scale(h) + self.shift(h))


class MultiScaleFuse(nn.Module):
    """Fuses the encoder features at 4x and 2x the latent size with the latent (official `multiscale`):
    each is space-to-depth'd onto the latent grid (channel order c*r*r + i*r + j, i.e. `pixel_unshuffle`),
    reduced by a 1x1 conv, then the three are concatenated and mixed by a 3x3 conv."""

    def __init__(self, ch4: int = 256, ch2: int = 256, emb_dim: int = 256) -> None:
        super().__init__()
        self.s64_conv = nn.Conv2d(ch4 * 16, emb_dim, kernel_size=1)
        self.s32_conv = nn.Conv2d(ch2 * 4, emb_dim, kernel_size=1)
        self.s16_conv = nn.Conv2d(emb_dim, emb_dim, kernel_size=1)
        self.out = nn.Conv2d(3 * emb_dim, emb_dim, kernel_size=3, stride=1, padding=1)

    def forward(self, f4: torch.Tensor, f2: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        a = self.s64_conv(F.pixel_unshuffle(f4, 4))
        b = self.s32_conv(F.pixel_unshuffle(f2, 2))
        return self.out(torch.cat([a, b, self.s16_conv(z)], dim=1))


class DicFace(nn.Module):
    """DicFace network (official `TemporalCodeFormerDirDistMultiScale`).

    ``forward(x [(B*T), 3, S, S] in [-1,1], w=1.0, adain=False, sampling=None)
    -> (out [(B*T), 3, S, S] (no activation), lq_feat [(B*T), emb_dim, s, s], alpha + 1e-6 [(B*T), s*s, K])``
    with T = `frame_length`, S = `img_size`, s = S / 2^(len(ch_mult)-1), K = `codebook_size`.

    Defaults are the official inference configuration except ``frame_length`` (official inference: 5).
    The keyword-only arguments describe the CodeFormer base (official: fixed) and are there for small test
    or training configurations; ``dropout`` (0.1 official) only acts in training.

    Sampling (`sampling`, `seed`): ``"official"`` draws the code weights from Dir(alpha) with `rsample`.
    With ``seed=None`` the draw uses torch's global generator, exactly like the official code (so
    ``torch.manual_seed(0)`` right before the forward reproduces an official run seeded the same way). With
    an integer `seed` the draws come from a private stream started at `seed` (the global generator is not
    touched): a run of calls is repeatable, each call still gets fresh noise, and the first call after
    construction or `reset_rng()` equals the official forward after ``torch.manual_seed(seed)``. Seeded
    draws are made on the CPU, so they are the same on every device. ``"mean"`` uses alpha / sum(alpha).
    """

    def __init__(
        self,
        dim_embed: int = 512,
        n_head: int = 8,
        n_layers: int = 9,
        codebook_size: int = 1024,
        latent_size: int = 256,
        connect_list: Sequence[str] = ("32", "64", "128", "256"),
        frame_length: int = 5,
        *,
        nf: int = 64,
        ch_mult: Sequence[int] = (1, 2, 2, 4, 4, 8),
        res_blocks: int = 2,
        img_size: int = 512,
        attn_resolutions: Sequence[int] = (16,),
        emb_dim: int = 256,
        dim_mlp: int | None = None,
        dropout: float = 0.1,
        sampling: Sampling = "official",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"unknown sampling '{sampling}'; choose one of: {', '.join(SAMPLING_MODES)}")
        if len(ch_mult) < 3:
            raise ValueError(
                "DicFace needs at least 3 levels (the multi-scale fusion taps 4x and 2x the latent)"
            )
        self.frame_length = frame_length
        self.img_size = img_size
        self.codebook_size = codebook_size
        self.connect_list = tuple(str(s) for s in connect_list)
        self.sampling: Sampling = sampling
        self.seed = seed
        self._rng_state: torch.Tensor | None = None
        #: run the transformers in fp32 even under bf16/fp16 autocast (they decide the codes; docs/dicface.md)
        self.fp32_transformer = False

        self.encoder = Encoder2d(3, nf, emb_dim, ch_mult, res_blocks, img_size, attn_resolutions)
        self.quantize = Codebook(codebook_size, emb_dim)
        self.generator = Generator2d(3, nf, emb_dim, ch_mult, res_blocks, img_size, attn_resolutions)
        s = self.encoder.latent_size
        if latent_size != s * s:
            raise ValueError(
                f"latent_size {latent_size} must be the number of latent tokens {s}x{s} = {s * s} "
                f"for img_size {img_size} and {len(ch_mult)} levels"
            )
        self.latent_hw = s
        unknown = [c for c in self.connect_list if c not in self.generator.taps or c not in self.encoder.taps]
        if unknown:
            raise ValueError(
                f"connect_list sizes {unknown} are not levels of this network "
                f"({', '.join(self.generator.taps)})"
            )
        #: nominal sizes of the encoder features fused by `multiscale` (4x and 2x the latent)
        self.ms_sizes = (str(4 * s), str(2 * s))

        self.position_emb = nn.Parameter(torch.zeros(latent_size, dim_embed), requires_grad=False)  # frozen
        self.position_emb_temporal = nn.Parameter(torch.zeros(frame_length, dim_embed))
        self.feat_emb = nn.Linear(emb_dim, dim_embed)
        ch = self.encoder.channels
        self.multiscale = MultiScaleFuse(ch[self.ms_sizes[0]], ch[self.ms_sizes[1]], emb_dim)
        dim_mlp = 2 * dim_embed if dim_mlp is None else dim_mlp
        self.ft_layers = nn.ModuleList(
            TransformerSALayer(dim_embed, n_head, dim_mlp, dropout) for _ in range(n_layers)
        )
        self.dir_dist_layers = nn.ModuleList(
            TransformerSALayer(dim_embed, n_head, dim_mlp, dropout) for _ in range(n_layers)
        )
        self.idx_pred_layer = nn.Sequential(
            nn.LayerNorm(dim_embed), nn.Linear(dim_embed, codebook_size, bias=False)
        )
        self.fuse_convs_dict = nn.ModuleDict(
            {
                k: FuseSFTBlock2d(self.generator.channels[k], self.generator.channels[k])
                for k in self.connect_list
            }
        )
        self._gen_fuse = {self.generator.taps[k]: k for k in self.connect_list}

    # -- pieces ---------------------------------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless x is [(B*frame_length), 3, img_size, img_size]."""
        n = x.shape[0] if x.dim() == 4 else 0
        if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (self.img_size, self.img_size):
            raise ValueError(
                f"DicFace takes [(B*{self.frame_length}), 3, {self.img_size}, {self.img_size}] "
                f"frames; got {list(x.shape)}"
            )
        if n == 0 or n % self.frame_length:
            raise ValueError(f"DicFace restores whole groups of {self.frame_length} frames; got {n} frames")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Frames -> (lq_feat [N, emb_dim, s, s], encoder features by nominal size for the fusion blocks)."""
        self.check_input(x)
        return self.encode_frames(x)

    def encode_frames(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`encode` for any number of frames (the encoder and the fusion are per frame: a frame's encoding
        does not depend on the other frames of its window, which the incremental schedule relies on)."""
        z, feats = self.encoder(x, keep=set(self.connect_list) | set(self.ms_sizes))
        lq_feat = self.multiscale(feats[self.ms_sizes[0]], feats[self.ms_sizes[1]], z)
        return lq_feat, feats

    def concentration(self, lq_feat: torch.Tensor) -> torch.Tensor:
        """lq_feat [(B*T), C, s, s] -> Dirichlet concentration alpha [(B*T), s*s, K] (softplus + 0.01,
        fp32)."""
        return self.head(self.transform(lq_feat))

    def transform(self, lq_feat: torch.Tensor) -> torch.Tensor:
        """lq_feat [(B*T), C, s, s] -> tokens [B, T, s*s, dim_embed] after the spatial and temporal
        transformer layers (in fp32 under autocast when `fp32_transformer` is set)."""
        if self.fp32_transformer and torch.is_autocast_enabled(lq_feat.device.type):
            with torch.autocast(lq_feat.device.type, enabled=False):
                return self._transform(lq_feat.float())
        return self._transform(lq_feat)

    def _transform(self, lq_feat: torch.Tensor) -> torch.Tensor:
        t = self.frame_length
        tok = self.feat_emb(rearrange(lq_feat, "(b t) c h w -> b t (h w) c", t=t))
        b, _, d, e = tok.shape
        for spatial, temporal in zip(self.ft_layers, self.dir_dist_layers):
            tok = spatial(tok.reshape(b * t, d, e), self.position_emb).view(b, t, d, e)
            tok = temporal(rearrange(tok, "b t d e -> (b d) t e"), self.position_emb_temporal)
            tok = rearrange(tok, "(b d) t e -> b t d e", b=b)
        return tok

    def head(self, tok: torch.Tensor) -> torch.Tensor:
        """Tokens [B, T, s*s, E] -> alpha [(B*T), s*s, K], in fp32 whatever the autocast."""
        b, t, d, _ = tok.shape
        with torch.autocast(tok.device.type, enabled=False):  # the head and the Dirichlet stay fp32
            logits = self.idx_pred_layer(tok.float())
            alpha = F.softplus(logits) + ALPHA_FLOOR
        return alpha.reshape(b * t, d, self.codebook_size)

    def reset_rng(self) -> None:
        """Restart the private sampling stream at `seed` (no effect with seed=None)."""
        self._rng_state = None

    def _dirichlet_sample(self, alpha: torch.Tensor) -> torch.Tensor:
        if self.seed is None:
            return torch.distributions.Dirichlet(alpha).rsample()
        if self._rng_state is None:
            self._rng_state = torch.Generator().manual_seed(int(self.seed)).get_state()
        with torch.random.fork_rng(devices=[]):  # the global CPU generator is restored afterwards
            torch.set_rng_state(self._rng_state)
            sample = torch.distributions.Dirichlet(alpha.cpu()).rsample()
            self._rng_state = torch.get_rng_state()
        return sample.to(alpha.device)

    def code_weights(self, alpha: torch.Tensor, sampling: Sampling | None = None) -> torch.Tensor:
        """alpha [N, L, K] -> code weights on the simplex [N, L, K] (a Dirichlet sample or its mean)."""
        mode = self.sampling if sampling is None else sampling
        if mode == "official":
            return self._dirichlet_sample(alpha)
        if mode == "mean":
            return alpha / alpha.sum(dim=-1, keepdim=True)
        raise ValueError(f"unknown sampling '{mode}'; choose one of: {', '.join(SAMPLING_MODES)}")

    def code_mixture(self, weights: torch.Tensor) -> torch.Tensor:
        """Code weights [N, s*s, K] -> quant_feat [N, emb_dim, s, s] = weights @ codebook."""
        n = weights.shape[0]
        s = self.latent_hw
        with torch.autocast(weights.device.type, enabled=False):
            feat = weights.reshape(-1, self.codebook_size).float() @ self.quantize.embedding.weight.float()
        return rearrange(feat, "(n h w) c -> n c h w", n=n, h=s, w=s)

    def decode(
        self, quant_feat: torch.Tensor, feats: dict[str, torch.Tensor] | None = None, w: float = 1.0
    ) -> torch.Tensor:
        """Generator with the fusion blocks (`w` > 0 needs the encoder features `feats`)."""
        x = quant_feat
        for i, block in enumerate(self.generator.blocks):
            x = block(x)
            size = self._gen_fuse.get(i)
            if size is not None and w > 0:
                if feats is None:
                    raise ValueError("decode with w > 0 needs the encoder features")
                x = self.fuse_convs_dict[size](feats[size].detach(), x, w)
        return x

    # -- forward --------------------------------------------------------------------------------------
    def forward(
        self, x: torch.Tensor, w: float = 1.0, adain: bool = False, sampling: Sampling | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lq_feat, feats = self.encode(x)
        alpha = self.concentration(lq_feat)
        quant_feat = self.code_mixture(self.code_weights(alpha, sampling))
        if adain:
            quant_feat = adaptive_instance_normalization(quant_feat, lq_feat.float())
        out = self.decode(quant_feat, feats, w)
        return out, lq_feat, alpha + ALPHA_RETURN_EPS

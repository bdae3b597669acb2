"""BFVR-STC stage II (`STCStage2`, official `CodeFormer3D`): a low-quality encoder, two lookup
transformers predicting spatial and temporal code indices, and the frozen codebooks + generator.

The state_dict keys equal the official ones, so `ckpt-bfvr.pth` (2 heads, 9 layers) and the de-flicker
checkpoints (4 heads, 6 layers) load with ``strict=True``; the unused official modules (`fuse_convs_dict`,
`s_feat_emb`, `t_feat_emb`) are kept as parameters for that reason only.

Both transformers attend over the H'*W' (= 64*64 = 4096) tokens of one latent frame, with learned
positional tables; time enters the temporal branch only through the quantiser's temporal attention and
the motion residual. ``official_residual=True`` reproduces the official stage-II residual, which takes the
difference over a scrambled axis order (see `official_stage2_residual`); the official weights need it.
The default (False) uses the stage-I formula z_t - z_{t-1}, for models we train ourselves.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bfvr.models.blocks import ResBlock, TransformerSALayer
from bfvr.models.blocks.adain import adaptive_instance_normalization
from bfvr.models.blocks.conv3d import memory_format_of
from bfvr.models.stc.quantizer import motion_residual, official_stage2_residual
from bfvr.models.stc.vqgan3d import STCVQGAN

#: decoder level -> channels of the (unused) official fusion blocks
FUSE_CHANNELS = {"16": 512, "32": 256, "64": 256, "128": 128, "256": 128, "512": 64}


class FuseSFTBlock(nn.Module):
    """Parameter holder for the official `Fuse_sft_block` (3D ResBlock + 2D scale/shift convs).

    The official stage-II forward never calls these blocks; they exist so that official checkpoints
    load strictly. Calling one is an error.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.encode_enc = ResBlock(2 * in_ch, out_ch)
        self.scale = nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.LeakyReLU(0.2, True),
                                   nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.shift = nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.LeakyReLU(0.2, True),
                                   nn.Conv2d(out_ch, out_ch, 3, padding=1))

    def forward(self, *args: object) -> torch.Tensor:
        raise NotImplementedError("the official STC fusion blocks are unused in its forward pass")


class STCStage2(STCVQGAN):
    """Stage-II network. forward(x [B,3,T,512,512] in [0,1], w=0, code_only=False, adain=False)
    -> (out [B,3,T,512,512] in (0,1), logits_s, logits_t [(B*T'), 4096, codebook_size], lq_feat)
    or, with code_only, (logits_s, logits_t, lq_feat).
    """

    def __init__(self, n_head: int = 2, n_layers: int = 9, codebook_size: int = 1024, dim_embd: int = 256,
                 official_residual: bool = False, *, dim_mlp: int | None = None,
                 latent_hw: tuple[int, int] = (64, 64),
                 connect_list: Sequence[str] = ("32", "64", "128", "256"), nf: int = 32,
                 ch_mult: Sequence[int] = (1, 2, 4, 8), res_blocks: int = 2, dropout: float = 0.0,
                 **vqgan_kwargs: object) -> None:
        emb_dim = vqgan_kwargs.pop("emb_dim", dim_embd)
        if emb_dim != dim_embd:
            raise ValueError(f"emb_dim ({emb_dim}) must equal dim_embd ({dim_embd}) in STC stage II")
        super().__init__(nf=nf, ch_mult=ch_mult, res_blocks=res_blocks, codebook_size=codebook_size,
                         emb_dim=dim_embd, **vqgan_kwargs)
        self.official_residual = official_residual
        self.latent_hw = tuple(latent_hw)
        n_tok = latent_hw[0] * latent_hw[1]
        dim_mlp = 2 * dim_embd if dim_mlp is None else dim_mlp
        self.position_emb_s = nn.Parameter(torch.zeros(n_tok, dim_embd))
        self.position_emb_t = nn.Parameter(torch.zeros(n_tok, dim_embd))
        self.s_feat_emb = nn.Linear(dim_embd, dim_embd)  # unused by the official forward
        self.t_feat_emb = nn.Linear(dim_embd, dim_embd)  # unused by the official forward
        self.s_ft_layers = nn.ModuleList(TransformerSALayer(dim_embd, n_head, dim_mlp,
                                                            dropout) for _ in range(n_layers))
        self.t_ft_layers = nn.ModuleList(TransformerSALayer(dim_embd, n_head, dim_mlp,
                                                            dropout) for _ in range(n_layers))
        self.s_idx_pred_layer = nn.Sequential(nn.LayerNorm(dim_embd),
                                              nn.Linear(dim_embd, codebook_size, bias=False))
        self.t_idx_pred_layer = nn.Sequential(nn.LayerNorm(dim_embd),
                                              nn.Linear(dim_embd, codebook_size, bias=False))
        self.fuse_convs_dict = nn.ModuleDict({k: FuseSFTBlock(FUSE_CHANNELS[k], FUSE_CHANNELS[k])
                                              for k in connect_list})

    # -- pieces -------------------------------------------------------------------------------------
    def temporal_latent(self, lq_feat: torch.Tensor) -> torch.Tensor:
        """SA(lq_feat) + residual (official scrambled form when `official_residual`), B C T H W."""
        res = official_stage2_residual(lq_feat) if self.official_residual else motion_residual(lq_feat)
        return self.quantize.SA(lq_feat) + res

    @staticmethod
    def frame_tokens(x: torch.Tensor) -> torch.Tensor:
        """B C T H W -> (B T) (H W) C, batch-first tokens of each latent frame."""
        b, c, t, h, w = x.shape
        return x.permute(0, 2, 3, 4, 1).reshape(b * t, h * w, c)

    @staticmethod
    def run_layers(layers: nn.ModuleList, head: nn.Module, tokens: torch.Tensor,
                   pos: torch.Tensor) -> torch.Tensor:
        """Transformer `layers` (with position embedding `pos`) then the prediction `head`."""
        for layer in layers:
            tokens = layer(tokens, pos)
        return head(tokens)

    def predict_logits(self, lq_feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """lq_feat [B,C,T',H',W'] -> (logits_s, logits_t), each [(B*T'), H'*W', codebook_size]."""
        h, w = lq_feat.shape[-2:]
        if (h, w) != self.latent_hw:
            raise ValueError(f"STC stage II needs a {self.latent_hw[0] * 8}x{self.latent_hw[1] * 8} input "
                             f"(latent {self.latent_hw}); got latent {(h, w)}")
        logits_s = self.run_layers(self.s_ft_layers, self.s_idx_pred_layer, self.frame_tokens(lq_feat),
                             self.position_emb_s)
        t_tokens = self.frame_tokens(self.temporal_latent(lq_feat))
        logits_t = self.run_layers(self.t_ft_layers, self.t_idx_pred_layer, t_tokens, self.position_emb_t)
        return logits_s, logits_t

    def decode_indices(self, idx_s: torch.Tensor, idx_t: torch.Tensor, shape: Sequence[int],
                       lq_feat: torch.Tensor | None = None) -> torch.Tensor:
        """Code indices ([(B*T'), H'*W'] each) -> clip in (0,1). `shape` = (B, T', H', W', C);
        with `lq_feat` the code features get its statistics (AdaIN) first."""
        feat = self.quantize.get_codebook_feat(idx_s, idx_t, tuple(shape)).detach()
        if lq_feat is not None:
            feat = adaptive_instance_normalization(feat, lq_feat)
        if lq_feat is not None and memory_format_of(lq_feat) == torch.channels_last_3d:
            feat = feat.contiguous(memory_format=torch.channels_last_3d)
        return self.decode(feat)

    # -- forward ------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, w: float = 0, code_only: bool = False, adain: bool = False):
        """`w` is accepted for the official signature; the official forward ignores it (no fusion)."""
        lq_feat = self.encoder(x)
        logits_s, logits_t = self.predict_logits(lq_feat)
        if code_only:
            return logits_s, logits_t, lq_feat
        b, c, t, h, wd = lq_feat.shape
        idx_s, idx_t = logits_s.argmax(dim=-1), logits_t.argmax(dim=-1)
        feat = self.quantize.get_codebook_feat(idx_s, idx_t, (b, t, h, wd, c)).detach()
        if adain:
            feat = adaptive_instance_normalization(feat, lq_feat)
        feat = feat.contiguous(memory_format=memory_format_of(x))
        out = self.decode(feat)
        return out, logits_s, logits_t, lq_feat

    @torch.no_grad()
    def infer(self, x: torch.Tensor, precision: str = "fp32",
              channels_last: bool | None = None) -> torch.Tensor:
        """Inference helper: restored clip [B,3,T,512,512] float32 in (0,1).

        ``precision`` (`bfvr.engine.device`): "fp32" is the official numerics (the parity path), "bf16"
        (autocast; on CPUs with AMX about 4x faster convolutions) or "fp16" (autocast, CUDA). GroupNorm
        statistics stay fp32. ``channels_last``: store activations and 5-D weights as channels_last_3d;
        default (None) = on for bf16/fp16 only (`uses_channels_last`). True in fp32 is faster on CPU (~2x
        Conv3d) but not the official numerics: near-tied code tokens may flip. Call `.eval()` first.
        """
        from bfvr.engine.device import autocast, uses_channels_last

        if uses_channels_last(precision, channels_last):
            self.to_channels_last_3d()
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with autocast(x.device, precision):
            out = self(x)[0]
        return out.float().contiguous()

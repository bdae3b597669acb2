"""PGTFormer (IJCAI 2024): the TS-VQGAN plus the parsing-guided temporal code predictor (TPCP) and the
temporal fidelity regulator (TFR). Official class `PGTFormer`; parameter names equal its state_dict keys.

Forward for clips of ``tf`` = 3 frames stacked in the batch, ``x [(B*3), 3, H, W]`` in [0, 1]
(official: H = W = 512, B = 1; here any B and H, W multiples of 32):

1. ``parsing_cond`` = BiSeNet(ImageNet-normalised x): three 19-class heads on the latent grid (57 ch);
   ``convpos`` (1x1 conv) turns them into the query position code of every token;
2. ``lq_feat`` = quant_conv(encoder(x)) ([(B*3), 512, h, w], h = H/16), plus the encoder's per-level
   features for the TFR;
3. TPCP: ``feat_emb`` (Linear) of lq_feat, 9 pre-LN transformer layers (8 heads, MLP 1024) over the
   3*h*w joint space-time tokens of each clip (token order frame, row, column), LayerNorm + Linear to the
   code logits [(B*3), h, w, depth, 1024];
4. codes = argmax, ``quant_feat`` = their codebook vectors, with AdaIN to lq_feat (per frame, mean/std
   over h*w, unbiased variance + 1e-5) when ``adain``;
5. decoder from post_quant_conv(quant_feat); after the blocks of the decoder levels in `connect_list`
   (nominal 32/64/128/256) a `TemporalFuseBlock` mixes in the encoder features of that level:
   out = dec + w * (dec * scale + shift). No output activation (official inference clamps to [0, 1] and
   keeps the middle frame).

Differences from the official class, none changing the output of one 3-frame 512x512 window:
* any number of clips per call (the official residual-block shortcut only broadcasts for one);
* the parsing heads are resized to the latent grid whatever the input size (official: fixed 32x32 and a
  crash elsewhere), encoder features are matched to decoder levels by level, not by pixel width;
* ``train()`` returns the module (official: None) and keeps `fix_modules` frozen in eval mode;
* attention runs through ``scaled_dot_product_attention``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from bfvr.models.blocks import TransformerSALayer
from bfvr.models.blocks.adain import adaptive_instance_normalization
from bfvr.models.blocks.conv2d import ResBlock2d
from bfvr.models.blocks.conv3d import memory_format_of
from bfvr.models.pgtformer.parsing import BiSeNet, imagenet_normalize
from bfvr.models.pgtformer.tsvqgan import OFFICIAL_DDCONFIG, TSVQGAN

#: constructor arguments of the released model (release_test_stage_IIII_dont_need_align_version.yml,
#: network_g minus `type`); `PGTFormer(**OFFICIAL_CONFIG)` loads kepeng/pgtformer-base
OFFICIAL_CONFIG: dict[str, Any] = {
    "w": 1,
    "adain": True,
    "checkpointing": False,
    "bottleneck_type": "rq",
    "embed_dim": 512,
    "n_embed": 1024,
    "latent_shape": [32, 32, 512],
    "code_shape": [32, 32, 1],
    "shared_codebook": True,
    "decay": 0.99,
    "restart_unused_codes": True,
    "loss_type": "mse",
    "latent_loss_weight": 0.25,
    "tf": 3,
    "ddconfig": dict(OFFICIAL_DDCONFIG),
}
#: temporal channels per frame in the fidelity blocks (official `tcc`)
TCC = 32


class TemporalFuseBlock(nn.Module):
    """The temporal fidelity regulator at one decoder level (official `Fuse_sft_block(in_ch, out_ch, t)`).

    Per frame, encoder and decoder features are squeezed to 32 channels (`tconvenc`, `tconvdec`); the 2*t*32
    channels of a clip are mixed by `tfusion0` (1x1, -> t*32) and split back per frame, then `tfusion1`
    (1x1). `encode_enc` (residual block on cat(enc, dec, temporal)) feeds the `scale` and `shift` branches
    (conv3x3, LeakyReLU 0.2, conv3x3): out = dec + w * (dec * scale + shift).
    """

    def __init__(self, in_ch: int, out_ch: int | None = None, t: int = 3) -> None:
        super().__init__()
        out_ch = in_ch if out_ch is None else out_ch
        self.t = t
        self.encode_enc = ResBlock2d(2 * in_ch + TCC, out_ch)
        self.scale = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1),
        )
        self.shift = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1),
        )
        self.tconvenc = nn.Conv2d(in_ch, TCC, 1)
        self.tconvdec = nn.Conv2d(in_ch, TCC, 1)
        self.tfusion0 = nn.Conv2d(2 * t * TCC, t * TCC, 1)
        self.tfusion1 = nn.Conv2d(TCC, TCC, 1)

    def forward(
        self, enc: torch.Tensor, dec: torch.Tensor, w: float = 1.0, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """enc, dec [(B*t), C, H, W] -> [(B*t), C, H, W]; with `keep` (indices into the B*t frames) only
        those frames' outputs, [len(keep), C, H, W] (the cross-frame branch still sees all frames; the rest
        is per frame)."""
        bt, _, h, wd = dec.shape
        b = bt // self.t
        # every tensor in the decoder's memory layout (channels-last under bf16): the frame <-> channel
        # reshapes return plain-contiguous tensors, and a concatenation of mixed layouts takes a slow
        # generic path plus a layout copy in the next conv (a no-op in fp32, where all is contiguous)
        fmt = memory_format_of(dec)
        e = self.tconvenc(enc).reshape(b, self.t * TCC, h, wd).contiguous(memory_format=fmt)
        d = self.tconvdec(dec).reshape(b, self.t * TCC, h, wd).contiguous(memory_format=fmt)
        mixed = self.tfusion0(torch.cat([e, d], dim=1)).reshape(bt, TCC, h, wd).contiguous(memory_format=fmt)
        if keep is not None:
            mixed, enc, dec = mixed[keep], enc[keep], dec[keep]
        fut = self.tfusion1(mixed)
        parts = [t.contiguous(memory_format=fmt) for t in (enc, dec, fut)]
        feat = self.encode_enc(torch.cat(parts, dim=1))
        return dec + w * (dec * self.scale(feat) + self.shift(feat))


class PGTFormer(TSVQGAN):
    """See the module doc. forward(x, w=None, code_only=False, adain=None) ->
    (out [(B*3), 3, H, W], logits [(B*3), h, w, depth, n_embed], lq_feat [(B*3), h, w, embed_dim])
    or, with `code_only`, (logits, lq_feat) — the official return values."""

    def __init__(
        self,
        ddconfig: Mapping[str, Any] | None = None,
        *,
        dim_embd: int = 512,
        n_head: int = 8,
        n_layers: int = 9,
        connect_list: Sequence[str] = ("32", "64", "128", "256"),
        fix_modules: Sequence[str] | None = ("quantizer", "decoder", "conditionnet"),
        w: float = 0.0,
        detach_16: bool = True,
        adain: bool = False,
        tf: int = 3,
        droprate: float = 0.0,
        parsing_classes: int = 19,
        **vq_kwargs: Any,
    ) -> None:
        super().__init__(ddconfig, tf=tf, **vq_kwargs)
        self.w, self.detach_16, self.adain = w, detach_16, adain
        self.fix_modules = tuple(fix_modules or ())
        self.connect_list = tuple(str(s) for s in connect_list)
        embed_dim = self.quant_conv.out_channels
        self.conditionnet = BiSeNet(parsing_classes)
        self.convpos = nn.Conv2d(3 * parsing_classes, dim_embd, 1)
        self.feat_emb = nn.Linear(embed_dim, dim_embd)
        self.ft_layers = nn.Sequential(
            *[TransformerSALayer(dim_embd, n_head, 2 * dim_embd, droprate) for _ in range(n_layers)]
        )
        self.idx_pred_layer = nn.Sequential(
            nn.LayerNorm(dim_embd),
            nn.Linear(dim_embd, self.quantizer.depth * self.quantizer.n_embed, bias=False),
        )
        cfg = self.ddconfig
        self.fuse_levels: dict[str, int] = {}
        self.fuse_convs_dict = nn.ModuleDict()
        for size in self.connect_list:
            level = math.log2(cfg["resolution"] / int(size))
            if not level.is_integer() or not 0 <= level < len(cfg["ch_mult"]):
                raise ValueError(f"connect_list entry {size} is not a level of a {cfg['resolution']} network")
            ch = cfg["ch"] * cfg["ch_mult"][int(level)]
            self.fuse_levels[size] = int(level)
            self.fuse_convs_dict[size] = TemporalFuseBlock(ch, ch, tf)
        self._freeze(self.fix_modules)

    # -- training mode ------------------------------------------------------------------------------
    def _frozen_modules(self) -> list[nn.Module]:
        mods = [getattr(self, name) for name in self.fix_modules]
        if "decoder" in self.fix_modules:
            mods.append(self.post_quant_conv)
        if "encoder" in self.fix_modules:
            mods += [self.ft_layers, self.feat_emb, self.quant_conv, self.idx_pred_layer]
        return mods

    def _freeze(self, names: Sequence[str]) -> None:
        for m in self._frozen_modules():
            for p in m.parameters():
                p.requires_grad_(False)
            m.eval()

    def train(self, mode: bool = True) -> PGTFormer:
        """As nn.Module.train, but the frozen modules (`fix_modules`) stay in eval mode."""
        super().train(mode)
        for m in self._frozen_modules():
            m.eval()
        return self

    # -- pieces -------------------------------------------------------------------------------------
    def parsing_condition(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """x [(B*3), 3, H, W] in [0, 1] -> the 57-channel parsing condition on the latent grid."""
        if size is None:
            size = (x.shape[-2] // self.downscale, x.shape[-1] // self.downscale)
        return self.conditionnet.condition(imagenet_normalize(x), size)

    def clip_tokens(self, t: torch.Tensor) -> torch.Tensor:
        """[(B*tf), C, h, w] -> [B, tf*h*w, C] (token order frame, row, column)."""
        bt, c, h, w = t.shape
        return t.reshape(bt // self.tf, self.tf, c, h * w).permute(0, 1, 3, 2).reshape(bt // self.tf, -1, c)

    def predict_logits(self, lq_feat: torch.Tensor, parsing_cond: torch.Tensor) -> torch.Tensor:
        """lq_feat [(B*tf), C, h, w], parsing_cond [(B*tf), 57, h, w] -> logits [(B*tf), h, w, depth,
        n_embed]."""
        bt, _, h, w = lq_feat.shape
        pos = self.clip_tokens(self.convpos(parsing_cond))
        q = self.feat_emb(self.clip_tokens(lq_feat))
        for layer in self.ft_layers:
            q = layer(q, pos)
        # the decision-making head (LayerNorm + Linear to the code logits, 0.1 % of the work) in fp32 also
        # under bf16/fp16 autocast: fewer near-tied codes flip (no-op in fp32)
        with torch.autocast(q.device.type, enabled=False):
            logits = self.idx_pred_layer(q.float())  # B, tf*h*w, depth*n
        return logits.reshape(bt, h, w, self.quantizer.depth, self.quantizer.n_embed)

    def lookup(self, codes: torch.Tensor, lq_feat: torch.Tensor | None = None) -> torch.Tensor:
        """codes [(B*tf), h, w, depth] -> code features [(B*tf), C, h, w], AdaIN'd to `lq_feat` if given."""
        feat = self.quantizer.embed_code(codes).permute(0, 3, 1, 2).contiguous()
        if lq_feat is not None:
            feat = adaptive_instance_normalization(feat, lq_feat)
        return feat

    def decode_fused(
        self,
        quant_feat: torch.Tensor,
        enc_feats: Sequence[torch.Tensor],
        w: float,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The decoder with the fidelity blocks (w > 0) applied to the encoder features of their level.
        `keep` (indices into the stacked frames): decode only those frames past the last cross-frame
        operation (the fidelity block of the finest connected level) and return them only."""
        by_level = {lvl: self.fuse_convs_dict[s] for s, lvl in self.fuse_levels.items()}

        def hook(level: int, h: torch.Tensor, keep_: torch.Tensor | None) -> torch.Tensor:
            block = by_level.get(level)
            if block is None or w <= 0:
                return h if keep_ is None else h[keep_]
            return block(enc_feats[level].detach(), h, w, keep_)

        mixing = tuple(by_level) if w > 0 else ()
        return self.decode(quant_feat, hook, keep=keep, mixing_hooks=mixing)

    # -- the incremental window schedule ------------------------------------------------------------
    def frame_features(self, x: torch.Tensor) -> dict[str, Any]:
        """The per-frame part of the forward pass for N frames x [N, 3, H, W] (any N, no clip grouping):
        the encoder up to its first window attention, the encoder features of the per-frame levels the
        fidelity blocks use, and the parsing condition. Each frame's result is the same alone as inside
        any window, so a sliding window computes it once per frame (`forward_window`)."""
        if x.dim() != 4 or x.shape[-2] % self.downscale or x.shape[-1] % self.downscale:
            raise ValueError(
                f"expected [N, 3, H, W] with H, W multiples of {self.downscale}, got {list(x.shape)}"
            )
        h, feats, step = self.encoder.head(x)
        used = set(self.fuse_levels.values())
        feats = [f if lvl in used else None for lvl, f in enumerate(feats)]
        size = (x.shape[-2] // self.downscale, x.shape[-1] // self.downscale)
        return {"h": h, "feats": feats, "cond": self.parsing_condition(x, size), "step": step}

    @staticmethod
    def stack_features(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Per-frame results of `frame_features` (one dict per frame, batch 1 each) -> one stacked dict."""
        n_feats = len(items[0]["feats"])
        return {
            "h": torch.cat([it["h"] for it in items]),
            "feats": [
                None if items[0]["feats"][i] is None else torch.cat([it["feats"][i] for it in items])
                for i in range(n_feats)
            ],
            "cond": torch.cat([it["cond"] for it in items]),
            "step": items[0]["step"],
        }

    @staticmethod
    def split_features(f: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The inverse of `stack_features`: one dict per frame."""
        return [
            {
                "h": f["h"][i : i + 1],
                "feats": [None if t is None else t[i : i + 1] for t in f["feats"]],
                "cond": f["cond"][i : i + 1],
                "step": f["step"],
            }
            for i in range(f["h"].shape[0])
        ]

    def forward_window(
        self,
        frames: Mapping[str, Any],
        keep: Sequence[int] | torch.Tensor | None = None,
        w: float | None = None,
        adain: bool | None = None,
    ) -> torch.Tensor:
        """The rest of the forward pass for clips whose frames' `frame_features` are stacked in `frames`
        ([(B*tf)] frames, frame-major within each clip), decoding only the frames `keep` (indices into the
        stacked frames; None = all) past the last cross-frame operation. Equals ``forward(x)[0][keep]``."""
        w = self.w if w is None else w
        adain = self.adain if adain is None else adain
        z, feats = self.encoder.resume(frames["h"], frames["feats"], frames["step"])
        lq_feat = self.quant_conv(z)
        logits = self.predict_logits(lq_feat, frames["cond"])
        quant_feat = self.lookup(logits.argmax(-1), lq_feat if adain else None)
        if keep is not None:
            keep = torch.as_tensor(keep, dtype=torch.long, device=z.device)
        return self.decode_fused(quant_feat, feats, w, keep)

    # -- forward ------------------------------------------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        w: float | None = None,
        code_only: bool = False,
        adain: bool | None = None,
        detach_16: bool | None = None,
    ):
        w = self.w if w is None else w
        adain = self.adain if adain is None else adain
        detach_16 = self.detach_16 if detach_16 is None else detach_16
        lq_feat, enc_feats = self.encode(x)
        cond = self.parsing_condition(x, tuple(lq_feat.shape[-2:]))
        logits = self.predict_logits(lq_feat, cond)
        lq_cl = lq_feat.permute(0, 2, 3, 1)
        if code_only:
            return logits, lq_cl
        quant_feat = self.quantizer.embed_code(logits.argmax(-1)).permute(0, 3, 1, 2).contiguous()
        if detach_16:
            quant_feat = quant_feat.detach()
        if adain:
            quant_feat = adaptive_instance_normalization(quant_feat, lq_feat)
        return self.decode_fused(quant_feat, enc_feats, w), logits, lq_cl

    @torch.no_grad()
    def restore(self, x: torch.Tensor, w: float | None = None) -> torch.Tensor:
        """Inference: [(B*tf), 3, H, W] in [0, 1] -> restored frames, clamped to [0, 1]."""
        return self(x, w=w)[0].clamp(0.0, 1.0)


def config_from_official(config: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor arguments from an official config (a Hugging Face `config.json` of the hub mixin or the
    yml's `network_g`): the keys PGTFormer takes; `type` and unknown keys are dropped."""
    import inspect

    known = set(inspect.signature(PGTFormer.__init__).parameters) | set(
        inspect.signature(TSVQGAN.__init__).parameters
    )
    known -= {"self", "vq_kwargs"}
    out = {k: v for k, v in config.items() if k in known}
    if "ddconfig" in out:
        from bfvr.models.pgtformer.tsvqgan import IGNORED_DDCONFIG_KEYS

        out["ddconfig"] = {k: v for k, v in out["ddconfig"].items() if k not in IGNORED_DDCONFIG_KEYS}
    return out

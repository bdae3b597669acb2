"""The PGTFormer TS-VQGAN (official `TDCRQVAE3`): a per-frame convolutional VQGAN whose only temporal
mixing is Swin-3D window attention (`bfvr.models.pgtformer.swin`), plus its residual quantizer.

Layout: clips of `frames` (3) frames stacked in the batch, ``[(B*frames), C, H, W]`` (frame-major within
each clip), values in [0, 1] (no [-1, 1] mapping), no output activation. All convolutions are 2D and act
on each frame; a batch of B clips is a stack of B*frames frames.

Official configuration (`ddconfig` of the released test config): ch 64, ch_mult (1, 2, 4, 4, 8), one
residual block per encoder level and two per decoder level, window attention (depth 2, 8 heads, 4x4
windows, MLP ratio 1) at the nominal 128/64/32 levels and in both middle blocks, z_channels 256,
`quant_conv` 256 -> 512, a 1024-code (+1 padding code) codebook with EMA statistics. The latent of a
512x512 frame is 32x32x512.

Parameter names equal the official state_dict keys (``encoder.down.2.attn.0.blocks.1.attn.q.weight`` ...).
The official residual block adds a per-frame shortcut ``[(B*D), C, H, W]`` to a ``[B, D, C, H, W]``
tensor, which only broadcasts correctly for B = 1 (one clip per call); here everything stays
``[(B*D), C, H, W]``, so the result for a clip is the same alone or inside a batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bfvr.models.blocks.conv2d import Downsample2d, ResBlock2d, Upsample2d
from bfvr.models.blocks.conv3d import normalize, swish
from bfvr.models.pgtformer.swin import SwinLayer3D

#: the official `ddconfig` of release_test_stage_IIII_dont_need_align_version.yml (ignored keys dropped)
OFFICIAL_DDCONFIG: dict[str, Any] = {
    "z_channels": 256,
    "resolution": 512,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 64,
    "ch_mult": [1, 2, 4, 4, 8],
    "depths": [2, 2, 2, 2, 2],
    "num_heads": [8, 8, 8, 8, 8],
    "window_sizes": [[4, 4]] * 5,
    "num_frames": 3,
    "num_res_blocks": 1,
    "attn_resolutions": [32, 64, 128],
    "dropout": 0.0,
}
#: `ddconfig` keys the official classes accept but never use
IGNORED_DDCONFIG_KEYS = (
    "double_z",
    "stages_atten",
    "window_size",
    "num_head",
    "give_pre_end",
    "resamp_with_conv",
)


def _res(cin: int, cout: int, cfg: Mapping[str, Any]) -> ResBlock2d:
    """The TS-VQGAN's per-frame residual block: the shared 2-D block with the taming layout's skip name."""
    return ResBlock2d(cin, cout, skip_name="nin_shortcut", dropout=cfg["dropout"])


def _swin(dim: int, level: int, cfg: Mapping[str, Any]) -> SwinLayer3D:
    return SwinLayer3D(
        dim,
        depth=cfg["depths"][level],
        num_heads=cfg["num_heads"][level],
        frames=cfg["num_frames"],
        window=tuple(cfg["window_sizes"][level]),
        mlp_ratio=1.0,
    )


def _check_ddconfig(ddconfig: Mapping[str, Any]) -> dict[str, Any]:
    cfg = dict(OFFICIAL_DDCONFIG)
    unknown = set(ddconfig) - set(cfg) - set(IGNORED_DDCONFIG_KEYS)
    if unknown:
        raise ValueError(f"unknown ddconfig keys: {', '.join(sorted(unknown))}")
    cfg.update({k: v for k, v in ddconfig.items() if k in cfg})
    n = len(cfg["ch_mult"])
    for key in ("depths", "num_heads", "window_sizes"):
        if len(cfg[key]) < n:
            raise ValueError(f"ddconfig {key} needs one entry per level ({n}), got {len(cfg[key])}")
    return cfg


class Encoder(nn.Module):
    """conv_in -> per level: residual blocks (+ window attention at the attention resolutions), downsample
    (not after the last level) -> mid (block, window attention, block) -> GroupNorm, swish, conv_out.

    forward(x [(B*D), in_channels, H, W]) -> (z [(B*D), z_channels, H/2^(L-1), W/2^(L-1)], per-level
    features taken after each level's blocks, before its downsample)."""

    def __init__(self, **ddconfig: Any) -> None:
        super().__init__()
        cfg = _check_ddconfig(ddconfig)
        ch, mult, nrb = cfg["ch"], list(cfg["ch_mult"]), cfg["num_res_blocks"]
        self.conv_in = nn.Conv2d(cfg["in_channels"], ch, 3, padding=1)
        res = cfg["resolution"]
        block_in = ch
        self.down = nn.ModuleList()
        for level, m in enumerate(mult):
            down = nn.Module()
            down.block, down.attn = nn.ModuleList(), nn.ModuleList()
            block_out = ch * m
            for _ in range(nrb):
                down.block.append(_res(block_in, block_out, cfg))
                block_in = block_out
                if res in cfg["attn_resolutions"]:
                    down.attn.append(_swin(block_in, level, cfg))
            if level != len(mult) - 1:
                down.downsample = Downsample2d(block_in)
                res //= 2
            self.down.append(down)
        last = len(mult) - 1
        self.mid = nn.Module()
        self.mid.block_1 = _res(block_in, block_in, cfg)
        self.mid.attn_1 = _swin(block_in, last, cfg)
        self.mid.block_2 = _res(block_in, block_in, cfg)
        self.norm_out = normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, cfg["z_channels"], 3, padding=1)

    def _steps(self) -> list[tuple[str, Any]]:
        """The forward pass as a list of (kind, op): ``op`` (per frame), ``mix`` (window attention: mixes
        the frames of a clip) and ``feat`` (record the level's features)."""
        steps: list[tuple[str, Any]] = [("op", self.conv_in)]
        for down in self.down:
            for i, block in enumerate(down.block):
                steps.append(("op", block))
                if len(down.attn):
                    steps.append(("mix", down.attn[i]))
            steps.append(("feat", None))
            if hasattr(down, "downsample"):
                steps.append(("op", down.downsample))
        steps += [("op", self.mid.block_1), ("mix", self.mid.attn_1), ("op", self.mid.block_2)]
        steps.append(("op", lambda h: self.conv_out(swish(self.norm_out(h)))))
        return steps

    def _run(self, h: torch.Tensor, feats: list, start: int, stop: int | None = None) -> torch.Tensor:
        for kind, op in self._steps()[start:stop]:
            if kind == "feat":
                feats.append(h)
            else:
                h = op(h)
        return h

    def head(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], int]:
        """The per-frame part: everything before the first cross-frame operation (the first window
        attention). x [N, in_channels, H, W], any N frames -> (activation, the features of the levels
        finished so far, the step to `resume` from). Frame by frame the same as inside a clip."""
        first_mix = next(i for i, (kind, _) in enumerate(self._steps()) if kind == "mix")
        feats: list[torch.Tensor] = []
        return self._run(x, feats, 0, first_mix), feats, first_mix

    def resume(
        self, h: torch.Tensor, feats: list, step: int
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The rest of the forward pass from `head`'s output, the frames of each clip stacked again
        ([(B*D), ...]); `feats` (may hold None for levels not needed later) is extended in place."""
        feats = list(feats)
        return self._run(h, feats, step), feats

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats: list[torch.Tensor] = []
        return self._run(x, feats, 0), feats


class Decoder(nn.Module):
    """conv_in -> mid (block, window attention, block) -> per level from the coarsest: num_res_blocks+1
    residual blocks (+ window attention at the attention resolutions), an optional per-level hook (the
    PGTFormer fidelity blocks), upsample (not after level 0) -> GroupNorm, swish, conv_out (no activation).
    """

    def __init__(self, **ddconfig: Any) -> None:
        super().__init__()
        cfg = _check_ddconfig(ddconfig)
        ch, mult, nrb = cfg["ch"], list(cfg["ch_mult"]), cfg["num_res_blocks"]
        n = len(mult)
        block_in = ch * mult[-1]
        res = cfg["resolution"] // 2 ** (n - 1)
        self.conv_in = nn.Conv2d(cfg["z_channels"], block_in, 3, padding=1)
        self.mid = nn.Module()
        self.mid.block_1 = _res(block_in, block_in, cfg)
        self.mid.attn_1 = _swin(block_in, n - 1, cfg)
        self.mid.block_2 = _res(block_in, block_in, cfg)
        ups: list[nn.Module] = []
        for level in reversed(range(n)):
            up = nn.Module()
            up.block, up.attn = nn.ModuleList(), nn.ModuleList()
            block_out = ch * mult[level]
            for _ in range(nrb + 1):
                up.block.append(_res(block_in, block_out, cfg))
                block_in = block_out
                if res in cfg["attn_resolutions"]:
                    up.attn.append(_swin(block_in, level, cfg))
            if level != 0:
                up.upsample = Upsample2d(block_in)
                res *= 2
            ups.insert(0, up)
        self.up = nn.ModuleList(ups)
        self.norm_out = normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, cfg["out_ch"], 3, padding=1)

    def _steps(self) -> list[tuple[str, Any]]:
        """The forward pass as (kind, op): ``op`` (per frame), ``mix`` (window attention) and ``hook``
        (op = the level: the per-level hook, after the level's blocks and before its upsample)."""
        steps: list[tuple[str, Any]] = [("op", self.conv_in), ("op", self.mid.block_1)]
        steps += [("mix", self.mid.attn_1), ("op", self.mid.block_2)]
        for level in reversed(range(len(self.up))):
            up = self.up[level]
            for i, block in enumerate(up.block):
                steps.append(("op", block))
                if len(up.attn):
                    steps.append(("mix", up.attn[i]))
            steps.append(("hook", level))
            if hasattr(up, "upsample"):
                steps.append(("op", up.upsample))
        steps.append(("op", lambda h: self.conv_out(swish(self.norm_out(h)))))
        return steps

    def forward(
        self,
        z: torch.Tensor,
        hook=None,
        *,
        keep: torch.Tensor | None = None,
        mixing_hooks: Sequence[int] = (),
    ) -> torch.Tensor:
        """`hook(level, h, keep) -> h` is called after each level's blocks, before its upsample (`keep` is
        None except below).

        `keep` (indices into the stacked frames): only those frames' outputs are wanted. Everything after
        the last cross-frame operation (the last window attention, or the hook of the last level in
        `mixing_hooks`, the levels whose hook mixes the frames of a clip) is per frame, so from there on
        only the `keep` frames are computed; at a mixing hook the hook gets `keep` and returns those frames
        only. Returns [len(keep), ...] then, the same values as the full output's rows `keep`."""
        steps = self._steps()
        cut = -1
        if keep is not None:
            mixing = [
                i
                for i, (kind, op) in enumerate(steps)
                if kind == "mix" or (kind == "hook" and op in mixing_hooks and hook is not None)
            ]
            cut = mixing[-1] if mixing else -1
            if cut < 0:
                z = z[keep]
        h = z
        for i, (kind, op) in enumerate(steps):
            if kind == "hook":
                if hook is not None:
                    h = hook(op, h, keep if i == cut else None)
                continue
            h = op(h)
            if i == cut:
                h = h[keep]
        return h


class VQEmbedding(nn.Embedding):
    """A codebook of `n_embed` codes (+ one padding code, never selected) with EMA statistics
    (`cluster_size_ema`, `embed_ema`): in training mode the codes move to the running mean of the vectors
    assigned to them (decay `decay`, Laplace smoothing `eps`), and codes used less than once on average are
    restarted from random vectors of the batch (official `VQEmbedding`)."""

    def __init__(
        self,
        n_embed: int,
        embed_dim: int,
        *,
        decay: float = 0.99,
        eps: float = 1e-5,
        restart_unused_codes: bool = True,
    ) -> None:
        weight = torch.empty(n_embed + 1, embed_dim)
        if not weight.is_meta:  # nn.Embedding's init (normal, zero padding row); skipped on meta, where
            nn.init.normal_(weight)  # normal_ would import torch's decompositions (~3 s)
            weight.data[n_embed] = 0
        super().__init__(n_embed + 1, embed_dim, padding_idx=n_embed, _weight=weight)
        self.n_embed, self.decay, self.eps, self.restart_unused_codes = (
            n_embed,
            decay,
            eps,
            restart_unused_codes,
        )
        self.weight.requires_grad_(False)
        self.register_buffer("cluster_size_ema", torch.zeros(n_embed))
        self.register_buffer("embed_ema", self.weight[:-1].detach().clone())

    @torch.no_grad()
    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code (squared L2, padding code excluded) for each vector [..., D]."""
        flat = x.reshape(-1, x.shape[-1]).float()
        book = self.weight[:-1].float()
        dist = flat.pow(2).sum(1, keepdim=True) + book.pow(2).sum(1)[None] - 2.0 * flat @ book.t()
        return dist.argmin(-1).view(x.shape[:-1])

    @torch.no_grad()
    def ema_update(self, x: torch.Tensor, idx: torch.Tensor) -> None:
        flat, idx = x.reshape(-1, x.shape[-1]).float(), idx.reshape(-1)
        onehot = F.one_hot(idx, self.n_embed).to(flat.dtype)  # n, K
        counts, sums = onehot.sum(0), onehot.t() @ flat
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
            torch.distributed.all_reduce(sums)
        self.cluster_size_ema.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_ema.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        if self.restart_unused_codes:
            pool = flat
            if pool.shape[0] < self.n_embed:  # tile with a little noise to have enough candidates
                reps = math.ceil(self.n_embed / pool.shape[0])
                pool = pool.repeat(reps, 1)
                pool = pool + torch.rand_like(pool) * (0.01 / math.sqrt(pool.shape[1]))
            fresh = pool[torch.randperm(pool.shape[0], device=pool.device)[: self.n_embed]]
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.broadcast(fresh, 0)
            used = (self.cluster_size_ema >= 1).to(flat.dtype)[:, None]
            self.embed_ema.mul_(used).add_(fresh * (1 - used))
            self.cluster_size_ema.mul_(used[:, 0]).add_(1 - used[:, 0])
        n = self.cluster_size_ema.sum()
        size = n * (self.cluster_size_ema + self.eps) / (n + self.n_embed * self.eps)
        self.weight[:-1] = self.embed_ema / size[:, None]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [..., D] -> (nearest codes' vectors [..., D], indices [...]); EMA update in training mode."""
        idx = self.nearest(x)
        q = F.embedding(idx, self.weight)  # the codes before this batch's EMA update (as the official)
        if self.training:
            self.ema_update(x.detach(), idx)
        return q, idx


class ResidualQuantizer(nn.Module):
    """The official `RQBottleneck` at spatial code shape = latent shape: `depth` residual quantisation
    steps (depth 1 = plain VQ), codebooks shared or not. Channels-last latents [N, h, w, D]."""

    def __init__(
        self,
        n_embed: int = 1024,
        embed_dim: int = 512,
        depth: int = 1,
        *,
        shared_codebook: bool = True,
        decay: float = 0.99,
        restart_unused_codes: bool = True,
    ) -> None:
        super().__init__()
        self.n_embed, self.depth, self.shared_codebook = n_embed, depth, shared_codebook
        n_books = 1 if shared_codebook else depth
        books = [
            VQEmbedding(n_embed, embed_dim, decay=decay, restart_unused_codes=restart_unused_codes)
            for _ in range(n_books)
        ]
        self.codebooks = nn.ModuleList(books * depth if shared_codebook else books)

    def book(self, i: int) -> VQEmbedding:
        return self.codebooks[0 if self.shared_codebook else i]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [N, h, w, D] -> (quantised x with straight-through gradient, commitment loss = mean over steps of
        mean (x - sg(sum of codes so far))^2, codes [N, h, w, depth])."""
        residual = x.detach().clone()
        total = torch.zeros_like(x)
        losses, codes = [], []
        for i in range(self.depth):
            q, idx = self.book(i)(residual)
            residual = residual - q
            total = total + q
            losses.append((x - total.detach()).pow(2).mean())
            codes.append(idx)
        return x + (total - x).detach(), torch.stack(losses).mean(), torch.stack(codes, -1)

    def embed_code(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [N, h, w, depth] -> sum of the code vectors [N, h, w, D]."""
        return sum(F.embedding(codes[..., i], self.book(i).weight) for i in range(codes.shape[-1]))


class TSVQGAN(nn.Module):
    """Stage I of PGTFormer (official `TDCRQVAE3`): encoder -> quant_conv -> residual quantizer ->
    post_quant_conv -> decoder. forward(x [(B*tf), 3, H, W] in [0, 1]) -> (reconstruction, commitment
    loss, codes [(B*tf), h, w, depth])."""

    def __init__(
        self,
        ddconfig: Mapping[str, Any] | None = None,
        *,
        embed_dim: int = 512,
        n_embed: int = 1024,
        latent_shape: Sequence[int] = (32, 32, 512),
        code_shape: Sequence[int] = (32, 32, 1),
        shared_codebook: bool = True,
        decay: float = 0.99,
        restart_unused_codes: bool = True,
        tf: int = 3,
        bottleneck_type: str = "rq",
        loss_type: str = "mse",
        latent_loss_weight: float = 0.25,
        checkpointing: bool = False,
    ) -> None:
        super().__init__()
        ddconfig = dict(OFFICIAL_DDCONFIG if ddconfig is None else ddconfig)
        if bottleneck_type != "rq":
            raise ValueError(f"bottleneck_type must be 'rq', got {bottleneck_type!r}")
        if tuple(code_shape[:2]) != tuple(latent_shape[:2]) or latent_shape[2] != embed_dim:
            raise ValueError(
                "only code_shape[:2] == latent_shape[:2] and latent_shape[2] == embed_dim are "
                f"supported (the official setting); got {list(latent_shape)}, {list(code_shape)}, "
                f"embed_dim {embed_dim}"
            )
        frames = int(ddconfig.get("num_frames", OFFICIAL_DDCONFIG["num_frames"]))
        if frames != tf:
            raise ValueError(f"ddconfig num_frames ({frames}) must equal tf ({tf})")
        self.tf, self.loss_type, self.latent_loss_weight = tf, loss_type, latent_loss_weight
        self.checkpointing = checkpointing  # accepted for the official signature; not used
        self.ddconfig = _check_ddconfig(ddconfig)
        self.encoder = Encoder(**ddconfig)
        self.decoder = Decoder(**ddconfig)
        self.quantizer = ResidualQuantizer(
            n_embed,
            embed_dim,
            int(code_shape[-1]),
            shared_codebook=shared_codebook,
            decay=decay,
            restart_unused_codes=restart_unused_codes,
        )
        z = self.ddconfig["z_channels"]
        self.quant_conv = nn.Conv2d(z, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z, 1)

    @property
    def downscale(self) -> int:
        """Input pixels per latent pixel (16 for the official 5 levels)."""
        return 2 ** (len(self.ddconfig["ch_mult"]) - 1)

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[0] % self.tf:
            raise ValueError(
                f"expected [(B*{self.tf}), C, H, W] (clips of {self.tf} frames stacked in the batch), "
                f"got {list(x.shape)}"
            )
        m = self.downscale
        if x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(f"H and W must be multiples of {m}, got {x.shape[-2]}x{x.shape[-1]}")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x -> (latent [(B*tf), embed_dim, h, w] = quant_conv(encoder(x)), per-level encoder features)."""
        self.check_input(x)
        z, feats = self.encoder(x)
        return self.quant_conv(z), feats

    def decode(self, quant: torch.Tensor, hook=None, **kw: Any) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(quant), hook, **kw)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z, _ = self.encode(x)
        q, loss, codes = self.quantizer(z.permute(0, 2, 3, 1))
        return self.decode(q.permute(0, 3, 1, 2)), loss, codes

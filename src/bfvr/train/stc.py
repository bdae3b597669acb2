"""The two STC training stages (``task: stc-stage1`` / ``stc-stage2``, or ``stage: stage1/2`` in older
configs) as small "task" objects the trainer drives, and their config sections (`StcConfig`).

Stage I (`Stage1Task`): the 3D-VQGAN with spatial + temporal codebooks learns to reconstruct GT clips:
    L_G = l1 * |x_hat - x| + perceptual * P(x_hat, x) + codebook * L_code + mpr * L_MPR
          + [step >= disc_start] * gan * (-mean D(x_hat))
    L_D = [step >= disc_start] * (mean relu(1 - D(x)) + mean relu(1 + D(sg(x_hat))))   (hinge, official)
  with `loss.gan_loss: log` (the paper) the GAN terms are the non-saturating log loss on logits l:
    G: mean softplus(-l(x_hat)),  D: mean softplus(-l(x)) + mean softplus(l(sg(x_hat))).

Stage II (`Stage2Task`): codebooks and generator frozen (from Stage I); the LQ encoder and the two lookup
transformers learn to predict the codes that the frozen Stage-I encoder assigns to the GT clip:
    L = feat * mean((z_q_gt - lq_feat)^2) + ce * (CE(logits_s, idx_s) + CE(logits_t, idx_t))
  logged with the top-1 (acc_s, acc_t) and top-5 (acc5_s, acc5_t) code prediction accuracies.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from bfvr.errors import ConfigError, ModelError
from bfvr.train.accuracy import topk_accuracy
from bfvr.train.checkpoint import load_weights
from bfvr.train.config import (
    Bool,
    DiscConfig,
    GanLoss,
    Int,
    ModelBase,
    Num,
    PerceptualLoss,
    Positive,
    StrList,
    TrainConfig,
)
from bfvr.train.losses import GAN_LOSSES, perceptual_from_config

log = logging.getLogger(__name__)


class StcModel(ModelBase):
    """Network hyper-parameters (passed to `STCVQGAN` / `STCStage2`)."""

    nf: Int = 32
    ch_mult: Annotated[list[Int], Field(min_length=1)] = [1, 2, 4, 8]
    res_blocks: Int = 2
    codebook_size: Int = 1024
    emb_dim: Int = 256
    beta: Num = 0.25
    #: MPR form (bfvr.models.stc.quantizer): "official" (the released code's near-zero form, what trained
    #: the released weights), "paper" (the printed KL(marginal || uniform) on inverse Euclidean distances;
    #: inert in practice), "gaussian" (KL of the marginal of a Gaussian soft assignment with temperature
    #: `mpr_temperature`: the form that acts, docs/training.md) or "none"
    mpr: Literal["paper", "gaussian", "official", "none"] = "official"
    #: STC code loss: "official" (the released code: weight 1 on the encoder's commitment term, beta on the
    #: codebook term) or "paper" (the printed Eq. 7: codebook term weight 1, beta on the commitment term)
    commitment: Literal["official", "paper"] = "official"
    #: temperature of the "gaussian" MPR, in units of the spread of the squared token-code distances
    mpr_temperature: Positive = 1.0
    #: Stage II: lookup transformers
    n_head: Int = 2
    n_layers: Int = 9
    dim_mlp: Int = 512
    #: Stage II: True reproduces the official axis-order quirk of the temporal residual (only for official
    #: weights)
    official_residual: Bool = False
    #: Stage II: decoder levels of the official (unused) fusion blocks; [] leaves them out (keys only matter
    #: for loading official checkpoints)
    connect_list: StrList = ["32", "64", "128", "256"]
    #: Stage II: Stage-I weights (a run folder, a checkpoint folder or a .safetensors file); EMA weights
    #: preferred
    stage1_weights: str | None = None


class StcLoss(PerceptualLoss, GanLoss):
    """Loss weights. Stage I: l1, perceptual, codebook, mpr, gan; Stage II: feat, ce."""

    l1: Num = 1.0
    codebook: Num = 1.0
    #: multiplies the model's MPR term (which already carries the official x0.1)
    mpr: Num = 1.0
    feat: Num = 10.0
    ce: Num = 1.0


class StcConfig(TrainConfig):
    """An STC training config; the defaults are the official Stage-I settings."""

    #: "stage1" (3D-VQGAN + codebooks) or "stage2" (LQ encoder + lookup transformers); follows `task`
    stage: Literal["stage1", "stage2"] = "stage1"
    model: StcModel = StcModel()
    loss: StcLoss = StcLoss()
    disc: DiscConfig = DiscConfig()

    SECTIONS: ClassVar[tuple[str, ...]] = (*TrainConfig.SECTIONS, "disc")

    def check(self) -> None:
        super().check()
        self.stage = "stage2" if self.task_name.endswith("stage2") else "stage1"
        if self.stage == "stage2" and not self.model.stage1_weights:
            raise ConfigError("stage2 needs model.stage1_weights (the Stage-I run folder or weights file); "
                              "set it in the config or with --set model.stage1_weights=PATH.")


def _vqgan_kwargs(cfg: StcConfig) -> dict[str, Any]:
    m = cfg.model
    return dict(nf=m.nf, ch_mult=tuple(m.ch_mult), res_blocks=m.res_blocks, codebook_size=m.codebook_size,
                emb_dim=m.emb_dim, beta=m.beta, mpr=m.mpr,
                mpr_temperature=m.mpr_temperature, commitment=m.commitment, **m.extra)


def build_stage1_model(cfg: StcConfig) -> nn.Module:
    from bfvr.models.stc import STCVQGAN

    try:
        return STCVQGAN(**_vqgan_kwargs(cfg))
    except TypeError as e:
        raise ConfigError(f"model settings do not fit STCVQGAN: {e}; fix the model section.") from None


def build_discriminator(cfg: TrainConfig) -> nn.Module:
    from bfvr.models.stc.discriminator import ConvDiscriminator, DINOv2Discriminator

    d = cfg.disc
    if d.backbone == "dinov2":
        disc = DINOv2Discriminator.load(repo=d.dinov2_repo, weights=d.dinov2_weights,
                                        official_no_grad=d.official_no_grad, heads=d.heads,
                                        head_hidden=d.head_hidden)
        log.info("discriminator: frozen DINOv2 ViT-S/14 + 3 %s heads (%s)", d.heads,
                 d.dinov2_weights)
        return disc
    log.warning("discriminator: weight-free fallback (trainable conv stack + 3 %s heads), "
                "not the official frozen-DINOv2 one (disc.backbone: conv)", d.heads)
    return ConvDiscriminator(width=d.width, depth=d.depth, feat_dim=d.feat_dim, heads=d.heads,
                             head_hidden=d.head_hidden)


def _load_into(module: nn.Module, sd: dict[str, torch.Tensor], prefixes: tuple[str, ...], what: str) -> None:
    """Copy the entries of `sd` under `prefixes` into `module` (all of the module's keys there must exist)."""
    own = module.state_dict()
    want = [k for k in own if k.startswith(prefixes)]
    missing = [k for k in want if k not in sd]
    bad = [k for k in want if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or bad:
        raise ModelError(f"{what} does not match the model (missing {missing[:3]}, shape mismatch "
                         f"{bad[:3]}); use the Stage-I run trained with the same model settings.")
    module.load_state_dict({k: sd[k] for k in want}, strict=False)


class Stage1Task:
    """Stage I: reconstruction + codebook + MPR + GAN (hinge, or the paper's log loss)."""

    Config = StcConfig
    has_disc = True

    def __init__(self, cfg: StcConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.model = build_stage1_model(cfg).to(device)
        if cfg.model.init_weights:
            _load_into(self.model, load_weights(cfg.model.init_weights), ("",), cfg.model.init_weights)
        self.disc = build_discriminator(cfg).to(device) if cfg.loss.gan > 0 else None
        if self.disc is None:
            log.info("GAN loss: off (loss.gan = 0)")
        self._usage: dict[str, torch.Tensor] = {}
        self.perceptual = None
        self.d_loss_fn, self.g_loss_fn = GAN_LOSSES[cfg.loss.gan_loss]
        if cfg.loss.perceptual > 0:
            self.perceptual = perceptual_from_config(cfg, device)

    def gan_on(self, step: int) -> bool:
        return self.disc is not None and step >= self.cfg.loss.disc_start

    def ddp_find_unused(self) -> bool:
        """Without the MPR term the quantiser's temporal attention gets no gradient: DDP must allow that."""
        return self.cfg.model.mpr == "none"

    @torch.no_grad()
    def _count_usage(self, stats: dict, logs: dict[str, torch.Tensor]) -> None:
        """Codebook usage of this micro-batch: `codes_active_s/t` (distinct codes) into the logs, and the
        per-code counts added to the window that `take_usage` hands to the logger."""
        from bfvr.models.stc.quantizer import usage_stats

        n = self.cfg.model.codebook_size
        for key in ("s", "t"):
            idx = stats.get(f"min_encoding_indices_{key}")
            if idx is None:
                continue
            u = usage_stats(idx, n)
            logs[f"codes_active_{key}"] = u["active"].float()
            self._usage[key] = self._usage.get(key, 0) + u["counts"].cpu()

    def take_usage(self) -> dict[str, torch.Tensor]:
        """Per-code counts of both codebooks since the previous call ({"s": [N], "t": [N]}), then reset."""
        out, self._usage = self._usage, {}
        return out

    def generator_loss(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int,
                       disc_fn) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        lw = self.cfg.loss
        gt = batch["gt"]
        out, code_loss, mpr_loss, stats = model(batch["lq"])
        out = out.float()
        logs: dict[str, torch.Tensor] = {}
        l1 = (out - gt).abs().mean()
        total = lw.l1 * l1 + lw.codebook * code_loss.float() + lw.mpr * mpr_loss.float()
        logs["l1"], logs["codebook"], logs["mpr"] = l1, code_loss, mpr_loss
        if self.perceptual is not None:
            p = self.perceptual(out, gt)
            total = total + lw.perceptual * p
            logs["perceptual"] = p
        if self.gan_on(step):
            g = self.g_loss_fn(disc_fn(out))
            total = total + lw.gan * g
            logs["g_gan"] = g
        logs["perplexity_s"] = stats.get("perplexity_s", torch.zeros(()))
        logs["perplexity_t"] = stats.get("perplexity_t", torch.zeros(()))
        self._count_usage(stats, logs)
        logs["loss"] = total
        return total, logs, out.detach()

    def disc_loss(self, disc: nn.Module, gt: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, dict]:
        real_logits = disc(gt)
        fake_logits = disc(fake)
        d = self.d_loss_fn(real_logits, fake_logits)
        return d, {"d_loss": d, "d_real": real_logits.mean(), "d_fake": fake_logits.mean()}


class Stage2Task:
    """Stage II: frozen codebooks + generator; LQ encoder + lookup transformers learn the GT codes."""

    Config = StcConfig
    has_disc = False
    disc = None
    #: parameters never used by the Stage-II forward (kept for official-checkpoint compatibility)
    UNUSED = ("fuse_convs_dict.", "s_feat_emb.", "t_feat_emb.")
    FROZEN = ("quantize.", "generator.")

    def __init__(self, cfg: StcConfig, device: torch.device) -> None:
        from bfvr.models.stc import STCStage2

        self.cfg = cfg
        m = cfg.model
        stage1_sd = load_weights(m.stage1_weights)
        # the frozen Stage-I network gives the GT codes and features
        self.teacher = build_stage1_model(cfg)
        _load_into(self.teacher, stage1_sd, ("",), f"Stage-I weights {m.stage1_weights}")
        self.teacher.to(device).eval().requires_grad_(False)
        side = cfg.data.crop or cfg.data.size
        down = 2 ** (len(m.ch_mult) - 1)
        kwargs: dict[str, Any] = dict(n_head=m.n_head, n_layers=m.n_layers, codebook_size=m.codebook_size,
                                      dim_embd=m.emb_dim, official_residual=m.official_residual,
                                      dim_mlp=m.dim_mlp,
                                      latent_hw=(side // down, side // down), nf=m.nf,
                                      ch_mult=tuple(m.ch_mult),
                                      res_blocks=m.res_blocks, beta=m.beta, mpr=m.mpr,
                                      connect_list=tuple(m.connect_list))
        kwargs.update(m.extra)
        try:
            self.model = STCStage2(**kwargs)
        except TypeError as e:
            raise ConfigError(f"model settings do not fit STCStage2: {e}; fix the model section.") from None
        # encoder, codebooks and generator start from Stage I (the official vqgan_path)
        _load_into(self.model, stage1_sd, ("encoder.", "quantize.", "generator."), "Stage-I "
                   f"weights {m.stage1_weights}")
        if m.init_weights:
            _load_into(self.model, load_weights(m.init_weights), ("",), m.init_weights)
        for name, p in self.model.named_parameters():
            if name.startswith(self.FROZEN + self.UNUSED):
                p.requires_grad_(False)
        self.model.to(device)
        n_train = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        log.info("stage II: %d trainable parameters (frozen: quantize, generator, unused fuse/feat_emb)",
                 n_train)

    def gan_on(self, step: int) -> bool:
        return False

    @torch.no_grad()
    def targets(self, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.teacher.encode(gt)
        z_q, _, _, stats = self.teacher.quantize(z)
        return z_q.float(), stats["min_encoding_indices_s"], stats["min_encoding_indices_t"]

    def generator_loss(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int,
                       disc_fn=None) -> tuple[torch.Tensor, dict[str, torch.Tensor], None]:
        lw = self.cfg.loss
        zq_gt, idx_s, idx_t = self.targets(batch["gt"])
        logits_s, logits_t, lq_feat = model(batch["lq"], w=0, code_only=True)
        n = logits_s.shape[-1]
        feat = torch.mean((zq_gt - lq_feat.float()) ** 2)
        ce_s = F.cross_entropy(logits_s.float().reshape(-1, n), idx_s.reshape(-1))
        ce_t = F.cross_entropy(logits_t.float().reshape(-1, n), idx_t.reshape(-1))
        total = lw.feat * feat + lw.ce * (ce_s + ce_t)
        logs = {"loss": total, "feat": feat, "ce_s": ce_s, "ce_t": ce_t, "ce": ce_s + ce_t}
        # code prediction accuracy: acc_<k> top-1, acc5_<k> top-5 (see bfvr.train.code_eval)
        for key, logits, idx in (("s", logits_s, idx_s), ("t", logits_t, idx_t)):
            acc = topk_accuracy(logits, idx, (1, 5))
            logs[f"acc_{key}"], logs[f"acc5_{key}"] = torch.tensor(acc[1]), torch.tensor(acc[5])
        return total, logs, None


"""The four PGTFormer training stages as `bfvr train` tasks (the official repository has the configs, not the
training code; the stages, losses and weights follow the paper and the official configs, see
docs/training.md "PGTFormer").

Clips are 3 frames (``data.clip_len: 3``); the network sees them as ``[(B*3), 3, H, W]``. The network
settings are `model.extra` (PGTFormer / TS-VQGAN constructor arguments: ``ddconfig``, ``embed_dim``,
``n_embed``, ``dim_embd`` ...). Stages II-IV start from the Stage-I TS-VQGAN (`model.stage1_weights`) and
optionally from an earlier stage's weights (`model.init_weights`); the face-parsing net is frozen and
loaded from `model.parsing_weights` (a PGTFormer checkpoint or a face-parsing BiSeNet state_dict).

    I   TS-VQGAN   l1*|x^-x| + perceptual*P(x^, x) + codebook*commit + [gan on]*gan*hinge_G
    II  codes      ce*CE(logits, c_gt) + feat*MSE(lq_feat, e(c_gt))                     (code_only, w = 0)
    III fidelity   II + l1*|y-x| + perceptual*P(y, x) + [gan on]*gan*hinge_G            (y = net(lq, w=1))
    IV  unaligned  focal*Focal(logits, c_gt) + feat*|lq_feat - e(c_gt)| + grad*GradL1(y, x)
                   + perceptual*(P(y, x) + tgrad*P(dy/2+1/2, dx/2+1/2)) + [gan on]*gan*hinge_G
    IV  paper      (loss.stage4_losses: paper) the stage-III losses, on crops that are not aligned
    (III, IV)      + msrl*L_MSRL(y, x) when loss.msrl > 0 (Eq. 7, bfvr.train.losses.msrl_loss)

hinge_G is the generator's GAN loss of `loss.gan_loss` (hinge, official; or the papers' log loss, Eq. 5), P
the perceptual loss of `loss.perceptual_net` (LPIPS, official; or VGG19 with `loss.perceptual_distance`
l2sq, Eq. 5's squared L2). Stages II-IV log the top-1 and top-5 code accuracy (`acc`, `acc5`).

c_gt = the codes the frozen Stage-I encoder + quantiser give the GT window, e(c) their codebook vectors,
dx = frame-to-frame differences. `GradL1` (official name GRADL1Loss, weights `loss.grad_levels`,
official [0.2, 0.05, 0.05]) and the temporal perceptual term (official TemporalLPIPSLoss, `loss.tgrad`
0.8) are named but not defined in anything public; they are defined here from their names.
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
from bfvr.train.config import DiscConfig, GanLoss, ModelBase, Num, PerceptualLoss, TrainConfig
from bfvr.train.losses import GAN_LOSSES, msrl_loss, perceptual_from_config

log = logging.getLogger(__name__)

#: model.extra keys that only PGTFormer (not the Stage-I TS-VQGAN) takes
PGT_ONLY = (
    "dim_embd",
    "n_head",
    "n_layers",
    "connect_list",
    "fix_modules",
    "w",
    "detach_16",
    "adain",
    "droprate",
    "parsing_classes",
)


class PgtModel(ModelBase):
    """`extra` holds the PGTFormer / TS-VQGAN constructor arguments (ddconfig, embed_dim, n_embed, ...)."""

    #: stages II-IV: the Stage-I TS-VQGAN weights (a run folder, a checkpoint folder or a .safetensors file)
    stage1_weights: str | None = None
    #: stages II-IV: the face-parsing BiSeNet (a PGTFormer checkpoint or a face-parsing state_dict)
    parsing_weights: str | None = None


class PgtLoss(PerceptualLoss, GanLoss):
    """Loss weights of the four stages (see the module doc)."""

    l1: Num = 1.0
    #: stage I: the commitment term
    codebook: Num = 1.0
    #: stages II-IV: code feature and code prediction (CE, or the focal loss of stage IV official)
    feat: Num = 10.0
    ce: Num = 1.0
    #: stage IV: focal code loss exponent
    focal_gamma: Num = 2.0
    #: stages III/IV: weight of L_MSRL (Eq. 7: L1 of the frame-difference residual at three scales,
    #: bfvr.train.losses.msrl_loss); 0 = off (the official configs have no such term)
    msrl: Num = 0.0
    #: stage IV losses: "official" (release_train_stage_IIII: focal code loss, feature L1, GradL1, temporal
    #: perceptual, GAN) or "paper" (§3.4: "the loss is consistent with the third stage": CE, feature MSE,
    #: L1, perceptual, GAN; add L_MSRL with loss.msrl)
    stage4_losses: Literal["official", "paper"] = "official"
    #: stage IV official: gradient-L1 weight and its (pixel, spatial gradient, temporal difference) weights,
    #: and the weight of the perceptual loss of frame differences
    grad: Num = 0.0
    grad_levels: Annotated[list[Num], Field(min_length=3, max_length=3)] = [0.2, 0.05, 0.05]
    tgrad: Num = 0.8


class PgtConfig(TrainConfig):
    """A PGTFormer training config (all four stages)."""

    model: PgtModel = PgtModel()
    loss: PgtLoss = PgtLoss()
    disc: DiscConfig = DiscConfig()

    SECTIONS: ClassVar[tuple[str, ...]] = (*TrainConfig.SECTIONS, "disc")

    def check(self) -> None:
        super().check()
        if not self.task_name.endswith("stage1") and not self.model.stage1_weights:
            raise ConfigError(f"{self.task_name} needs model.stage1_weights (the PGTFormer Stage-I run "
                              "folder or weights file); set it in the config or with "
                              "--set model.stage1_weights=PATH.")


def to_frames(x: torch.Tensor) -> torch.Tensor:
    """BCTHW clips -> [(B*T), C, H, W] frames (frame-major within each clip)."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


def to_clips(x: torch.Tensor, t: int) -> torch.Tensor:
    """[(B*T), C, H, W] -> BCTHW."""
    bt, c, h, w = x.shape
    return x.reshape(bt // t, t, c, h, w).transpose(1, 2)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Mean over tokens of -(1 - p_t)^gamma log p_t (Lin et al.), p_t = softmax probability of the target."""
    logp = F.log_softmax(logits.float(), dim=-1).gather(-1, target[..., None])[..., 0]
    return (-(1.0 - logp.exp()).pow(gamma) * logp).mean()


def gradient_l1_loss(y: torch.Tensor, x: torch.Tensor, levels: tuple[float, float, float]) -> torch.Tensor:
    """GradL1 on BCTHW clips: levels[0] * |y - x| + levels[1] * |spatial gradients of y - of x| (horizontal
    and vertical finite differences) + levels[2] * |temporal differences of y - of x|."""
    a, b, c = levels
    loss = a * (y - x).abs().mean()
    for dim in (-1, -2):
        loss = loss + b * (y.diff(dim=dim) - x.diff(dim=dim)).abs().mean()
    if y.shape[2] > 1:
        loss = loss + c * (y.diff(dim=2) - x.diff(dim=2)).abs().mean()
    return loss


def _net_kwargs(cfg: PgtConfig, *, pgt: bool) -> dict[str, Any]:
    kw = dict(cfg.model.extra)
    if not pgt:
        kw = {k: v for k, v in kw.items() if k not in PGT_ONLY}
    if cfg.data.clip_len != kw.get("tf", 3):
        raise ConfigError(
            f"PGTFormer trains on windows of {kw.get('tf', 3)} frames; set data.clip_len to it "
            f"(got {cfg.data.clip_len})."
        )
    return kw


def build_tsvqgan(cfg: PgtConfig) -> nn.Module:
    from bfvr.models.pgtformer import TSVQGAN

    try:
        return TSVQGAN(**_net_kwargs(cfg, pgt=False))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model.extra does not fit the PGTFormer TS-VQGAN: {e}.") from None


def build_pgtformer(cfg: PgtConfig) -> nn.Module:
    from bfvr.models.pgtformer import PGTFormer

    try:
        return PGTFormer(**_net_kwargs(cfg, pgt=True))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model.extra does not fit PGTFormer: {e}.") from None


def _load_part(
    module: nn.Module, sd: dict[str, torch.Tensor], prefixes: tuple[str, ...], what: str, strip: str = ""
) -> None:
    """Copy the entries of `sd` (with `strip` removed from their names) under `prefixes` into `module`."""
    if strip:
        sd = {k[len(strip) :]: v for k, v in sd.items() if k.startswith(strip)} or sd
    own = module.state_dict()
    want = [k for k in own if k.startswith(prefixes)]
    missing = [k for k in want if k not in sd]
    bad = [k for k in want if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or bad:
        raise ModelError(
            f"{what} does not match the model (missing {missing[:3]}, shape mismatch {bad[:3]}); "
            "use weights trained with the same model settings."
        )
    module.load_state_dict({k: sd[k].to(own[k].dtype) for k in want}, strict=False)


class _GanMixin:
    """GAN (`loss.gan_loss`: hinge, official, or the papers' log loss) with the Stage-I discriminator of
    `bfvr.train.stc` (conv or frozen DINOv2), and the perceptual loss of `loss.perceptual_net`, on
    clips."""

    disc: nn.Module | None

    def _setup_gan(self, cfg: PgtConfig, device: torch.device) -> None:
        from bfvr.train.stc import build_discriminator

        self.disc = build_discriminator(cfg).to(device) if cfg.loss.gan > 0 else None
        self.has_disc = self.disc is not None
        self.d_loss_fn, self.g_loss_fn = GAN_LOSSES[cfg.loss.gan_loss]
        self.perceptual = perceptual_from_config(cfg, device) if cfg.loss.perceptual > 0 else None

    def gan_on(self, step: int) -> bool:
        return self.disc is not None and step >= self.cfg.loss.disc_start

    def disc_loss(self, disc: nn.Module, gt: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, dict]:
        real_logits, fake_logits = disc(gt), disc(fake)
        d = self.d_loss_fn(real_logits, fake_logits)
        return d, {"d_loss": d, "d_real": real_logits.mean(), "d_fake": fake_logits.mean()}

    def _image_terms(self, y: torch.Tensor, gt: torch.Tensor, step: int, disc_fn, logs: dict) -> torch.Tensor:
        """l1 + perceptual + GAN on BCTHW clips."""
        l1 = (y - gt).abs().mean()
        logs["l1"] = l1
        return self._add_perceptual_gan(self.cfg.loss.l1 * l1, y, gt, step, disc_fn, logs)

    def _add_perceptual_gan(self, total: torch.Tensor, y: torch.Tensor, gt: torch.Tensor, step: int, disc_fn,
                            logs: dict) -> torch.Tensor:
        """`total` + weighted perceptual (when on) + generator GAN (when on at `step`), on BCTHW clips in
        [0, 1]."""
        lw = self.cfg.loss
        if self.perceptual is not None:
            p = self.perceptual(y, gt)
            total = total + lw.perceptual * p
            logs["perceptual"] = p
        if self.gan_on(step):
            g = self.g_loss_fn(disc_fn(y))
            total = total + lw.gan * g
            logs["g_gan"] = g
        return total


class TSVQGANTask(_GanMixin):
    """Stage I: the TS-VQGAN reconstructs GT windows (L1 + perceptual + commitment + hinge GAN)."""

    Config = PgtConfig

    def __init__(self, cfg: PgtConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.model = build_tsvqgan(cfg).to(device)
        if cfg.model.init_weights:
            from bfvr.train.checkpoint import load_weights

            _load_part(self.model, load_weights(cfg.model.init_weights), ("",), cfg.model.init_weights)
        self._setup_gan(cfg, device)
        log.info(
            "PGTFormer stage I: TS-VQGAN, %d parameters", sum(p.numel() for p in self.model.parameters())
        )

    def generator_loss(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int, disc_fn):
        gt = batch["gt"]
        t = gt.shape[2]
        out, commit, codes = model(to_frames(batch["lq"]))
        y = to_clips(out.float(), t)
        logs: dict[str, torch.Tensor] = {}
        total = self._image_terms(y, gt, step, disc_fn, logs) + self.cfg.loss.codebook * commit.float()
        logs["codebook"] = commit
        logs["codes_used"] = torch.tensor(float(codes.unique().numel()))
        logs["loss"] = total
        return total, logs, y.detach()


class PGTFormerTask(_GanMixin):
    """Stages II-IV (see the module doc); `stage` = 2, 3 or 4."""

    Config = PgtConfig

    stage = 2

    def __init__(self, cfg: PgtConfig, device: torch.device) -> None:
        from bfvr.train.checkpoint import load_weights

        self.cfg = cfg
        m = cfg.model
        if not m.stage1_weights:
            raise ConfigError(
                f"PGTFormer stage {self.stage} needs model.stage1_weights (the Stage-I run folder or "
                "weights file)."
            )
        s1 = load_weights(m.stage1_weights)
        self.teacher = build_tsvqgan(cfg)
        _load_part(self.teacher, s1, ("",), f"Stage-I weights {m.stage1_weights}")
        self.teacher.to(device).eval().requires_grad_(False)
        self.model = build_pgtformer(cfg)
        vq = ("encoder.", "decoder.", "quantizer.", "quant_conv.", "post_quant_conv.")
        _load_part(self.model, s1, vq, f"Stage-I weights {m.stage1_weights}")
        if m.parsing_weights:
            _load_part(
                self.model.conditionnet,
                load_weights(m.parsing_weights),
                ("",),
                m.parsing_weights,
                strip="conditionnet.",
            )
        else:
            log.warning(
                "PGTFormer: no model.parsing_weights; the face-parsing net keeps its random weights "
                "(frozen), so the position code carries no parsing information"
            )
        if m.init_weights:
            _load_part(self.model, load_weights(m.init_weights), ("",), m.init_weights)
        if self.stage == 2:  # the fidelity blocks are not used by the code prediction
            self.model.fuse_convs_dict.requires_grad_(False)
        self.model.to(device)
        if self.stage >= 3:
            self._setup_gan(cfg, device)
        else:
            self.disc, self.has_disc, self.perceptual = None, False, None
        n = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        log.info(
            "PGTFormer stage %d: %d trainable parameters (frozen: %s)",
            self.stage,
            n,
            ", ".join(self.model.fix_modules),
        )

    @torch.no_grad()
    def targets(self, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """GT frames -> (codes [(B*3), h, w, depth], their code features [(B*3), C, h, w])."""
        z, _ = self.teacher.encode(gt)
        _, _, codes = self.teacher.quantizer(z.permute(0, 2, 3, 1))
        return codes, self.teacher.quantizer.embed_code(codes).permute(0, 3, 1, 2)

    def generator_loss(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int, disc_fn=None):
        lw = self.cfg.loss
        gt_clip = batch["gt"]
        t = gt_clip.shape[2]
        codes, zq = self.targets(to_frames(gt_clip))
        lq = to_frames(batch["lq"])
        logs: dict[str, torch.Tensor] = {}
        if self.stage == 2:
            logits, lq_feat = model(lq, code_only=True)
            y = None
        else:
            y_frames, logits, lq_feat = model(lq, w=1.0)
            y = to_clips(y_frames.float(), t)
        n = logits.shape[-1]
        flat_logits, flat_codes = logits.float().reshape(-1, n), codes.reshape(-1)
        feat_diff = lq_feat.float().permute(0, 3, 1, 2) - zq.float()
        official4 = self.stage == 4 and lw.stage4_losses == "official"
        if official4:
            code = focal_loss(flat_logits, flat_codes, lw.focal_gamma)
            feat = feat_diff.abs().mean()
            total = lw.ce * code + lw.feat * feat
            logs["focal"] = code
        else:
            code = F.cross_entropy(flat_logits, flat_codes)
            feat = feat_diff.pow(2).mean()
            total = lw.ce * code + lw.feat * feat
            logs["ce"] = code
        logs["feat"] = feat
        acc = topk_accuracy(flat_logits, flat_codes, (1, 5))  # top-1 and top-5 (the paper's Table 4)
        logs["acc"], logs["acc5"] = torch.tensor(acc[1]), torch.tensor(acc[5])
        if y is not None and not official4:  # stage III, and stage IV as the paper writes it
            total = total + self._image_terms(y, gt_clip, step, disc_fn, logs)
        elif y is not None:
            g = gradient_l1_loss(y, gt_clip, tuple(lw.grad_levels))
            total = total + lw.grad * g
            logs["grad_l1"] = g
            if self.perceptual is not None:
                p = self.perceptual(y, gt_clip)
                dy, dx = y.diff(dim=2) * 0.5 + 0.5, gt_clip.diff(dim=2) * 0.5 + 0.5
                tp = self.perceptual(dy, dx) if t > 1 else torch.zeros_like(p)
                total = total + lw.perceptual * (p + lw.tgrad * tp)
                logs["perceptual"], logs["t_perceptual"] = p, tp
            if self.gan_on(step):
                gg = self.g_loss_fn(disc_fn(y))
                total = total + lw.gan * gg
                logs["g_gan"] = gg
        if y is not None and lw.msrl > 0:  # Eq. 7 (the paper's stage IV)
            r = msrl_loss(y, gt_clip)
            total = total + lw.msrl * r
            logs["msrl"] = r
        logs["loss"] = total
        return total, logs, None if y is None else y.detach()


class PGTFormerStage2Task(PGTFormerTask):
    stage = 2


class PGTFormerStage3Task(PGTFormerTask):
    stage = 3


class PGTFormerStage4Task(PGTFormerTask):
    stage = 4

"""DicFace training as a `bfvr train` task (``task: dicface``): the paper's ELBO plus perceptual and
(optional) hinge GAN terms, on clips of `frame_length` (5) frames.

The network predicts, for every latent token, a Dirichlet Dir(alpha) over the K codebook entries; the
decoder sees a reparameterised sample w ~ Dir(alpha) mixed with the codebook. The negative ELBO with a
Laplace likelihood of scale 1 and the prior Dir(beta * 1) is, per clip,

    sum_pixels |x_hat(w) - x| + N log 2  +  sum_tokens KL(Dir(alpha) || Dir(beta * 1))

with one Monte-Carlo sample w. Both terms are divided by the number of output pixel values (the L1 is a
mean, the KL summed over tokens is divided by B*T*3*H*W), so weights ``l1: 1, kl: 1`` are the negative
ELBO per pixel value (the constant log 2 dropped); images are in the network's [-1, 1] range as in the
official recipe. The generator loss is

    L = l1 * |x_hat - x| + kl * KL / (pixel values) + perceptual * P(x_hat, x) + [gan on] * gan * hinge_G

P is LPIPS-VGG when ``loss.vgg_weights`` (+ ``lpips_weights``) are given, else the named substitute of the
STC stages (SSIM + gradient L1, `bfvr.train.losses.build_perceptual`). The prior concentration beta is
``loss.kl_prior``: the official recipe uses 0.1 (`configs/dicface/official.yaml`), the paper's ablation
finds 1.0 best (`configs/dicface/tiny.yaml` uses 1.0).

Tasks are chosen by the data recipe: ``data.recipe: keep`` (blind restoration, the KEEP/DicFace
degradation), ``inpaint`` (1-3 white brush strokes, one mask per clip: white = missing, as the inference
side's ``--mask``) or ``gray`` (colourisation: BT.601 luma in three channels). The official recipe sets the
KL weight to 0 for inpainting and colourisation (their configs here do too).

Initialisation: ``model.init_weights`` is a CodeFormer ``codeformer.pth`` (``params_ema``; the weights hub
entry ``dicface-codeformer`` is fetched into the cache when named), a DicFace checkpoint, or a bfvr run.
CodeFormer's modules load by name; the DicFace-only ones (`multiscale`, `dir_dist_layers`,
`position_emb_temporal`) start fresh. The official recipe trains everything except the spatial position
table `position_emb` (frozen in the network, ``fix_modules: []``); ``model.extra.fix_modules`` may name
more module prefixes to freeze.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from bfvr.errors import ConfigError
from bfvr.train.config import DiscConfig, GanLoss, ModelBase, Num, PerceptualLoss, Positive, TrainConfig
from bfvr.train.pgtformer import _GanMixin, to_clips, to_frames

log = logging.getLogger(__name__)

#: fidelity weight of the fusion blocks during training (the official inference value)
TRAIN_W = 1.0
#: state_dict entries a CodeFormer checkpoint has (the rest of DicFace starts fresh)
CODEFORMER_PREFIXES = ("encoder.", "quantize.", "generator.", "feat_emb.", "ft_layers.", "idx_pred_layer.",
                       "fuse_convs_dict.")
#: DicFace's own modules (not in CodeFormer)
DICFACE_ONLY = ("position_emb_temporal", "multiscale.", "dir_dist_layers.")


class DicFaceLoss(PerceptualLoss, GanLoss):
    """Loss weights (see the module doc)."""

    l1: Num = 1.0
    #: weight of KL(Dir(alpha) || Dir(kl_prior * 1)) (per pixel value) and the prior concentration (official
    #: recipe 0.1; the paper's ablation finds 1.0 best)
    kl: Num = 1.0
    kl_prior: Positive = 0.1


class DicFaceConfig(TrainConfig):
    """A DicFace training config; `model.extra` updates the official network sizes (and may name
    `fix_modules`)."""

    model: ModelBase = ModelBase()
    loss: DicFaceLoss = DicFaceLoss()
    disc: DiscConfig = DiscConfig()

    SECTIONS: ClassVar[tuple[str, ...]] = (*TrainConfig.SECTIONS, "disc")


def is_codeformer_key(name: str) -> bool:
    return name == "position_emb" or name.startswith(CODEFORMER_PREFIXES)


def dirichlet_kl(alpha: torch.Tensor, prior: float | torch.Tensor) -> torch.Tensor:
    """Closed-form KL(Dir(alpha) || Dir(beta)) over the last dimension (K categories), in fp32 or better:

        lnG(a0) - sum_k lnG(a_k) - lnG(b0) + sum_k lnG(b_k) + sum_k (a_k - b_k) (psi(a_k) - psi(a0))

    with a0 = sum_k a_k, b0 = sum_k b_k; `prior` is a scalar concentration (the symmetric Dir(beta * 1))
    or a tensor broadcastable to `alpha`. Returns one value per distribution (shape alpha.shape[:-1])."""
    a = alpha.float() if alpha.dtype in (torch.float16, torch.bfloat16) else alpha
    b = torch.as_tensor(prior, dtype=a.dtype, device=a.device).expand_as(a)
    a0, b0 = a.sum(-1), b.sum(-1)
    return (torch.lgamma(a0) - torch.lgamma(a).sum(-1) - torch.lgamma(b0) + torch.lgamma(b).sum(-1)
            + ((a - b) * (torch.digamma(a) - torch.digamma(a0)[..., None])).sum(-1))


def _net_kwargs(cfg: DicFaceConfig) -> tuple[dict[str, Any], tuple[str, ...]]:
    from bfvr.models.hub import _DICFACE

    extra = dict(cfg.model.extra)
    fix = tuple(str(p) for p in extra.pop("fix_modules", ()))
    return {**_DICFACE, **extra}, fix


def build_dicface(cfg: DicFaceConfig) -> tuple[nn.Module, tuple[str, ...]]:
    """The DicFace network of `cfg` (official sizes updated by ``model.extra``) drawing its code weights
    from the Dirichlet (training needs the sample), and the prefixes to freeze."""
    from bfvr.models.dicface import DicFace

    kw, fix = _net_kwargs(cfg)
    try:
        net = DicFace(**kw, sampling="official", seed=None)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model.extra does not fit DicFace: {e}.") from None
    if cfg.data.clip_len % net.frame_length:
        raise ConfigError(f"DicFace trains on whole groups of frame_length={net.frame_length} frames; set "
                          f"data.clip_len to a multiple of it (got {cfg.data.clip_len}).")
    side = cfg.data.crop or cfg.data.size
    if side != net.img_size:
        raise ConfigError(f"the training frames are {side}x{side} but the network is built for img_size "
                          f"{net.img_size}; set data.size/data.crop or model.extra.img_size to match.")
    return net, fix


def resolve_init_weights(spec: str) -> Path:
    """A path, or the name of a weights hub entry (e.g. ``dicface-codeformer``), fetched into the cache."""
    p = Path(spec).expanduser()
    if p.exists():
        return p
    from bfvr.models.weights import WEIGHTS, resolve

    if spec in WEIGHTS:
        return resolve(spec)
    from bfvr.errors import WeightsNotFoundError

    raise WeightsNotFoundError(f"model.init_weights {spec} is neither a file/run folder nor a weights name "
                               "(e.g. dicface-codeformer); fix the path.")


def load_init_weights(model: nn.Module, spec: str) -> list[str]:
    """Load a CodeFormer / DicFace / bfvr-run state_dict into `model` by name. Every entry of the file must
    exist in the model with the same shape, and every CodeFormer entry of the model must be in the file
    (else ModelError naming the mismatching keys). Returns the DicFace-only prefixes left fresh."""
    from bfvr.models.weights import check_state_dict
    from bfvr.train.checkpoint import load_weights

    path = resolve_init_weights(spec)
    sd = load_weights(path)
    own = model.state_dict()
    expected = {k: tuple(v.shape) for k, v in own.items() if k in sd or is_codeformer_key(k)}
    check_state_dict(sd, expected, what=f"model.init_weights {path}",
                     model="DicFace (a CodeFormer codeformer.pth or a DicFace checkpoint is expected)")
    model.load_state_dict({k: sd[k].to(own[k].dtype) for k in expected}, strict=False)
    fresh = sorted({p for p in DICFACE_ONLY for k in own if k.startswith(p) and k not in sd})
    log.info("DicFace: started from %s (%d tensors)%s", path, len(expected),
             f"; fresh: {', '.join(fresh)}" if fresh else "")
    return fresh


class DicFaceTask(_GanMixin):
    """``task: dicface``: the negative ELBO (Monte-Carlo L1 + Dirichlet KL) + perceptual + optional hinge GAN
    on BCTHW clips in [0, 1] (the network works in [-1, 1])."""

    Config = DicFaceConfig

    def __init__(self, cfg: DicFaceConfig, device: torch.device) -> None:
        self.cfg = cfg
        if not cfg.loss.kl_prior > 0:
            raise ConfigError(f"loss.kl_prior (the Dirichlet prior concentration) must be positive, "
                              f"got {cfg.loss.kl_prior}.")
        self.model, fix = build_dicface(cfg)
        self.fresh: list[str] = []
        if cfg.model.init_weights:
            self.fresh = load_init_weights(self.model, cfg.model.init_weights)
        else:
            # the frozen spatial table normally comes from CodeFormer: a fixed random one, not zeros
            nn.init.normal_(self.model.position_emb, std=0.02)
            log.warning("DicFace: no model.init_weights; training from random weights (the official recipe "
                        "starts from CodeFormer: model.init_weights: dicface-codeformer)")
        frozen = []
        for name, p in self.model.named_parameters():
            if fix and name.startswith(fix):
                p.requires_grad_(False)
            if not p.requires_grad:
                frozen.append(name)
        self.frozen = frozen
        self.model.to(device)
        self._setup_gan(cfg, device)
        n = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        log.info("DicFace: %d trainable parameters; frozen: %s; KL prior Dir(%g), weight %g; data recipe %s",
                 n, ", ".join(frozen) or "none", cfg.loss.kl_prior, cfg.loss.kl, cfg.data.recipe)

    def generator_loss(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int, disc_fn=None):
        lw = self.cfg.loss
        gt = batch["gt"]
        t = gt.shape[2]
        x = to_frames(batch["lq"]) * 2 - 1
        out, _, alpha = model(x, w=TRAIN_W)
        out = out.float()
        target = to_frames(gt) * 2 - 1
        logs: dict[str, torch.Tensor] = {}
        l1 = (out - target).abs().mean()  # Laplace(scale 1) NLL per pixel value, one Dirichlet sample
        kl_tok = dirichlet_kl(alpha.float(), lw.kl_prior)  # [(B*T), tokens]
        kl = kl_tok.sum() / out.numel()
        total = lw.l1 * l1 + lw.kl * kl
        logs["l1"], logs["kl"] = l1, kl
        with torch.no_grad():
            logs["kl_token"] = kl_tok.mean()
            logs["alpha_sum"] = alpha.float().sum(-1).mean()
        y = to_clips(out, t) * 0.5 + 0.5  # [0, 1] clips for the perceptual loss and the discriminator
        total = self._add_perceptual_gan(total, y, gt, step, disc_fn, logs)
        logs["loss"] = total
        return total, logs, y.detach()

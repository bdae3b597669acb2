"""Typed training configuration, loaded from YAML.

A config file is a nested mapping whose sections match the dataclasses below (`model`, `data`, `loss`,
`disc`, `optim`, and the top-level run settings). Unknown keys are errors (a typo must not be silently
ignored); missing keys take the defaults, which are the official BFVR-STC Stage-I settings.
`load_config(path, overrides=["optim.lr=1e-4", ...])` applies dotted overrides whose values are parsed
as YAML scalars.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bfvr.errors import ConfigError


@dataclass
class ModelConfig:
    """Network hyper-parameters (passed to `STCVQGAN` / `STCStage2`)."""

    nf: int = 32
    ch_mult: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    res_blocks: int = 2
    codebook_size: int = 1024
    emb_dim: int = 256
    beta: float = 0.25
    #: MPR form (bfvr.models.stc.quantizer): "official" (the released code's near-zero form, what trained
    #: the released weights), "paper" (the printed KL(marginal || uniform) on inverse Euclidean distances;
    #: inert in practice), "gaussian" (KL of the marginal of a Gaussian soft assignment with temperature
    #: `mpr_temperature`: the form that acts, docs/training.md) or "none"
    mpr: str = "official"
    #: STC code loss: "official" (the released code: weight 1 on the encoder's commitment term, beta on the
    #: codebook term) or "paper" (the printed Eq. 7: codebook term weight 1, beta on the commitment term)
    commitment: str = "official"
    #: temperature of the "gaussian" MPR, in units of the spread of the squared token-code distances
    mpr_temperature: float = 1.0
    #: Stage II: lookup transformers
    n_head: int = 2
    n_layers: int = 9
    dim_mlp: int = 512
    #: Stage II: True reproduces the official axis-order quirk of the temporal residual (only for official
    #: weights)
    official_residual: bool = False
    #: Stage II: decoder levels of the official (unused) fusion blocks; [] leaves them out (keys only matter
    #: for loading official checkpoints)
    connect_list: list[str] = field(default_factory=lambda: ["32", "64", "128", "256"])
    #: extra keyword arguments passed as-is to the network constructor (e.g. norm groups, latent size)
    extra: dict[str, Any] = field(default_factory=dict)
    #: Stage II: Stage-I weights (a run folder, a checkpoint folder or a .safetensors file); EMA weights
    #: preferred
    stage1_weights: str | None = None
    #: optional initial weights of the trained network itself (e.g. Stage II "all degradations" starts from
    #: the "no noise" run); same accepted forms as `stage1_weights`
    init_weights: str | None = None
    #: BFVR-Lite: `init_weights` comes from a smaller network (fewer res blocks / fusions, no fourth level);
    #: the parts it lacks start as the identity, so training starts from exactly what that network computed
    init_grow: bool = False
    #: PGTFormer stages II-IV: the face-parsing BiSeNet (a PGTFormer checkpoint or a face-parsing state_dict)
    parsing_weights: str | None = None


@dataclass
class DataConfig:
    """Training clips: where they come from, their shape and their degradation."""

    #: video files, folders of videos, or a JSONL manifest from `bfvr prepare`
    paths: list[str] = field(default_factory=list)
    clip_len: int = 24
    #: frames are resized (stretched, like the official loader) to size x size ...
    size: int = 256
    #: ... then a random crop of crop x crop is taken (None = no crop)
    crop: int | None = None
    #: how bfvr.data.ClipDataset makes the square frame before resizing: "stretch" (the whole frame, as the
    #: official STC loader), "center" or "random" (the built-in in-memory reader always stretches)
    crop_mode: str = "stretch"
    #: degradation recipe for the LQ input: "none" (Stage I), "stc-nonoise", "stc", "flicker-brightness", ...
    recipe: str = "none"
    hflip: bool = False
    #: play a clip backwards with this probability (DicFace/KEEP: 0.5)
    reverse_prob: float = 0.0
    #: take every k-th frame, k drawn per sample from 1..frame_step (more motion than the videos have)
    frame_step: int = 1
    #: strength (0 = off, e.g. 0.3) of a per-sample colour change of the clean clip before it is degraded:
    #: gamma, saturation, white balance, contrast (bfvr.data.dataset.jitter_params)
    color_jitter: float = 0.0
    #: frames read per video (the official loader reads the first 240)
    max_frames: int = 240
    #: which clip_len frames of a video make a sample: "random" (a random window within the first
    #: max_frames, official) or "first" (the first clip_len frames of each video, as the paper says)
    window: str = "random"
    #: clips per process per micro-step
    batch_size: int = 1
    num_workers: int = 0
    #: "auto" or "bfvr" (bfvr.data.ClipDataset, reading each window from its file) or "builtin" (the same
    #: dataset over videos decoded once into memory)
    backend: str = "auto"
    #: built-in reader: crop every video to its face first (the face-proportion square of `bfvr prepare`,
    #: found once per video), so raw videos train like the face pipeline's crops
    face_crop: bool = False
    #: built-in reader: warp every window to the FFHQ 5-point template (the face pipeline's `align` crop,
    #: size x size), with ONE transform per window from its centre frame's landmarks (PGTFormer's aligned
    #: stages; DicFace's aligned training data)
    align: bool = False
    #: video names (file stems) never read for training, e.g. the held-out validation clips
    exclude: list[str] = field(default_factory=list)


@dataclass
class ValConfig:
    """Validation on held-out clips during training (PSNR of the EMA weights vs the degraded input)."""

    #: held-out videos (files or folders)
    paths: list[str] = field(default_factory=list)
    #: names (stems) to pick from `paths`; BFVR-Lite requires them, and requires each in data.exclude
    names: list[str] = field(default_factory=list)
    #: validate every N steps (0 = never)
    every: int = 0
    #: frames per clip (from the clip's first frame), frame size, face crop as in `data.face_crop`
    frames: int = 8
    size: int = 512
    face_crop: bool = True
    #: the fixed degradation (one seeded draw per clip)
    recipe: str = "bfvr-eval"
    seed: int = 0


@dataclass
class LossConfig:
    """Loss weights. Stage I: l1, perceptual, codebook, mpr, gan; Stage II: feat, ce."""

    l1: float = 1.0
    perceptual: float = 1.0
    #: torchvision-layout VGG16 weights (.pth/.safetensors) for LPIPS-VGG; None = offline substitute
    vgg_weights: str | None = None
    #: LPIPS linear-head weights (lpips package `weights/v0.1/vgg.pth`); optional, plain VGG feature L1
    #: without
    lpips_weights: str | None = None
    #: what replaces the perceptual loss when no VGG weights are given: "ssim+grad" or "none"
    perceptual_fallback: str = "ssim+grad"
    #: perceptual network: "lpips" (LPIPS-VGG16 from vgg_weights/lpips_weights, official) or "vgg19" (the
    #: paper's VGG19 feature loss from vgg19_weights; a missing file stops the run)
    perceptual_net: str = "lpips"
    #: torchvision-layout VGG19 weights (vgg19-dcbb9e9d.pth or .safetensors) for perceptual_net: vgg19
    vgg19_weights: str | None = None
    #: distance between the VGG19 features (perceptual_net: vgg19): "l1" (mean |phi(x^) - phi(x)|, bfvr's
    #: first VGG19 loss) or "l2sq" (mean (phi(x^) - phi(x))^2: the papers' ||phi(x) - phi(x^)||_2^2)
    perceptual_distance: str = "l1"
    codebook: float = 1.0
    #: multiplies the model's MPR term (which already carries the official x0.1)
    mpr: float = 1.0
    #: effective generator GAN weight (official: loss_weight 0.5 x disc_weight 0.8)
    gan: float = 0.4
    #: adversarial loss: "hinge" (official) or "log" (the paper's non-saturating log loss)
    gan_loss: str = "hinge"
    #: first iteration (1-based) at which the GAN terms are on (official: 2001)
    disc_start: int = 2001
    feat: float = 10.0
    ce: float = 1.0
    #: BFVR-Lite: weight of the temporal term |(pred_t+1 - pred_t) - (gt_t+1 - gt_t)| (Charbonnier)
    temporal: float = 0.0
    #: BFVR-Lite: weight of 1 - SSIM(pred, gt) (Gaussian window 11, per frame and channel, in fp32)
    ssim: float = 0.0
    #: PGTFormer stage IV: focal code loss exponent, gradient-L1 weight and its (pixel, spatial gradient,
    #: temporal difference) weights, weight of the perceptual loss of frame differences
    focal_gamma: float = 2.0
    #: PGTFormer stages III/IV: weight of L_MSRL (Eq. 7: L1 of the frame-difference residual at three scales,
    #: bfvr.train.losses.msrl_loss); 0 = off (the official configs have no such term)
    msrl: float = 0.0
    #: PGTFormer stage IV losses: "official" (release_train_stage_IIII: focal code loss, feature L1, GradL1,
    #: temporal perceptual, GAN) or "paper" (§3.4: "the loss is consistent with the third stage": CE, feature
    #: MSE, L1, perceptual, GAN; add L_MSRL with loss.msrl)
    stage4_losses: str = "official"
    grad: float = 0.0
    grad_levels: list[float] = field(default_factory=lambda: [0.2, 0.05, 0.05])
    tgrad: float = 0.8
    #: DicFace: weight of KL(Dir(alpha) || Dir(kl_prior * 1)) (per pixel value, see bfvr.train.dicface) and
    #: the prior concentration (official recipe 0.1; the paper's ablation finds 1.0 best)
    kl: float = 1.0
    kl_prior: float = 0.1


@dataclass
class DiscConfig:
    """Discriminator for the Stage-I hinge GAN."""

    #: "dinov2" (frozen DINOv2 ViT-S/14 + 3 linear heads, needs weights) or "conv" (weight-free, trainable)
    backbone: str = "dinov2"
    #: local clone of facebookresearch/dinov2 (torch.hub source='local'); None = the installed dinov2 package
    dinov2_repo: str | None = None
    #: local DINOv2 ViT-S/14 weights (.pth), required by backbone dinov2 (nothing is downloaded)
    dinov2_weights: str | None = None
    #: dinov2: run the backbone under no_grad as the official code does (the generator then gets no GAN
    #: gradient); default False lets the gradient flow through the frozen backbone
    official_no_grad: bool = False
    #: the three heads (1, 2, 4 units): "linear" (official) or "mlp" (the paper's MLP heads)
    heads: str = "linear"
    #: hidden width of the MLP heads (None = the feature width)
    head_hidden: int | None = None
    #: conv fallback: base width and number of stride-2 stages
    width: int = 32
    depth: int = 4
    feat_dim: int = 384


@dataclass
class OptimConfig:
    lr: float = 7e-5
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    weight_decay: float = 0.0
    #: discriminator learning rate (None = same as lr)
    d_lr: float | None = None
    #: "constant", "cosine_restart" (periods, restart_weights, eta_min) or "multistep" (milestones, gamma)
    scheduler: str = "constant"
    periods: list[int] = field(default_factory=lambda: [250000])
    restart_weights: list[float] = field(default_factory=lambda: [1.0])
    eta_min: float = 0.0
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.5
    #: clip the generator's gradient norm (None = off)
    grad_clip: float | None = None


@dataclass
class TrainConfig:
    #: what to train (see `bfvr.train.tasks.TASKS`): "stc-stage1", "stc-stage2" or "lite" (BFVR-Lite);
    #: None = STC's `stage` below (older configs)
    task: str | None = None
    #: STC: "stage1" (3D-VQGAN + codebooks) or "stage2" (LQ encoder + lookup transformers)
    stage: str = "stage1"
    name: str = "stc_stage1"
    #: run folder (checkpoints, logs, resolved config); relative paths are relative to the working directory
    out_dir: str = "runs/stc_stage1"
    seed: int = 0
    max_steps: int = 250000
    log_every: int = 10
    ckpt_every: int = 1000
    #: checkpoints kept on disk (older ones are deleted); 0 = keep all
    keep_ckpts: int = 3
    ema_decay: float = 0.995
    #: micro-steps accumulated per optimizer step
    accum_steps: int = 1
    #: run forward passes under bf16 autocast (CPU with AMX or CUDA); weights and optimizer stay fp32
    bf16: bool = False
    #: "auto" (cuda:LOCAL_RANK when available, else cpu), "cpu", "cuda", "cuda:N"
    device: str = "auto"
    #: torch intra-op threads per process (0 = leave torch's default)
    threads: int = 0
    #: DDP: tolerate parameters without gradient in a step. None = automatic: on for Stage I when
    #: model.mpr is "none" (the quantiser's temporal attention only gets gradients through the MPR term),
    #: off otherwise and for Stage II and the discriminator
    ddp_find_unused: bool | None = None
    #: also write TensorBoard events when the `tensorboard` package is installed
    tensorboard: bool = True
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    disc: DiscConfig = field(default_factory=DiscConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    val: ValConfig = field(default_factory=ValConfig)

    @property
    def task_name(self) -> str:
        return self.task or f"stc-{self.stage}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def validate(self) -> None:
        from bfvr.train.tasks import TASKS

        if self.task is None and self.stage not in ("stage1", "stage2"):
            raise ConfigError(f"stage must be 'stage1' or 'stage2', not {self.stage!r}.")
        if self.task_name not in TASKS:
            raise ConfigError(f"unknown task {self.task!r}; choose one of: {', '.join(TASKS)}.")
        if self.accum_steps < 1 or self.data.batch_size < 1:
            raise ConfigError("accum_steps and data.batch_size must be at least 1.")
        if self.max_steps < 1:
            raise ConfigError("max_steps must be at least 1.")
        from bfvr.engine.device import check_threads

        check_threads(self.threads, "threads", zero_ok=True)
        o = self.optim
        for name, value in (("optim.lr", o.lr), ("optim.d_lr", o.d_lr), ("optim.gamma", o.gamma),
                            ("optim.grad_clip", o.grad_clip)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive finite number, got {value}.")
        for name, value in (("optim.weight_decay", o.weight_decay), ("optim.eta_min", o.eta_min)):
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be 0 or a positive finite number, got {value}.")
        if len(o.betas) != 2 or not all(math.isfinite(b) and 0 <= b < 1 for b in o.betas):
            raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {o.betas}.")
        if self.optim.scheduler not in ("constant", "cosine_restart", "multistep"):
            raise ConfigError(f"optim.scheduler must be constant, cosine_restart or multistep, "
                              f"not {self.optim.scheduler!r}.")
        if self.model.mpr not in ("paper", "gaussian", "official", "none"):
            raise ConfigError(f"model.mpr must be paper, gaussian, official or none, not {self.model.mpr!r}.")
        if not self.model.mpr_temperature > 0:
            raise ConfigError(f"model.mpr_temperature must be positive, got {self.model.mpr_temperature}.")
        for name, value, allowed in (("loss.perceptual_net", self.loss.perceptual_net, ("lpips", "vgg19")),
                                     ("loss.perceptual_distance", self.loss.perceptual_distance,
                                      ("l1", "l2sq")),
                                     ("loss.stage4_losses", self.loss.stage4_losses, ("official", "paper")),
                                     ("model.commitment", self.model.commitment, ("official", "paper")),
                                     ("loss.gan_loss", self.loss.gan_loss, ("hinge", "log")),
                                     ("disc.heads", self.disc.heads, ("linear", "mlp")),
                                     ("data.window", self.data.window, ("random", "first"))):
            if value not in allowed:
                raise ConfigError(f"{name} must be {' or '.join(allowed)}, not {value!r}.")
        if self.disc.backbone not in ("dinov2", "conv"):
            raise ConfigError(f"disc.backbone must be 'dinov2' or 'conv', not {self.disc.backbone!r}.")
        if self.loss.perceptual_fallback not in ("ssim+grad", "none"):
            raise ConfigError("loss.perceptual_fallback must be 'ssim+grad' or 'none'.")
        pgt_later = ("pgtformer-stage2", "pgtformer-stage3", "pgtformer-stage4")
        if self.task_name in pgt_later and not self.model.stage1_weights:
            raise ConfigError(f"{self.task_name} needs model.stage1_weights (the PGTFormer Stage-I run "
                              "folder or weights file); set it in the config or with "
                              "--set model.stage1_weights=PATH.")
        if len(self.loss.grad_levels) != 3:
            raise ConfigError("loss.grad_levels takes 3 weights "
                              "(pixel, spatial gradient, temporal difference).")
        if self.task_name == "stc-stage2" and not self.model.stage1_weights:
            raise ConfigError("stage2 needs model.stage1_weights (the Stage-I run folder or weights file); "
                              "set it in the config or with --set model.stage1_weights=PATH.")
        if self.task_name == "lite":
            for name, v in (("data.crop", self.data.crop), ("data.size", self.data.size),
                            ("val.size", self.val.size)):
                if v is not None and v % 16:
                    raise ConfigError(f"{name} must be a multiple of 16 for BFVR-Lite, not {v}.")
            if self.val.every:
                if not self.val.paths:
                    raise ConfigError("val.every is set but val.paths is empty; name the held-out videos.")
                leak = sorted(set(self.val.names) - set(self.data.exclude)) if self.val.names else None
                if leak is None or leak:
                    why = "missing there: " + ", ".join(leak) if leak else "val.names is empty"
                    raise ConfigError("every validation clip must be held out of training: list val.names "
                                      f"and put them in data.exclude ({why}).")
        if (self.data.face_crop or self.data.exclude or self.data.align) and self.data.backend != "builtin":
            raise ConfigError("data.face_crop, data.align and data.exclude work with data.backend: builtin "
                              "only.")
        if self.data.face_crop and self.data.align:
            raise ConfigError("data.face_crop and data.align are two framings of the face; choose one.")
        if self.data.crop is not None and self.data.crop > self.data.size:
            raise ConfigError("data.crop must not exceed data.size.")
        d = self.data
        for key, value, low in (("clip_len", d.clip_len, 1), ("size", d.size, 8),
                                ("max_frames", d.max_frames, 1), ("num_workers", d.num_workers, 0)):
            if value < low:
                raise ConfigError(f"data.{key} must be at least {low}, got {value}; "
                                  f"fix it in the config or with --set data.{key}=N.")
        if d.frame_step < 1:
            raise ConfigError(f"data.frame_step must be at least 1, got {d.frame_step}; "
                              "fix it in the config or with --set data.frame_step=N.")
        if d.frame_step > 1 and d.window == "first":
            raise ConfigError("data.frame_step > 1 needs data.window: random (window: first reads only the "
                              "first clip_len frames, so there is nothing to skip).")
        if not 0.0 <= d.color_jitter < 1.0:
            raise ConfigError(f"data.color_jitter must be in [0, 1), got {d.color_jitter}; "
                              "fix it in the config or with --set data.color_jitter=S (0 = off).")
        if not 0.0 <= d.reverse_prob <= 1.0:
            raise ConfigError(f"data.reverse_prob must be between 0 and 1, got {d.reverse_prob}.")
        if d.crop is not None and d.crop < 8:
            raise ConfigError(f"data.crop must be at least 8 (or null for no crop), got {d.crop}.")
        if d.max_frames < d.clip_len:
            raise ConfigError(f"data.max_frames ({d.max_frames}) must be at least "
                              f"data.clip_len ({d.clip_len}): a clip is taken "
                              "from the first max_frames frames of each video.")


# ----------------------------------------------------------------------------------------------------
# YAML <-> dataclasses


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert a YAML value to the annotated type `tp` (dataclasses, lists, optionals, scalars)."""
    if _is_dataclass_type(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, not {type(value).__name__}.")
        return _build(tp, value, where)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        return _coerce(value, others[0], where)
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            value = [value] if isinstance(value, (str, int, float)) else value
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list.")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping.")
        return dict(value)
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{where} must be a number, not {value!r}.")
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where} must be a number, not {value!r}.") from None
    if tp is int:
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not whole:
            raise ConfigError(f"{where} must be an integer, not {value!r}.")
        return int(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, not {value!r}.")
        return value
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where} must be a string, not {value!r}.")
        return str(value)
    return value


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)} in {where or 'the config'}; "
                          f"allowed: {', '.join(sorted(names))}.")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def _apply_override(raw: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value.")
    key, _, text = item.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {item!r} has an empty key.")
    node = raw
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {p} is not a section.")
    try:
        node[parts[-1]] = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: value is not valid YAML ({e}).") from None


def config_from_dict(raw: dict[str, Any], overrides: list[str] | None = None) -> TrainConfig:
    raw = yaml.safe_load(yaml.safe_dump(raw)) if raw else {}  # deep copy through YAML types
    for item in overrides or []:
        _apply_override(raw, item)
    cfg = _build(TrainConfig, raw, "")
    cfg.validate()
    return cfg


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML training config, apply `section.key=value` overrides, check it, return it typed."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}; pass an existing YAML file (see configs/stc/).")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = "it is not UTF-8 text" if isinstance(e, UnicodeDecodeError) else e.strerror or type(e).__name__
        raise ConfigError(f"cannot read the config {p} ({why}); pass a YAML text file (see configs/stc/).") \
            from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{p} is not valid YAML: {' '.join(str(e).split())}") from None
    if raw is None or raw == {}:  # an empty file, only comments or `{}`: the defaults are no run of yours
        raise ConfigError(f"the config {p} is empty (it holds no settings); write the run's settings there, "
                          "e.g. start from a copy of configs/stc/tiny_stage1.yaml.")
    if not isinstance(raw, dict):
        raise ConfigError(f"{p} must contain a mapping of settings at the top level.")
    for section in ("data", "val"):
        sec = raw.get(section)
        if isinstance(sec, dict) and isinstance(sec.get("paths"), list):
            sec["paths"] = [_resolve_data_path(x, p.parent) for x in sec["paths"]]
    model = raw.get("model")
    if isinstance(model, dict) and isinstance(model.get("init_weights"), str):
        model["init_weights"] = _resolve_data_path(model["init_weights"], p.parent)
    return config_from_dict(raw, overrides)


def _resolve_data_path(entry: Any, config_dir: Path) -> Any:
    """A relative `data.paths` entry written in a config file means the config's own folder (so a config
    finds its data from any working directory); when it exists only relative to the working directory
    (configs written before this rule), that is kept. Paths given with --data / --set are the user's
    own, relative to the working directory."""
    if not isinstance(entry, str) or not entry or Path(entry).expanduser().is_absolute():
        return entry
    beside = config_dir / entry
    if beside.exists() or not Path(entry).exists():
        return str(beside.resolve()) if beside.exists() else entry
    return entry

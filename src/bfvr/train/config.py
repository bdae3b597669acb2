"""Typed training configuration, loaded from YAML and checked by pydantic.

A config is the common run settings (top-level keys: seed, steps, checkpoints, logging, precision, device)
plus the common sections `data` (training clips), `optim` (optimiser and LR schedule) and `val`
(validation), and the sections each training task owns: `model` and `loss` (and `disc` for a task with a
GAN), defined next to the task (`bfvr.train.stc`, `.lite`, `.pgtformer`, `.dicface`) as a subclass of
`TrainConfig`. The `task:` key picks the class (`bfvr.train.tasks`); a config without it is an STC one picked
by its `stage:` key (older configs).

Unknown keys and bad values are errors of one sentence naming the key and what it allows (a typo must not
be silently ignored); missing keys take the defaults. `load_config(path, overrides=["optim.lr=1e-4", ...])`
applies dotted overrides whose values are parsed as YAML scalars.

Configs resolved by older bfvr (a run's config.yaml, the `resolved_config` stored with exported weights)
wrote every task's keys in one flat schema; keys another task owns are dropped from those (the task never
read them), so they still load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from bfvr.errors import ConfigError


def _listify(value: Any) -> Any:
    """A scalar where a list is expected is a list of one (`paths: clips/` = `paths: [clips/]`)."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return [value]
    return value


def _no_bool(value: Any) -> Any:
    """true/false is not a number (pydantic would read it as 1/0)."""
    if isinstance(value, bool):
        raise ValueError("a number, not true/false")
    return value


def _strict_bool(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError(f"true or false, not {value!r}")
    return value


Num = Annotated[float, BeforeValidator(_no_bool)]
Int = Annotated[int, BeforeValidator(_no_bool)]
Bool = Annotated[bool, BeforeValidator(_strict_bool)]
Positive = Annotated[float, BeforeValidator(_no_bool), Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, BeforeValidator(_no_bool), Field(ge=0, allow_inf_nan=False)]
NumList = Annotated[list[Num], BeforeValidator(_listify)]
IntList = Annotated[list[Int], BeforeValidator(_listify)]
StrList = Annotated[list[str], BeforeValidator(_listify)]


class Section(BaseModel):
    """A config section: unknown keys are errors, YAML numbers are accepted where text is expected."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, validate_default=False)


# ----------------------------------------------------------------------------------------------------
# common sections


class DataConfig(Section):
    """Training clips: where they come from, their shape and their degradation."""

    #: video files, folders of videos, or a JSONL manifest from `bfvr prepare`
    paths: StrList = []
    clip_len: Int = Field(24, ge=1)
    #: frames are resized (stretched, like the official loader) to size x size ...
    size: Int = Field(256, ge=8)
    #: ... then a random crop of crop x crop is taken (None = no crop)
    crop: Int | None = Field(None, ge=8)
    #: how bfvr.data.ClipDataset makes the square frame before resizing: "stretch" (the whole frame, as the
    #: official STC loader), "center" or "random" (the built-in in-memory reader always stretches)
    crop_mode: str = "stretch"
    #: degradation recipe for the LQ input (`bfvr.degrade.recipe`): "none", "stc-nonoise", "stc", "bfvr", ...
    recipe: str = "none"
    hflip: Bool = False
    #: play a clip backwards with this probability (DicFace/KEEP: 0.5)
    reverse_prob: Num = Field(0.0, ge=0, le=1)
    #: take every k-th frame, k drawn per sample from 1..frame_step (more motion than the videos have)
    frame_step: Int = Field(1, ge=1)
    #: strength (0 = off, e.g. 0.3) of a per-sample colour change of the clean clip before it is degraded:
    #: gamma, saturation, white balance, contrast (bfvr.data.dataset.jitter_params)
    color_jitter: Num = Field(0.0, ge=0, lt=1)
    #: frames read per video (the official loader reads the first 240)
    max_frames: Int = Field(240, ge=1)
    #: which clip_len frames of a video make a sample: "random" (a random window within the first
    #: max_frames, official) or "first" (the first clip_len frames of each video, as the paper says)
    window: Literal["random", "first"] = "random"
    #: clips per process per micro-step
    batch_size: Int = Field(1, ge=1)
    num_workers: Int = Field(0, ge=0)
    #: "auto" or "bfvr" (bfvr.data.ClipDataset, reading each window from its file) or "builtin" (the same
    #: dataset over videos decoded once into memory)
    backend: str = "auto"
    #: built-in reader: crop every video to its face first (the face-proportion square of `bfvr prepare`,
    #: found once per video), so raw videos train like the face pipeline's crops
    face_crop: Bool = False
    #: built-in reader: warp every window to the FFHQ 5-point template (the face pipeline's `align` crop,
    #: size x size), with ONE transform per window from its centre frame's landmarks
    align: Bool = False
    #: video names (file stems) never read for training, e.g. the held-out validation clips
    exclude: StrList = []


class ValConfig(Section):
    """Validation on held-out clips during training (tasks with a `validate` hook)."""

    #: held-out videos (files or folders)
    paths: StrList = []
    #: names (stems) to pick from `paths`; each must be in data.exclude
    names: StrList = []
    #: validate every N steps (0 = never)
    every: Int = Field(0, ge=0)
    #: frames per clip (from the clip's first frame), frame size, face crop as in `data.face_crop`
    frames: Int = Field(8, ge=1)
    size: Int = Field(512, ge=8)
    face_crop: Bool = True
    #: the fixed degradation (one seeded draw per clip)
    recipe: str = "bfvr-eval"
    seed: Int = 0


class OptimConfig(Section):
    """Adam and the learning-rate schedule."""

    lr: Positive = 7e-5
    betas: Annotated[list[Annotated[float, BeforeValidator(_no_bool), Field(ge=0, lt=1)]],
                     Field(min_length=2, max_length=2)] = [0.9, 0.99]
    weight_decay: NonNegative = 0.0
    #: discriminator learning rate (None = same as lr)
    d_lr: Positive | None = None
    #: "constant", "cosine_restart" (periods, restart_weights, eta_min) or "multistep" (milestones, gamma)
    scheduler: Literal["constant", "cosine_restart", "multistep"] = "constant"
    periods: IntList = [250000]
    restart_weights: NumList = [1.0]
    eta_min: NonNegative = 0.0
    milestones: IntList = []
    gamma: Positive = 0.5
    #: clip the generator's gradient norm (None = off)
    grad_clip: Positive | None = None


# ----------------------------------------------------------------------------------------------------
# building blocks of the task-owned sections (shared by the tasks that have these terms)


class ModelBase(Section):
    """What every task's `model` section has."""

    #: extra keyword arguments passed as-is to the network constructor (e.g. widths, norm groups)
    extra: dict[str, Any] = {}
    #: optional initial weights of the trained network (a run folder, a checkpoint folder or a .safetensors
    #: file)
    init_weights: str | None = None


class PerceptualLoss(Section):
    """The perceptual term (`bfvr.train.losses.perceptual_from_config`)."""

    perceptual: Num = 1.0
    #: torchvision-layout VGG16 weights (.pth/.safetensors) for LPIPS-VGG; None = offline substitute
    vgg_weights: str | None = None
    #: LPIPS linear-head weights (lpips package `weights/v0.1/vgg.pth`); optional, plain VGG feature L1
    #: without
    lpips_weights: str | None = None
    #: what replaces the perceptual loss when no VGG weights are given: "ssim+grad" or "none"
    perceptual_fallback: Literal["ssim+grad", "none"] = "ssim+grad"
    #: perceptual network: "lpips" (LPIPS-VGG16 from vgg_weights/lpips_weights, official) or "vgg19" (the
    #: paper's VGG19 feature loss from vgg19_weights; a missing file stops the run)
    perceptual_net: Literal["lpips", "vgg19"] = "lpips"
    #: torchvision-layout VGG19 weights (vgg19-dcbb9e9d.pth or .safetensors) for perceptual_net: vgg19
    vgg19_weights: str | None = None
    #: distance between the VGG19 features: "l1" or "l2sq" (the papers' ||phi(x) - phi(x^)||_2^2)
    perceptual_distance: Literal["l1", "l2sq"] = "l1"


class GanLoss(Section):
    """The adversarial term of a task with a discriminator (`disc` section)."""

    #: effective generator GAN weight (official: loss_weight 0.5 x disc_weight 0.8); 0 = no discriminator
    gan: Num = 0.4
    #: adversarial loss: "hinge" (official) or "log" (the paper's non-saturating log loss)
    gan_loss: Literal["hinge", "log"] = "hinge"
    #: first iteration (1-based) at which the GAN terms are on (official: 2001)
    disc_start: Int = 2001


class DiscConfig(Section):
    """The discriminator of a task with a GAN term (`bfvr.train.stc.build_discriminator`)."""

    #: "dinov2" (frozen DINOv2 ViT-S/14 + 3 linear heads, needs weights) or "conv" (weight-free, trainable)
    backbone: Literal["dinov2", "conv"] = "dinov2"
    #: local clone of facebookresearch/dinov2 (torch.hub source='local'); None = the installed dinov2 package
    dinov2_repo: str | None = None
    #: local DINOv2 ViT-S/14 weights (.pth), required by backbone dinov2 (nothing is downloaded)
    dinov2_weights: str | None = None
    #: dinov2: run the backbone under no_grad as the official code does (the generator then gets no GAN
    #: gradient); default False lets the gradient flow through the frozen backbone
    official_no_grad: Bool = False
    #: the three heads (1, 2, 4 units): "linear" (official) or "mlp" (the paper's MLP heads)
    heads: Literal["linear", "mlp"] = "linear"
    #: hidden width of the MLP heads (None = the feature width)
    head_hidden: Int | None = None
    #: conv fallback: base width and number of stride-2 stages
    width: Int = 32
    depth: Int = 4
    feat_dim: Int = 384


# ----------------------------------------------------------------------------------------------------
# the whole config


class TrainConfig(Section):
    """The common run settings and sections; each task subclasses it with its `model`/`loss` sections."""

    #: what to train (`bfvr.train.tasks.TASKS`)
    task: str | None = None
    #: run name (None = the task's name)
    name: str | None = None
    #: run folder (checkpoints, logs, resolved config); relative paths are relative to the working directory;
    #: None = runs/<name>
    out_dir: str | None = None
    seed: Int = 0
    max_steps: Int = Field(250000, ge=1)
    log_every: Int = Field(10, ge=1)
    ckpt_every: Int = Field(1000, ge=1)
    #: checkpoints kept on disk (older ones are deleted); 0 = keep all
    keep_ckpts: Int = Field(3, ge=0)
    ema_decay: Num = Field(0.995, ge=0, le=1)
    #: micro-steps accumulated per optimizer step
    accum_steps: Int = Field(1, ge=1)
    #: run forward passes under bf16 autocast (CPU with AMX or CUDA); weights and optimizer stay fp32
    bf16: Bool = False
    #: "auto" (cuda:LOCAL_RANK when available, else cpu), "cpu", "cuda", "cuda:N"
    device: str = "auto"
    #: torch intra-op threads per process (0 = leave torch's default)
    threads: Int = 0
    #: DDP: tolerate parameters without gradient in a step. None = the task decides (its
    #: `ddp_find_unused()`; off when it has none) and off for the discriminator
    ddp_find_unused: Bool | None = None
    #: also write TensorBoard events when the `tensorboard` package is installed
    tensorboard: Bool = True
    #: the task's own sections (task subclasses replace them with theirs)
    model: ModelBase = ModelBase()
    data: DataConfig = DataConfig()
    loss: Section = Section()
    optim: OptimConfig = OptimConfig()
    val: ValConfig = ValConfig()

    #: the sections of this class that are configurable by a file (task subclasses may add `disc`)
    SECTIONS: ClassVar[tuple[str, ...]] = ("model", "data", "loss", "optim", "val")

    @property
    def task_name(self) -> str:
        return str(self.task)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def check(self) -> None:
        """Checks across keys and sections (the types and ranges of single keys are checked on load); a
        task's config class extends it with its own."""
        from bfvr.engine.device import check_threads

        check_threads(self.threads, "threads", zero_ok=True)
        d = self.data
        if (d.face_crop or d.exclude or d.align) and d.backend != "builtin":
            raise ConfigError("data.face_crop, data.align and data.exclude work with data.backend: builtin "
                              "only.")
        if d.face_crop and d.align:
            raise ConfigError("data.face_crop and data.align are two framings of the face; choose one.")
        if d.crop is not None and d.crop > d.size:
            raise ConfigError("data.crop must not exceed data.size.")
        if d.frame_step > 1 and d.window == "first":
            raise ConfigError("data.frame_step > 1 needs data.window: random (window: first reads only the "
                              "first clip_len frames, so there is nothing to skip).")
        if d.max_frames < d.clip_len:
            raise ConfigError(f"data.max_frames ({d.max_frames}) must be at least "
                              f"data.clip_len ({d.clip_len}): a clip is taken "
                              "from the first max_frames frames of each video.")
        if self.val.every:
            v = self.val
            if not v.paths:
                raise ConfigError("val.every is set but val.paths is empty; name the held-out videos.")
            leak = sorted(set(v.names) - set(d.exclude)) if v.names else None
            if leak is None or leak:
                why = "missing there: " + ", ".join(leak) if leak else "val.names is empty"
                raise ConfigError("every validation clip must be held out of training: list val.names "
                                  f"and put them in data.exclude ({why}).")


# ----------------------------------------------------------------------------------------------------
# loading


_KIND = {"float_parsing": "a number", "float_type": "a number", "int_parsing": "an integer",
         "int_type": "an integer", "int_from_float": "an integer", "bool_parsing": "true or false",
         "bool_type": "true or false", "string_type": "a text", "list_type": "a list",
         "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping"}


def _allowed_keys(cls: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed in the section at `loc` (a path of field names) of `cls`."""
    node: Any = cls
    for part in loc:
        field = node.model_fields.get(part) if isinstance(part, str) else None
        ann = field.annotation if field is not None else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        node = ann
    return sorted(k for k in node.model_fields)


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _range(cls: type[BaseModel], loc: tuple[Any, ...], kind: str, ctx: dict[str, Any]) -> str:
    """The allowed range of the number at `loc`: "in [0, 1)", "at least 1", "positive", ..."""
    import annotated_types as at

    node: Any = cls
    field = None
    for part in loc:
        field = node.model_fields.get(part) if isinstance(part, str) and node is not None else None
        ann = field.annotation if field is not None else None
        node = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    low = high = None
    for m in (field.metadata if field is not None else []):
        if isinstance(m, (at.Ge, at.Gt)):
            low = ("[" if isinstance(m, at.Ge) else "(", m.ge if isinstance(m, at.Ge) else m.gt)
        if isinstance(m, (at.Le, at.Lt)):
            high = ("]" if isinstance(m, at.Le) else ")", m.le if isinstance(m, at.Le) else m.lt)
    if low and high:
        return f"in {low[0]}{_num(low[1])}, {_num(high[1])}{high[0]}"
    if low == ("(", 0):
        return "a positive finite number"
    if low == ("[", 0) and not high:
        return "0 or a positive finite number"
    word = {"greater_than": "greater than", "greater_than_equal": "at least", "less_than": "less than",
            "less_than_equal": "at most"}[kind]
    return f"{word} {_num(next(iter(ctx.values())))}"


def _sentence(cls: type[BaseModel], err: ValidationError, task: str) -> str:
    """The first error of a pydantic validation as one sentence naming the key and what it allows."""
    e = err.errors()[0]
    loc = tuple(e["loc"])
    key = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc).replace(".[", "[")
    got = e.get("input")
    kind, ctx = e["type"], e.get("ctx") or {}
    if kind == "extra_forbidden":
        where = ".".join(str(p) for p in loc[:-1])
        allowed = _allowed_keys(cls, loc[:-1])
        owner = f" of a {task} config" if where in ("model", "loss", "disc", "") else ""
        return (f"unknown key {key!r} in {where or 'the top level'}{owner}; allowed there: "
                f"{', '.join(allowed)}.")
    if kind == "literal_error":
        return f"{key} must be {ctx.get('expected')}, not {got!r}."
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        hint = f"; fix it in the config or with --set {key}=VALUE"
        hint = "" if any(isinstance(p, int) for p in loc) else hint
        return f"{key} must be {_range(cls, loc, kind, ctx)}, got {got!r}{hint}."
    if kind in ("too_short", "too_long"):
        return f"{key} takes {ctx.get('min_length', ctx.get('max_length'))} values, got {got!r}."
    if kind == "value_error":
        return f"{key} must be {ctx.get('error')}."
    if kind == "missing":
        return f"{key} is required."
    if kind == "finite_number":
        return f"{key} must be {_range(cls, loc, 'greater_than', {'gt': 0})}, not {got!r}."
    what = _KIND.get(kind)
    if what:
        return f"{key} must be {what}, not {got!r}."
    return f"{key}: {e['msg'][0].lower()}{e['msg'][1:]} (got {got!r})."


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


#: keys of the model section that only a config resolved by bfvr's old flat schema holds all of (each is
#: owned by a different task): such a config may carry keys its task does not own
_FLAT_DUMP_MARKERS = ("nf", "init_grow", "parsing_weights")


def _drop_foreign(raw: dict[str, Any], cls: type[TrainConfig]) -> None:
    """A config resolved by older bfvr (one flat schema: every task's keys): drop what its task does not
    own (the task never read those keys)."""
    for key in [k for k in raw if k not in cls.model_fields]:
        del raw[key]
    for name, field in cls.model_fields.items():
        sub, ann = raw.get(name), field.annotation
        if isinstance(sub, dict) and isinstance(ann, type) and issubclass(ann, BaseModel):
            for key in [k for k in sub if k not in ann.model_fields]:
                del sub[key]


def config_class(raw: dict[str, Any]) -> type[TrainConfig]:
    """The config class of the task `raw` names (its `task:` key, or for older configs its `stage:`)."""
    from bfvr.train.tasks import STAGE_TASKS, TASKS, task_config

    task = raw.get("task")
    if task is None:
        stage = raw.get("stage", "stage1")
        if stage not in STAGE_TASKS:
            raise ConfigError(f"stage must be {' or '.join(map(repr, STAGE_TASKS))}, not {stage!r} (or name "
                              f"the task with task: one of {', '.join(TASKS)}).")
        task = STAGE_TASKS[stage]
    if not isinstance(task, str) or task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}.")
    raw["task"] = task
    return task_config(task)


def config_from_dict(raw: dict[str, Any], overrides: list[str] | None = None) -> TrainConfig:
    """The typed, checked config of a mapping (a parsed YAML file) after `section.key=value` overrides."""
    raw = yaml.safe_load(yaml.safe_dump(raw)) if raw else {}  # deep copy through YAML types
    for item in overrides or []:
        _apply_override(raw, item)
    cls = config_class(raw)
    model = raw.get("model")
    if isinstance(model, dict) and all(k in model for k in _FLAT_DUMP_MARKERS):
        _drop_foreign(raw, cls)
    for key in cls.SECTIONS:
        if key in raw and raw[key] is None:
            raw[key] = {}  # an empty section (`loss:` with nothing under it) = the defaults
    try:
        cfg = cls.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_sentence(cls, e, str(raw["task"]))) from None
    if cfg.name is None:
        cfg.name = cfg.task_name.replace("-", "_")
    if cfg.out_dir is None:
        cfg.out_dir = f"runs/{cfg.name}"
    cfg.check()
    return cfg


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML training config, apply `section.key=value` overrides, check it, return it typed."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}; pass an existing YAML file (see configs/).")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = "it is not UTF-8 text" if isinstance(e, UnicodeDecodeError) else e.strerror or type(e).__name__
        raise ConfigError(f"cannot read the config {p} ({why}); pass a YAML text file (see configs/).") \
            from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{p} is not valid YAML: {' '.join(str(e).split())}") from None
    if raw is None or raw == {}:  # an empty file, only comments or `{}`: the defaults are no run of yours
        raise ConfigError(f"the config {p} is empty (it holds no settings); write the run's settings there, "
                          "e.g. start from a copy of one in configs/.")
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

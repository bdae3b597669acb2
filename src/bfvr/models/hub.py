"""The one place that maps a model name to a class, a configuration and weights.

`load_model(name, ...)` returns a ready `ClipModel` (see `bfvr.engine.base`). Weight files (download,
cache, checksums, safe loading) are handled by `bfvr.models.weights`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bfvr.engine.base import ClipModel, IdentityModel
from bfvr.errors import ConfigError, ModelError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    builder: Callable[..., ClipModel]
    #: name of the entry in `bfvr.models.weights.WEIGHTS`; None = the model needs no weights
    weights: str | None = None
    #: constructor arguments of the network (shown by `bfvr models`, used by the builder)
    config: Mapping[str, Any] = field(default_factory=dict)
    #: builds the bare network: ``net(config, device=None, **net_options)`` (``device="meta"``: shapes only)
    net: Callable[..., torch.nn.Module] | None = None
    #: maps a Hugging Face ``config.json`` that comes with the weights to `config`
    #: (None: such files are ignored)
    hf_config: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None


def _build_identity(device: torch.device, **_: object) -> ClipModel:
    return IdentityModel(device)


# ------------------------------------------------------------------------------------------------ STC

def build_stc_net(config: Mapping[str, Any], *, official_residual: bool = True,
                  device: torch.device | str | None = None) -> torch.nn.Module:
    """The BFVR-STC stage-II network for `config` (use ``device="meta"`` for shapes only)."""
    from bfvr.models.stc.stage2 import STCStage2

    if device is None:
        return STCStage2(**config, official_residual=official_residual)
    with torch.device(device):
        return STCStage2(**config, official_residual=official_residual)


def expected_shapes(name: str, config: Mapping[str, Any] | None = None,
                    **net_options: Any) -> dict[str, tuple[int, ...]]:
    """Exact state_dict keys and shapes the network of model `name` loads (built on the meta device)."""
    spec = get_spec(name)
    if spec.weights is None or spec.net is None:
        raise ModelError(f"model '{name}' has no weights to check.")
    net = spec.net(spec.config if config is None else config, device="meta", **net_options)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def net_config(name: str, path: str | Path | None = None, *,
               hf_beside: str | Path | None = None) -> Mapping[str, Any]:
    """The constructor arguments of model `name`'s network: those stored as ``net_config`` in the metadata of
    the .safetensors file `path` (`bfvr export` of a network trained at other sizes), those of the Hugging
    Face ``config.json`` beside `path` (when the model reads such files), else the spec's."""
    from bfvr.models import weights as W

    spec = get_spec(name)
    stored = _safetensors_meta(Path(path), "net_config") if path is not None else None
    if stored is not None:  # our own export of a network trained at other sizes (`bfvr export`)
        try:
            config = json.loads(stored)
            if not isinstance(config, dict):
                raise TypeError(f"a {type(config).__name__}, not a mapping of sizes")
            bad = _negative(config)
            if bad is not None:
                raise ValueError(f"{bad} is negative")
            spec.net(config, device="meta")
            return config
        except (ValueError, TypeError, RuntimeError) as e:  # RuntimeError: torch refusing a size
            raise ModelError(f"the net_config stored in {path} does not describe a '{name}' network "
                             f"({' '.join(str(e).split())[:200]}).") from None
    if path is not None and spec.hf_config is not None:
        hf = W.read_hf_config(hf_beside if hf_beside is not None else path)
        if hf is not None:
            try:
                return dict(spec.hf_config(hf))
            except (KeyError, TypeError, ValueError) as e:
                raise ModelError(f"the config.json beside {path} does not describe a '{name}' "
                                 f"network ({e}).") from None
    return spec.config


def _negative(value: Any, where: str = "") -> str | None:
    """The first negative number inside `value` (nested mappings and lists), named by its place, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return f"{where or 'a value'} = {value}" if value < 0 else None
    items = (value.items() if isinstance(value, Mapping)
             else enumerate(value) if isinstance(value, list) else ())
    for k, v in items:
        bad = _negative(v, f"{where}[{k}]" if isinstance(k, int) else f"{where}.{k}" if where else str(k))
        if bad is not None:
            return bad
    return None


def check_weights_file(entry_name: str, path: str | Path, *, like: str | Path | None = None,
                       what: str | None = None) -> None:
    """The structural check a downloaded file passes before it is cached (`bfvr.models.weights.fetch`): it
    loads safely as a state_dict (under the weights entry's key) and, for every model that loads this entry,
    has exactly the keys, shapes and floating-point tensors of its network (`load_net`'s check). `like`:
    where the file will be kept (its Hugging Face config.json is looked for beside it); `what` names the file
    in the error."""
    from bfvr.models import weights as W

    path = Path(path)
    entry = W.get_entry(entry_name)
    what = what or f"the weights in {path}"
    try:
        state = W.load_state_dict(path, key=entry.key)
    except ModelError as e:
        raise ModelError(str(e).replace(str(path), what)) from None
    for spec in MODELS.values():
        if spec.weights != entry_name or spec.net is None:
            continue
        config = net_config(spec.name, path, hf_beside=like)
        net = spec.net(config, device="meta")  # shapes only
        cfg = ", ".join(f"{k}={v}" for k, v in config.items())
        W.check_state_dict(state, {k: tuple(v.shape) for k, v in net.state_dict().items()}, what=what,
                           model=f"'{spec.name}' ({cfg})" if cfg else f"'{spec.name}'")
        W.check_dtypes(state, {k: v.dtype for k, v in net.state_dict().items()}, what=what)


def load_net(name: str, *, weights: str | os.PathLike | None = None, offline: bool = False,
             sha256: str | None = None, progress: bool = True, path: str | os.PathLike | None = None,
             **net_options: Any) -> tuple[torch.nn.Module, Path]:
    """The one weights path of every model: find the file (`path` as found, else `weights` = --weights,
    else the bundled file or the cache, downloading from the entry's URLs unless `offline`) -> safe load
    (safetensors, or torch.load(weights_only=True)) -> the state_dict under the entry's key (``params_ema``
    / ``params`` / flat) -> exact key and shape check against the network built on the meta device, naming
    the mismatches -> strict assign. Returns (the fp32 network in eval mode on the CPU, the weights file)."""
    from bfvr.models import weights as W

    spec = get_spec(name)
    if spec.weights is None or spec.net is None:
        raise ModelError(f"model '{name}' has no weights to load.")
    entry = W.get_entry(spec.weights)
    if path is None:
        path = W.resolve(spec.weights, weights=weights, offline=offline, sha256=sha256, progress=progress)
    path = Path(path)
    state = W.load_state_dict(path, key=entry.key)
    config = net_config(name, path)
    net = spec.net(config, device="meta", **net_options)  # shapes only: no random init of big networks
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    cfg = ", ".join(f"{k}={v}" for k, v in config.items())
    W.check_state_dict(state, expected, what=f"the weights in {path}",
                       model=f"'{name}' ({cfg})" if cfg else f"'{name}'")
    W.check_dtypes(state, {k: v.dtype for k, v in net.state_dict().items()}, what=f"the weights in {path}")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    net.load_state_dict(state, strict=True, assign=True)
    del state
    missing = [k for k, t in [*net.named_parameters(), *net.named_buffers()] if t.is_meta]
    # a tensor that is not in the state_dict (a non-persistent buffer the network must build itself)
    if missing:
        raise ModelError(f"internal error: '{name}' has tensors the weights do not set: "
                         f"{', '.join(missing[:4])}.")
    return net.eval(), path


def _safetensors_meta(path: Path, key: str) -> str | None:
    """A value stored in a .safetensors file's metadata (our own checkpoints), else None."""
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get(key)
    except Exception:  # unreadable: load_state_dict reports it properly
        return None


def _safetensors_flag(path: Path, key: str) -> bool | None:
    """A boolean stored in a .safetensors file's metadata (our own checkpoints), else None."""
    value = _safetensors_meta(path, key)
    return None if value is None else value.strip().lower() in ("1", "true", "yes")


def _stc_builder(name: str) -> Callable[..., ClipModel]:
    def build(device: torch.device, weights: str | None = None, precision: str = "fp32",
              offline: bool = False, sha256: str | None = None, progress: bool = True,
              clip_len: int = 24, overlap: int = 8, output_map: str = "clamp",
              official_residual: bool | None = None, **unknown: object) -> ClipModel:
        from bfvr.models import weights as W
        from bfvr.models.stc.clip import STCClipModel

        if unknown:
            raise ConfigError(f"model '{name}' has no option {', '.join(sorted(unknown))}; it takes "
                              "clip_len, overlap, output_map, official_residual.")
        path = W.resolve(name, weights=weights, offline=offline, sha256=sha256, progress=progress)
        if official_residual is None:
            # official checkpoints (.pth) were trained with the official residual; ours (.safetensors)
            # use the corrected one unless their metadata says official_residual=true
            flag = _safetensors_flag(path, "official_residual")
            official_residual = (path.suffix != ".safetensors") if flag is None else flag
        net, path = load_net(name, path=path, official_residual=official_residual)
        return STCClipModel(net, name=name, clip_len=clip_len, overlap=overlap, canvas=(512, 512),
                            device=device, precision=precision, output_map=output_map)

    return build


# ------------------------------------------------------------------------------------------- BFVR-Lite

def build_lite_net(config: Mapping[str, Any], *, device: torch.device | str | None = None) -> torch.nn.Module:
    """The BFVR-Lite network for `config` (``device="meta"`` for shapes only)."""
    from bfvr.models.lite import LiteNet

    with torch.device(device or "cpu"):
        return LiteNet(**config)


def _build_lite(device: torch.device, weights: str | None = None, precision: str = "fp32",
                offline: bool = False, sha256: str | None = None, progress: bool = True, clip_len: int = 24,
                overlap: int = 4, **unknown: object) -> ClipModel:
    from bfvr.models.lite.clip import LiteClipModel

    if unknown:
        raise ConfigError(f"model 'bfvr-lite' has no option {', '.join(sorted(unknown))}; it takes clip_len, "
                          "overlap.")
    net, _ = load_net("bfvr-lite", weights=weights, offline=offline, sha256=sha256, progress=progress)
    return LiteClipModel(net, clip_len=clip_len, overlap=overlap, device=device, precision=precision,
                         multiple=net.multiple)


# -------------------------------------------------------------------------------------------- DicFace

def build_dicface_net(config: Mapping[str, Any], *, device: torch.device | str | None = None,
                      sampling: str = "official", seed: int | None = None) -> torch.nn.Module:
    """The DicFace network for `config` (``device="meta"`` for shapes only)."""
    from bfvr.models.dicface import DicFace

    with torch.device(device or "cpu"):
        return DicFace(**config, sampling=sampling, seed=seed)


def _dicface_hf_config(cfg: Mapping[str, Any]) -> Mapping[str, Any]:
    """A ``config.json`` beside DicFace weights: the `DicFace` constructor arguments it names."""
    import inspect

    from bfvr.models.dicface import DicFace

    known = set(inspect.signature(DicFace).parameters) - {"sampling", "seed"}
    out = {k: v for k, v in cfg.items() if k in known}
    if not out:
        raise ValueError("it names no DicFace constructor argument")
    return {**_DICFACE, **out}


def _dicface_builder(name: str, task: str) -> Callable[..., ClipModel]:
    def build(device: torch.device, weights: str | None = None, precision: str = "fp32",
              offline: bool = False, sha256: str | None = None, progress: bool = True, keep: int = 1,
              window: int = 5,
              sampling: str | None = None, seed: int | None = 0, w: float = 1.0, adain: bool = False,
              mask: Any = None, incremental: bool = True, fp32_transformer: bool = True,
              **unknown: object) -> ClipModel:
        from bfvr.models.dicface.clip import DEFAULT_SAMPLING, DicFaceClipModel

        if unknown:
            raise ConfigError(f"model '{name}' has no option {', '.join(sorted(unknown))}; "
                              "it takes keep, window, sampling, seed, w, adain, incremental, "
                              f"fp32_transformer{', mask' if task == 'inpaint' else ''}.")
        if task == "inpaint" and mask is None:  # before loading 465 MB of weights
            raise ConfigError(f"{name} needs the mask of the missing pixels: --mask mask.png "
                              "(white = missing; or a mask video / folder with one mask per frame).")
        net, _ = load_net(name, weights=weights, offline=offline, sha256=sha256, progress=progress)
        return DicFaceClipModel(net, name=name, task=task, window=window, keep=keep, device=device,
                                precision=precision, w=w, adain=adain, sampling=sampling or DEFAULT_SAMPLING,
                                seed=seed, mask=mask, incremental=incremental,
                                fp32_transformer=fp32_transformer)

    return build


_DICFACE = {"dim_embed": 512, "n_head": 8, "n_layers": 9, "codebook_size": 1024,
            "connect_list": ("32", "64", "128", "256"), "frame_length": 5}

# ------------------------------------------------------------------------------------------- PGTFormer

def build_pgtformer_net(config: Mapping[str, Any], *,
                        device: torch.device | str | None = None) -> torch.nn.Module:
    """The PGTFormer network for `config` (``device="meta"`` for shapes only)."""
    from bfvr.models.pgtformer import PGTFormer

    with torch.device(device or "cpu"):
        return PGTFormer(**config)


def _pgtformer_hf_config(hf: Mapping[str, Any]) -> Mapping[str, Any]:
    from bfvr.models.pgtformer import config_from_official

    return config_from_official(hf)


def _build_pgtformer(device: torch.device, weights: str | None = None, precision: str = "fp32",
                     offline: bool = False, sha256: str | None = None, progress: bool = True, keep: int = 1,
                     w: float = 1.0, **unknown: object) -> ClipModel:
    from bfvr.models.pgtformer.clip import PGTFormerClipModel

    if unknown:
        raise ConfigError(f"model 'pgtformer' has no option {', '.join(sorted(unknown))}; it takes keep "
                          "(1 = official 3-frame schedule, 3 = fast), w (fidelity weight, 0..1).")
    net, _ = load_net("pgtformer", weights=weights, offline=offline, sha256=sha256, progress=progress)
    return PGTFormerClipModel(net, keep=int(keep), w=float(w), device=device, precision=precision)


def _pgtformer_config() -> Mapping[str, Any]:
    from bfvr.models.pgtformer.net import OFFICIAL_CONFIG

    return OFFICIAL_CONFIG


_LITE = {"widths": (64, 96, 128), "enc_blocks": (1, 2, 4), "dec_blocks": (2, 2), "temporal": True}
_STC_BFVR = {"n_head": 2, "n_layers": 9, "codebook_size": 1024, "dim_embd": 256}
_STC_DEFLICKER = {"n_head": 4, "n_layers": 6, "codebook_size": 1024, "dim_embd": 256}

MODELS: dict[str, ModelSpec] = {
    "bfvr-lite": ModelSpec("bfvr-lite", "BFVR-Lite: compact temporal U-Net trained by this project, "
                           "fast on a CPU; the default (weights ship with bfvr)", _build_lite,
                           weights="bfvr-lite", config=_LITE, net=build_lite_net),
    "identity": ModelSpec("identity", "frames pass through unchanged (tests the pipeline)",
                          _build_identity),
    "pgtformer": ModelSpec("pgtformer", "PGTFormer (IJCAI 2024): parsing-guided 3-frame transformer for "
                           "faces that are not aligned, official weights", _build_pgtformer,
                           weights="pgtformer", config=_pgtformer_config(), net=build_pgtformer_net,
                           hf_config=_pgtformer_hf_config),
    "stc": ModelSpec("stc", "BFVR-STC (CVPR 2025): general face video restoration, official weights",
                     _stc_builder("stc"), weights="stc", config=_STC_BFVR, net=build_stc_net),
    "stc-deflicker": ModelSpec("stc-deflicker", "BFVR-STC: brightness de-flickering, official weights",
                               _stc_builder("stc-deflicker"), weights="stc-deflicker", config=_STC_DEFLICKER,
                               net=build_stc_net),
    "stc-deflicker-sd": ModelSpec("stc-deflicker-sd", "BFVR-STC: pixel de-flickering, official weights",
                                  _stc_builder("stc-deflicker-sd"), weights="stc-deflicker-sd",
                                  config=_STC_DEFLICKER, net=build_stc_net),
    "dicface": ModelSpec("dicface", "DicFace (ICCV 2025): face video restoration, Dirichlet code mixtures, "
                         "official weights", _dicface_builder("dicface", "restore"), weights="dicface",
                         config=_DICFACE, net=build_dicface_net, hf_config=_dicface_hf_config),
    "dicface-inpaint": ModelSpec("dicface-inpaint", "DicFace: face video inpainting "
                                 "(--mask, white = missing), official weights",
                                 _dicface_builder("dicface-inpaint", "inpaint"),
                                 weights="dicface-inpaint", config=_DICFACE, net=build_dicface_net,
                                 hf_config=_dicface_hf_config),
    "dicface-color": ModelSpec("dicface-color", "DicFace: face video colourisation (input made grey first), "
                               "official weights", _dicface_builder("dicface-color", "color"),
                               weights="dicface-color", config=_DICFACE, net=build_dicface_net,
                               hf_config=_dicface_hf_config),
}


def available_models() -> list[ModelSpec]:
    return list(MODELS.values())


def get_spec(name: str) -> ModelSpec:
    spec = MODELS.get(name)
    if spec is None:
        raise ModelError(f"unknown model '{name}'; choose one of: {', '.join(MODELS)}.")
    return spec


def load_model(name: str, *, device: torch.device | str = "cpu", weights: str | None = None,
               precision: str = "fp32", offline: bool = False, sha256: str | None = None,
               progress: bool = True, **options: Any) -> ClipModel:
    """Build model `name` on `device` with weights from `weights` (a local file) or the cache.

    `offline` never touches the network; `sha256` is checked against the weights file; `options`
    are model settings (STC: ``clip_len``, ``overlap``, ``output_map``, ``official_residual``).
    ``backend="onnxruntime"`` runs the `bfvr export` ONNX file `weights` instead (options: ``clip_len``,
    ``overlap``).
    """
    spec = get_spec(name)
    backend = options.pop("backend", "torch")
    if backend == "onnxruntime":
        from bfvr.models.onnx import OnnxClipModel

        unknown = set(options) - {"clip_len", "overlap"}
        if unknown:
            raise ConfigError(f"the onnxruntime backend has no option {', '.join(sorted(unknown))}.")
        if weights is None:
            raise ConfigError("--backend onnxruntime needs the exported model: --weights model.onnx "
                              "(made by `bfvr export --format onnx`).")
        return OnnxClipModel(weights, expect=name, **options)
    if backend != "torch":
        raise ConfigError(f"unknown backend '{backend}'; choose torch or onnxruntime.")
    if spec.weights is None:
        if weights is not None:
            raise ConfigError(f"model '{name}' takes no weights; drop --weights.")
        return spec.builder(device=torch.device(device), weights=weights, precision=precision,
                            offline=offline, **options)
    return spec.builder(device=torch.device(device), weights=weights, precision=precision, offline=offline,
                        sha256=sha256, progress=progress, **options)

"""The one place that maps a model name to a class, a configuration and weights, for every method alike.

The names come from the methods (`bfvr.models.registry`: built-in and plugin methods, entry-point group
``bfvr.methods``; each declares its `ModelSpec`s in its own folder). `load_model(name, ...)` returns a ready
`ClipModel` (see `bfvr.engine.base`); `load_net` is the one weights path of every model. Weight files
(download, cache, checksums, safe loading) are handled by `bfvr.models.weights`. What a model accepts is
asked of its spec (`supports`, `require`), never of its name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from bfvr.engine.base import ClipModel
from bfvr.errors import ConfigError, ModelError
from bfvr.models.registry import MODELS, PASTE_MASKS
from bfvr.models.spec import CAPABILITY_FLAGS, PRECISIONS, ModelSpec
from bfvr.models.weights import check_weights_file, net_config, safetensors_flag  # noqa: F401  (re-exported)

__all__ = ["MODELS", "ModelSpec", "available_models", "get_spec", "load_model", "load_net", "expected_shapes",
           "net_config", "check_weights_file", "supports", "require", "paste_mask_factory",
           "check_paste_mask"]


def expected_shapes(name: str, config: Mapping[str, Any] | None = None,
                    **net_options: Any) -> dict[str, tuple[int, ...]]:
    """Exact state_dict keys and shapes the network of model `name` loads (built on the meta device)."""
    spec = get_spec(name)
    if spec.weights is None or spec.net is None:
        raise ModelError(f"model '{name}' has no weights to check.")
    net = spec.net(spec.config if config is None else config, device="meta", **net_options)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


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


def available_models() -> list[ModelSpec]:
    """Every model of every method, the default model first."""
    from bfvr.models import DEFAULT_MODEL

    specs = list(MODELS.values())
    return sorted(specs, key=lambda s: s.name != DEFAULT_MODEL)  # stable: the methods' order otherwise


def get_spec(name: str) -> ModelSpec:
    spec = MODELS.get(name)
    if spec is None:
        names = ", ".join(s.name for s in available_models())
        raise ModelError(f"unknown model '{name}'; choose one of: {names}.")
    return spec


# ------------------------------------------------------------------------------------------ capabilities

def supports(name: str, capability: str) -> bool:
    """Whether model `name` declares `capability` (a key of `bfvr.models.spec.CAPABILITY_FLAGS`)."""
    return capability in get_spec(name).capabilities


def models_with(capability: str) -> list[str]:
    """The names of the models that declare `capability`."""
    return [s.name for s in available_models() if capability in s.capabilities]


def require(name: str, capability: str, flag: str | None = None) -> None:
    """A `ConfigError` in one sentence naming the models that take `flag` unless model `name` does."""
    if supports(name, capability):
        return
    flag = flag or CAPABILITY_FLAGS.get(capability, capability)
    able = models_with(capability)
    where = f"--model {' or '.join(able)}" if able else "no installed model"
    raise ConfigError(f"{flag} goes with {where}; model '{name}' does not take it.")


def paste_mask_factory(kind: str, weights: str | os.PathLike | None = None) -> Callable | None:
    """``factory(envelope) -> mask function`` of the paste mask `kind` a method offers (e.g. face parsing
    with its network read from `weights` or its cached weights), or None when no installed method offers
    it."""
    offer = PASTE_MASKS.get(kind)
    if offer is None:
        return None
    return lambda envelope: offer.load(envelope, weights)


def check_paste_mask(name: str, kind: str, weights: str | os.PathLike | None = None) -> None:
    """Before anything runs: model `name` can paste with mask `kind` (its own network gives it, or a method
    offers it and its weights are here), else a `ConfigError` in one sentence."""
    if kind in get_spec(name).paste_masks:
        return
    offer = PASTE_MASKS.get(kind)
    if offer is None:
        raise ConfigError(f"--paste-mask {kind} needs a method that offers it, and no installed method does; "
                          "use --paste-mask box.")
    offer.check(weights)


def load_model(name: str, *, device: torch.device | str = "cpu", weights: str | None = None,
               precision: str = "fp32", offline: bool = False, sha256: str | None = None,
               progress: bool = True, **options: Any) -> ClipModel:
    """Build model `name` on `device` with weights from `weights` (a local file) or the cache.

    `offline` never touches the network; `sha256` is checked against the weights file; `options`
    are model settings (STC: ``clip_len``, ``overlap``, ``output_map``, ``official_residual``).
    ``backend="onnxruntime"`` runs the `bfvr export` ONNX file `weights` instead (options: ``clip_len``,
    ``overlap``, ``temporal_filter``).
    """
    spec = get_spec(name)
    if precision in PRECISIONS and precision not in spec.precisions:
        raise ConfigError(f"model '{name}' runs at {', '.join(spec.precisions)}, not {precision}.")
    backend = options.pop("backend", "torch")
    if backend == "onnxruntime":
        from bfvr.models.onnx import OnnxClipModel

        require(name, "onnx", "--backend onnxruntime")
        unknown = set(options) - {"clip_len", "overlap", "temporal_filter"}
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

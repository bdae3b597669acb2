"""DicFace as a bfvr method: restoration, inpainting and colourisation models (the authors' Hugging Face
weights), CodeFormer's weights that training starts from, and its training task."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bfvr.models.spec import Method, ModelSpec, reject_unknown_options
from bfvr.models.weights import WeightsEntry

#: the DicFace authors' Hugging Face model repo (`fudan-generative-ai/DicFace_model`), folder `CodeFormer/`
DICFACE_URL = "https://huggingface.co/fudan-generative-ai/DicFace_model/resolve/main/CodeFormer"
CONFIG = {"dim_embed": 512, "n_head": 8, "n_layers": 9, "codebook_size": 1024,
          "connect_list": ("32", "64", "128", "256"), "frame_length": 5}


def build_net(config: Mapping[str, Any], *, device: Any = None, sampling: str = "official",
              seed: int | None = None) -> Any:
    """The DicFace network for `config` (``device="meta"`` for shapes only)."""
    import torch

    from bfvr.models.dicface import DicFace

    with torch.device(device or "cpu"):
        return DicFace(**config, sampling=sampling, seed=seed)


def hf_config(cfg: Mapping[str, Any]) -> Mapping[str, Any]:
    """A ``config.json`` beside DicFace weights: the `DicFace` constructor arguments it names."""
    import inspect

    from bfvr.models.dicface import DicFace

    known = set(inspect.signature(DicFace).parameters) - {"sampling", "seed"}
    out = {k: v for k, v in cfg.items() if k in known}
    if not out:
        raise ValueError("it names no DicFace constructor argument")
    return {**CONFIG, **out}


def _builder(name: str, task: str) -> Callable[..., Any]:
    def build(device: Any, weights: str | None = None, precision: str = "fp32", offline: bool = False,
              sha256: str | None = None, progress: bool = True, keep: int = 1, window: int = 5,
              sampling: str | None = None, seed: int | None = 0, w: float = 1.0, adain: bool = False,
              mask: Any = None, incremental: bool = True, fp32_transformer: bool = True,
              **unknown: object) -> Any:
        from bfvr.errors import ConfigError
        from bfvr.models.dicface.clip import DEFAULT_SAMPLING, DicFaceClipModel
        from bfvr.models.hub import load_net

        reject_unknown_options(name, unknown, "keep, window, sampling, seed, w, adain, incremental, "
                               f"fp32_transformer{', mask' if task == 'inpaint' else ''}")
        if task == "inpaint" and mask is None:  # before loading 465 MB of weights
            raise ConfigError(f"{name} needs the mask of the missing pixels: --mask mask.png "
                              "(white = missing; or a mask video / folder with one mask per frame).")
        net, _ = load_net(name, weights=weights, offline=offline, sha256=sha256, progress=progress)
        return DicFaceClipModel(net, name=name, task=task, window=window, keep=keep, device=device,
                                precision=precision, w=w, adain=adain, sampling=sampling or DEFAULT_SAMPLING,
                                seed=seed, mask=mask, incremental=incremental,
                                fp32_transformer=fp32_transformer)

    return build


def _check_mask(options: Mapping[str, Any], info: Any, frames: int | None = None) -> None:
    """The mask's size and frame count against the input video's, before the model is loaded."""
    mask = options.get("mask")
    if mask is None or info is None:
        return
    from bfvr.models.dicface.tasks import FrameMask

    FrameMask(mask).check(info.width, info.height, frames)


def _spec(name: str, description: str, task: str) -> ModelSpec:
    caps = {"keep", "sampling"} | ({"mask"} if task == "inpaint" else set())
    return ModelSpec(name, description, _builder(name, task), weights=name, config=CONFIG, net=build_net,
                     hf_config=hf_config, capabilities=frozenset(caps), crop_mode="align",
                     check_options=_check_mask if task == "inpaint" else None)


METHOD = Method(
    "dicface",
    description="DicFace (ICCV 2025): Dirichlet-constrained code mixtures",
    models=(
        _spec("dicface", "DicFace (ICCV 2025): face video restoration, Dirichlet code mixtures, official "
              "weights", "restore"),
        _spec("dicface-inpaint", "DicFace: face video inpainting (--mask, white = missing), official weights",
              "inpaint"),
        _spec("dicface-color", "DicFace: face video colourisation (input made grey first), official weights",
              "color"),
    ),
    weights=(
        # 930 MB each (params + params_ema); the network loads params_ema
        WeightsEntry("dicface", "bfr_100k.pth", (f"{DICFACE_URL}/bfr_100k.pth",),
                     mirror_env="BFVR_DICFACE_MIRROR",
                     description="DicFace, blind face video restoration (100k iterations)"),
        WeightsEntry("dicface-inpaint", "inpainting_100k.pth", (f"{DICFACE_URL}/inpainting_100k.pth",),
                     mirror_env="BFVR_DICFACE_MIRROR",
                     description="DicFace, face video inpainting (100k iterations)"),
        WeightsEntry("dicface-color", "color_100k.pth", (f"{DICFACE_URL}/color_100k.pth",),
                     mirror_env="BFVR_DICFACE_MIRROR",
                     description="DicFace, face video colourisation (100k iterations)"),
        # what DicFace training starts from (loaded non-strictly: CodeFormer's own layout), 377 MB
        WeightsEntry("dicface-codeformer", "codeformer.pth", (f"{DICFACE_URL}/codeformer.pth",),
                     mirror_env="BFVR_DICFACE_MIRROR",
                     description="CodeFormer weights, the initialisation of DicFace training "
                                 "(not a video model)"),
    ),
    tasks={"dicface": "bfvr.train.dicface:DicFaceTask"},
)

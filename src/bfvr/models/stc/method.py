"""BFVR-STC as a bfvr method: its model names (general restoration and two de-flickering checkpoints), their
weights (the authors' GitHub release) and its training tasks (Stage I, Stage II)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bfvr.models.spec import Method, ModelSpec, reject_unknown_options
from bfvr.models.weights import WeightsEntry

RELEASE_URL = "https://github.com/Dixin-Lab/BFVR-STC/releases/download/init"
BFVR = {"n_head": 2, "n_layers": 9, "codebook_size": 1024, "dim_embd": 256}
DEFLICKER = {"n_head": 4, "n_layers": 6, "codebook_size": 1024, "dim_embd": 256}


def build_net(config: Mapping[str, Any], *, official_residual: bool = True, device: Any = None) -> Any:
    """The BFVR-STC stage-II network for `config` (use ``device="meta"`` for shapes only)."""
    import torch

    from bfvr.models.stc.stage2 import STCStage2

    if device is None:
        return STCStage2(**config, official_residual=official_residual)
    with torch.device(device):
        return STCStage2(**config, official_residual=official_residual)


def _builder(name: str) -> Callable[..., Any]:
    def build(device: Any, weights: str | None = None, precision: str = "fp32", offline: bool = False,
              sha256: str | None = None, progress: bool = True, clip_len: int = 24, overlap: int = 8,
              output_map: str = "clamp", official_residual: bool | None = None, **unknown: object) -> Any:
        from bfvr.models import weights as W
        from bfvr.models.hub import load_net, safetensors_flag
        from bfvr.models.stc.clip import STCClipModel

        reject_unknown_options(name, unknown, "clip_len, overlap, output_map, official_residual")
        path = W.resolve(name, weights=weights, offline=offline, sha256=sha256, progress=progress)
        if official_residual is None:
            # official checkpoints (.pth) were trained with the official residual; ours (.safetensors)
            # use the corrected one unless their metadata says official_residual=true
            flag = safetensors_flag(path, "official_residual")
            official_residual = (path.suffix != ".safetensors") if flag is None else flag
        net, path = load_net(name, path=path, official_residual=official_residual)
        return STCClipModel(net, name=name, clip_len=clip_len, overlap=overlap, canvas=(512, 512),
                            device=device, precision=precision, output_map=output_map)

    return build


def _spec(name: str, description: str, config: Mapping[str, Any]) -> ModelSpec:
    return ModelSpec(name, description, _builder(name), weights=name, config=config, net=build_net,
                     capabilities=frozenset({"overlap", "onnx"}), crop_mode="proportion")


METHOD = Method(
    "stc",
    description="BFVR-STC (CVPR 2025): spatial-temporal codebooks",
    models=(
        _spec("stc", "BFVR-STC (CVPR 2025): general face video restoration, official weights", BFVR),
        _spec("stc-deflicker", "BFVR-STC: brightness de-flickering, official weights", DEFLICKER),
        _spec("stc-deflicker-sd", "BFVR-STC: pixel de-flickering, official weights", DEFLICKER),
    ),
    weights=(
        WeightsEntry("stc", "ckpt-bfvr.pth", (f"{RELEASE_URL}/ckpt-bfvr.pth",), mirror_env="BFVR_STC_MIRROR",
                     description="BFVR-STC stage II, general restoration (2 heads, 9 layers)"),
        # the release file name is misspelt ("defilcker"); keep it, it is the URL
        WeightsEntry("stc-deflicker", "ckpt-defilcker.pth", (f"{RELEASE_URL}/ckpt-defilcker.pth",),
                     mirror_env="BFVR_STC_MIRROR",
                     description="BFVR-STC stage II, brightness de-flickering (4 heads, 6 layers)"),
        WeightsEntry("stc-deflicker-sd", "ckpt-deflickersd.pth", (f"{RELEASE_URL}/ckpt-deflickersd.pth",),
                     mirror_env="BFVR_STC_MIRROR",
                     description="BFVR-STC stage II, pixel de-flickering (4 heads, 6 layers)"),
    ),
    tasks={"stc-stage1": "bfvr.train.stc:Stage1Task", "stc-stage2": "bfvr.train.stc:Stage2Task"},
    stage_aliases={"stage1": "stc-stage1", "stage2": "stc-stage2"},  # configs from before `task:`
)

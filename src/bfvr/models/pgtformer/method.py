"""PGTFormer as a bfvr method: its model (the authors' Hugging Face weights), its four training stages and the
face-parsing paste mask (``--paste-mask parsing``) its BiSeNet offers to any model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bfvr.models.spec import Method, ModelSpec, PasteMask, reject_unknown_options
from bfvr.models.weights import WeightsEntry

#: the PGTFormer authors' Hugging Face model (a hub mixin folder: config.json + model.safetensors)
PGTFORMER_HF = "https://huggingface.co/kepeng/pgtformer-base/resolve/main"


def build_net(config: Mapping[str, Any], *, device: Any = None) -> Any:
    """The PGTFormer network for `config` (``device="meta"`` for shapes only)."""
    import torch

    from bfvr.models.pgtformer import PGTFormer

    with torch.device(device or "cpu"):
        return PGTFormer(**config)


def hf_config(hf: Mapping[str, Any]) -> Mapping[str, Any]:
    from bfvr.models.pgtformer import config_from_official

    return config_from_official(hf)


def _build(device: Any, weights: str | None = None, precision: str = "fp32", offline: bool = False,
           sha256: str | None = None, progress: bool = True, keep: int = 1, w: float = 1.0,
           **unknown: object) -> Any:
    from bfvr.models.hub import load_net
    from bfvr.models.pgtformer.clip import PGTFormerClipModel

    reject_unknown_options("pgtformer", unknown,
                           "keep (1 = official 3-frame schedule, 3 = fast), w (fidelity weight, 0..1)")
    net, _ = load_net("pgtformer", weights=weights, offline=offline, sha256=sha256, progress=progress)
    return PGTFormerClipModel(net, keep=int(keep), w=float(w), device=device, precision=precision)


def _config() -> Mapping[str, Any]:
    from bfvr.models.pgtformer.net import OFFICIAL_CONFIG

    return OFFICIAL_CONFIG


def _load_parsing(envelope: Any, weights: Any = None) -> Any:
    from bfvr.models.pgtformer.paste_mask import ParsingMasker

    return ParsingMasker.load(envelope, weights)


def _check_parsing(weights: Any = None) -> None:
    from bfvr.models.pgtformer.paste_mask import require_parsing_weights

    require_parsing_weights(weights)


METHOD = Method(
    "pgtformer",
    description="PGTFormer (IJCAI 2024): parsing-guided temporal transformer",
    models=(
        ModelSpec("pgtformer", "PGTFormer (IJCAI 2024): parsing-guided 3-frame transformer for faces that "
                  "are not aligned, official weights", _build, weights="pgtformer", config=_config(),
                  net=build_net,
                  hf_config=hf_config, capabilities=frozenset({"keep"}), paste_masks=("parsing",),
                  crop_mode="proportion"),
    ),
    weights=(
        # the hub mixin's flat state_dict; the authors' params_ema .pth (Google Drive / BaiduYun,
        # no direct URL) loads the same way with --weights weights.pth
        WeightsEntry("pgtformer", "pgtformer-base.safetensors", (f"{PGTFORMER_HF}/model.safetensors",),
                     config_urls=(f"{PGTFORMER_HF}/config.json",), mirror_env="BFVR_PGTFORMER_MIRROR",
                     description="PGTFormer, released stage-IV weights (kepeng/pgtformer-base)"),
    ),
    tasks={
        "pgtformer-stage1": "bfvr.train.pgtformer:TSVQGANTask",
        "pgtformer-stage2": "bfvr.train.pgtformer:PGTFormerStage2Task",
        "pgtformer-stage3": "bfvr.train.pgtformer:PGTFormerStage3Task",
        "pgtformer-stage4": "bfvr.train.pgtformer:PGTFormerStage4Task",
    },
    paste_masks=(PasteMask("parsing", _load_parsing, _check_parsing,
                           "face and hair as labelled by PGTFormer's face-parsing BiSeNet"),),
)

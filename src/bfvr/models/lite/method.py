"""BFVR-Lite as a bfvr method: the bundled default model, its weights (package data) and its training task."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bfvr.models.spec import Method, ModelSpec, reject_unknown_options
from bfvr.models.weights import WeightsEntry

#: the bundled weights, inside this package
WEIGHTS_FILE = Path(__file__).resolve().parent / "weights" / "bfvr-lite.safetensors"
CONFIG = {"widths": (64, 96, 128), "enc_blocks": (1, 2, 4), "dec_blocks": (2, 2), "temporal": True}


def build_net(config: Mapping[str, Any], *, device: Any = None) -> Any:
    """The BFVR-Lite network for `config` (``device="meta"`` for shapes only)."""
    import torch

    from bfvr.models.lite import LiteNet

    with torch.device(device or "cpu"):
        return LiteNet(**config)


def _build(device: Any, weights: str | None = None, precision: str = "fp32", offline: bool = False,
           sha256: str | None = None, progress: bool = True, clip_len: int = 24, overlap: int = 4,
           temporal_filter: float | None = None, **unknown: object) -> Any:
    from bfvr.models.hub import load_net
    from bfvr.models.lite.clip import TEMPORAL_FILTER, LiteClipModel

    reject_unknown_options("bfvr-lite", unknown, "clip_len, overlap, temporal_filter")
    net, _ = load_net("bfvr-lite", weights=weights, offline=offline, sha256=sha256, progress=progress)
    return LiteClipModel(net, clip_len=clip_len, overlap=overlap, device=device, precision=precision,
                         multiple=net.multiple,
                         temporal_filter=TEMPORAL_FILTER if temporal_filter is None else temporal_filter)


METHOD = Method(
    "lite",
    description="BFVR-Lite: this project's compact temporal U-Net",
    models=(
        ModelSpec("bfvr-lite", "BFVR-Lite: compact temporal U-Net trained by this project, fast on a CPU; "
                  "the default (weights ship with bfvr)", _build, weights="bfvr-lite", config=CONFIG,
                  net=build_net,
                  capabilities=frozenset({"overlap", "onnx", "net-sizes", "temporal-filter"}),
                  measured="9 held-out clips, blur 4 + x4 down + noise 4 + CRF 25: PSNR +1.69 dB (new people "
                  "+1.65), SSIM +0.019, flicker 2.96 -> 2.76, below the input on every clip (temporal filter "
                  "on); whole frames in the wild +1.90 dB; model alone 12-17 frames/s bf16 at 512^2 on 2 CPU "
                  "cores; the default command 4 (512^2), 1.6 (720p), 0.9 (1080p) frames/s, --faces-only "
                  "6 / 5 / 3; clean 1080p-720p faces keep 97-100 % of their detail (40.7+ dB)"),
    ),
    weights=(
        WeightsEntry("bfvr-lite", "bfvr-lite.safetensors", key=None, bundled=str(WEIGHTS_FILE),
                     description="BFVR-Lite, trained by the bfvr project (configs/lite/, docs/models.md); "
                                 "ships with bfvr"),
    ),
    tasks={"lite": "bfvr.train.lite:LiteTask"},
)

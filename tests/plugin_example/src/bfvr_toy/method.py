"""The toy method as bfvr sees it: one `Method` with one model, its weights entry and one training task.

`bfvr` finds it through the entry point ``toy = "bfvr_toy.method:METHOD"`` (group ``bfvr.methods``) of this
package's pyproject.toml. Everything below is public bfvr API: `ModelSpec` / `Method` (what a method
declares), `WeightsEntry` (where its weights come from), `NetClipModel` (the adapter every model subclasses)
and `bfvr.models.hub.load_net` (the one weights path: find the file, load it safely, check keys and shapes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bfvr.models.spec import Method, ModelSpec
from bfvr.models.weights import WeightsEntry

NAME = "toy-sharpen"
CONFIG = {"width": 8}


def build_net(config: Mapping[str, Any], *, device: Any = None) -> Any:
    """The bare network (``device="meta"``: shapes only, how bfvr checks a weights file)."""
    import torch

    from bfvr_toy.net import ToyNet

    with torch.device(device or "cpu"):
        return ToyNet(**config)


def build(device: Any, weights: str | None = None, precision: str = "fp32", offline: bool = False,
          sha256: str | None = None, progress: bool = True, clip_len: int = 8, overlap: int = 2,
          **unknown: object) -> Any:
    """The `ClipModel` bfvr restores with: the network with its weights, in clips of 8 frames."""
    from bfvr.engine.base import Schedule
    from bfvr.errors import ConfigError
    from bfvr.models.adapter import NetClipModel
    from bfvr.models.hub import load_net

    if unknown:
        raise ConfigError(f"model '{NAME}' has no option {', '.join(sorted(unknown))}; it takes clip_len, "
                          "overlap.")
    net, _ = load_net(NAME, weights=weights, offline=offline, sha256=sha256, progress=progress)
    return NetClipModel(net, name=NAME, schedule=Schedule.clips(clip_len, overlap), canvas=(128, 128),
                        device=device, precision=precision, layout="BTCHW")


METHOD = Method(
    "toy",
    description="a toy method: the worked example of a bfvr plugin",
    models=(
        ModelSpec(NAME, "toy: residual 3x3 convolution + temporal mean (the plugin example; train it first)",
                  build, weights=NAME, config=CONFIG, net=build_net, capabilities=frozenset({"overlap"})),
    ),
    # no download address: the weights come from `bfvr train` + `bfvr export` (pass them with --weights)
    weights=(WeightsEntry(NAME, f"{NAME}.safetensors", key=None, description="the toy's trained weights"),),
    tasks={"toy": "bfvr_toy.task:ToyTask"},
)

"""What a method (a plugin) declares: its models (`ModelSpec`), its weights
(`bfvr.models.weights.WeightsEntry`), its training tasks and the paste masks it offers, bundled as one
`Method`.

A method is found through the ``bfvr.methods`` entry-point group (`bfvr.models.registry`); the built-in ones
(``models/<method>/method.py``) are found the same way, or by their package when the installed distribution
declares no entry points. Shared code never names a method: it asks a spec for its capabilities.

This module imports neither torch nor a network, so a method module can import it at its top.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: the capabilities a model can declare (`ModelSpec.capabilities`), with the flag each one stands for
CAPABILITY_FLAGS: dict[str, str] = {
    "mask": "--mask",             # takes a mask of the missing pixels (model option ``mask``)
    "sampling": "--sampling",     # takes a sampling mode (model option ``sampling``)
    "keep": "--keep",             # a sliding-window schedule with a faster keep-K variant
    "overlap": "--overlap",       # clips cross-faded by an overlap
    "onnx": "--format onnx",      # the adapter has ``onnx_module()`` (`bfvr export`, --backend onnxruntime)
    "net-sizes": "trained sizes",  # a training run may change the network's sizes (`bfvr export` stores them)
    "temporal-filter": "--temporal-filter",  # a temporal filter strength (model option ``temporal_filter``)
}
#: every precision a ClipModel may run at
PRECISIONS = ("fp32", "bf16", "fp16")



def reject_unknown_options(model: str, unknown: Mapping[str, object], takes: str) -> None:
    """A model builder's check of its keyword options: one sentence naming the unknown ones and what
    `model` takes (`takes`, e.g. "clip_len, overlap")."""
    if unknown:
        from bfvr.errors import ConfigError

        raise ConfigError(f"model '{model}' has no option {', '.join(sorted(unknown))}; it takes {takes}.")


@dataclass(frozen=True)
class ModelSpec:
    """One model name: how to build it, what network and weights it loads, and what it accepts."""

    name: str
    description: str
    #: ``builder(device=..., weights=..., precision=..., offline=..., sha256=..., progress=..., **options)``
    #: -> a `ClipModel` (see `bfvr.engine.base`)
    builder: Callable[..., Any]
    #: name of its `WeightsEntry` (see `bfvr.models.weights`); None = the model needs no weights
    weights: str | None = None
    #: constructor arguments of the network (shown by `bfvr models`, used by the builder)
    config: Mapping[str, Any] = field(default_factory=dict)
    #: builds the bare network: ``net(config, device=None, **net_options)`` (``device="meta"``: shapes only)
    net: Callable[..., Any] | None = None
    #: maps a Hugging Face ``config.json`` that comes with the weights to `config` (None: such files are
    #: ignored)
    hf_config: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None
    #: what the model accepts (keys of `CAPABILITY_FLAGS`); a flag it lacks is refused in one sentence that
    #: names the models that have it
    capabilities: frozenset[str] = frozenset()
    #: the paste masks (``--paste-mask``) the model's own network provides (``model.paste_masks()``)
    paste_masks: tuple[str, ...] = ()
    #: precisions it runs at
    precisions: tuple[str, ...] = PRECISIONS
    #: the face crop it was trained on ("proportion" | "align"; None: the pipeline's default)
    crop_mode: str | None = None
    #: ``check_options(options, input_info)``: cheap checks of model options against the input video (its
    #: `bfvr.io.VideoInfo`; None for a batch), run before the model is loaded; raises a `BfvrError`
    check_options: Callable[[Mapping[str, Any], Any], None] | None = None
    #: one line of measured numbers shown by `bfvr models`
    measured: str | None = None


@dataclass(frozen=True)
class PasteMask:
    """A paste mask (``--paste-mask NAME``) a method offers to the face pipeline without its model running.

    ``load(envelope, weights=None)`` returns the mask function ``fn(face uint8 [h, w, 3]) -> float32 [h, w]``
    (in [0, 1], inside `envelope`); ``check(weights=None)`` raises a `BfvrError` in one sentence when it could
    not be loaded (e.g. no weights), cheaply, before anything runs."""

    name: str
    load: Callable[..., Callable[[Any], Any]]
    check: Callable[..., Any]
    description: str = ""


@dataclass(frozen=True)
class Method:
    """Everything about one method: what its entry point (group ``bfvr.methods``) returns."""

    name: str
    models: tuple[ModelSpec, ...] = ()
    #: its weights entries (`bfvr.models.weights.WeightsEntry`)
    weights: tuple[Any, ...] = ()
    #: training tasks: task name -> ``"module:Class"`` (imported when used) or the class itself; the class is
    #: built as ``Class(cfg, device)`` (see `bfvr.train.tasks`)
    tasks: Mapping[str, Any] = field(default_factory=dict)
    paste_masks: tuple[PasteMask, ...] = ()
    description: str = ""
    #: older training configs without ``task:`` named a task by their ``stage:`` key: stage -> task name
    stage_aliases: Mapping[str, str] = field(default_factory=dict)

"""Training tasks: a task = network + losses + its config class; the trainer core knows no method.

A task class has a ``Config`` attribute: its `bfvr.train.config.TrainConfig` subclass with the task's own
`model`/`loss` (and `disc`) sections, defined next to it. A task object has ``model`` (the trained module),
``disc`` (a discriminator or None), ``gan_on(step)``, ``generator_loss(model, batch, step, disc_fn) ->
(loss, logs, fake)``, ``disc_loss(disc, gt, fake)`` when it has a discriminator, and optionally:

- ``validate(model) -> {name: value}`` (run every ``val.every`` steps on the EMA and the raw weights),
- ``take_usage() -> {key: counts}`` (codebook usage since the previous call, logged as histograms),
- ``ddp_find_unused() -> bool`` (DDP must tolerate parameters without gradient when `ddp_find_unused` is
  not set in the config; off when the task has no such method),
- ``export_meta() -> {key: str}`` (stored with the weights).

`bfvr train` picks the task from the config's ``task:`` key.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

#: task name -> "module:class" (imported when used)
TASKS: dict[str, str] = {
    "stc-stage1": "bfvr.train.stc:Stage1Task",
    "stc-stage2": "bfvr.train.stc:Stage2Task",
    "lite": "bfvr.train.lite:LiteTask",
    "pgtformer-stage1": "bfvr.train.pgtformer:TSVQGANTask",
    "pgtformer-stage2": "bfvr.train.pgtformer:PGTFormerStage2Task",
    "pgtformer-stage3": "bfvr.train.pgtformer:PGTFormerStage3Task",
    "pgtformer-stage4": "bfvr.train.pgtformer:PGTFormerStage4Task",
    "dicface": "bfvr.train.dicface:DicFaceTask",
}

#: the task of a config without `task:` (older configs), by its `stage:` key; the first is the default
STAGE_TASKS: dict[str, str] = {"stage1": "stc-stage1", "stage2": "stc-stage2"}


def task_class(name: str) -> Any:
    module, _, cls = TASKS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def task_config(name: str) -> Any:
    """The `TrainConfig` subclass of task `name`."""
    return task_class(name).Config


def build_task(cfg: Any, device: torch.device) -> Any:
    return task_class(cfg.task_name)(cfg, device)

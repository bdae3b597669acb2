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

from bfvr.models import registry as _registry

#: task name -> "module:Class" (imported when used, so configs validate without building anything) or the
#: class: declared by each method (its `bfvr.models.spec.Method.tasks`; plugins too, `bfvr.models.registry`)
TASKS = _registry.TASKS

#: the task of a config without `task:` (older configs), by its `stage:` key; the first is the default
#: (declared by the method whose older configs used it: `bfvr.models.spec.Method.stage_aliases`)
STAGE_TASKS = _registry.STAGE_ALIASES


def task_class(name: str) -> Any:
    target = TASKS[name]
    if isinstance(target, str):
        module, _, cls = target.partition(":")
        target = getattr(importlib.import_module(module), cls)
    return target


def task_config(name: str) -> Any:
    """The `TrainConfig` subclass of task `name`."""
    return task_class(name).Config


def build_task(cfg: Any, device: torch.device) -> Any:
    return task_class(cfg.task_name)(cfg, device)

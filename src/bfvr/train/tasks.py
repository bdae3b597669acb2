"""Training tasks: a task = network + losses (+ its config sections); the trainer core knows no method.

A task object has ``model`` (the trained module), ``disc`` (a discriminator or None), ``gan_on(step)``,
``generator_loss(model, batch, step, disc_fn) -> (loss, logs, fake)``, ``disc_loss(disc, gt, fake)``
when it has a discriminator, and optionally ``validate(model) -> {name: value}`` (run every
``val.every`` steps on the EMA weights) and ``export_meta() -> {key: str}`` (stored with the weights).
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


def build_task(cfg: Any, device: torch.device) -> Any:
    target = TASKS[cfg.task_name]
    if isinstance(target, str):
        module, _, cls = target.partition(":")
        target = getattr(importlib.import_module(module), cls)
    return target(cfg, device)

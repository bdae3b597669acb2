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

#: task name -> "module:class" (imported when used, so configs validate without building anything)
TASKS: dict[str, str] = {
    "stc-stage1": "bfvr.train.stages:Stage1Task",
    "stc-stage2": "bfvr.train.stages:Stage2Task",
    "lite": "bfvr.train.lite:LiteTask",
    "pgtformer-stage1": "bfvr.train.pgtformer:TSVQGANTask",
    "pgtformer-stage2": "bfvr.train.pgtformer:PGTFormerStage2Task",
    "pgtformer-stage3": "bfvr.train.pgtformer:PGTFormerStage3Task",
    "pgtformer-stage4": "bfvr.train.pgtformer:PGTFormerStage4Task",
    "dicface": "bfvr.train.dicface:DicFaceTask",
}


def build_task(cfg: Any, device: torch.device) -> Any:
    module, _, cls = TASKS[cfg.task_name].partition(":")
    return getattr(importlib.import_module(module), cls)(cfg, device)

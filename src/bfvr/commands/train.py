"""`bfvr train`: run or resume a training task from a YAML config (see configs/, docs/training.md).

Multi-process (DDP) training: launch the same command under torchrun, e.g.
`torchrun --nproc_per_node=2 -m bfvr.cli train --config configs/stc/tiny_stage1.yaml`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("train", help="Train a model from a YAML config; its `task:` picks what: STC Stage I "
                               "(3D-VQGAN) or II (lookup transformers), BFVR-Lite, PGTFormer stages I-IV, "
                               "DicFace. Resumable (--resume), multi-process with torchrun. See "
                               "docs/training.md.")
    def _cmd(
        config: Annotated[Path, typer.Option("--config", "-c", help="YAML training config (e.g. "
                                             "configs/stc/tiny_stage1.yaml).", show_default=False)],
        out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder (default: out_dir of the "
                                                 "config).")] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue the run in the run folder from its "
                                             "newest checkpoint.")] = False,
        max_steps: Annotated[int | None, typer.Option("--max-steps", help="Override max_steps of the config.")
                             ] = None,
        data: Annotated[list[str] | None, typer.Option("--data", help="Training videos/folders/manifest "
                                                       "(repeatable; replaces data.paths).")] = None,
        set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config value, e.g. --set "
                                                       "optim.lr=1e-4 (repeatable).")] = None,
        bf16: Annotated[bool | None, typer.Option("--bf16/--fp32", help="bf16 autocast for forward passes "
                                                  "(default: the config's).")] = None,
        device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N (default: the "
                                                   "config's).")] = None,
        print_config: Annotated[bool, typer.Option("--print-config", help="Print the resolved config and "
                                                   "exit.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and only warnings in the "
                                            "log.")] = False,
    ) -> None:
        import logging
        import sys

        from bfvr.train.config import load_config

        overrides = list(set_ or [])
        if out is not None:
            overrides.append(f"out_dir={out}")
        if max_steps is not None:
            overrides.append(f"max_steps={max_steps}")
        if bf16 is not None:
            overrides.append(f"bf16={str(bf16).lower()}")
        if device is not None:
            overrides.append(f"device={device}")
        cfg = load_config(config, overrides)
        if data:
            cfg.data.paths = list(data)
        if print_config:
            typer.echo(cfg.to_yaml(), nl=False)
            return
        import os

        rank = int(os.environ.get("RANK", "0"))
        level = logging.WARNING if (quiet or rank != 0) else logging.INFO
        # the root stays at WARNING: the trainer's progress (bfvr.train) is shown, other modules' info
        # messages (a line per video read) only with `bfvr -v`
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s: %(message)s",
                            stream=sys.stderr)
        logging.getLogger("bfvr.train").setLevel(level)
        from bfvr.train.trainer import train

        run_dir = train(cfg, resume=resume, progress=not quiet, argv=["bfvr", *sys.argv[1:]])
        if rank == 0 and not quiet:
            typer.echo(f"run folder: {run_dir}")

"""`bfvr train`: run or resume an STC training stage from a YAML config (see configs/stc/, docs/training.md).

Multi-process (DDP) training: launch the same command under torchrun, e.g.
`torchrun --nproc_per_node=2 -m bfvr.cli train --config configs/stc/tiny_stage1.yaml`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("train", help="Train STC Stage I (3D-VQGAN) or Stage II (lookup transformers) from a YAML "
                               "config; resumable (--resume), multi-process with torchrun.")
    def _cmd(
        config: Path = typer.Option(..., "--config", "-c", help="YAML training config (e.g. configs/stc/tiny_stage1.yaml)."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (default: out_dir of the config)."),
        resume: bool = typer.Option(False, "--resume", help="Continue the run in the run folder from its newest checkpoint."),
        max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Override max_steps of the config."),
        data: Optional[list[str]] = typer.Option(None, "--data", help="Training videos/folders/manifest (repeatable; replaces data.paths)."),
        set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a config value, e.g. --set optim.lr=1e-4 (repeatable)."),
        bf16: Optional[bool] = typer.Option(None, "--bf16/--fp32", help="bf16 autocast for forward passes (default: the config's)."),
        device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N (default: the config's)."),
        print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config and exit."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and only warnings in the log."),
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
        logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s",
                            stream=sys.stderr)
        logging.getLogger("bfvr.train").setLevel(level)
        from bfvr.train.trainer import train

        run_dir = train(cfg, resume=resume, progress=not quiet, argv=["bfvr", *sys.argv[1:]])
        if rank == 0 and not quiet:
            typer.echo(f"run folder: {run_dir}")

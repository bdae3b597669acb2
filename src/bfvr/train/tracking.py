"""Metric tracking: always a JSONL file (`metrics.jsonl`, one object per logged step holding the mean of
each value over the steps since the previous record), plus TensorBoard
event files when the optional `tensorboard` package is installed (`pip install bfvr[train]`).
Which sinks are active is logged at start."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

log = logging.getLogger("bfvr.train")


class MetricLogger:
    def __init__(self, run_dir: str | Path, *, enabled: bool = True, tensorboard: bool = True,
                 resume_step: int | None = None) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self.tb = None
        if not enabled:
            return
        if resume_step is not None and self.path.is_file():
            # drop lines logged after the checkpoint we resume from (the killed run's tail)
            keep = [ln for ln in self.path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= resume_step]
            tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
            tmp.write_text("".join(k + "\n" for k in keep))
            os.replace(tmp, self.path)
        self._fh = open(self.path, "a")
        sinks = [str(self.path)]
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=resume_step)
                sinks.append(f"TensorBoard ({Path(run_dir) / 'tb'})")
            except Exception:  # tensorboard not installed
                log.info("TensorBoard not installed (pip install 'bfvr[train]'); logging to JSONL only")
        log.info("logging metrics to %s", " and ".join(sinks))

    def log(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        rec = {"step": step, "time": round(time.time(), 3), **{k: float(v) for k, v in values.items()}}
        self._fh.write(json.dumps(rec) + "\n")
        self._fh.flush()
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if not self.enabled:
            return
        self._fh.close()
        if self.tb is not None:
            self.tb.close()


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The logged records of a run, one per step (records of the same step merged, later values win)."""
    p = Path(run_dir) / "metrics.jsonl"
    by_step: dict[int, dict] = {}
    if p.is_file():
        for ln in p.read_text().splitlines():
            if ln.strip():
                rec = json.loads(ln)
                by_step.setdefault(rec["step"], {}).update(rec)  # e.g. training and validation records
    return [by_step[k] for k in sorted(by_step)]

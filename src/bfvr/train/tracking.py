"""Metric tracking: always a JSONL file (`metrics.jsonl`, one object per logged step holding the mean of
each value over the steps since the previous record), plus TensorBoard
event files when the optional `tensorboard` package is installed (`pip install bfvr[train]`).
Which sinks are active is logged at start.

Count histograms (e.g. how often each codebook entry was used since the previous record) go to
`histograms.jsonl` (one object per logged step: ``{"step", "time", name: [counts...]}``) and to
TensorBoard histograms (bucket i = entry i)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


class MetricLogger:
    def __init__(self, run_dir: str | Path, *, enabled: bool = True, tensorboard: bool = True,
                 resume_step: int | None = None) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self.tb = None
        if not enabled:
            return
        self.hist_path = Path(run_dir) / "histograms.jsonl"
        if resume_step is not None:
            # drop lines logged after the checkpoint we resume from (the killed run's tail)
            for p in (self.path, self.hist_path):
                _truncate_after(p, resume_step)
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

    def histograms(self, step: int, counts: dict[str, list[int]]) -> None:
        """Log count histograms ``{name: counts}`` (bucket i holds counts[i])."""
        if not self.enabled or not counts:
            return
        rec = {
            "step": step, "time": round(time.time(), 3), **{k: [int(c) for c in v] for k, v in counts.items()}
        }
        with open(self.hist_path, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        if self.tb is not None:
            for name, c in counts.items():
                c = [int(x) for x in c]
                total = sum(c)
                if total == 0:
                    continue
                idx = range(len(c))
                used = [i for i in idx if c[i]]
                self.tb.add_histogram_raw(name, min=float(used[0]), max=float(used[-1]), num=total,
                                          sum=float(sum(i * x for i, x in zip(idx, c))),
                                          sum_squares=float(sum(i * i * x for i, x in zip(idx, c))),
                                          bucket_limits=[i + 0.5 for i in idx], bucket_counts=c,
                                          global_step=step)

    def close(self) -> None:
        if not self.enabled:
            return
        self._fh.close()
        if self.tb is not None:
            self.tb.close()


def _records(path: Path) -> tuple[list[tuple[str, dict]], int]:
    """(line, record) of each readable record of a JSONL log, and how many lines were not one: a run killed
    while writing leaves a half-written last line, which is skipped, not an error."""
    out, bad = [], 0
    for ln in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not ln.strip():
            continue
        try:
            rec = json.loads(ln)
        except ValueError:
            rec = None
        if isinstance(rec, dict) and isinstance(rec.get("step", 0), int):
            out.append((ln, rec))
        else:
            bad += 1
    return out, bad


def _truncate_after(path: Path, step: int) -> None:
    """Keep only the records of `path` (JSONL) logged at or before `step` (atomic rewrite); lines that are
    not records (a half-written tail) are dropped with a warning."""
    if not path.is_file():
        return
    recs, bad = _records(path)
    if bad:
        log.warning("%s: dropped %d unreadable line%s (a half-written record of the interrupted run)", path,
                    bad, "" if bad == 1 else "s")
    keep = [ln for ln, rec in recs if rec.get("step", 0) <= step]
    from bfvr.io.paths import write_atomic

    write_atomic(path, "".join(k + "\n" for k in keep))


def read_histograms(run_dir: str | Path) -> list[dict]:
    """The logged count histograms of a run (`histograms.jsonl`), in logging order."""
    p = Path(run_dir) / "histograms.jsonl"
    return [rec for _, rec in _records(p)[0]] if p.is_file() else []


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The logged records of a run, one per step (records of the same step merged, later values win)."""
    p = Path(run_dir) / "metrics.jsonl"
    by_step: dict[int, dict] = {}
    if p.is_file():
        for _, rec in _records(p)[0]:
            if "step" in rec:
                by_step.setdefault(rec["step"], {}).update(rec)  # e.g. training and validation records
    return [by_step[k] for k in sorted(by_step)]

"""The training loop shared by every training task (`bfvr.train.tasks`; it knows no method): DDP, gradient
accumulation, bf16 autocast, EMA, LR schedule, atomic checkpoints with exact resume, metric logging,
validation and a progress bar.

Exact resume: everything that influences the next step is either saved (weights, EMA, optimizer moments,
RNG states) or a pure function of the step number (learning rate, GAN on/off, the data: clip position p is
a function of (seed, p) and step s draws positions from micro-step s*accum on; see `bfvr.train.data`).
Resuming therefore needs the same world size, per-process batch, accumulation and threads as the first run
(checked; a different world size is refused with a message).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from bfvr.errors import ConfigError, OutputError, TrainingError
from bfvr.train import checkpoint as ckpt
from bfvr.train import dist as bdist
from bfvr.train.config import OptimConfig, TrainConfig
from bfvr.train.data import PositionSampler, build_dataset, data_fingerprint
from bfvr.train.ema import EMA
from bfvr.train.tasks import build_task
from bfvr.train.tracking import MetricLogger

log = logging.getLogger(__name__)


def lr_at(step: int, base: float, o: OptimConfig) -> float:
    """Learning rate for (1-based) `step`: constant, cosine with restarts (basicsr CosineAnnealingRestartLR),
    or multi-step decay. A pure function of the step, so resuming needs no scheduler object."""
    it = step - 1  # iterations already done
    if o.scheduler == "constant":
        return base
    if o.scheduler == "multistep":
        return base * o.gamma ** sum(1 for m in o.milestones if it >= m)
    # cosine_restart
    start = 0
    for period, weight in zip(o.periods, o.restart_weights):
        if it < start + period:
            frac = (it - start) / period
            return o.eta_min + weight * 0.5 * (base - o.eta_min) * (1 + math.cos(math.pi * frac))
        start += period
    return o.eta_min


def source_checkout(package: Path | None = None) -> Path | None:
    """The root of the git checkout of bfvr itself that the package folder `package` (default: this
    package) lies in (src layout: <root>/src/bfvr with <root>/pyproject.toml naming the project bfvr, and
    <root> the top of a git work tree), else None (an installed package: a git repository around
    site-packages is someone else's)."""
    package = (package or Path(__file__).parents[1]).resolve()
    root = package.parents[1]
    pyproject = root / "pyproject.toml"
    if package != root / "src" / "bfvr" or not pyproject.is_file():
        return None
    try:
        import tomllib

        if tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}).get("name") != "bfvr":
            return None
        top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    if top.returncode != 0 or not top.stdout.strip() or Path(top.stdout.strip()).resolve() != root:
        return None
    return root


def run_provenance() -> dict[str, Any]:
    """What code trained: the bfvr version always; for a source checkout of bfvr also its git revision
    and whether tracked files had uncommitted changes."""
    from bfvr import __version__

    out: dict[str, Any] = {"bfvr_version": __version__}
    root = source_checkout()
    if root is None:
        return out
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return out
    if rev:
        out.update(git_revision=rev, git_dirty=dirty)
    return out


def _collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


class Trainer:
    """Runs the training task a `TrainConfig` names (`cfg.task`), whatever its method.

    `Trainer(cfg, resume=True).run()` continues the run in `cfg.out_dir` from its newest checkpoint.
    Launch several processes with torchrun for data-parallel training (each process reads its own part of
    every global batch; gradients are averaged by DDP).
    """

    def __init__(self, cfg: TrainConfig, *, resume: bool = False, progress: bool = True,
                 argv: list[str] | None = None) -> None:
        self.cfg = cfg
        self.info = bdist.setup(cfg.device)
        self.device = self.info.device
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.run_dir = Path(cfg.out_dir)
        self.progress = progress and self.info.is_main
        self.argv = argv if argv is not None else sys.argv
        self.resume = resume
        self._undo: list[tuple[Path, str | None]] | None = None  # what _write_run_dir wrote (see _undo_start)
        if self.info.is_main:
            self._prepare_run_dir()
        bdist.barrier(self.info)

        torch.manual_seed(cfg.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
        self.task = build_task(cfg, self.device)
        self.model = self.task.model
        self.ema = EMA(self.model, cfg.ema_decay)
        o = cfg.optim
        g_params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt_g = torch.optim.Adam(g_params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
        self.disc = self.task.disc
        self.opt_d = None
        if self.disc is not None:
            self.d_params = [p for p in self.disc.parameters() if p.requires_grad]
            self.opt_d = torch.optim.Adam(self.d_params, lr=o.d_lr or o.lr, betas=tuple(o.betas),
                                          weight_decay=o.weight_decay)
        self.step = 0
        self.start_step = 0
        self._skipped = 0
        if cfg.bf16 and self.device.type == "cpu":
            log.warning("bf16 autocast on CPU: torch 2.13's oneDNN Conv3d weight gradient in bf16 "
                        "sporadically returns NaN (measured: most steps of the tiny STC model); such steps "
                        "are skipped, and the run stops after 10 in a row. Prefer fp32 for training on CPU.")
        if resume:
            self._load_latest()

        self.model_ddp: nn.Module = self.model
        self.disc_ddp: nn.Module | None = self.disc
        if self.info.enabled:
            dev_ids = [self.device.index] if self.device.type == "cuda" else None
            fu = cfg.ddp_find_unused
            if fu is None:  # the task knows whether some of its parameters may get no gradient
                hook = getattr(self.task, "ddp_find_unused", None)
                fu = bool(hook()) if hook is not None else False
            self.model_ddp = DDP(self.model, device_ids=dev_ids, find_unused_parameters=fu)
            if self.disc is not None:
                self.disc_ddp = DDP(self.disc, device_ids=dev_ids,
                                    find_unused_parameters=bool(cfg.ddp_find_unused))

    # ------------------------------------------------------------------------------------------------
    # run folder, checkpoints

    def _prepare_run_dir(self) -> None:
        from bfvr.io.paths import check_separate

        rd = self.run_dir
        check_separate(self.cfg.data.paths, rd, out_is_dir=True, what="run")
        ckpt.check_run_dir(rd, resume=self.resume)  # a folder bfvr made, holding only what it wrote
        has_ckpt = (rd / ckpt.CKPT_DIR).is_dir() and any((rd / ckpt.CKPT_DIR).glob("step_*"))
        if has_ckpt and not self.resume:
            raise OutputError(f"{rd} already holds checkpoints; pass --resume to continue that run or choose "
                              "another output folder with --out.")
        if self.resume and not has_ckpt:
            raise ConfigError(f"--resume given but {rd} holds no checkpoint; start without --resume.")
        if self.resume:  # what a run killed while writing a checkpoint left (bfvr's own temp names only)
            gone = ckpt.remove_temp_checkpoints(rd)
            if gone:
                log.info("removed %d unfinished checkpoint file(s) of the killed run: %s", len(gone),
                         ", ".join(gone))

    def _write_run_dir(self) -> None:
        """Create the run folder with its marker, config.yaml and run.json (at the start of `run`: a start
        that fails earlier writes nothing, and one that fails before its first step is undone by
        `_undo_start`). Each file is written to a new temporary file and renamed (never through a link)."""
        from bfvr.io.paths import write_atomic

        rd = self.run_dir
        made = [d for d in (rd.absolute(), *rd.absolute().parents) if not d.exists()]
        rd.mkdir(parents=True, exist_ok=True)
        runs_file = rd / "run.json"
        marker = rd / ckpt.RUN_MARKER
        # a start that fails before its first step puts back what was there (see _undo_start)
        self._undo = [(f, f.read_text() if f.is_file() else None)
                      for f in (marker, rd / "config.yaml", runs_file)]
        self._made_dirs = made
        if not marker.is_file():
            write_atomic(marker, "a run folder made by bfvr train; bfvr writes runs only into folders "
                                 "holding this file and nothing but what it wrote.\n")
        write_atomic(rd / "config.yaml", self.cfg.to_yaml())
        runs = json.loads(runs_file.read_text()) if runs_file.is_file() else []
        runs.append({**run_provenance(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": self.argv,
                     "torch": torch.__version__, "python": platform.python_version(),
                     "world_size": self.info.world_size, "resume": self.resume,
                     "device": str(self.device), "threads": torch.get_num_threads()})
        write_atomic(runs_file, json.dumps(runs, indent=1))

    def _undo_start(self) -> None:
        """A start that failed before its first training step: put the run folder back as it was (files
        this start wrote removed or restored, folders it made removed when empty)."""
        from bfvr.io.paths import write_atomic

        if not self._undo:
            return
        for f, text in self._undo:
            try:
                if text is None:
                    f.unlink(missing_ok=True)
                else:
                    write_atomic(f, text)
            except OSError:
                pass
        if self._made_dirs and self._made_dirs[0] == self.run_dir.absolute():
            shutil.rmtree(self.run_dir, ignore_errors=True)  # made by this start: all it holds is ours
        for d in self._made_dirs:  # deepest first
            try:
                if d.exists():
                    d.rmdir()
            except OSError:
                break
        self._undo = None

    def _weights(self) -> dict[str, dict[str, torch.Tensor]]:
        w = {"model": self.model.state_dict(), "ema": self.ema.module.state_dict()}
        if self.disc is not None:
            w["disc"] = self.disc.state_dict()
        return w

    def rank_digests(self) -> list[str]:
        """SHA-1 of this process's trained weights, gathered from every rank (DDP keeps them identical)."""
        import hashlib

        h = hashlib.sha1()
        disc = self.disc.state_dict().items() if self.disc is not None else []
        for name, t in list(self.model.state_dict().items()) + [(f"disc.{k}", v) for k, v in disc]:
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        mine = h.hexdigest()
        if not self.info.enabled:
            return [mine]
        import torch.distributed as dist

        out: list[str | None] = [None] * self.info.world_size
        dist.all_gather_object(out, mine)
        return [str(d) for d in out]

    def save(self) -> Path | None:
        digests = self.rank_digests()  # collective: every rank takes part, and every rank sees all digests
        if len(set(digests)) > 1:  # so every rank stops here (no rank is left waiting in a collective)
            raise TrainingError(f"the {len(digests)} processes hold different weights at step {self.step} "
                                f"(SHA-1 per rank: {', '.join(d[:12] for d in digests)}); DDP keeps them "
                                "identical, so the run is broken: resume from the previous checkpoint "
                                "with --resume.")
        if not self.info.is_main:
            return None
        state = {
            "step": self.step,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict() if self.opt_d is not None else {},
            "rng": ckpt.rng_state(),
            "data": {"micro_step": self.step * self.cfg.accum_steps, "seed": self.cfg.seed},
            "world_size": self.info.world_size,
            "batch_size": self.cfg.data.batch_size,
            "accum_steps": self.cfg.accum_steps,
        }
        meta = {"task": self.cfg.task_name, "name": self.cfg.name,
                "world_size": self.info.world_size, "rank_weight_sha1": digests,
                "data_fingerprint": self._fingerprint, "lr": lr_at(max(self.step, 1), self.cfg.optim.lr,
                                                                     self.cfg.optim)}
        return ckpt.save_checkpoint(self.run_dir, self.step, self._weights(), state, meta,
                                    keep=self.cfg.keep_ckpts)

    def _load_latest(self) -> None:
        from bfvr.errors import ModelError

        newest = ckpt.find_checkpoint(self.run_dir)
        older = sorted((q for q in newest.parent.glob("step_*") if q != newest and q.name < newest.name
                        and (q / "state.pt").is_file()), reverse=True)
        bad: list[tuple[Path, str]] = []
        # newest first; a corrupt (or tampered) checkpoint falls back to the previous
        for path in [newest, *older]:
            try:
                state = ckpt.load_state(path)
                model_sd = ckpt.load_safetensors(path / "model.safetensors")
                ema_sd = ckpt.load_safetensors(path / "ema.safetensors")
                disc_sd = ckpt.load_safetensors(path / "disc.safetensors") if self.disc is not None else None
            except (ModelError, FileNotFoundError) as e:
                bad.append((path, str(e)))
                continue
            break
        else:
            raise ConfigError(f"no readable checkpoint in {newest.parent} "
                              f"({bad[0][1].rstrip('.')}); start the run again without "
                              "--resume (in a new folder) or restore the checkpoint files.")
        for p, why in bad:
            log.warning("checkpoint %s is unreadable (%s); resuming from the previous valid one, %s",
                        p.name, why.rstrip("."), path.name)
        if state["world_size"] != self.info.world_size or state["batch_size"] != self.cfg.data.batch_size \
                or state["accum_steps"] != self.cfg.accum_steps:
            raise ConfigError(
                f"{path} was written with world size {state['world_size']}, batch {state['batch_size']}, "
                f"accumulation {state['accum_steps']}; resume with the same settings (now "
                f"{self.info.world_size}, {self.cfg.data.batch_size}, {self.cfg.accum_steps}).")
        try:
            self.model.load_state_dict(model_sd, strict=True)
            self.ema.module.load_state_dict(ema_sd, strict=True)
            self.opt_g.load_state_dict(state["opt_g"])
            if self.disc is not None:
                self.disc.load_state_dict(disc_sd, strict=True)
                if state["opt_d"]:
                    self.opt_d.load_state_dict(state["opt_d"])
        except (RuntimeError, ValueError, KeyError, FileNotFoundError, TypeError) as e:
            raise ConfigError(f"{path} does not fit the current model/discriminator settings "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); resume "
                              "with the run's own config (its config.yaml).") from None
        ckpt.set_rng_state(state["rng"])
        self.step = self.start_step = int(state["step"])
        log.info("resumed from %s (step %d)", path, self.step)

    # ------------------------------------------------------------------------------------------------
    # the loop

    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        c = self.cfg
        sampler = PositionSampler(batch_size=c.data.batch_size, rank=self.info.rank,
                                  world_size=self.info.world_size, start=self.start_step * c.accum_steps)
        loader = DataLoader(self.dataset, batch_sampler=sampler, num_workers=c.data.num_workers,
                            collate_fn=_collate, persistent_workers=c.data.num_workers > 0,
                            # workers start from a clean process: a forked copy of a parent that holds
                            # FFmpeg/OpenMP threads can hang or crash
                            multiprocessing_context="forkserver" if c.data.num_workers > 0 else None,
                            # its base seed from its own generator, not the global RNG: creating the
                            # loader after a resume must not shift the RNG a model uses (code restarts)
                            generator=torch.Generator().manual_seed(c.seed))
        for batch in loader:
            yield {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def _autocast(self):
        if not self.cfg.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _set_lr(self, step: int) -> float:
        o = self.cfg.optim
        lr = lr_at(step, o.lr, o)
        for g in self.opt_g.param_groups:
            g["lr"] = lr
        if self.opt_d is not None:
            lr_d = lr_at(step, o.d_lr or o.lr, o)
            for g in self.opt_d.param_groups:
                g["lr"] = lr_d
        return lr

    def train_step(self, batches: Iterator[dict[str, torch.Tensor]]) -> dict[str, float]:
        """One optimizer step (accum_steps micro-steps) of G, then of D when the GAN is on."""
        c = self.cfg
        step = self.step + 1
        lr = self._set_lr(step)
        accum = c.accum_steps
        gan_on = self.task.gan_on(step)
        sums: dict[str, float] = {}

        def add(logs: dict[str, torch.Tensor]) -> None:
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) / accum

        self.model_ddp.train()
        if self.disc is not None:
            self.disc.train()
            for p in self.d_params:  # D is not updated by the G step
                p.requires_grad_(False)
        disc_fn = self.disc  # plain module: no DDP gradient sync for the G step's pass through D
        self.opt_g.zero_grad(set_to_none=True)
        kept: list[tuple[torch.Tensor, torch.Tensor]] = []
        for a in range(accum):
            batch = next(batches)
            sync = a == accum - 1 or not self.info.enabled
            ctx = contextlib.nullcontext() if sync else self.model_ddp.no_sync()
            with ctx:
                with self._autocast():
                    loss, logs, fake = self.task.generator_loss(self.model_ddp, batch, step, disc_fn)
                (loss / accum).backward()
            add(logs)
            if gan_on:
                kept.append((batch["gt"], fake))
        # every rank must stop together: a rank that raised alone would leave the others waiting in the next
        # collective (DDP has already averaged the NaN gradients into theirs)
        bad = not math.isfinite(sums.get("loss", 0.0))
        if bdist.any_rank(bad, self.info, self.device):
            what = f"the loss is {sums.get('loss')}" if bad else "another process's loss is not finite"
            raise TrainingError(f"the training diverged: {what} at step {step}; lower the learning rate or "
                                "disable bf16, then --resume.")
        if c.optim.grad_clip:
            sums["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], c.optim.grad_clip))
        if c.bf16 and not self._grads_finite():
            # mixed precision: skip a step whose gradients overflowed (as AMP's GradScaler does)
            self._skipped += 1
            sums["skipped"] = 1.0
            if self._skipped >= 10:
                raise TrainingError(
                    "10 consecutive steps had non-finite gradients under bf16 "
                    f"(step {step}); train in fp32 (--fp32). On CPUs, torch 2.13's "
                    "oneDNN bf16 Conv3d weight gradient sporadically returns NaN.")
            self.opt_g.zero_grad(set_to_none=True)
        else:
            self._skipped = 0
            self.opt_g.step()
            self.ema.update(self.model)

        if gan_on:
            for p in self.d_params:
                p.requires_grad_(True)
            self.opt_d.zero_grad(set_to_none=True)
            for a, (gt, fake) in enumerate(kept):
                sync = a == accum - 1 or not self.info.enabled
                ctx = contextlib.nullcontext() if sync else self.disc_ddp.no_sync()
                with ctx:
                    with self._autocast():
                        d_loss, d_logs = self.task.disc_loss(self.disc_ddp, gt, fake)
                    (d_loss / accum).backward()
                add(d_logs)
            self.opt_d.step()
        elif self.disc is not None:
            for p in self.d_params:
                p.requires_grad_(True)
        sums["lr"] = lr
        self.step = step
        return bdist.all_reduce_mean(sums, self.info, self.device)

    def _grads_finite(self) -> bool:
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if not grads:
            return True
        ok = torch.stack([torch.isfinite(g).all() for g in grads]).all()
        if self.info.enabled:  # every rank must take the same decision
            import torch.distributed as dist

            flag = ok.to(torch.int32).to(self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            ok = flag
        return bool(ok)

    def run(self, max_steps: int | None = None) -> list[dict[str, float]]:
        """Train until `max_steps` (default: the config's); returns the logged records of this process."""
        try:
            if self.info.is_main:
                self._write_run_dir()
            return self._run(max_steps)
        except BaseException as e:
            if self.step == self.start_step:  # failed before its first step: no half-made run folder
                self._undo_start()
            elif isinstance(e, KeyboardInterrupt) or type(e).__name__ == "Terminated":  # Ctrl-C, kill
                try:  # what the CLI says instead of "no output was written"
                    last = ckpt.find_checkpoint(self.run_dir).name
                    e.batch_note = (f"{self.run_dir} keeps its checkpoints (the newest: {last}); continue "
                                    "with --resume")
                except (ConfigError, OSError, AttributeError):  # no checkpoint yet
                    pass
            raise

    def _run(self, max_steps: int | None) -> list[dict[str, float]]:
        c = self.cfg
        total = max_steps or c.max_steps
        self.dataset = build_dataset(c.data, seed=c.seed, progress=self.progress)
        self._fingerprint = data_fingerprint(self.dataset)
        logger = MetricLogger(self.run_dir, enabled=self.info.is_main, tensorboard=c.tensorboard,
                              resume_step=self.start_step if self.resume else None)
        if self.info.is_main:
            log.info("training %s: steps %d -> %d, world size %d, batch "
                     "%d x accum %d x %d processes, bf16 %s, device %s", c.task_name, self.start_step, total,
                     self.info.world_size, c.data.batch_size,
                     c.accum_steps, self.info.world_size, c.bf16, self.device)
        records: list[dict[str, float]] = []
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=self.start_step, desc=f"train {c.task_name}", unit="step",
                       dynamic_ncols=True)
        batches = self._batches()
        window: dict[str, float] = {}
        counts: dict[str, int] = {}
        try:
            while self.step < total:
                logs = self.train_step(batches)
                rec = {"step": self.step, **logs}
                records.append(rec)
                for k, v in logs.items():
                    window[k] = window.get(k, 0.0) + v
                    counts[k] = counts.get(k, 0) + 1
                if self.step % c.log_every == 0 or self.step == total or self.step == self.start_step + 1:
                    # the mean of every value over the steps since the previous record
                    logger.log(
                        self.step, {k: window[k] / counts[k] for k in window} | self._usage_window(logger)
                    )
                    window, counts = {}, {}
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({k: f"{logs[k]:.4g}" for k in ("loss", "l1", "ce") if k in logs})
                if self.step % c.ckpt_every == 0 or self.step == total:
                    self.save()
                    bdist.barrier(self.info)
                if (c.val.every and (self.step % c.val.every == 0 or self.step == total) and self.info.is_main
                        and hasattr(self.task, "validate")):
                    scores = self.task.validate(self.ema.module)
                    # the raw weights too: early in a run (or after an LR restart) the EMA lags behind them
                    raw = self.task.validate(self.model)
                    scores.update({f"{k}_raw": v for k, v in raw.items()
                                   if k in ("val_psnr", "val_gain_db", "val_ssim_gain")})
                    logger.log(self.step, scores)
                    log.info("step %d validation: %s", self.step,
                             ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
        finally:
            if bar is not None:
                bar.close()
            logger.close()
        return records

    def _usage_window(self, logger: MetricLogger) -> dict[str, float]:
        """Codebook usage since the previous record (tasks with `take_usage`, e.g. STC Stage I): the per-code
        counts (summed over ranks) go to the histogram sinks; returns `usage_active_<k>` (codes used at least
        once in the window) and `usage_perplexity_<k>` (exp of the entropy of the window's usage)."""
        take = getattr(self.task, "take_usage", None)
        if take is None:
            return {}
        usage = take()
        out: dict[str, float] = {}
        hists: dict[str, list[int]] = {}
        for key in sorted(usage):
            c = usage[key].to(torch.int64)
            if self.info.enabled:
                import torch.distributed as dist

                c = c.to(self.device)
                dist.all_reduce(c)
                c = c.cpu()
            p = c.double() / max(int(c.sum()), 1)
            out[f"usage_active_{key}"] = float((c > 0).sum())
            out[f"usage_perplexity_{key}"] = float(torch.exp(-(p * torch.log(p + 1e-12)).sum()))
            hists[f"codebook_usage_{key}"] = c.tolist()
        logger.histograms(self.step, hists)
        return out

    def close(self) -> None:
        bdist.cleanup()


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True,
          argv: list[str] | None = None) -> Path:
    """Run (or resume) a training stage; returns the run folder."""
    t = Trainer(cfg, resume=resume, progress=progress, argv=argv)
    try:
        t.run()
    finally:
        t.close()
    return t.run_dir

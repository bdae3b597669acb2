"""DDP robustness (issue 25 item 7), 2 processes on gloo with a tiny BFVR-Lite task on a real clip:

* a non-finite loss on ONE rank stops BOTH ranks with TrainingError (the flag is reduced before anyone
  acts, so no rank is left waiting in a collective: the test fails on a hang by its join timeout);
* ranks whose weights differ at a checkpoint both raise TrainingError naming it.
"""

from __future__ import annotations

import multiprocessing as mp
import socket
from pathlib import Path

import pytest

VIDEO = "lp_driving_d18.mp4"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, port: int, mode: str, video: str, out: str, result: str) -> None:
    import os

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    import torch

    from bfvr.errors import TrainingError
    from bfvr.train.config import config_from_dict
    from bfvr.train.trainer import Trainer

    cfg = config_from_dict({
        "task": "lite", "out_dir": out, "max_steps": 3, "ckpt_every": 1, "log_every": 1, "keep_ckpts": 0,
        "device": "cpu", "threads": 1, "tensorboard": False,
        "model": {"extra": {"widths": [8, 8, 8], "enc_blocks": [1, 1, 1], "dec_blocks": [1, 1]}},
        "data": {"paths": [video], "clip_len": 2, "size": 32, "max_frames": 4, "batch_size": 1,
                 "backend": "builtin"},
        "optim": {"lr": 1e-3},
    })
    t = Trainer(cfg, progress=False)
    if rank == 1 and mode == "nan":
        real = t.task.generator_loss

        def nan_loss(*args, **kwargs):
            loss, logs, fake = real(*args, **kwargs)
            loss = loss * float("nan")
            return loss, {**logs, "loss": loss}, fake

        t.task.generator_loss = nan_loss
    if rank == 1 and mode == "weights":
        with torch.no_grad():
            next(t.model.parameters()).add_(0.5)  # after DDP's start-up broadcast: the ranks now differ
    try:
        t.run()
        what = "finished"
    except TrainingError as e:
        what = f"TrainingError: {e}"
    finally:
        t.close()
    Path(result).write_text(what)


def _run_two(tmp_path: Path, mode: str, faces_dir: Path) -> list[str]:
    ctx = mp.get_context("spawn")
    port = _free_port()
    results = [tmp_path / f"rank{r}.txt" for r in range(2)]
    procs = [ctx.Process(target=_worker, args=(r, port, mode, str(faces_dir / VIDEO), str(tmp_path / "run"),
                                               str(results[r]))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    hung = [r for r, p in enumerate(procs) if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    assert not hung, f"rank(s) {hung} hung"
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return [r.read_text() for r in results]


@pytest.mark.slow  # two fresh processes import torch and the package
def test_nan_on_one_rank_stops_every_rank(faces_dir: Path, tmp_path: Path) -> None:
    out = _run_two(tmp_path, "nan", faces_dir)
    assert out[1].startswith("TrainingError: the training diverged: the loss is nan at step 1"), out
    assert out[0].startswith("TrainingError: the training diverged: another process's loss is not finite "
                             "at step 1"), out


@pytest.mark.slow
def test_ranks_with_different_weights_raise(faces_dir: Path, tmp_path: Path) -> None:
    out = _run_two(tmp_path, "weights", faces_dir)
    for text in out:
        assert text.startswith("TrainingError: the 2 processes hold different weights at step 1"), out
    # the checkpoint of a broken run is not written
    assert not list((tmp_path / "run" / "checkpoints").glob("step_*"))

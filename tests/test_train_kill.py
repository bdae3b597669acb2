"""Kill a real `bfvr train` process mid-run (SIGKILL), resume it with --resume: the next logged losses
equal those of an uninterrupted run with the same seed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers import tiny_dict


def _cmd(cfg: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bfvr.cli", "train", "--config", str(cfg), "--quiet", *extra]


@pytest.mark.slow  # ~40 s: three CLI runs of a tiny model
def test_sigkill_then_resume_matches_uninterrupted(faces_dir: Path, tmp_path: Path) -> None:
    from bfvr.train.tracking import read_metrics

    steps = 12
    ref = tmp_path / "ref.yaml"
    ref.write_text(yaml.safe_dump(tiny_dict(faces_dir, tmp_path / "ref", max_steps=steps, ckpt_every=3)))
    killed = tmp_path / "killed.yaml"
    killed.write_text(yaml.safe_dump(tiny_dict(faces_dir, tmp_path / "killed", max_steps=steps,
                                               ckpt_every=3)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    proc = subprocess.Popen(_cmd(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    latest = tmp_path / "killed/checkpoints/latest"
    deadline = time.time() + 240
    while not latest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    done = max(r["step"] for r in read_metrics(tmp_path / "killed"))
    assert done < steps

    r = subprocess.run(_cmd(ref), env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run(_cmd(killed, "--resume"), env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]

    a = {m["step"]: {k: v for k, v in m.items() if k != "time"} for m in read_metrics(tmp_path / "ref")}
    b = {m["step"]: {k: v for k, v in m.items() if k != "time"} for m in read_metrics(tmp_path / "killed")}
    assert sorted(a) == sorted(b) == list(range(1, steps + 1))
    assert a == b  # bit-identical losses on every step, before and after the kill


def test_ctrl_c_mid_training_says_the_checkpoints_are_kept(faces_dir: Path, tmp_path: Path) -> None:
    """Ctrl-C used to end `bfvr train` silently (exit 130); it says now which checkpoint is kept."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_dict(faces_dir, tmp_path / "run", max_steps=10_000, ckpt_every=1)))
    proc = subprocess.Popen(_cmd(cfg), env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    latest = tmp_path / "run/checkpoints/latest"
    try:
        deadline = time.time() + 240
        while not latest.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    line = err.strip().splitlines()[-1]
    newest = latest.read_text().strip()
    assert line.startswith("bfvr: error: interrupted; ") and "Traceback" not in err, err
    assert f"keeps its checkpoints (the newest: {newest})" in line and "--resume" in line, line

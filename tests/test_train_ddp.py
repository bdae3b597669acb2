"""Multi-process training: `torchrun --nproc_per_node=2` with gloo on CPU, through the real CLI.

* the two ranks' weights (generator and discriminator) are identical after every checkpoint;
* a 2-process run (batch 1 per process) and a 1-process run (batch 2) see the same clips and log the
  same step-1 losses within float tolerance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bfvr.train.config import config_from_dict
from helpers import tiny_dict


@pytest.mark.slow  # ~30 s: two fresh processes import torch and the package under torchrun
def test_torchrun_two_ranks_stay_identical_and_match_one_process(faces_dir: Path, tmp_path: Path) -> None:
    from bfvr.train.tracking import read_metrics
    from bfvr.train.trainer import Trainer

    # MPR is a statistic of each process's batch (the official recipe too), so leave it out of the comparison
    common = dict(max_steps=3, ckpt_every=1, model={"mpr": "none"})
    d2 = tiny_dict(faces_dir, tmp_path / "ddp", **common, data={"batch_size": 1})
    cfg_file = tmp_path / "ddp.yaml"
    cfg_file.write_text(yaml.safe_dump(d2))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "bfvr.cli", "train", "--config", str(cfg_file), "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]

    metas = [json.loads((p / "meta.json").read_text())
             for p in sorted((tmp_path / "ddp/checkpoints").glob("step_*"))]
    assert [m["step"] for m in metas] == [1, 2, 3]
    for m in metas:
        assert m["world_size"] == 2
        assert len(m["rank_weight_sha1"]) == 2 and len(set(m["rank_weight_sha1"])) == 1, m
    # the weights changed between checkpoints (the test would be void otherwise)
    assert len({m["rank_weight_sha1"][0] for m in metas}) == 3

    rec2 = read_metrics(tmp_path / "ddp")
    assert "d_loss" in rec2[1]  # the discriminator (its own DDP) trained from step 2
    d1 = tiny_dict(faces_dir, tmp_path / "one", **common, data={"batch_size": 2})
    rec1 = Trainer(config_from_dict(d1), progress=False).run(max_steps=1)
    for k in ("loss", "l1", "codebook", "perceptual"):
        assert rec2[0][k] == pytest.approx(rec1[0][k], rel=1e-5, abs=1e-7), k
    # the codebook usage of a window is summed over the ranks: the same counts as one process with both clips
    from bfvr.train.tracking import read_histograms

    h2, h1 = read_histograms(tmp_path / "ddp")[0], read_histograms(tmp_path / "one")[0]
    assert h2["codebook_usage_s"] == h1["codebook_usage_s"]
    assert h2["codebook_usage_t"] == h1["codebook_usage_t"]
    assert rec2[0]["usage_active_s"] == read_metrics(tmp_path / "one")[0]["usage_active_s"]

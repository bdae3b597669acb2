"""A method from its own package (tests/plugin_example, docs/architecture.md "Adding a method"): installed
with pip into a folder (offline, no build isolation), it is found through its ``bfvr.methods`` entry
point, and the ``bfvr`` commands use it with no line of bfvr changed: listed, trained (its own task, 2
steps on a real clip), exported, verified and restored with. Without the package on the path, bfvr does
not know it.

Each command runs in its own process with the install folder on PYTHONPATH, as a user's environment
would have it (this process's path is left alone)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import bfvr
from bfvr.io import probe, read_frames

EXAMPLE = Path(__file__).resolve().parent / "plugin_example"
TOY = "toy-sharpen"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """tests/plugin_example pip-installed into a folder (copied first: building writes beside the sources)."""
    root = tmp_path_factory.mktemp("plugin")
    src = shutil.copytree(EXAMPLE, root / "src", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = root / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(target), str(src)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (target / "bfvr_toy" / "method.py").is_file()
    return target


#: runs each command of a JSON list with `bfvr.cli.main` in one process (one start-up for all of them) and
#: prints a JSON list of (exit code, stdout, stderr)
RUNNER = """
import contextlib, io, json, sys
from bfvr.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    results.append((code, out.getvalue(), err.getvalue()))
print(json.dumps(results))
"""


def bfvr_cli(*commands: list[str], plugin: Path | None, cwd: Path) -> list[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of each ``bfvr`` command, run in one new process whose PYTHONPATH has the
    plugin's install folder (or not)."""
    paths = ([str(plugin)] if plugin else []) + [str(Path(bfvr.__file__).resolve().parents[1])]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(paths + ([os.environ["PYTHONPATH"]] if "PYTHONPATH" in os.environ
                                                  else []))}
    proc = subprocess.run([sys.executable, "-c", RUNNER, json.dumps([list(c) for c in commands])],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [tuple(r) for r in json.loads(proc.stdout.splitlines()[-1])]


def test_plugin_method_end_to_end(installed, faces_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("BFVR_HOME", str(tmp_path / "home"))
    clip = faces_dir / "lp_driving_d10.mp4"
    run, weights = tmp_path / "run", tmp_path / "toy.safetensors"
    bad, out = tmp_path / "bad.pt", tmp_path / "o.mp4"
    (tmp_path / "toy.yaml").write_text(
        f"task: toy\nname: toy\nout_dir: {run}\nseed: 0\nmax_steps: 2\nlog_every: 1\nckpt_every: 2\n"
        "device: cpu\nthreads: 1\n"
        f"data:\n  paths: [{clip}]\n  clip_len: 3\n  size: 64\n  crop: 32\n  recipe: bfvr\n  max_frames: 8\n"
        "  batch_size: 1\n  num_workers: 0\n  backend: builtin\n")
    import torch

    torch.save({"inp.weight": torch.zeros(8, 3, 3, 3)}, bad)
    listed, trained, exported, verified, refused, restored, masked = bfvr_cli(
        ["models"],
        ["train", "--config", str(tmp_path / "toy.yaml")],  # its own task: 2 steps on a real clip
        ["export", "--format", "safetensors", "-m", TOY, "--weights", str(run), "-o", str(weights),
         "--dtype", "fp32"],  # its weights, from the run
        ["models", "verify", TOY, str(weights)],  # the one weights path: exact keys and shapes
        ["models", "verify", TOY, str(bad)],
        ["restore", str(clip), "-o", str(out), "-m", TOY, "--weights", str(weights), "--has-aligned",
         "--max-frames", "6", "--precision", "fp32", "-q"],  # a real clip, the path every model takes
        ["restore", str(clip), "-o", str(tmp_path / "m.mp4"), "-m", TOY, "--weights", str(weights), "--mask",
         str(clip), "-q"],  # a flag it does not take: one sentence naming the models that do
        plugin=installed, cwd=tmp_path)
    assert listed[0] == 0 and TOY in listed[1] and "(no download: pass --weights)" in listed[1], listed
    assert trained[0] == 0, trained[2][-2000:]
    assert sum('"l1"' in line for line in (run / "metrics.jsonl").read_text().splitlines()) == 2  # 2 steps
    assert exported[0] == 0, exported[2][-2000:]
    assert verified[0] == 0 and f"fits '{TOY}'" in verified[1], verified
    assert refused[0] == 2 and "mismatching keys" in refused[2], refused
    assert restored[0] == 0, restored[2][-2000:]
    assert probe(out).frame_count == 6
    got, src = read_frames(out).astype(float), read_frames(clip, max_frames=6).astype(float)
    mse = ((got - src) ** 2).mean()
    assert 0 < mse < 10 ** (-25 / 10) * 255**2  # changed, yet near the input: a near-identity toy (> 25 dB)
    assert masked[0] == 2 and "--mask goes with --model dicface-inpaint" in masked[2], masked

    # without the package, bfvr does not know the toy
    (plain,) = bfvr_cli(["models"], plugin=None, cwd=tmp_path)
    assert plain[0] == 0 and TOY not in plain[1] and "bfvr-lite" in plain[1], plain

"""Checkpoints: written atomically, weights as safetensors, everything else (optimizer, scheduler, RNG,
data position) in a `state.pt` readable with `torch.load(weights_only=True)`.

Layout of a run folder:

    <run>/config.yaml          resolved config of the run
    <run>/run.json             git revision, versions, world size, command line (one entry per (re)start)
    <run>/metrics.jsonl        logged scalars, one JSON object per line
    <run>/checkpoints/step_00001000/{model,ema[,disc]}.safetensors, state.pt, meta.json
    <run>/checkpoints/latest   name of the newest complete checkpoint

A checkpoint is first written to a hidden temporary folder and renamed when complete, then `latest` is
replaced atomically: a crash at any moment leaves the previous checkpoint intact and `latest` valid.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from bfvr.errors import ConfigError, WeightsNotFoundError
from bfvr.io.paths import set_default_mode, temp_beside, write_atomic

CKPT_DIR = "checkpoints"
LATEST = "latest"


def _tensors(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU contiguous copies (safetensors refuses shared storage)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in sd.items()}


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: str | Path, step: int, weights: dict[str, dict[str, torch.Tensor]],
                    state: dict[str, Any], meta: dict[str, Any], keep: int = 0) -> Path:
    """Write checkpoint `step` (weights: name -> state_dict) atomically; prune to the newest `keep`."""
    ck = Path(run_dir) / CKPT_DIR
    ck.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:08d}"
    final = ck / name
    tmp = temp_beside(final, folder=True)  # a new folder (mkdtemp), never one placed there
    set_default_mode(tmp)
    for wname, sd in weights.items():
        save_file(_tensors(sd), str(tmp / f"{wname}.safetensors"), metadata={"step": str(step)})
    torch.save(state, tmp / "state.pt")
    (tmp / "meta.json").write_text(json.dumps({"step": step, **meta}, indent=1, default=str))
    for f in tmp.iterdir():  # make the contents durable before the rename publishes them
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    write_atomic(ck / LATEST, name + "\n", fsync=True)
    if keep > 0:
        old = sorted(p for p in ck.glob("step_*") if p.is_dir())[:-keep]
        for p in old:
            shutil.rmtree(p, ignore_errors=True)
    return final


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from a run folder, its checkpoints/ folder, or a checkpoint folder itself."""
    p = Path(path)
    if (p / "state.pt").is_file():
        return p
    for ck in (p / CKPT_DIR, p):
        latest = ck / LATEST
        if latest.is_file():
            cand = ck / latest.read_text().strip()
            if (cand / "state.pt").is_file():
                return cand
        steps = sorted(q for q in ck.glob("step_*") if (q / "state.pt").is_file()) if ck.is_dir() else []
        if steps:
            return steps[-1]
    raise ConfigError(f"no checkpoint found in {p}; give a run folder "
                      "or checkpoint folder written by bfvr train.")


def load_state(ckpt: Path) -> dict[str, Any]:
    """The `state.pt` of a checkpoint folder (ModelError saying why when it is unreadable or not bfvr's)."""
    from bfvr.errors import ModelError
    from bfvr.models.weights import torch_load

    state = torch_load(ckpt / "state.pt")
    missing = [k for k in ("step", "world_size", "batch_size", "accum_steps", "opt_g", "rng")
               if not isinstance(state, dict) or k not in state]
    if missing:
        raise ModelError(f"{ckpt / 'state.pt'} is not a bfvr training state (no {', '.join(missing)}).")
    return state


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """`safetensors.torch.load_file` with a one-sentence ModelError for a corrupt or truncated file."""
    from bfvr.errors import ModelError

    try:
        return load_file(str(path))
    except Exception as e:  # SafetensorError, OSError, ...
        raise ModelError(f"{path} cannot be loaded: it is corrupt, truncated or not a safetensors file "
                         f"({type(e).__name__}).") from None


def load_weights(path: str | Path, prefer: tuple[str, ...] = ("ema", "model")) -> dict[str, torch.Tensor]:
    """A state_dict from a .safetensors file, a checkpoint folder or a run folder (EMA weights preferred)."""
    p = Path(path)
    if p.is_file():
        if p.suffix == ".safetensors":
            return load_safetensors(p)
        from bfvr.models.weights import torch_load

        sd = torch_load(p)
        for key in ("params_ema", "params", "state_dict"):
            if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
                return sd[key]
        return sd
    if not p.exists():
        raise WeightsNotFoundError(f"weights not found: {p}; give a .safetensors "
                                   "file or a bfvr train run folder.")
    ck = find_checkpoint(p)
    for name in prefer:
        f = ck / f"{name}.safetensors"
        if f.is_file():
            return load_safetensors(f)
    raise WeightsNotFoundError(f"{ck} holds none of {', '.join(n + '.safetensors' for n in prefer)}.")

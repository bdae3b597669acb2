"""Checkpoints: written atomically, weights as safetensors, everything else (optimizer, scheduler, RNG,
data position) in a `state.pt` readable with `torch.load(weights_only=True)`.

Layout of a run folder:

    <run>/config.yaml          resolved config of the run
    <run>/run.json             git revision, versions, world size, command line (one entry per (re)start)
    <run>/metrics.jsonl        logged scalars, one JSON object per line
    <run>/checkpoints/step_00001000/{model,ema[,disc]}.safetensors, state.pt, meta.json
    <run>/checkpoints/latest   name of the newest complete checkpoint
    <run>/histograms.jsonl     codebook usage counts (tasks that log them), <run>/tb/ TensorBoard events
    <run>/.bfvr-run            the marker bfvr writes when it makes a run folder (`check_run_dir`)

A checkpoint is first written to a hidden temporary folder and renamed when complete, then `latest` is
replaced atomically: a crash at any moment leaves the previous checkpoint intact and `latest` valid; its
temporary folder is removed by the next `--resume` (`remove_temp_checkpoints`).

bfvr writes a run only into a folder it made (`check_run_dir`): a new or empty folder, or one holding its
marker `.bfvr-run` and nothing but the files above; `--resume` also takes a run made before the marker
existed (its run.json and checkpoints, nothing else). A folder of the user's (their config.yaml, notes,
a metrics.jsonl of their own) is refused with one sentence and left as it is.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from bfvr.errors import ConfigError, OutputError, WeightsNotFoundError
from bfvr.io.paths import atomic_output, write_atomic

CKPT_DIR = "checkpoints"
LATEST = "latest"
#: written into every run folder bfvr makes: how a later start tells its own run folder from a user's
RUN_MARKER = ".bfvr-run"
#: what bfvr writes at the top of a run folder: files, folders
RUN_FILES = {RUN_MARKER, "config.yaml", "run.json", "metrics.jsonl", "histograms.jsonl"}
RUN_DIRS = {CKPT_DIR, "tb"}
#: what it writes into checkpoints/ and into each checkpoint
CKPT_NAME = re.compile(r"step_\d{8}")
CKPT_FILES = {"model.safetensors", "ema.safetensors", "disc.safetensors", "state.pt", "meta.json"}
#: temporary files (or checkpoint folders) a killed run may leave: `.<name>.XXXXXXXX.partial<suffix>`,
#: and those of earlier versions (`.<name>.tmp<pid>`)
_TEMP = re.compile(r"\..+\.(partial.*|tmp\d+)")
#: the temporary names a checkpoint write makes in checkpoints/ (`save_checkpoint`): the checkpoint's folder
#: (`.step_NNNNNNNN.XXXXXXXX.partial`; `.step_NNNNNNNN.tmp<pid>` from earlier versions) and `latest`'s file
_CKPT_TEMP_DIR = re.compile(r"\.step_\d{8}\.([a-z0-9_]{8}\.partial|tmp\d+)")
_CKPT_TEMP_FILE = re.compile(r"\.latest\.[a-z0-9_]{8}\.partial")


def _own_entries(folder: Path, files: set[str], dirs: set[str] | re.Pattern) -> list[str]:
    """Names in `folder` that bfvr does not write there (links count as foreign)."""
    foreign = []
    for e in os.scandir(folder):
        n = e.name
        if e.is_symlink():
            foreign.append(n)
        elif e.is_dir():
            ok = n in dirs if isinstance(dirs, set) else bool(dirs.fullmatch(n))
            if not (ok or _TEMP.fullmatch(n)):
                foreign.append(n)
        elif not (n in files or _TEMP.fullmatch(n)):
            foreign.append(n)
    return foreign


def check_run_dir(run_dir: str | Path, *, resume: bool = False) -> None:
    """Refuse a run folder bfvr did not make, or one holding files bfvr did not write (see the module doc):
    an empty or missing folder is fine (bfvr makes it its own), else it needs the marker `RUN_MARKER`
    (`resume`: or a run.json and a checkpoint, a run made before the marker) and only bfvr's names."""
    rd = Path(run_dir)
    if not rd.exists():
        if rd.is_symlink():
            raise OutputError(f"'{rd}' is a broken symbolic link; choose a new or empty folder with --out.")
        return
    if not rd.is_dir():
        raise OutputError(f"'{rd}' is a file; choose a new or empty folder for the run with --out.")
    names = set(os.listdir(rd))
    if not names:
        return
    marked = RUN_MARKER in names and (rd / RUN_MARKER).is_file() and not (rd / RUN_MARKER).is_symlink()
    ck = rd / CKPT_DIR
    has_ckpt = ck.is_dir() and any((q / "state.pt").is_file() for q in ck.glob("step_*"))
    if not (marked or (resume and "run.json" in names and has_ckpt)):
        raise OutputError(f"'{rd}' is not a run folder made by bfvr train (it has no {RUN_MARKER}), so the "
                          "run will not write into it; choose a new or empty folder with --out.")
    foreign = _own_entries(rd, RUN_FILES, RUN_DIRS)
    if ck.is_dir() and not ck.is_symlink():
        foreign += [f"{CKPT_DIR}/{n}" for n in _own_entries(ck, {LATEST}, CKPT_NAME)]
        for q in ck.iterdir():
            if CKPT_NAME.fullmatch(q.name) and q.is_dir() and not q.is_symlink():
                foreign += [f"{CKPT_DIR}/{q.name}/{n}" for n in _own_entries(q, CKPT_FILES, set())]
    if foreign:
        shown = ", ".join(sorted(foreign)[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise OutputError(f"'{rd}' holds files bfvr train did not write ({shown}), so the run will not "
                          "write into it; move them away or choose a new or empty folder with --out.")


def remove_temp_checkpoints(run_dir: str | Path) -> list[str]:
    """Delete what a killed checkpoint write left in `run_dir`/checkpoints (called by ``--resume``): the
    temporary checkpoint folders and `latest` files named as `save_checkpoint` names them. Only in a run
    folder bfvr made (its marker `RUN_MARKER`), only such a folder that holds nothing but checkpoint files
    (`CKPT_FILES`, no links), never a link; anything else is left as it is. Returns the names removed."""
    rd = Path(run_dir)
    ck, marker = rd / CKPT_DIR, rd / RUN_MARKER
    if not (marker.is_file() and not marker.is_symlink()) or ck.is_symlink() or not ck.is_dir():
        return []
    removed = []
    for e in sorted(os.scandir(ck), key=lambda e: e.name):
        try:
            if e.is_symlink():
                continue
            if _CKPT_TEMP_DIR.fullmatch(e.name) and e.is_dir():
                inner = list(os.scandir(e.path))
                if all(i.name in CKPT_FILES and i.is_file(follow_symlinks=False) for i in inner):
                    for i in inner:
                        os.unlink(i.path)
                    os.rmdir(e.path)
                    removed.append(e.name)
            elif _CKPT_TEMP_FILE.fullmatch(e.name) and e.is_file(follow_symlinks=False):
                os.unlink(e.path)
                removed.append(e.name)
        except OSError:  # changed meanwhile, or not ours to remove: left as it is
            continue
    return removed


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
    with atomic_output(final, folder=True) as tmp:  # a new folder (mkdtemp), never one placed there
        for wname, sd in weights.items():
            save_file(_tensors(sd), str(tmp / f"{wname}.safetensors"), metadata={"step": str(step)})
        torch.save(state, tmp / "state.pt")
        (tmp / "meta.json").write_text(json.dumps({"step": step, **meta}, indent=1, default=str))
        for f in tmp.iterdir():  # make the contents durable before the rename publishes them
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(final)
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

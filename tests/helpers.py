"""Helpers shared by the test modules (imported as `helpers`: pytest's `pythonpath` setting in pyproject.toml
puts tests/ on sys.path, so no test edits sys.path and no test module imports another). Fixtures live in
conftest.py; plain functions and constants live here."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BFVR_SHARED", REPO.parent / "shared"))
#: the real face clip of the short training runs (480x480 talking head, 216 frames)
TRAIN_VIDEO = "lp_driving_d18.mp4"


def run_cli(*args: str) -> int:
    """Run `bfvr ARGS` in-process (as the console script would) and return its exit code."""
    from bfvr.cli import main

    try:
        main(list(args))
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


def shared_path(*parts: str) -> Path:
    """Path inside ../shared, or skip the calling test with a clear reason when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not found: {p} (set BFVR_SHARED to the shared folder)")
    return p


def golden_weights() -> ModuleType:
    """The shared golden-weights tool (../shared/tools/golden_weights.py, not a package) as a module; skips
    the calling test when ../shared is absent."""
    mod = sys.modules.get("golden_weights")
    if mod is None:
        spec = importlib.util.spec_from_file_location("golden_weights",
                                                      shared_path("tools", "golden_weights.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules["golden_weights"] = mod
        spec.loader.exec_module(mod)
    return mod


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays (inf when equal)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def make_bad_input(tmp_path: Path, synth_clip: Path, case: str) -> Path:
    """The bad inputs of the issue, made for real (the io and CLI tests)."""
    import cv2

    from bfvr.io.synth import pattern_frame, synth_video

    if case == "missing":
        return tmp_path / "nope.mp4"
    if case == "empty_dir":
        d = tmp_path / "empty_dir"
        d.mkdir()
        return d
    if case == "text":
        p = tmp_path / "notes.mp4"
        p.write_text("this is not a video\n" * 50)
        return p
    if case in ("png_as_mp4", "jpg_as_mp4"):
        ext = ".png" if case == "png_as_mp4" else ".jpg"
        ok, buf = cv2.imencode(ext, pattern_frame(0, 64, 64))
        p = tmp_path / f"{case}.mp4"
        p.write_bytes(buf.tobytes())
        return p
    if case == "truncated":  # moov at the end (x264 default): cut it off
        data = synth_clip.read_bytes()
        p = tmp_path / "truncated.mp4"
        p.write_bytes(data[: len(data) // 2])
        return p
    if case == "truncated_faststart":  # moov first: the index promises frames the file no longer has
        src = synth_video(tmp_path / "fs.mp4", frames=24, width=128, height=128,
                          container_options={"movflags": "+faststart"})
        data = src.read_bytes()
        p = tmp_path / "truncated_fs.mp4"
        p.write_bytes(data[: int(len(data) * 0.7)])
        return p
    if case == "zero_frames":
        return synth_video(tmp_path / "zero.mp4", frames=0, width=64, height=64, audio=False)
    if case == "audio_only":
        return synth_video(tmp_path / "audio.m4a", width=0, height=0, audio=True, container_format="mp4")
    if case == "empty_file":
        p = tmp_path / "empty.mp4"
        p.write_bytes(b"")
        return p
    raise ValueError(case)


#: a small PGTFormer (32x32 input, 8x8 latent, window attention at 16x16 and 8x8, 2 fusion levels)
SMALL = {
    "ddconfig": {
        "z_channels": 32,
        "resolution": 32,
        "in_channels": 3,
        "out_ch": 3,
        "ch": 32,
        "ch_mult": [1, 2, 2],
        "depths": [2, 2, 2],
        "num_heads": [2, 2, 2],
        "window_sizes": [[4, 4]] * 3,
        "num_frames": 3,
        "num_res_blocks": 1,
        "attn_resolutions": [8, 16],
        "dropout": 0.0,
    },
    "embed_dim": 64,
    "n_embed": 64,
    "latent_shape": [8, 8, 64],
    "code_shape": [8, 8, 1],
    "dim_embd": 64,
    "n_head": 4,
    "n_layers": 2,
    "connect_list": ["8", "16"],
    "w": 1.0,
    "adain": True,
    "tf": 3,
}


def small_net(seed: int = 0):
    """A PGTFormer of the SMALL config with random non-trivial norms (eval mode)."""
    import torch

    from bfvr.models.pgtformer import PGTFormer

    torch.manual_seed(seed)
    net = PGTFormer(**SMALL)
    # random non-trivial norms / BN statistics so that every parameter matters
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("running_var"):
                t.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                t.normal_(0, 0.1)
            elif t.dtype.is_floating_point and t.dim() == 1:
                t.add_(torch.randn_like(t) * 0.1)
    return net.eval()


def tiny_dict(faces_dir: Path, out: Path, **top) -> dict:
    """The smallest STC Stage-I config: 2-level VQGAN (latent T/2 x H/2), 32x32 frames, 4-frame clips."""
    d = {
        "stage": "stage1", "name": "t", "out_dir": str(out), "seed": 3, "max_steps": 4, "log_every": 1,
        "ckpt_every": 2, "keep_ckpts": 0, "threads": 1, "device": "cpu", "tensorboard": False,
        "model": {"nf": 32, "ch_mult": [1, 2], "res_blocks": 1, "codebook_size": 64, "emb_dim": 32},
        "data": {"paths": [str(faces_dir / TRAIN_VIDEO)], "clip_len": 4, "size": 40, "crop": 32,
                 "max_frames": 12, "batch_size": 2, "backend": "builtin", "hflip": True},
        "loss": {"disc_start": 2, "gan": 0.4},
        "disc": {"backbone": "conv", "width": 8, "depth": 2, "feat_dim": 16},
        "optim": {"lr": 1e-3},
    }
    for k, v in top.items():
        if isinstance(v, dict):
            d.setdefault(k, {}).update(v)
        else:
            d[k] = v
    return d


def make_trainer(cfg, **kw):
    """A Trainer without a progress bar."""
    from bfvr.train.trainer import Trainer

    return Trainer(cfg, progress=False, **kw)


def resume_equals_straight(make, tmp: Path, steps: int) -> list[dict]:
    """`steps` straight vs steps/2 + resume: equal logs and weights. Returns the straight run's records."""
    import torch
    from safetensors.torch import load_file

    rec_a = make_trainer(make(tmp / "a", steps)).run()
    make_trainer(make(tmp / "b", steps)).run(max_steps=steps // 2)
    torch.manual_seed(999)
    tb = make_trainer(make(tmp / "b", steps), resume=True)
    assert tb.step == steps // 2
    rec_b = tb.run()
    for ra, rb in zip(rec_a[steps // 2 :], rec_b):
        assert {k: v for k, v in ra.items() if k != "time"} == {k: v for k, v in rb.items() if k != "time"}
    last = f"checkpoints/step_{steps:08d}"
    for name in ("model", "ema"):
        wa, wb = (
            load_file(str(tmp / "a" / last / f"{name}.safetensors")),
            load_file(str(tmp / "b" / last / f"{name}.safetensors")),
        )
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    return rec_a


def lowered(records: list[dict], key: str = "loss", n: int = 3) -> bool:
    """The mean of the last n logged values is below the mean of the first n."""
    vals = [r[key] for r in records]
    return float(np.mean(vals[-n:])) < float(np.mean(vals[:n]))


def cut_clip(src: Path, dst: Path, frames: int, size: int = 96, crop: tuple[int, int] | None = None) -> Path:
    """The first `frames` frames of a real clip, resized to size x size (or a crop), with its timestamps and
    (when it has one) its audio."""
    import cv2

    from bfvr.io import VideoWriter, open_video

    with open_video(src) as r:
        info = r.info
        with VideoWriter(
            dst,
            fps=info.fps,
            time_base=info.time_base,
            audio_from=src if info.has_audio else None,
            crf=16,
            preset="ultrafast",
        ) as w:
            for i, (f, p) in enumerate(r.frames()):
                if i >= frames:
                    break
                if crop is not None:
                    y, x = crop
                    f = np.ascontiguousarray(f[y : y + size, x : x + size])
                else:
                    f = cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA)
                w.write(f, [p])
    return dst


def frames_and_pts(path: Path) -> tuple[np.ndarray, list]:
    """All frames of a video (uint8 [N,H,W,3]) and their pts."""
    from bfvr.io import open_video

    with open_video(path) as r:
        fr = list(r.frames())
    return np.stack([f for f, _ in fr]), [p for _, p in fr]


def audio_packets(path: Path) -> list[tuple]:
    """(pts, bytes) of every audio packet of a file (empty without audio)."""
    import av

    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        return [(p.pts, bytes(p)) for p in c.demux(c.streams.audio[0]) if p.size]


def lite_small():
    """The bundled BFVR-Lite (fp32) at the clip's own size."""
    from bfvr.models.hub import load_model

    m = load_model("bfvr-lite", precision="fp32")
    m.canvas = None  # run at the clip's own size (a small real crop keeps the test fast)
    return m


#: a small DicFace (32x32 frames, 5-frame windows) for fast tests
DICFACE_SMALL = {
    "dim_embed": 32,
    "n_head": 2,
    "n_layers": 2,
    "codebook_size": 64,
    "latent_size": 16,
    "connect_list": ["8", "16"],
    "frame_length": 5,
    "nf": 32,
    "ch_mult": [1, 1, 2, 2],
    "res_blocks": 1,
    "img_size": 32,
    "attn_resolutions": [4],
    "emb_dim": 32,
}

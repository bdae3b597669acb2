"""ClipDataset: paired LQ/GT windows, deterministic under a seed and with DataLoader workers."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from bfvr.data import ClipDataset
from bfvr.errors import ConfigError


@pytest.fixture(scope="module")
def clips_dir(make_clip, tmp_path_factory):
    d = tmp_path_factory.mktemp("ds")
    shutil.copy(make_clip("a.mp4", frames=30, width=96, height=80, audio=False), d / "a.mp4")
    shutil.copy(make_clip("b.mp4", frames=12, width=64, height=64, audio=False), d / "b.mp4")
    return d


def test_items_are_paired_float_clips(clips_dir) -> None:
    ds = ClipDataset(clips_dir, clip_len=8, size=48, recipe="stc", seed=0)
    assert len(ds) == 2
    it = ds[0]
    assert it["lq"].shape == it["gt"].shape == (8, 3, 48, 48)
    assert it["lq"].dtype == torch.float32 and 0 <= float(it["lq"].min()) and float(it["lq"].max()) <= 1
    assert not torch.equal(it["lq"], it["gt"])
    p = json.loads(it["params"])
    assert p["recipe"] == "stc" and 0 <= p["start"] <= 30 - 8 and p["size"] == [48, 48]
    cthw = ClipDataset(clips_dir, clip_len=8, size=48, recipe="stc", seed=0, layout="CTHW")[0]
    assert cthw["lq"].shape == (3, 8, 48, 48) and torch.equal(cthw["lq"], it["lq"].permute(1, 0, 2, 3))


def test_gt_matches_the_source_window(clips_dir) -> None:
    from bfvr.io import read_frames

    ds = ClipDataset(clips_dir, clip_len=6, size=80, recipe=None, seed=3, crop="center", hflip=False)
    it = ds[0]
    src = read_frames(clips_dir / "a.mp4")[it["start"]:it["start"] + 6, :, 8:88]  # centre 80x80 of 96x80
    gt = (it["gt"].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(gt, src)
    assert torch.equal(it["lq"], it["gt"])


def test_deterministic_by_seed_epoch_index(clips_dir) -> None:
    ds = ClipDataset(clips_dir, clip_len=8, size=32, recipe="keep", seed=1, crop="random", samples_per_clip=3)
    a, b = ds[4], ds[4]
    assert torch.equal(a["lq"], b["lq"]) and a["params"] == b["params"]
    others = [ds[i]["params"] for i in range(len(ds)) if i != 4]
    assert a["params"] not in others
    ds.set_epoch(1)
    assert ds[4]["params"] != a["params"]
    ds2 = ClipDataset(clips_dir, clip_len=8, size=32, recipe="keep", seed=2, crop="random",
                      samples_per_clip=3)
    assert ds2[4]["params"] != a["params"]


def test_dataloader_workers_give_the_same_batches(clips_dir) -> None:
    ds = ClipDataset(clips_dir, clip_len=4, size=32, recipe="stc", seed=5, samples_per_clip=2)
    one = list(DataLoader(ds, batch_size=2, num_workers=0))
    two = list(DataLoader(ds, batch_size=2, num_workers=2, multiprocessing_context="forkserver"))
    assert len(one) == len(two) == 2
    for x, y in zip(one, two):
        assert torch.equal(x["lq"], y["lq"]) and torch.equal(x["gt"], y["gt"]) and x["params"] == y["params"]
    assert one[0]["lq"].shape == (2, 4, 3, 32, 32)


def test_short_clips_ping_pong_and_flicker_dir(clips_dir, tmp_path) -> None:
    ds = ClipDataset([clips_dir / "b.mp4"], clip_len=20, size=32, recipe="gray", seed=0, hflip=False)
    it = ds[0]
    assert it["gt"].shape[0] == 20
    assert torch.equal(it["gt"][12], it["gt"][10])  # 0..11 then 10, 9, ...
    # pre-generated LQ videos: the window comes from there, with the same crop
    pre = tmp_path / "pre"
    pre.mkdir()
    shutil.copy(clips_dir / "a.mp4", pre / "a.mp4")
    ds = ClipDataset([clips_dir / "a.mp4"], clip_len=5, size=32, seed=0, flicker_dir=pre)
    it = ds[0]
    assert torch.equal(it["lq"], it["gt"]) and json.loads(it["params"])["recipe"] == "pre-generated"


def test_manifest_source_uses_kept_clips_only(clips_dir, tmp_path) -> None:
    m = tmp_path / "manifest.jsonl"
    m.write_text("\n".join(json.dumps(r) for r in [
        {"name": "a", "path": str(clips_dir / "a.mp4"), "frames": 30, "kept": True},
        {"name": "b", "path": str(clips_dir / "b.mp4"), "frames": 12, "kept": False,
         "reasons": ["x"]}]) + "\n")
    ds = ClipDataset(m, clip_len=4, size=16, recipe=None)
    assert len(ds) == 1 and ds[0]["name"] == "a"
    with pytest.raises(ConfigError):
        ClipDataset(m, crop="zoom")

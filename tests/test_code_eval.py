"""Stage-II code-prediction diagnostics (bfvr.train.code_eval, `bfvr evaluate-codes`): the top-k accuracy
against hand-computed values, the accuracies in the logs of a real tiny Stage-II run, and the report on
held-out real clips."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from bfvr.train.code_eval import topk_accuracy

TRAIN_VIDEO = "lp_driving_d18.mp4"
HELD_OUT = ("lp_driving_d20.mp4", "lp_source_s32.mp4")


def test_topk_accuracy_hand_computed() -> None:
    """4 positions, 6 codes. Target ranks (0 = highest logit): 0, 4, 5, 2 -> top-1 1/4, top-2 1/4,
    top-3 2/4, top-5 3/4, top-6 (and any k > 6) 4/4."""
    down = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    logits = torch.stack([down, down, down, down.flip(0)])
    targets = torch.tensor([0, 4, 5, 3])
    acc = topk_accuracy(logits, targets, (1, 2, 3, 5, 6, 10))
    assert acc == {1: 0.25, 2: 0.25, 3: 0.5, 5: 0.75, 6: 1.0, 10: 1.0}
    # the layout of the lookup transformers' output: [(B*T'), H'*W', N] logits, [(B*T'), H'*W'] targets
    acc2 = topk_accuracy(logits.reshape(2, 2, 6), targets.reshape(2, 2))
    assert acc2 == {1: 0.25, 5: 0.75}
    with pytest.raises(ValueError, match="do not match"):
        topk_accuracy(logits, targets[:3])
    for bad in ((0,), (1, -1)):
        with pytest.raises(ValueError, match="k >= 1"):
            topk_accuracy(logits, targets, bad)


def test_training_stems_warns_when_data_paths_unreadable(tmp_path: Path) -> None:
    """A run whose data.paths cannot be read any more: a warning that held-out cannot be checked, no
    stems; readable paths: their stems minus data.exclude, no warning."""
    from types import SimpleNamespace

    from bfvr.train.code_eval import _training_stems

    warns: list[str] = []
    gone = SimpleNamespace(data=SimpleNamespace(paths=[str(tmp_path / "moved")], exclude=[]))
    assert _training_stems(gone, warns) == set()
    assert len(warns) == 1 and warns[0].startswith("could not read the run's data.paths (training data "
                                                   "not found")
    assert warns[0].endswith("cannot check whether the clips are held out.")
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).write_bytes(b"")
    warns.clear()
    ok = SimpleNamespace(data=SimpleNamespace(paths=[str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")],
                                              exclude=["b"]))
    assert _training_stems(ok, warns) == {"a"} and warns == []


def test_evaluate_codes_input_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """No checkpoint, a missing video, an unknown recipe: one sentence each, exit 2, no report."""
    from helpers import run_cli

    empty = tmp_path / "empty_run"
    empty.mkdir()
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    out = tmp_path / "rep"
    cases = [(["--run", str(empty), "--videos", str(clip)], "no checkpoint found"),
             (["--run", str(empty), "--videos", str(tmp_path / "nope.mp4")], "video not found"),
             (["--run", str(empty), "--videos", str(clip), "--recipe", "stcc"], "unknown degradation recipe")]
    for args, msg in cases:
        assert run_cli("evaluate-codes", *args, "--out", str(out)) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and msg in err, err
    assert not out.exists()


@pytest.fixture(scope="module")
def runs(faces_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A real Stage-I run (2 steps) and a Stage-II run on it (3 steps, logged every step) on one shared
    clip: 32x32 crops of 40x40 frames, 4-frame clips."""
    from bfvr.train.config import config_from_dict
    from bfvr.train.trainer import Trainer
    from helpers import tiny_dict

    root = tmp_path_factory.mktemp("codes")
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    s1 = root / "s1"
    Trainer(config_from_dict(tiny_dict(faces_dir, s1, max_steps=2, ckpt_every=2, model={"mpr": "none"},
                                       loss={"gan": 0.0})), progress=False).run()
    s2 = root / "s2"
    d = tiny_dict(faces_dir, s2, stage="stage2", max_steps=3, ckpt_every=3, tensorboard=True,
                  model={"stage1_weights": str(s1), "n_head": 2, "n_layers": 1, "dim_mlp": 64,
                         "connect_list": []},
                  data={"recipe": "stc"}, optim={"lr": 1e-3})
    Trainer(config_from_dict(d), progress=False).run()
    yield {"s1": s1, "s2": s2, "root": root}
    torch.set_num_threads(old_threads)


def test_stage2_logs_topk_accuracy(runs: dict[str, Path]) -> None:
    """metrics.jsonl (and TensorBoard, when installed) of a Stage-II run hold top-1 and top-5 accuracy of
    both codebooks for every logged step, as fractions with top-5 >= top-1."""
    recs = [json.loads(x) for x in (runs["s2"] / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2, 3]
    for r in recs:
        for key in ("s", "t"):
            assert 0.0 <= r[f"acc_{key}"] <= r[f"acc5_{key}"] <= 1.0
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return
    acc = EventAccumulator(str(runs["s2"] / "tb"))
    acc.Reload()
    for name in ("acc_s", "acc_t", "acc5_s", "acc5_t"):
        assert [e.value for e in acc.Scalars(name)] == pytest.approx([r[name] for r in recs])


def test_evaluate_codes_report(runs: dict[str, Path], faces_dir: Path, capsys: pytest.CaptureFixture) -> None:
    """`bfvr evaluate-codes` on two held-out clips + the training clip: a table per video + mean for both
    codebooks, values in [0, 1], top-5 >= top-1, reproducible (seeded degradation), the training clip
    flagged; a Stage-I run and an existing report are one-sentence errors."""
    from helpers import run_cli

    out = runs["root"] / "report"
    args = ["evaluate-codes", "--run", str(runs["s2"]), "--max-frames", "8", "--seed", "3", "-q",
            "--threads", "1"]
    vids = [str(faces_dir / v) for v in (*HELD_OUT, TRAIN_VIDEO)]
    vid_args = [a for v in vids for a in ("--videos", v)]
    assert run_cli(*args, *vid_args, "--out", str(out)) == 0
    printed = capsys.readouterr().out
    header = next(line for line in printed.splitlines() if line.startswith("| video"))
    for col in ("top1_s", "top5_s", "top1_t", "top5_t"):
        assert f"{col} ↑" in header
    assert "ce_s ↓" in header and "ce_t ↓" in header
    res = json.loads((out / "metrics.json").read_text())
    assert [r["video"] for r in res["rows"]] == [*HELD_OUT, TRAIN_VIDEO]
    assert res["options"]["recipe"] == "stc" and res["options"]["step"] == 3
    for r in [*res["rows"], res["mean"]]:
        for key in ("s", "t"):
            assert 0.0 <= r[f"top1_{key}"] <= r[f"top5_{key}"] <= 1.0
            assert r[f"ce_{key}"] > 0
    # 8 frames = two 4-frame windows; latent 2 frames x 16 x 16 tokens per window
    assert all(r["frames"] == 8 and r["tokens"] == 2 * 2 * 16 * 16 for r in res["rows"])
    assert res["mean"]["top1_s"] == pytest.approx(sum(r["top1_s"] for r in res["rows"]) / 3)
    # the top-1 accuracies of one held-out clip, recomputed here from the pieces: its first 8 frames
    # stretched to 40x40 (builtin reader), each 4-frame window degraded with its own draw of the run's
    # recipe (child w of clip_rng(3, stem)) at 40x40, then both centre-cut to 32x32; hits = argmax
    import cv2

    from bfvr.degrade import clip_rng, recipe
    from bfvr.io import probe
    from bfvr.io.reader import read_frames
    from bfvr.train.code_eval import load_stage2_run

    task, _, meta = load_stage2_run(runs["s2"])
    assert meta["weights"] == "ema" and meta["step"] == 3
    path = faces_dir / HELD_OUT[0]
    frames = np.stack([cv2.resize(f, (40, 40), interpolation=cv2.INTER_AREA)
                       for f in read_frames(path, max_frames=8)])
    rngs = clip_rng(3, path.stem).spawn(2)
    hits = {"s": 0, "t": 0}
    with torch.no_grad():
        for w in range(2):
            gt = frames[4 * w:4 * w + 4]
            lq = recipe("stc")(gt, rngs[w], fps=probe(path).fps)[0]
            gt_t, lq_t = (torch.from_numpy(np.ascontiguousarray(x[:, 4:36, 4:36])).permute(3, 0, 1, 2)[None]
                          .float() / 255 for x in (gt, lq))
            _, idx_s, idx_t = task.targets(gt_t)
            logits_s, logits_t, _ = task.model(lq_t, w=0, code_only=True)
            hits["s"] += int((logits_s.argmax(-1) == idx_s).sum())
            hits["t"] += int((logits_t.argmax(-1) == idx_t).sum())
    row = res["rows"][0]
    assert row["top1_s"] == pytest.approx(hits["s"] / row["tokens"], abs=1e-9)
    assert row["top1_t"] == pytest.approx(hits["t"] / row["tokens"], abs=1e-9)
    assert any(TRAIN_VIDEO in w and "training data" in w for w in res["warnings"])
    assert not any(v in w for w in res["warnings"] for v in HELD_OUT)
    assert (out / "metrics.md").read_text().count("\n| ") >= 4
    # same seed -> the same numbers; the report is not replaced without --overwrite
    out2 = runs["root"] / "report2"
    assert run_cli(*args, *vid_args[:4], "--out", str(out2)) == 0
    res2 = json.loads((out2 / "metrics.json").read_text())
    assert res2["rows"] == res["rows"][:2]
    before = (out / "metrics.json").read_text()
    capsys.readouterr()
    assert run_cli(*args, *vid_args, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "already holds a report" in err and len(err.strip().splitlines()) == 1
    assert (out / "metrics.json").read_text() == before
    # a Stage-I run: one sentence, no report
    assert run_cli("evaluate-codes", "--run", str(runs["s1"]), "--videos", vids[0],
                   "--out", str(runs["root"] / "r1")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "stc-stage1 checkpoint, not an STC Stage-II one" in err
    assert not (runs["root"] / "r1").exists()
    # bad --threads / --max-frames shorter than the run's 4-frame clips: one sentence each, no report
    for bad, msg in ((["--threads", "-1"], "--threads must be at least 1"),
                     (["--max-frames", "3"], "--max-frames 3 is shorter than the run's clip length 4")):
        assert run_cli("evaluate-codes", "--run", str(runs["s2"]), "--videos", vids[0], *bad,
                       "--out", str(runs["root"] / "r2")) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and msg in err, err
    assert not (runs["root"] / "r2").exists()


def test_clip_frames_follow_the_runs_framing(make_clip) -> None:
    """The scored frames are made like the run's training frames at data.size: stretched (official,
    built-in reader) or the centre square (ClipDataset crop_mode center/random); after degradation they
    are centre-cut to data.crop."""
    from types import SimpleNamespace

    import cv2

    from bfvr.io.reader import read_frames
    from bfvr.train.code_eval import _center_cut, _clip_frames

    clip = make_clip("wide.mp4", frames=6, width=320, height=256, fps=25)
    raw = read_frames(clip, max_frames=4)

    def cfg(**kw):
        d = dict(backend="builtin", crop_mode="stretch", size=64, crop=None, face_crop=False) | kw
        return SimpleNamespace(data=SimpleNamespace(**d))

    stretched, fps = _clip_frames(clip, cfg(), 4)
    assert stretched.shape == (4, 64, 64, 3) and fps == 25
    assert np.array_equal(stretched[0], cv2.resize(raw[0], (64, 64), interpolation=cv2.INTER_AREA))
    centre, _ = _clip_frames(clip, cfg(backend="bfvr", crop_mode="center"), 4)
    assert np.array_equal(centre[1], cv2.resize(raw[1][:, 32:288], (64, 64), interpolation=cv2.INTER_AREA))
    assert not np.array_equal(centre, stretched)
    cut = _center_cut(stretched, 48)
    assert cut.shape == (4, 48, 48, 3) and np.array_equal(cut, stretched[:, 8:56, 8:56])
    assert _center_cut(stretched, None) is stretched and _center_cut(stretched, 64) is stretched

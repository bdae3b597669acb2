"""User errors stay user errors (issue 10): one sentence, exit 2, nothing left behind, input unchanged --
never "internal error ... please report it", never torch's advice to turn off `weights_only`."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import pytest
import torch

from conftest import REPO, run_cli


def _sentence(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if ln.strip() and not ln.startswith("20")]  # log lines
    assert len(lines) == 1 and lines[0].startswith("bfvr: error: "), err
    assert "internal error" not in err and "Traceback" not in err and "weights_only" not in err, err
    return lines[0]


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture
def clip(tmp_path, faces_dir) -> Path:
    inp = tmp_path / "in" / "clip.mp4"
    inp.parent.mkdir()
    shutil.copyfile(faces_dir / "lp_driving_d18.mp4", inp)
    return inp


@pytest.mark.parametrize("extra",
                         [["--clip-len", "4", "--overlap", "4"], ["--clip-len", "4", "--overlap", "9"],
                                   ["--upscale", "40"]])
def test_restore_option_errors(tmp_path, clip, capsys, extra) -> None:
    before = _sha(clip)
    out = tmp_path / "out"
    out.mkdir()
    code = run_cli("restore", str(clip), "-o", str(out / "o.mp4"), "--model", "identity", "-q", *extra)
    assert code == 2
    _sentence(capsys)
    assert not list(out.iterdir()) and _sha(clip) == before


def test_prepare_max_frames_zero(tmp_path, clip, capsys) -> None:
    assert run_cli("prepare", str(clip), str(tmp_path / "prep"), "--max-frames", "0", "--no-orientation") == 2
    assert "--max-frames" in _sentence(capsys)
    assert not (tmp_path / "prep").exists()


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_weights_that_fail_to_load_say_why(tmp_path, clip, capsys) -> None:
    torch.save({"params_ema": {"w": torch.zeros(1)}, "obj": _Evil()}, tmp_path / "evil.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    torch.save({"w": torch.zeros(3)}, tmp_path / "ok.pth")
    (tmp_path / "cut.pth").write_bytes((tmp_path / "ok.pth").read_bytes()[:200])
    for name, why in [("evil", "does not unpickle"), ("junk", "corrupt"), ("cut", "truncated")]:
        code = run_cli("restore", str(clip), "-o", str(tmp_path / "o.mp4"), "--model", "stc", "--weights",
                       str(tmp_path / f"{name}.pth"), "--offline", "-q")
        assert code == 2
        assert why in _sentence(capsys), name
    assert not (tmp_path / "o.mp4").exists()


# ----------------------------------------------------------------------------------------------- training
def _tiny(faces_dir: Path, out: Path, **top) -> dict:
    from test_train import tiny_dict

    return tiny_dict(faces_dir, out, **top)


def test_train_bad_data_settings_are_config_errors(tmp_path, faces_dir, capsys) -> None:
    import yaml

    for key, value in [("clip_len", 0), ("max_frames", 0), ("size", 0)]:
        d = _tiny(faces_dir, tmp_path / "run")
        d["data"][key] = value
        cfg = tmp_path / "c.yaml"
        cfg.write_text(yaml.safe_dump(d))
        assert run_cli("train", "--config", str(cfg), "-q") == 2
        assert f"data.{key}" in _sentence(capsys)
        assert not (tmp_path / "run").exists()


def test_failed_training_start_leaves_no_run_folder(tmp_path, faces_dir, capsys) -> None:
    import yaml

    d = _tiny(faces_dir, tmp_path / "runs" / "r1")
    d["data"]["paths"] = [str(REPO / "README.md")]  # not a video: fails when the data is opened
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(d))
    assert run_cli("train", "--config", str(cfg), "-q") == 2
    _sentence(capsys)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("cmd", ["degrade", "prepare"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_same_stem_in_degrade_and_prepare_is_refused_before_any_work(synth_clip, tmp_path, capsys, cmd,
                                                                    overwrite) -> None:
    """`a.mp4` and `a.mov` in one folder both go to OUT/a.mp4: without --overwrite the run used to stop
    half-way on the file it had just written, with it the second replaced the first."""
    src = tmp_path / "in"
    src.mkdir()
    shutil.copyfile(synth_clip, src / "a.mp4")
    shutil.copyfile(synth_clip, src / "a.mov")
    out = tmp_path / "out"
    args = [cmd, str(src), str(out), "-q", *(["--overwrite"] if overwrite else [])]
    args += ["--recipe", "keep"] if cmd == "degrade" else ["--no-orientation", "--ocr", "none"]
    assert run_cli(*args) == 2
    line = _sentence(capsys)
    assert str(src / "a.mp4") in line and str(src / "a.mov") in line and str(out / "a.") in line
    assert not out.exists()  # nothing written, no folder made


@pytest.mark.parametrize("text", ["", "# only a comment\n", "{}\n"])
def test_train_with_an_empty_config_says_so(tmp_path, capsys, text) -> None:
    """An empty config used to run the defaults and fail later on missing DINOv2 weights."""
    cfg = tmp_path / "empty.yaml"
    cfg.write_text(text)
    assert run_cli("train", "--config", str(cfg), "-o", str(tmp_path / "run"), "-q") == 2
    line = _sentence(capsys)
    assert "is empty" in line and str(cfg) in line and "DINO" not in line
    assert not (tmp_path / "run").exists()


def test_shipped_tiny_configs_find_the_shared_clips_from_any_folder(tmp_path, faces_dir, monkeypatch) -> None:
    from bfvr.train.config import load_config

    monkeypatch.chdir(tmp_path)
    for name in ("tiny_stage1.yaml", "tiny_stage2.yaml"):
        cfg = load_config(REPO / "configs" / "stc" / name)
        assert [Path(p).resolve() for p in cfg.data.paths] == [faces_dir.resolve()]
    # paths given on the command line stay relative to the working directory
    cfg = load_config(REPO / "configs" / "stc" / "tiny_stage1.yaml", ["data.paths=[clips]"])
    assert cfg.data.paths == ["clips"]


def test_resume_falls_back_from_a_corrupt_or_malicious_checkpoint(tmp_path, faces_dir, caplog) -> None:
    from bfvr.errors import BfvrError
    from bfvr.train.config import config_from_dict
    from bfvr.train.trainer import Trainer

    run = tmp_path / "run"
    d = _tiny(faces_dir, run, max_steps=2, ckpt_every=1)
    Trainer(config_from_dict(d), progress=False).run()
    ck = run / "checkpoints"
    assert sorted(p.name for p in ck.glob("step_*")) == ["step_00000001", "step_00000002"]
    newest = ck / "step_00000002" / "state.pt"
    good = newest.read_bytes()
    for bad in (good[: len(good) // 3], None):  # truncated, then a pickle that would run code
        if bad is None:
            torch.save({"step": 2, "obj": _Evil()}, newest)
        else:
            newest.write_bytes(bad)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="bfvr.train"):
            t = Trainer(config_from_dict(d), resume=True, progress=False)
        assert t.step == 1
        assert any("step_00000002" in r.getMessage() and "step_00000001" in r.getMessage()
                   for r in caplog.records)
    (ck / "step_00000001" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(BfvrError, match="no readable checkpoint"):
        Trainer(config_from_dict(d), resume=True, progress=False)


def test_run_folder_must_not_hold_the_data(tmp_path, faces_dir, capsys) -> None:
    import yaml

    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(faces_dir / "lp_driving_d18.mp4", data / "a.mp4")
    d = _tiny(faces_dir, data / "run")
    d["data"]["paths"] = [str(data)]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(d))
    assert run_cli("train", "--config", str(cfg), "-q") == 2
    assert "input" in _sentence(capsys)
    assert sorted(p.name for p in data.iterdir()) == ["a.mp4"]


# ------------------------------------------------------------------------------------------ small things
def test_version(capsys) -> None:
    from bfvr import __version__

    assert run_cli("--version") == 0
    assert capsys.readouterr().out.strip() == f"bfvr {__version__}"


def test_bench_io_shows_progress(capsys) -> None:
    import json

    assert run_cli("bench", "io", "--size", "64", "--frames", "12", "--preset", "ultrafast", "--json") == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["decode_fps"] > 0  # stdout stays one JSON object
    for phase in ("bench io: decode", "bench io: encode", "restore (identity)"):
        assert phase in cap.err
    assert run_cli("bench", "io", "--size", "64", "--frames", "12", "--preset", "ultrafast", "-q") == 0
    assert "bench io:" not in capsys.readouterr().err


@pytest.mark.parametrize("url",
                         ["http://example.com/a.mp4", "https://example.com/a.mp4", "rtsp://cam.local/1"])
def test_url_inputs_say_urls_are_not_supported(tmp_path, capsys, url) -> None:
    for argv in (["info", url], ["degrade", url, str(tmp_path / "o.mp4")],
                 ["prepare", url, str(tmp_path / "p")]):
        assert run_cli(*argv) == 2
        line = _sentence(capsys)
        assert "URL" in line and url in line, line
    assert not list(tmp_path.iterdir())


def test_prepare_bar_counts_real_frames(tmp_path, faces_dir, capsys) -> None:
    """The bar ends at the clip's real frame count (not twice it for the two passes)."""
    import re

    assert run_cli("prepare", str(faces_dir / "lp_driving_d18.mp4"), str(tmp_path / "p"), "--no-orientation",
                   "--ocr", "none", "--max-frames", "20") == 0
    err = capsys.readouterr().err
    assert re.findall(r"(\d+)/(\d+) \[", err)[-1] == ("20", "20"), err[-300:]

"""User errors stay user errors (issue 10): one sentence, exit 2, nothing left behind, input unchanged --
never "internal error ... please report it", never torch's advice to turn off `weights_only`."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import pytest
import torch

from helpers import REPO, run_cli


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
    from helpers import tiny_dict

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


# ------------------------------------------------------------------- issue 27: one sentence, not a bug
@pytest.fixture(scope="module")
def small_clip(tmp_path_factory) -> Path:
    """8 frames of 64x64, no audio: enough for the checks that refuse before restoring anything."""
    from bfvr.io.synth import synth_video

    return synth_video(tmp_path_factory.mktemp("small") / "clip.mp4", frames=8, width=64, height=64,
                       audio=False)


def _lite_state() -> dict:
    from safetensors.torch import load_file

    from bfvr.models import weights as W

    return load_file(str(W.cached_path("bfvr-lite")))


@pytest.mark.parametrize("case,why", [("int8", "not floating point"), ("bool", "not floating point"),
                                      ("negative", "widths[0] = -64 is negative"),
                                      ("not-a-mapping", "not a mapping")])
def test_bad_weights_files_say_why(tmp_path, small_clip, capsys, case, why) -> None:
    import json

    from safetensors.torch import save_file

    state, meta = _lite_state(), None
    if case in ("int8", "bool"):
        state = {k: v.to(getattr(torch, case)) for k, v in state.items()}
    elif case == "negative":
        meta = {"net_config": json.dumps({"widths": [-64, 96, 128], "enc_blocks": [1, 2, 4],
                                          "dec_blocks": [2, 2], "temporal": True})}
    else:
        meta = {"net_config": "[64, 96, 128]"}
    w = tmp_path / f"{case}.safetensors"
    save_file(state, str(w), metadata=meta)
    out = tmp_path / "o.mp4"
    code = run_cli("restore", str(small_clip), "-o", str(out), "--model", "bfvr-lite", "--weights", str(w),
                   "--has-aligned", "-q")
    assert code == 2
    assert why in _sentence(capsys)
    assert not out.exists()


def _onnx_file(path: Path, meta: object, *, inp: str = "frames",
               shape: tuple = ("b", "t", 3, "h", "w")) -> Path:
    """An identity graph with `bfvr export`'s metadata `meta` (a dict as JSON, a str as it is)."""
    import json

    onnx = pytest.importorskip("onnx")
    from onnx import helper

    x = helper.make_tensor_value_info(inp, onnx.TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("restored", onnx.TensorProto.FLOAT, list(shape))
    g = helper.make_graph([helper.make_node("Identity", [inp], ["restored"])], "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 9
    e = m.metadata_props.add()
    e.key, e.value = "bfvr", meta if isinstance(meta, str) else json.dumps(meta)
    onnx.save(m, str(path))
    return path


_LITE_META = {"model": "bfvr-lite", "layout": "BTCHW", "clip_len": None, "default_clip_len": 24, "overlap": 4,
              "multiple": 16, "dynamic": "THW", "canvas": None}


@pytest.mark.parametrize("case,why", [
    ("not-json", "not JSON"), ("not-an-object", "not a JSON object"),
    ("missing-keys", "lacks layout, overlap"),
    ("input-name", "instead of one input 'frames'"), ("unknown-layout", "layout is 'NCHW'"),
    ("wrong-layout", "not BCTHW with 3 colour channels"), ("overlap-text", "overlap is 'a'")])
def test_bad_onnx_files_say_why(tmp_path, small_clip, capsys, case, why) -> None:
    pytest.importorskip("onnxruntime")
    meta, kw = dict(_LITE_META), {}
    if case == "not-json":
        meta = "{not json"
    elif case == "not-an-object":
        meta = [1, 2]
    elif case == "missing-keys":
        meta = {"model": "bfvr-lite"}
    elif case == "input-name":
        kw["inp"] = "x"
    elif case == "unknown-layout":
        meta["layout"] = "NCHW"
    elif case == "wrong-layout":
        meta["layout"] = "BCTHW"  # the graph is BTCHW
    else:
        meta["overlap"] = "a"
    w = _onnx_file(tmp_path / "m.onnx", meta, **kw)
    out = tmp_path / "o.mp4"
    code = run_cli("restore", str(small_clip), "-o", str(out), "--model", "bfvr-lite", "--backend",
                   "onnxruntime", "--weights", str(w), "--has-aligned", "-q")
    assert code == 2
    assert why in _sentence(capsys)
    assert not out.exists()


def test_a_good_onnx_file_still_runs(tmp_path, small_clip, capsys) -> None:
    pytest.importorskip("onnxruntime")
    w = _onnx_file(tmp_path / "m.onnx", _LITE_META)
    out = tmp_path / "o.mp4"
    assert run_cli("restore", str(small_clip), "-o", str(out), "--model", "bfvr-lite", "--backend",
                   "onnxruntime", "--weights", str(w), "--has-aligned", "-q") == 0
    assert out.is_file()


@pytest.mark.parametrize("name,why", [("arcface.onnx", "not a loadable ONNX file"),
                                      ("arcface.pt", "not a TorchScript file"),
                                      ("graph.onnx", "does not take one [N, 3, 112, 112] image input")])
def test_a_bad_identity_model_says_why(tmp_path, small_clip, faces, capsys, name, why) -> None:
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    for d in (pred, gt):
        d.mkdir()
        shutil.copyfile(small_clip, d / "a.mp4")
    model = tmp_path / name
    if name == "graph.onnx":
        _onnx_file(model, _LITE_META)  # an ONNX file, but with a 5-D input
    elif name.endswith(".pt"):
        torch.save({"w": torch.zeros(3)}, model)  # a state_dict, not TorchScript
    else:
        model.write_bytes(b"not a model")
    out = tmp_path / "report"
    assert run_cli("evaluate", "--pred", str(pred), "--gt", str(gt), "-o", str(out), "-m", "ids",
                   "--identity-model", str(model), "-q") == 2
    assert why in _sentence(capsys)
    assert not out.exists()


def _tiny_config(tmp_path: Path, clip: Path) -> Path:
    import yaml

    d = _tiny(Path("unused"), tmp_path / "run")
    d["data"]["paths"] = [str(clip)]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(d))
    return cfg


_LR = "optim.lr must be a positive finite number"
_THREADS = "threads must be 0 (torch's default) or 1 to 1024"


@pytest.mark.parametrize("sets,why", [(["optim.lr=nan"], _LR), (["optim.lr=-1"], _LR),
                                      (["optim.lr=.inf"], _LR), (["optim.betas=[0.9, 1.5]"], "optim.betas"),
                                      (["threads=-5"], _THREADS), (["threads=100000"], _THREADS),
                                      ([], "not UTF-8")])
def test_train_bad_numbers_and_binary_configs(tmp_path, small_clip, capsys, sets, why) -> None:
    cfg = _tiny_config(tmp_path, small_clip)
    if not sets:
        cfg.write_bytes(b"\xff\xfe\x00optim: {lr: 1}\n" + bytes(range(128, 256)))
    argv = ["train", "-c", str(cfg), "-q"]
    for s in sets:
        argv += ["--set", s]
    assert run_cli(*argv) == 2
    assert why in _sentence(capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("threads", ["0", "-5", "100000"])
def test_absurd_thread_counts(tmp_path, small_clip, capsys, threads) -> None:
    for argv in (["bench", "model", "--threads", threads, "--no-onnx", "--size", "16"],
                 ["evaluate-codes", "-r", str(tmp_path / "run"), "-i", str(small_clip), "--threads", threads,
                  "-o", str(tmp_path / "rep")]):
        assert run_cli(*argv) == 2
        assert "--threads must be at least 1 and at most 1024" in _sentence(capsys)
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- output paths that cannot be
_FOLDER_OUT = ("batch", "evaluate", "prepare")  # commands whose -o / OUT is a folder; the others write a file


def _out_argv(cmd: str, out: Path, clip: Path, tmp_path: Path) -> list[str]:
    from bfvr.models import weights as W

    inp = tmp_path / "inputs"
    if not inp.exists():
        inp.mkdir()
        shutil.copyfile(clip, inp / "a.mp4")
    return {
        "batch": ["restore", str(inp), "-o", str(out), "--model", "identity", "--has-aligned", "-q"],
        "evaluate": ["evaluate", "--pred", str(inp), "--gt", str(inp), "-o", str(out), "-m", "psnr", "-q"],
        "prepare": ["prepare", str(inp / "a.mp4"), str(out), "--no-orientation", "--ocr", "none", "-q"],
        "export-safetensors": ["export", "-m", "bfvr-lite", "-f", "safetensors", "--weights",
                               str(W.cached_path("bfvr-lite")), "-o", str(out)],
        "export-onnx": ["export", "-m", "bfvr-lite", "-o", str(out), "--size", "32"],
        "profile": ["profile", str(inp / "a.mp4"), "-o", str(out), "-q"],
    }[cmd]


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("cmd", ["batch", "evaluate", "prepare", "export-safetensors", "export-onnx",
                                 "profile"])
@pytest.mark.parametrize("case", ["under-a-file", "wrong-kind", "system-refuses", "read-only"])
def test_outputs_that_cannot_be_written(tmp_path, small_clip, capsys, cmd, case) -> None:
    import os

    name = {"export-safetensors": "w.safetensors", "export-onnx": "w.onnx",
            "profile": "p.png"}.get(cmd, "out")
    if case == "under-a-file":
        (tmp_path / "afile").write_text("mine")
        out, why = tmp_path / "afile" / "sub" / name, "'" + str(tmp_path / "afile") + "' is a file"
    elif case == "wrong-kind":
        out = tmp_path / name
        if cmd in _FOLDER_OUT:
            out.write_text("mine")
            why = "is a file; give a folder"
        else:
            out.mkdir()
            why = "is a folder; give a file path"
    elif case == "system-refuses":  # sysfs refuses new entries, even to root
        if not Path("/sys/kernel").is_dir():
            pytest.skip("needs Linux /sys")
        out, why = Path("/sys/bfvr-test-out") / name, "writable location"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        out, why = ro / "sub" / name, "is not writable"
    argv = _out_argv(cmd, out, small_clip, tmp_path)
    before = _tree(tmp_path)
    assert run_cli(*argv) == 2
    assert why in _sentence(capsys)
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("kind", ["png-folder", "video"])
def test_a_100_megapixel_input_is_refused(tmp_path, capsys, kind) -> None:
    """Refused from its size, before a frame of it is converted, restored or encoded."""
    import cv2
    import numpy as np

    side = 10_000
    if kind == "png-folder":
        inp = tmp_path / "frames"
        inp.mkdir()
        assert cv2.imwrite(str(inp / "000001.png"), np.zeros((side, side), np.uint8))
    else:
        import av

        inp = tmp_path / "big.mkv"
        with av.open(str(inp), "w") as c:  # FFV1 of a black frame: a few KB, never decoded by the check
            s = c.add_stream("ffv1", rate=25)
            s.width, s.height, s.pix_fmt = side, side, "gray"
            for p in [*s.encode(av.VideoFrame.from_ndarray(np.zeros((side, side), np.uint8), format="gray")),
                      *s.encode()]:
                c.mux(p)
    out = tmp_path / "o.mp4"
    assert run_cli("restore", str(inp), "-o", str(out), "--model", "identity", "-q") == 2
    assert "10000x10000 (100 megapixels)" in _sentence(capsys)
    assert not out.exists()


@pytest.fixture
def frame_folder(tmp_path) -> Path:
    import cv2
    import numpy as np

    d = tmp_path / "frames"
    d.mkdir()
    for i in range(3):
        cv2.imwrite(str(d / f"{i:03d}.png"), np.full((32, 32, 3), 60 * i, np.uint8))
    return d


@pytest.mark.parametrize("fps,why", [("1e9", "is above 1000 frames per second"),
                                     ("inf", "must be a finite number above 0"),
                                     ("nan", "must be a finite number above 0"),
                                     ("0", "must be a finite number above 0"),
                                     ("-25", "must be a finite number above 0")])
def test_restore_fps_is_bounded(tmp_path, frame_folder, capsys, fps, why) -> None:
    out = tmp_path / "o.mp4"
    assert run_cli("restore", str(frame_folder), "-o", str(out), "--fps", fps, "--model", "identity",
                   "--has-aligned", "-q") == 2
    assert why in _sentence(capsys)
    assert not out.exists()


def test_restore_fps_at_the_bound_still_works(tmp_path, frame_folder) -> None:
    from bfvr.io import probe

    out = tmp_path / "o.mp4"
    assert run_cli("restore", str(frame_folder), "-o", str(out), "--fps", "1000", "--model", "identity",
                   "--has-aligned", "-q") == 0
    assert float(probe(out).fps) == pytest.approx(1000)


@pytest.mark.parametrize("fps,why", [('"abc"', "is not a number"), ("[25]", "is not a number"),
                                     ("1e9", "is above 1000"), ("-1", "must be a finite number above 0")])
def test_batch_manifest_fps_must_be_a_number(tmp_path, frame_folder, capsys, fps, why) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(f'{{"input": "{frame_folder.name}", "fps": {fps}}}\n')
    out = tmp_path / "out"
    assert run_cli("restore", str(manifest), "-o", str(out), "--model", "identity", "--has-aligned",
                   "-q") == 2
    line = _sentence(capsys)
    assert "line 1" in line and '"fps"' in line and why in line, line
    assert not out.exists()


def test_batch_manifest_fps_as_a_fraction_string(tmp_path, frame_folder) -> None:
    from bfvr.io import probe

    manifest = tmp_path / "m.jsonl"
    manifest.write_text(f'{{"input": "{frame_folder.name}", "fps": "30000/1001"}}\n')
    assert run_cli("restore", str(manifest), "-o", str(tmp_path / "out"), "--model", "identity",
                   "--has-aligned", "-q") == 0
    assert float(probe(tmp_path / "out" / "frames.mp4").fps) == pytest.approx(30000 / 1001)


@pytest.mark.parametrize("line,why", [('{"path": "CLIP", "frames": "abc"}', '"frames" \'abc\''),
                                      ('{"path": "CLIP", "frames": -3}', '"frames" -3'),
                                      ('{"path": 7}', '"path" 7'), ("[1, 2]", "not a JSON object"),
                                      ('{"path": "CLIP", "fra', "is not JSON")])
def test_prepare_manifest_with_a_bad_value(tmp_path, small_clip, capsys, line, why) -> None:
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(line.replace("CLIP", str(small_clip)) + "\n")
    cfg = _tiny_config(tmp_path, small_clip)
    assert run_cli("train", "-c", str(cfg), "--set", f"data.paths=[{manifest}]", "--set", "data.backend=bfvr",
                   "-q") == 2
    sentence = _sentence(capsys)
    assert "line 1 of the manifest" in sentence and why in sentence, sentence
    assert not (tmp_path / "run").exists()


def test_resume_after_a_half_written_metrics_line(tmp_path, small_clip, caplog) -> None:
    """A run killed while logging leaves a torn last line in metrics.jsonl / histograms.jsonl: --resume drops
    it with a warning and goes on (it is the killed run's tail, like the records after the checkpoint)."""
    import json

    import yaml

    d = _tiny(Path("unused"), tmp_path / "run", max_steps=2, ckpt_every=1)
    d["data"]["paths"] = [str(small_clip)]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(d))
    assert run_cli("train", "-c", str(cfg), "-q") == 0
    run = tmp_path / "run"
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "loss')
    with open(run / "histograms.jsonl", "a") as f:
        f.write('{"step": 3, "codes_s": [1, ')
    with caplog.at_level(logging.WARNING, logger="bfvr.train"):
        assert run_cli("train", "-c", str(cfg), "--set", "max_steps=3", "--resume", "-q") == 0
    assert any("metrics.jsonl: dropped 1 unreadable line" in r.getMessage() for r in caplog.records)
    for name in ("metrics.jsonl", "histograms.jsonl"):
        lines = (run / name).read_text().splitlines()
        assert [json.loads(ln)["step"] for ln in lines] == [1, 2, 3], name


@pytest.mark.parametrize("scale,why", [("0", "--scale must be a whole number of 1 or more, got 0"),
                                       ("-2", "--scale must be a whole number of 1 or more, got -2"),
                                       ("100000", "more than an image holds")])
def test_profile_scale_is_checked(tmp_path, small_clip, capsys, scale, why) -> None:
    out = tmp_path / "p.png"
    assert run_cli("profile", str(small_clip), "-o", str(out), "--scale", scale, "-q") == 2
    assert why in _sentence(capsys)
    assert not list(tmp_path.iterdir())


def test_profile_scale_enlarges_the_time_axis(tmp_path, small_clip) -> None:
    import cv2

    widths = []
    for scale in (1, 3):
        out = tmp_path / f"p{scale}.png"
        assert run_cli("profile", str(small_clip), "-o", str(out), "--scale", str(scale), "-q") == 0
        widths.append(cv2.imread(str(out)).shape[1])
    assert widths == [8, 24]  # one column per frame of the 8-frame clip


@pytest.mark.parametrize("fmt", ["onnx", "safetensors"])
def test_sigterm_during_export_removes_the_partial_file(tmp_path, capsys, monkeypatch, fmt) -> None:
    """SIGTERM while the file is being written: exit 128 + 15, one sentence, no partial file left."""
    import os
    import signal
    import time

    from bfvr.models import weights as W

    def write_then_get_killed(path: Path) -> None:
        Path(path).write_bytes(b"half a model")
        os.kill(os.getpid(), signal.SIGTERM)  # the CLI's handler raises in this thread...
        time.sleep(10)  # ...before this sleep ends

    if fmt == "onnx":
        pytest.importorskip("onnx")
        monkeypatch.setattr("bfvr.models.onnx.export_onnx", lambda m, path, **kw: write_then_get_killed(path))
        argv = ["export", "-m", "bfvr-lite", "-o", str(tmp_path / "out" / "m.onnx")]
    else:
        monkeypatch.setattr("safetensors.torch.save_file", lambda t, path, **kw: write_then_get_killed(path))
        argv = ["export", "-m", "bfvr-lite", "-f", "safetensors", "--weights",
                str(W.cached_path("bfvr-lite")), "-o", str(tmp_path / "out" / "m.safetensors")]
    t0 = time.monotonic()
    assert run_cli(*argv) == 128 + signal.SIGTERM
    assert time.monotonic() - t0 < 8
    assert "stopped by SIGTERM" in _sentence(capsys)
    assert [p.name for p in (tmp_path / "out").iterdir()] == []

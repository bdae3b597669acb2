"""DicFace through the hub, the engine, the API and the CLI: the window schedules against direct network
calls, sampling modes, the colour and inpainting tasks, masks, option and weight errors. Fast tests use a
small DicFace saved with a config.json beside it (the Hugging Face route of `load_net`); the slow ones use
the official layout with the golden manifest's deterministic weights at 512x512 (synthetic weights: outputs
are not faces)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from bfvr.api import Restorer
from bfvr.engine.base import Schedule, contract_of
from bfvr.engine.chunker import ClipEngine
from bfvr.errors import ConfigError, InputError, ModelError
from bfvr.models.dicface import DicFace
from bfvr.models.dicface.tasks import FrameMask, to_grey
from bfvr.models.hub import load_model
from helpers import DICFACE_SMALL as SMALL
from helpers import golden_weights, run_cli, shared_path


@pytest.fixture(autouse=True)
def _threads(request):
    """Small networks run on one thread (on a busy 2-core machine two threads of tiny ops wait on each other,
    ~50x slower); the slow 512x512 tests keep two."""
    before = torch.get_num_threads()
    torch.set_num_threads(2 if request.node.get_closest_marker("slow") else 1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """(weights file with its config.json beside it, state_dict) of a small DicFace with lively weights."""
    torch.manual_seed(0)
    net = DicFace(**SMALL)
    with torch.no_grad():
        net.position_emb.normal_(0, 0.5)
        net.position_emb_temporal.normal_(0, 0.5)
        net.idx_pred_layer[1].weight.normal_(0, 0.5)
        net.quantize.embedding.weight.normal_(0, 1.0)
    sd = {k: v.contiguous() for k, v in net.state_dict().items()}
    d = tmp_path_factory.mktemp("small")
    save_file(sd, str(d / "small.safetensors"))
    (d / "small.config.json").write_text(json.dumps(SMALL))
    return d / "small.safetensors", sd


def _net(sd: dict[str, torch.Tensor], **kw) -> DicFace:
    net = DicFace(**SMALL, **kw).eval()
    net.load_state_dict(sd, strict=True)
    return net


def _clip(n: int = 12, size: int = 32, seed: int = 1) -> np.ndarray:
    """A moving smooth pattern, uint8 [n, size, size, 3]."""
    y, x = np.mgrid[0:size, 0:size] / size
    out = []
    for t in range(n):
        r = 0.5 + 0.5 * np.sin(6 * x + 0.4 * t + seed)
        g = 0.5 + 0.5 * np.cos(5 * y - 0.3 * t)
        b = 0.5 + 0.5 * np.sin(4 * (x + y) + 0.2 * t)
        out.append(np.stack([r, g, b], -1))
    return (np.stack(out) * 255).round().astype(np.uint8)


def _direct(net: DicFace, frames: np.ndarray, task: str = "restore") -> np.ndarray:
    """The network on one window, with the engine's value mapping (uint8 -> [-1,1] -> net -> clamp ->
    uint8)."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255.0) * 2.0 - 1.0
    if task == "color":
        x = to_grey(x)
    with torch.no_grad():
        y = net(x, w=1.0)[0].clamp(-1, 1)
    return ClipEngine.clip_to_uint8(((y + 1.0) / 2.0).clamp(0, 1))


def _close(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


# ------------------------------------------------------------------------------------------ the hub


def test_hub_loads_a_small_dicface_and_its_contract(small):
    path, sd = small
    m = load_model("dicface", weights=str(path), offline=True, sampling="mean")
    c = contract_of(m)
    assert c.schedule == Schedule.window(5, 1) and c.value_range == (-1.0, 1.0)
    assert c.face_crop_mode == "align" and c.canvas == (32, 32) and c.prepare_frames is not None
    assert contract_of(
        load_model("dicface", weights=str(path), offline=True, keep=5)
    ).schedule == Schedule.window(5, 5)
    clip = torch.rand(5, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ref = _net(sd)(clip, sampling="mean")[0].clamp(-1, 1)
    torch.testing.assert_close(m.restore_clip(clip), ref, atol=1e-6, rtol=0)


def test_option_and_weight_errors(small, tmp_path):
    path, sd = small
    with pytest.raises(ConfigError, match="no option clip_length"):
        load_model("dicface", weights=str(path), offline=True, clip_length=5)
    with pytest.raises(ConfigError, match="multiple of 5"):
        load_model("dicface", weights=str(path), offline=True, window=7)
    with pytest.raises(ConfigError, match="sampling"):
        load_model("dicface", weights=str(path), offline=True, sampling="argmax")
    with pytest.raises(ConfigError, match="--mask"):
        load_model("dicface-inpaint", weights=str(path), offline=True)
    with pytest.raises(ConfigError, match="takes no mask"):
        load_model("dicface", weights=str(path), offline=True, mask=tmp_path / "m.png")
    # a wrong file names its mismatching keys
    bad = {k: v for k, v in sd.items() if not k.startswith("multiscale.out")}
    bad["feat_emb.weight"] = torch.zeros(8, 8)
    save_file(bad, str(tmp_path / "bad.safetensors"))
    (tmp_path / "bad.config.json").write_text(json.dumps(SMALL))
    with pytest.raises(ModelError, match=r"multiscale\.out\.weight") as e:
        load_model("dicface", weights=str(tmp_path / "bad.safetensors"), offline=True)
    assert "feat_emb.weight" in str(e.value)
    assert run_cli("models", "verify", "dicface", str(path)) == 0  # the small file fits (its config.json)
    assert run_cli("models", "verify", "dicface", str(tmp_path / "bad.safetensors")) == 2
    # a window whose length is not a multiple of 5 (e.g. --clip-len 7) is one clear error
    m = load_model("dicface", weights=str(path), offline=True)
    with pytest.raises(ModelError, match="multiple of 5"):
        ClipEngine(m, clip_len=7).restore_array(_clip(8))


def test_weights_come_from_the_dicface_mirror_and_are_checked(small, tmp_path, monkeypatch):
    """BFVR_DICFACE_MIRROR (file:// here) replaces the Hugging Face folder; the downloaded file is checked
    against the official layout before it is cached (a small DicFace is not it: the error names the
    mismatching keys, and the file is not kept)."""
    from bfvr.models import weights as W

    _, sd = small
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    torch.save({"params_ema": sd}, mirror / "bfr_100k.pth")  # official file layout, small network
    monkeypatch.setenv("BFVR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BFVR_DICFACE_MIRROR", mirror.as_uri())
    monkeypatch.delenv("BFVR_WEIGHTS_BASE_URL", raising=False)
    for name, file in (("dicface", "bfr_100k.pth"), ("dicface-inpaint", "inpainting_100k.pth"),
                       ("dicface-color", "color_100k.pth"), ("dicface-codeformer", "codeformer.pth")):
        assert W.source_url(W.get_entry(name)) == f"{mirror.as_uri()}/{file}"
    with pytest.raises(ModelError, match=r"position_emb.*not saved in the cache"):
        load_model("dicface", progress=False)
    assert not (tmp_path / "home" / "weights" / "bfr_100k.pth").exists()
    assert not W.read_registry()


# ------------------------------------------------------------------------------------- schedules


def test_official_schedule_outputs_equal_direct_calls_on_their_windows(small):
    path, sd = small
    frames = _clip(12)
    eng = ClipEngine(load_model("dicface", weights=str(path), offline=True, sampling="mean"))
    out = eng.restore_array(frames)
    assert out.shape == frames.shape and eng.clips_run == 12
    net = _net(sd, sampling="mean")
    # frame 0: window 0,0,0,1,2 (edge replicated), centre; frame 7: window 5..9, centre;
    # frame 11: 9,10,11,11,11
    _close(out[0], _direct(net, frames[[0, 0, 0, 1, 2]])[2])
    _close(out[7], _direct(net, frames[5:10])[2])
    _close(out[11], _direct(net, frames[[9, 10, 11, 11, 11]])[2])
    assert (
        np.abs(out[7].astype(int) - _direct(net, frames[3:8])[2].astype(int)).max() > 2
    )  # not another window


def test_fast_schedule_keeps_k_frames_per_call(small):
    path, sd = small
    frames = _clip(12)
    eng = ClipEngine(load_model("dicface", weights=str(path), offline=True, sampling="mean", keep=5))
    out = eng.restore_array(frames)
    assert out.shape == frames.shape and eng.clips_run == 3
    net = _net(sd, sampling="mean")
    _close(out[5:10], _direct(net, frames[5:10]))
    _close(out[10:], _direct(net, frames[[10, 11, 11, 11, 11]])[:2])
    # the API's keep override gives the same
    r = Restorer(
        "dicface",
        weights=path,
        offline=True,
        keep=5,
        precision="fp32",
        model_options={"sampling": "mean"},
        progress=False,
    )
    assert np.array_equal(r.restore_clip(frames), out)


def test_sampling_modes_through_the_engine(small):
    path, _ = small
    frames = _clip(12)

    def run(**kw):
        return ClipEngine(load_model("dicface", weights=str(path), offline=True, keep=5, **kw)).restore_array(
            frames
        )

    mean1, mean2 = run(sampling="mean"), run(sampling="mean")
    off1, off2 = run(sampling="official", seed=0), run(sampling="official", seed=0)
    off3 = run(sampling="official", seed=1)
    assert np.array_equal(mean1, mean2)  # deterministic
    assert np.array_equal(off1, off2)  # seeded: repeatable
    assert not np.array_equal(off1, off3) and not np.array_equal(off1, mean1)


# ------------------------------------------------------------------------------------------ tasks


def test_color_task_sees_grey_frames(small):
    path, sd = small
    frames = _clip(5)
    grey = np.repeat(
        (frames @ np.float32([0.299, 0.587, 0.114])).round().clip(0, 255).astype(np.uint8)[..., None],
        3,
        axis=-1,
    )
    color = ClipEngine(load_model("dicface-color", weights=str(path), offline=True, keep=5, sampling="mean"))
    restore = ClipEngine(load_model("dicface", weights=str(path), offline=True, keep=5, sampling="mean"))
    a = color.restore_array(frames)
    _close(
        a, _direct(_net(sd, sampling="mean"), frames, task="color")
    )  # the network saw the luma of the colour frames
    _close(color.restore_array(grey), restore.restore_array(grey))  # grey input: nothing to convert
    assert np.abs(a.astype(int) - restore.restore_array(frames).astype(int)).max() > 2


def _write_png(path: Path, mask: np.ndarray) -> Path:
    import cv2

    cv2.imwrite(str(path), mask)
    return path


def test_inpaint_task_paints_the_mask_white_before_restoring(small, tmp_path):
    path, _ = small
    frames = _clip(7)
    hole = np.zeros((32, 32), np.uint8)
    hole[8:20, 4:28] = 255
    png = _write_png(tmp_path / "mask.png", hole)
    r = Restorer(
        "dicface-inpaint",
        weights=path,
        offline=True,
        keep=5,
        precision="fp32",
        model_options={"mask": png, "sampling": "mean"},
        progress=False,
    )
    out = r.restore_clip(frames)
    painted = frames.copy()
    painted[:, hole > 127] = 255
    ref = Restorer(
        "dicface",
        weights=path,
        offline=True,
        keep=5,
        precision="fp32",
        model_options={"sampling": "mean"},
        progress=False,
    ).restore_clip(painted)
    assert np.array_equal(out, ref)
    plain = Restorer(
        "dicface",
        weights=path,
        offline=True,
        keep=5,
        precision="fp32",
        model_options={"sampling": "mean"},
        progress=False,
    ).restore_clip(frames)
    assert not np.array_equal(out, plain)


def test_frame_masks(tmp_path):
    from bfvr.io import write_video

    hole = np.zeros((32, 48), np.uint8)
    hole[:, :10] = 255
    still = FrameMask(_write_png(tmp_path / "m.png", hole))
    still.check(48, 32, 100)  # one image: any number of frames
    with pytest.raises(InputError, match="is 48x32 but the video frames are 32x32"):
        still.check(32, 32)
    frames = [(np.full((32, 48, 3), 7, np.uint8), i) for i in range(3)]
    out = list(still.apply(frames))
    assert [p for _, p in out] == [0, 1, 2]
    assert all((f[:, :10] == 255).all() and (f[:, 10:] == 7).all() for f, _ in out)
    # a mask video: one mask per frame, counts must agree
    seq = np.zeros((4, 32, 48, 3), np.uint8)
    for i in range(4):
        seq[i, :, 10 * i : 10 * i + 10] = 255
    vid = FrameMask(write_video(tmp_path / "masks.mp4", seq, fps=25, crf=0))
    vid.check(48, 32, 4)
    with pytest.raises(InputError, match="has 4 frames but the video has 5"):
        vid.check(48, 32, 5)
    got = [f for f, _ in vid.apply((np.zeros((32, 48, 3), np.uint8), i) for i in range(4))]
    assert all(
        (g[:, 10 * i + 2 : 10 * i + 8] == 255).all() and (g[:, 40:] == 0).all() if i < 3 else True
        for i, g in enumerate(got)
    )
    with pytest.raises(InputError, match="has only 4 frames"):
        list(vid.apply((np.zeros((32, 48, 3), np.uint8), i) for i in range(5)))
    with pytest.raises(InputError, match="does not exist"):
        FrameMask(tmp_path / "nope.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="not a readable image"):
        FrameMask(tmp_path / "junk.png").check(48, 32)


# -------------------------------------------------------------------------------------------- CLI


def test_cli_restore_keeps_frames_fps_duration_and_audio(small, synth_clip, tmp_path):
    from bfvr.io import probe

    path, _ = small
    out = tmp_path / "out.mp4"
    assert (
        run_cli(
            "restore",
            str(synth_clip),
            "-o",
            str(out),
            "--model",
            "dicface",
            "--weights",
            str(path),
            "--offline",
            "--has-aligned",
            "--keep",
            "5",
            "--device",
            "cpu",
            "--precision",
            "fp32",
            "-q",
        )
        == 0
    )
    a, b = probe(synth_clip), probe(out)
    assert (b.frame_count, b.fps, b.width, b.height) == (a.frame_count, a.fps, a.width, a.height)
    assert abs(b.duration - a.duration) <= 1 / float(a.fps) and b.has_audio


def test_cli_inpaint_with_the_mask_bfvr_degrade_writes(small, make_clip, tmp_path):
    """`bfvr degrade --recipe inpaint` writes lq.mp4 + lq.mask.png; that mask drives dicface-inpaint."""
    from bfvr.io import probe, read_frames

    path, _ = small
    lq = tmp_path / "lq.mp4"
    gt = make_clip("gt.mp4", frames=10, width=96, height=96, audio=False)
    assert run_cli("degrade", str(gt), str(lq), "--recipe", "inpaint", "--no-audio", "-q") == 0
    mask = tmp_path / "lq.mask.png"
    assert mask.is_file()
    out = tmp_path / "out.mp4"
    assert (
        run_cli(
            "restore",
            str(lq),
            "-o",
            str(out),
            "--model",
            "dicface-inpaint",
            "--mask",
            str(mask),
            "--weights",
            str(path),
            "--offline",
            "--has-aligned",
            "--keep",
            "5",
            "--device",
            "cpu",
            "--precision",
            "fp32",
            "-q",
        )
        == 0
    )
    assert probe(out).frame_count == probe(lq).frame_count
    assert read_frames(out).std() > 1  # restored frames, not a blank video


def test_cli_mask_errors(small, synth_clip, tmp_path, capsys):
    path, _ = small
    out = tmp_path / "out.mp4"
    base = [
        "restore",
        str(synth_clip),
        "-o",
        str(out),
        "--weights",
        str(path),
        "--offline",
        "--has-aligned",
        "-q",
    ]
    assert run_cli(*base, "--model", "dicface-inpaint") == 2
    assert "needs the mask" in capsys.readouterr().err
    small_mask = _write_png(tmp_path / "m.png", np.zeros((32, 32), np.uint8))
    assert run_cli(*base, "--model", "dicface-inpaint", "--mask", str(small_mask)) == 2
    assert "is 32x32 but the video frames are 256x256" in capsys.readouterr().err
    assert run_cli(*base, "--model", "dicface", "--mask", str(small_mask)) == 2
    assert "--mask goes with --model dicface-inpaint" in capsys.readouterr().err
    assert not out.exists()


# ------------------------------------------------------------------ official layout, fixture weights


@pytest.fixture(scope="module")
def fixture_weights(tmp_path_factory) -> Path:
    """The golden manifest's deterministic weights in an official-style .pth (``{"params_ema": ...}``)."""
    gw = golden_weights()

    p = tmp_path_factory.mktemp("fixture") / "bfr_fixture.pth"
    torch.save({"params_ema": gw.make_state_dict(str(shared_path("golden", "dicface", "manifest.json")))}, p)
    return p


def _real_frames(n: int) -> np.ndarray:
    from bfvr.io import read_frames

    return read_frames(shared_path("data", "faces", "lp_driving_d0.mp4"), max_frames=n)  # 512x512


@pytest.mark.slow
def test_fixture_weights_fast_schedule_and_tasks(fixture_weights, tmp_path):
    """512x512, official layout, bf16: a 12-frame real clip through keep=5 gives 12 frames in 3 calls; the
    colour and inpainting models run on a 5-frame window (grey / masked input). 5 forwards: 2-9 min on 2
    cores."""
    torch.set_num_threads(2)
    frames = _real_frames(12)
    eng = ClipEngine(load_model("dicface", weights=str(fixture_weights), offline=True, keep=5,
                                precision="bf16"))
    out = eng.restore_array(frames)
    assert out.shape == frames.shape and eng.clips_run == 3
    hole = np.zeros((512, 512), np.uint8)
    hole[200:300, 100:400] = 255
    png = _write_png(tmp_path / "mask.png", hole)
    inp = Restorer("dicface-inpaint", weights=fixture_weights, offline=True, keep=5, precision="bf16",
                   model_options={"mask": png}, progress=False).restore_clip(frames[:5])
    col = Restorer("dicface-color", weights=fixture_weights, offline=True, keep=5, precision="bf16",
                   progress=False).restore_clip(frames[:5])
    assert inp.shape == col.shape == frames[:5].shape
    assert not np.array_equal(inp, out[:5]) and not np.array_equal(col, out[:5])


@pytest.mark.slow
def test_fixture_weights_official_schedule_equals_direct_windows(fixture_weights):
    """512x512, official layout, official schedule on a 3-frame clip (3 calls): frames 0 and 1 equal direct
    calls on their edge-replicated windows (sampling mean: deterministic across calls). ~5 forwards."""
    torch.set_num_threads(2)
    frames = _real_frames(3)
    eng = ClipEngine(load_model("dicface", weights=str(fixture_weights), offline=True, sampling="mean"))
    out = eng.restore_array(frames)
    assert out.shape == frames.shape and eng.clips_run == 3
    net = eng.model.net
    _close(out[0], _direct(net, frames[[0, 0, 0, 1, 2]])[2])
    _close(out[1], _direct(net, frames[[0, 0, 1, 2, 2]])[2])


@pytest.mark.slow
def test_cli_real_clip_with_audio_fixture_weights(fixture_weights, tmp_path):
    """`bfvr restore real.mp4 --model dicface --weights FIXTURE.pth --offline` (face pipeline, align crops,
    --keep 5) on a 10-frame cut of a real clip with audio keeps frames, fps, duration and audio."""
    from bfvr.io import VideoWriter, open_video, probe

    src = shared_path("data", "faces", "lp_source_s13.mp4")
    cut = tmp_path / "cut.mp4"
    with (
        open_video(src) as r,
        VideoWriter(cut, fps=r.info.fps, time_base=r.info.time_base, audio_from=src, crf=12) as w,
    ):
        for i, (f, p) in enumerate(r.frames()):
            if i == 10:
                break
            w.write(f[None], [p])
    out = tmp_path / "out.mp4"
    assert run_cli("restore", str(cut), "-o", str(out), "--model", "dicface", "--weights",
                   str(fixture_weights), "--offline", "--keep", "5", "--device", "cpu", "-q") == 0
    a, b = probe(cut), probe(out)
    assert (b.frame_count, b.fps, b.width, b.height) == (a.frame_count, a.fps, a.width, a.height)
    assert b.has_audio and abs(b.duration - a.duration) <= 1 / float(a.fps)

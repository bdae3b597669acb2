"""PGTFormer as a model of bfvr: the hub entry (weights + config.json fetched over file:// URLs), the official
3-frame window schedule and the fast one frame for frame against direct network calls, `bfvr restore`
with --has-aligned crops and through the face pipeline; (slow) the same with the golden-fixture weights at
512x512."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from bfvr.engine import ClipEngine
from bfvr.errors import ModelError
from bfvr.io import probe, read_frames
from bfvr.models import hub
from bfvr.models import weights as W
from bfvr.models.pgtformer.clip import PGTFormerClipModel
from helpers import SMALL, golden_weights, run_cli, small_net

pytestmark = pytest.mark.usefixtures("one_thread")  # small networks: see conftest.one_thread


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory) -> Path:
    """A Hugging Face model folder (hub mixin layout) holding the small PGTFormer: config.json +
    model.safetensors."""
    folder = tmp_path_factory.mktemp("pgt-hf")
    save_file(small_net(0).state_dict(), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({**SMALL, "type": "PGTFormer"}))
    return folder


@pytest.fixture(scope="module")
def faces32(faces_dir) -> np.ndarray:
    """7 real face frames at the small network's 32x32 canvas."""
    fr = (
        torch.from_numpy(read_frames(faces_dir / "lp_driving_d0.mp4", max_frames=7))
        .permute(0, 3, 1, 2)
        .float()
    )
    small = F.interpolate(fr, size=(32, 32), mode="area").round().clamp(0, 255).to(torch.uint8)
    return small.permute(0, 2, 3, 1).contiguous().numpy()


def to_u8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255 + 0.5).floor().to(torch.uint8).permute(1, 2, 0).numpy()


def direct(net, frames: np.ndarray, idx: list[int], w: float = 1.0) -> torch.Tensor:
    """The network called on frames[idx] as one window: [3, 3, H, W] restored, unclamped."""
    # contiguous NCHW, as the adapter passes it (a channels-last view would take other conv kernels: 1e-6
    # differences, enough to flip a nearly tied code of the random fixture weights)
    x = (torch.from_numpy(frames[idx]).permute(0, 3, 1, 2).float() / 255).contiguous()
    with torch.no_grad():
        return net(x, w=w)[0]


def run_engine(model, frames: np.ndarray, **kw) -> np.ndarray:
    engine = ClipEngine(model, **kw)
    return np.stack([f for f, _ in engine.run((f, i) for i, f in enumerate(frames))])


# ----------------------------------------------------------------------------------------------- hub


def test_weights_entry_points_at_the_authors_hugging_face_model():
    e = W.get_entry("pgtformer")
    assert e.urls == ("https://huggingface.co/kepeng/pgtformer-base/resolve/main/model.safetensors",)
    assert e.config_urls == ("https://huggingface.co/kepeng/pgtformer-base/resolve/main/config.json",)
    spec = hub.get_spec("pgtformer")
    assert spec.config["ddconfig"]["ch_mult"] == [1, 2, 4, 4, 8] and spec.config["w"] == 1


def test_hub_fetches_config_and_weights_and_builds_the_clip_model(small_folder, tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    (served / "pgtformer-base.safetensors").write_bytes((small_folder / "model.safetensors").read_bytes())
    (served / "config.json").write_text((small_folder / "config.json").read_text())
    monkeypatch.setenv("BFVR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BFVR_PGTFORMER_MIRROR", f"file://{served}")
    m = hub.load_model("pgtformer", keep=3, w=0.5, progress=False)
    assert isinstance(m, PGTFormerClipModel)
    cached = W.cached_path("pgtformer")
    assert cached.is_file() and (cached.parent / "pgtformer-base.config.json").is_file()
    assert m.canvas == (32, 32) and m.schedule.length == 3 and m.schedule.keep == 3 and m.w == 0.5
    assert m.face_crop_mode == "proportion"
    got = m.net.state_dict()
    assert all(torch.equal(got[k], v) for k, v in small_net(0).state_dict().items())
    # a Hugging Face folder given with --weights, and an unknown option
    m2 = hub.load_model("pgtformer", weights=str(small_folder), offline=True)
    assert m2.schedule.keep == 1 and m2.w == 1.0
    from bfvr.errors import ConfigError

    with pytest.raises(ConfigError, match="no option"):
        hub.load_model("pgtformer", weights=str(small_folder), overlap_frames=2)
    with pytest.raises(ConfigError, match="keep"):
        hub.load_model("pgtformer", weights=str(small_folder), keep=4)


def test_a_params_ema_checkpoint_loads_too(tmp_path):
    net = small_net(0)
    pth = tmp_path / "weights.pth"
    torch.save({"params_ema": net.state_dict(), "params": {}}, pth)
    (tmp_path / "weights.config.json").write_text(json.dumps(SMALL))  # the config beside it, cache-style
    loaded, _ = hub.load_net("pgtformer", weights=pth)
    got = loaded.state_dict()
    assert all(torch.equal(got[k], v) for k, v in net.state_dict().items())


# ------------------------------------------------------------------------------------------ schedules


def test_official_schedule_frame_for_frame(faces32):
    """keep=1: output frame i = clamp(net(frames i-1, i, i+1)[1]), the first and last frames replicated."""
    net = small_net(0)
    model = PGTFormerClipModel(net)
    assert model.canvas == (32, 32)
    frames = faces32[:5]
    out = run_engine(model, frames)
    assert out.shape == frames.shape
    n = len(frames)
    for i in (0, 2, n - 1):  # both edges and the middle
        win = [max(i - 1, 0), i, min(i + 1, n - 1)]
        ref = to_u8(direct(net, frames, win)[1])
        assert np.abs(out[i].astype(int) - ref).max() <= 1, i


def test_fast_schedule_uses_every_output_of_each_window(faces32):
    net = small_net(0)
    model = PGTFormerClipModel(net, keep=3)
    out = run_engine(model, faces32)  # 7 frames: windows (0,1,2), (3,4,5), (6,6,6)
    assert out.shape == faces32.shape
    for start, idx in ((0, [0, 1, 2]), (3, [3, 4, 5]), (6, [6, 6, 6])):
        ref = direct(net, faces32, idx)
        for j in range(min(3, len(faces32) - start)):
            assert np.abs(out[start + j].astype(int) - to_u8(ref[j])).max() <= 1, start + j
    # keep=3 differs from the official schedule (the outer frames see one neighbour only)
    official = run_engine(PGTFormerClipModel(net), faces32)
    assert np.abs(official.astype(int) - out).max() > 0


def test_window_length_is_fixed_and_w_reaches_the_network(faces32):
    net = small_net(0)
    model = PGTFormerClipModel(net, w=0.0)
    x = torch.from_numpy(faces32[:5]).permute(0, 3, 1, 2).float() / 255
    with pytest.raises(ModelError, match="windows of 3 frames"):
        model.restore_clip(x)
    y0 = model.restore_clip(x[:3])
    assert (y0 - direct(net, faces32, [0, 1, 2], w=0.0).clamp(0, 1)).abs().max() < 1e-5
    assert not torch.allclose(y0, PGTFormerClipModel(net, w=1.0).restore_clip(x[:3]), atol=1e-3)


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_has_aligned_crops(small_folder, synth_clip, tmp_path):
    out = tmp_path / "out.mp4"
    code = run_cli(
        "restore",
        str(synth_clip),
        "-o",
        str(out),
        "-m",
        "pgtformer",
        "--weights",
        str(small_folder),
        "--has-aligned",
        "--precision",
        "fp32",
        "--max-frames",
        "5",
        "--keep",
        "3",
        "-q",
    )
    assert code == 0
    info = probe(out)
    assert info.frame_count == 5 and (info.width, info.height) == (256, 256)


def test_cli_face_pipeline_on_a_clip_that_is_not_512(small_folder, faces_dir, tmp_path):
    src = faces_dir / "lp_driving_d18.mp4"  # 480x480
    out = tmp_path / "out.mp4"
    code = run_cli(
        "restore",
        str(src),
        "-o",
        str(out),
        "-m",
        "pgtformer",
        "--weights",
        str(small_folder),
        "--precision",
        "fp32",
        "--max-frames",
        "6",
        "-q",
    )
    assert code == 0
    info = probe(out)
    assert info.frame_count == 6 and (info.width, info.height) == (480, 480)
    a, b = read_frames(src, max_frames=6).astype(int), read_frames(out).astype(int)
    assert np.abs(a - b).mean() > 1.0  # the face was replaced by the (random) network's output
    assert (
        np.abs(a[:, :20] - b[:, :20]).mean() < 3.0
    )  # the border of the frame is left alone (codec noise only)


def test_cli_keep_rejected_for_clip_models(tmp_path, synth_clip):
    code = run_cli(
        "restore", str(synth_clip), "-o", str(tmp_path / "o.mp4"), "-m", "identity", "--keep", "2", "-q"
    )
    assert code != 0 and not (tmp_path / "o.mp4").exists()


# ----------------------------------------------------------------------------------- fixture weights


@pytest.fixture(scope="module")
def fixture_weights(golden_dir, tmp_path_factory) -> dict[str, Path]:
    """The golden-manifest weights as the two released formats: a hub-mixin flat safetensors and a
    params_ema .pth (no config.json: the official configuration applies)."""
    gw = golden_weights()

    g = golden_dir / "pgtformer"
    sd = gw.make_state_dict(str(g / "manifest.json"), overrides=str(g / "int_buffers.safetensors"))
    root = tmp_path_factory.mktemp("pgt-fixture")
    save_file(sd, str(root / "pgtformer.safetensors"))
    torch.save({"params_ema": sd}, root / "weights.pth")
    return {"safetensors": root / "pgtformer.safetensors", "pth": root / "weights.pth"}


@pytest.mark.slow
def test_fixture_weights_official_schedule_equals_direct_window_calls(fixture_weights, faces_dir):
    frames = read_frames(faces_dir / "lp_driving_d0.mp4", max_frames=3)  # 512x512
    model = hub.load_model("pgtformer", weights=str(fixture_weights["pth"]), precision="fp32")
    assert model.canvas == (512, 512)
    out = run_engine(model, frames)  # 3 windows: (0,0,1), (0,1,2), (1,2,2)
    assert out.shape == frames.shape
    # the edge windows called directly, one per call as the engine does (with random weights some code
    # logits are nearly tied: a batched call could flip a code and differ locally)
    for i, idx in ((0, [0, 0, 1]), (2, [1, 2, 2])):
        ref = direct(model.net, frames, idx)[1]
        assert np.abs(out[i].astype(int) - to_u8(ref)).max() <= 1, i


@pytest.mark.slow
def test_fixture_weights_cli_face_pipeline_ten_frames(fixture_weights, faces_dir, tmp_path):
    src = faces_dir / "lp_driving_d18.mp4"  # 480x480
    out = tmp_path / "out.mp4"
    code = run_cli(
        "restore",
        str(src),
        "-o",
        str(out),
        "-m",
        "pgtformer",
        "--weights",
        str(fixture_weights["safetensors"]),
        "--precision",
        "fp32",
        "--max-frames",
        "10",
        "--keep",
        "3",
        "-q",
    )
    assert code == 0
    info = probe(out)
    assert info.frame_count == 10 and (info.width, info.height) == (480, 480)


def test_bf16_runs_channels_last_and_stays_close(faces32):
    x = torch.from_numpy(faces32[:3]).permute(0, 3, 1, 2).float() / 255
    y32 = PGTFormerClipModel(small_net(0)).restore_clip(x)
    m16 = PGTFormerClipModel(small_net(0), precision="bf16")
    conv = m16.net.encoder.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    y16 = m16.restore_clip(x)
    assert y16.dtype == torch.float32 and y16.shape == y32.shape
    d = (y16 - y32).abs()
    assert 0 < d.mean() < 0.02, d.mean()


def test_cli_parsing_paste_mask_uses_the_models_own_parsing_net(small_folder, faces_dir, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setenv("BFVR_HOME", str(tmp_path / "home"))  # no cached weights: the model's net must be used
    src = faces_dir / "lp_driving_d18.mp4"
    out = tmp_path / "out.mp4"
    code = run_cli("restore", str(src), "-o", str(out), "-m", "pgtformer", "--weights", str(small_folder),
                   "--precision", "fp32", "--max-frames", "3", "--paste-mask", "parsing", "-q")
    assert code == 0 and probe(out).frame_count == 3

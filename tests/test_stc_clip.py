"""The STC ClipModel: layout, odd T, output mapping, precision policy, and the official-layout weights
(built from the golden manifests) loading strictly through `load_model`."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bfvr.engine.base import ClipModel
from bfvr.errors import ConfigError, ModelError
from bfvr.models import hub
from bfvr.models import weights as W
from bfvr.models.stc.clip import STCClipModel, map_output, to_channels_last_3d
from helpers import golden_weights, run_cli, shared_path


class TinySTC(nn.Module):
    """A small real network with STC's calling convention: BCTHW in, T halved and restored inside
    (so odd T would break it), returns (out, ...). Its output overshoots [0, 1] on purpose."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv3d(3, 8, 3, stride=(2, 1, 1), padding=1)
        self.mix = nn.Conv2d(8, 8, 1)  # a 4-D weight next to the 5-D ones, like STC's fuse blocks
        self.up = nn.Conv3d(8, 3, 3, padding=1)
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor, w: float = 0):
        self.calls.append(tuple(x.shape))
        assert x.shape[2] % 2 == 0, "STC needs even T"
        z = torch.relu(self.down(x))
        z = torch.repeat_interleave(z, 2, dim=2)
        out = 2 * x - 0.5 + 0.3 * torch.tanh(self.up(z))
        return out, None, None, z


def tiny(**kw) -> STCClipModel:
    torch.manual_seed(0)
    kw.setdefault("canvas", (32, 32))
    return STCClipModel(TinySTC(), **kw)


def test_is_a_clip_model():
    m = tiny()
    assert isinstance(m, ClipModel)
    assert (m.clip_len, m.overlap) == (24, 8)
    assert STCClipModel(TinySTC()).canvas == (512, 512)


@pytest.mark.parametrize("t", [24, 7, 1])
def test_layout_and_odd_lengths(t):
    m = tiny()
    clip = torch.rand(t, 3, 32, 32)
    out = m.restore_clip(clip)
    assert out.shape == clip.shape and out.dtype == torch.float32
    assert m.net.calls[-1] == (1, 3, t + t % 2, 32, 32)  # BCTHW, padded to even T
    # the frame order is kept: compare with a direct BCTHW call
    ref = m.net(clip.permute(1, 0, 2, 3)[None] if t % 2 == 0 else
                torch.cat([clip, clip[-1:]]).permute(1, 0, 2, 3)[None])[0]
    assert torch.allclose(out, ref.clamp(0, 1)[0, :, :t].permute(1, 0, 2, 3), atol=1e-6)


def test_output_mapping():
    clip = torch.rand(4, 3, 32, 32)
    raw = tiny().net(clip.permute(1, 0, 2, 3)[None])[0]
    assert raw.min() < 0 and raw.max() > 1  # the tiny net overshoots, so the mapping matters
    c = tiny().restore_clip(clip)
    assert c.min() == 0 and c.max() == 1
    mm = tiny(output_map="minmax").restore_clip(clip)
    assert mm.min() == 0 and mm.max() == 1
    expect = (raw - raw.min()) / (raw.max() - raw.min())
    assert torch.allclose(mm, expect[0].permute(1, 0, 2, 3), atol=1e-6)
    assert not torch.allclose(c, mm, atol=1e-2)
    flat = torch.full((1, 3, 2, 4, 4), 0.5)
    assert torch.isfinite(map_output(flat, "minmax")).all()


def test_bf16_channels_last_close_to_fp32():
    clip = torch.rand(6, 3, 32, 32)
    ref = tiny().restore_clip(clip)
    m = tiny(precision="bf16")
    assert m.net.up.weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert m.net.mix.weight.is_contiguous()  # 4-D weights untouched (module.to(channels_last_3d) would fail)
    out = m.restore_clip(clip)
    assert out.dtype == torch.float32 and out.is_contiguous()
    assert (out - ref).abs().max() < 0.05


def test_channels_last_helper_mixed_ranks():
    torch.manual_seed(0)
    ref = TinySTC()
    net = TinySTC()
    net.load_state_dict(ref.state_dict())
    x = torch.rand(1, 3, 4, 8, 8)
    before = net(x)[0]
    to_channels_last_3d(net)
    assert net.down.weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert not ref.down.weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert net.mix.weight.is_contiguous()  # 4-D weights keep their layout
    for k, v in ref.state_dict().items():  # only the memory layout changed, not one value
        assert torch.equal(net.state_dict()[k], v), k
    assert torch.allclose(net(x)[0], before, atol=1e-5)


def test_bad_settings_are_clear():
    with pytest.raises(ConfigError, match="precision"):
        tiny(precision="int8")
    with pytest.raises(ConfigError, match="fp16 is for GPUs"):
        tiny(precision="fp16")
    with pytest.raises(ConfigError, match="output mapping"):
        tiny(output_map="sigmoid")
    with pytest.raises(ConfigError, match="overlap"):
        tiny(overlap=24)
    m = tiny()
    with pytest.raises(ModelError, match="needs 32x32 frames; got 16x16"):
        m.restore_clip(torch.rand(4, 3, 16, 16))
    with pytest.raises(ModelError, match=r"\[T, 3, H, W\]"):
        m.restore_clip(torch.rand(1, 4, 3, 32, 32))


# ---------------------------------------------------------- official-layout weights (golden manifests)

def _golden_weights(tmp_path_factory, fixture: str):
    sd = golden_weights().make_state_dict(str(shared_path("golden", fixture, "manifest.json")))
    path = tmp_path_factory.mktemp(fixture) / "official-layout.pth"
    torch.save({"params_ema": sd}, path)  # the official checkpoint layout
    return path, sd


@pytest.fixture(scope="session")
def stc_weights(tmp_path_factory):
    return _golden_weights(tmp_path_factory, "stc_stage2")


@pytest.fixture(scope="session")
def deflicker_weights(tmp_path_factory):
    return _golden_weights(tmp_path_factory, "stc_deflicker_stage2")


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("BFVR_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _same_weights(model: STCClipModel, sd: dict) -> None:
    got = model.net.state_dict()
    assert list(got) == list(sd)
    for k in ("position_emb_s", "encoder.blocks.0.weight", "quantize.embedding_t.weight",
              "s_ft_layers.0.self_attn.in_proj_weight", "generator.blocks.20.weight",
              "fuse_convs_dict.256.encode_enc.conv1.weight"):
        if k in sd:
            assert torch.equal(got[k], sd[k]), k


def test_official_layout_loads_strict_stc(stc_weights, home):
    path, sd = stc_weights
    m = hub.load_model("stc", weights=str(path), offline=True)
    assert isinstance(m, STCClipModel) and m.name == "stc" and m.net.official_residual is True
    assert (m.clip_len, m.canvas) == (24, (512, 512))
    assert len(m.net.s_ft_layers) == 9 and m.net.s_ft_layers[0].self_attn.num_heads == 2
    _same_weights(m, sd)
    assert sum(p.numel() for p in m.net.parameters()) == 71_069_955
    assert not (home / "weights").exists()  # a local file is never copied into or recorded in the cache


def test_official_layout_loads_strict_deflicker(deflicker_weights, home):
    path, sd = deflicker_weights
    for name in ("stc-deflicker", "stc-deflicker-sd"):
        m = hub.load_model(name, weights=str(path), offline=True, output_map="minmax", overlap=4)
        assert len(m.net.t_ft_layers) == 6 and m.net.t_ft_layers[0].self_attn.num_heads == 4
        assert (m.output_map, m.overlap) == ("minmax", 4)
    _same_weights(m, sd)
    assert sum(p.numel() for p in m.net.parameters()) == 67_907_331


def test_wrong_weights_name_the_mismatching_keys(deflicker_weights, stc_weights, tmp_path, home):
    path, _ = deflicker_weights
    with pytest.raises(ModelError) as e:
        hub.load_model("stc", weights=str(path), offline=True)
    msg = str(e.value)
    assert "do not fit 'stc'" in msg and "missing s_ft_layers.6." in msg and "\n" not in msg
    # a renamed key and a reshaped tensor are named too
    _, sd = stc_weights
    bad = dict(sd)
    bad["encoder.blocks.0.weight_renamed"] = bad.pop("encoder.blocks.0.weight")
    bad["position_emb_t"] = torch.zeros(2048, 256)
    torch.save({"params_ema": bad}, tmp_path / "bad.pth")
    with pytest.raises(ModelError) as e:
        hub.load_model("stc", weights=str(tmp_path / "bad.pth"))
    msg = str(e.value)
    assert "position_emb_t has shape [2048, 256], expected [4096, 256]" in msg
    assert "missing encoder.blocks.0.weight" in msg and "unexpected encoder.blocks.0.weight_renamed" in msg


def test_cached_official_layout_loads_and_is_recorded(stc_weights, home):
    """A file placed in the cache by hand (offline machines) loads and gets its sha256 recorded."""
    import os

    path, _ = stc_weights
    dest = W.cached_path("stc")
    dest.parent.mkdir(parents=True)
    if os.stat(path).st_dev == os.stat(dest.parent).st_dev:
        os.link(path, dest)
    else:
        dest.write_bytes(path.read_bytes())
    m = hub.load_model("stc", offline=True)
    assert m.name == "stc"
    assert W.read_registry()["ckpt-bfvr.pth"]["sha256"] == W.sha256_file(path)


def test_cli_verify(stc_weights, deflicker_weights, capsys):
    path, _ = stc_weights
    assert run_cli("models", "verify", str(path), "--model", "stc") == 0
    out = capsys.readouterr().out
    assert f"sha256 {W.sha256_file(path)}" in out and "OK" in out and "71,069,955 parameters" in out
    assert run_cli("models", "verify", str(path), "--model", "stc", "--sha256", "f" * 64) == 2
    assert run_cli("models", "verify", str(deflicker_weights[0]), "--model", "stc") == 2
    assert "mismatching keys" in capsys.readouterr().err
    # the form: NAME FILE
    assert run_cli("models", "verify", "stc", str(path)) == 0
    assert "OK" in capsys.readouterr().out
    assert run_cli("models", "verify", "stc-deflicker", str(path)) == 2
    err = capsys.readouterr().err
    assert "mismatching keys" in err and "stc-deflicker" in err


# ------------------------------------------------------------------------- any length, via the engine

def _real_frames(faces_dir, n: int, size: int | None = None):
    import cv2

    from bfvr.io.reader import read_frames

    frames = read_frames(faces_dir / "lp_driving_d11.mp4", max_frames=n)  # 512x512 talking head
    assert frames.shape[0] == n
    if size is not None:
        frames = [cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames]
    return list(frames)


def test_any_length_through_the_engine(faces_dir):
    """100 real frames through the engine with the STC wrapper (tiny network, 32x32 canvas):
    exactly 100 frames back, in order with their pts, and the network only ever sees 24-frame clips."""
    import numpy as np

    from bfvr.engine.chunker import ClipEngine

    frames = _real_frames(faces_dir, 100, size=48)  # 48x48 frames: the engine resizes to the canvas
    m = tiny()
    eng = ClipEngine(m)
    out = list(eng.run((f, 1000 + 40 * i) for i, f in enumerate(frames)))
    assert len(out) == 100
    assert [p for _, p in out] == [1000 + 40 * i for i in range(100)]
    assert all(f.shape == (48, 48, 3) and f.dtype == np.uint8 for f, _ in out)
    assert eng.clips_run == eng.clips_for(100) == 6
    assert {c[2] for c in m.net.calls} == {24} and {c[3:] for c in m.net.calls} == {(32, 32)}
    # and a short video (fewer frames than a clip) is padded, not dropped
    out = list(ClipEngine(tiny()).run((f, i) for i, f in enumerate(frames[:5])))
    assert len(out) == 5


@pytest.mark.slow
def test_stc_100_frames_512_through_the_engine(faces_dir, stc_weights, home):
    """The real STC network with official-layout weights (bf16): 100 real 512x512 frames in, 100 out."""
    import numpy as np

    from bfvr.engine.chunker import ClipEngine

    path, _ = stc_weights
    m = hub.load_model("stc", weights=str(path), offline=True, precision="bf16")
    frames = _real_frames(faces_dir, 100)
    eng = ClipEngine(m)
    out = list(eng.run((f, i) for i, f in enumerate(frames)))
    assert len(out) == 100 and [p for _, p in out] == list(range(100))
    assert all(f.shape == (512, 512, 3) and f.dtype == np.uint8 for f, _ in out)
    assert eng.clips_run == 6


@pytest.mark.slow
def test_bfvr_restore_with_stc_weights(faces_dir, stc_weights, home, tmp_path):
    """`bfvr restore --model stc --weights FILE --offline` writes a video with the input's frame count."""
    from bfvr.io.reader import read_frames

    path, _ = stc_weights
    out = tmp_path / "restored.mp4"
    assert run_cli("restore", str(faces_dir / "lp_driving_d0.mp4"), "-o", str(out), "--model", "stc",
                   "--weights", str(path), "--offline", "--precision", "bf16", "--device", "cpu",
                   "--max-frames", "10", "--clip-len", "8", "--overlap", "2", "-q") == 0
    frames = read_frames(out)
    assert frames.shape == (10, 512, 512, 3)


def test_residual_flag_follows_the_file(stc_weights, tmp_path, home):
    """Official .pth -> official residual; our .safetensors -> corrected unless its metadata says
    otherwise."""
    from safetensors.torch import save_file

    _, sd = stc_weights
    save_file(sd, str(tmp_path / "ours.safetensors"))
    save_file(sd, str(tmp_path / "flagged.safetensors"), metadata={"official_residual": "true"})
    assert hub.load_model("stc", weights=str(tmp_path / "ours.safetensors")).net.official_residual is False
    assert hub.load_model("stc", weights=str(tmp_path / "flagged.safetensors")).net.official_residual is True
    with pytest.raises(ConfigError, match="no option colour"):
        hub.load_model("stc", weights=str(tmp_path / "ours.safetensors"), colour=1)


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["stc_stage2", "stc_deflicker_stage2"])
def test_fp32_clip_model_path_matches_the_golden_output(tmp_path_factory, home, fixture):
    """fp32 through `load_model(...).restore_clip` (what `bfvr restore --precision fp32` calls per clip)
    equals the official output within golden/README.md's 1e-4 (30-60 s per fixture on 2 cores)."""
    import json

    from safetensors.torch import load_file

    path, _ = _golden_weights(tmp_path_factory, fixture)
    kw = json.loads(shared_path("golden", fixture, "meta.json").read_text())["constructor"]["kwargs"]
    name = "stc" if kw["n_head"] == 2 else "stc-deflicker"
    io = load_file(str(shared_path("golden", fixture, "io.safetensors")))
    m = hub.load_model(name, weights=str(path), offline=True, precision="fp32", clip_len=4, overlap=0)
    assert m.channels_last is False
    x = io["input"]  # [1, 3, T, 512, 512]
    out = m.restore_clip(x[0].permute(1, 0, 2, 3))
    ref = io["output"][0].permute(1, 0, 2, 3)
    assert (out - ref).abs().max().item() <= 1e-4


@pytest.mark.slow
def test_overhead_benchmark_quick_mode_measures_the_cli_against_the_bare_forward():
    # benchmarks/stc_overhead.py: the real `bfvr restore` in one process against one bare forward in another
    # (about 20 s on 1 thread: two 2-frame STC calls at 512x512 in bf16 + start-up twice)
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    shared_path("golden", "stc_stage2", "manifest.json")
    video = shared_path("data", "faces", "lp_driving_d11.mp4")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "stc_overhead.py"
    r = subprocess.run([sys.executable, str(script), "--frames", "3", "--clip-len", "2", "--overlap", "0",
                        "--threads", "1", "--precisions", "bf16", "--json", "--video", str(video)],
                       check=True, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert (res["frames_out"], res["calls"], res["call_shape"], res["threads"]) == (3, 2, "2x512x512", 1)
    b = res["breakdown_s"]
    assert abs(b["startup"] + b["load"] + b["model"] + b["rest"] - res["end_to_end_s"]) < 0.05, res
    assert len(res["model_calls_s"]) == 2 and b["model"] < res["end_to_end_s"]
    # end to end is the calls plus start-up, load, decode and encode: more than the calls, but not many times
    assert 1.0 < res["ratio"] < 3.0, res

"""The shared seam: `NetClipModel` (layout, padding, value range, precision policy, canvas) and `load_net`
(URLs in order, per-entry mirrors, Hugging Face folders + config.json, exact key checks) on small real
networks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from bfvr.engine.base import Schedule, contract_of
from bfvr.errors import ConfigError, ModelError, WeightsNotFoundError
from bfvr.models import hub
from bfvr.models import weights as W
from bfvr.models.adapter import NetClipModel, map_output
from helpers import run_cli


class FrameNet(nn.Module):
    """Frames stacked in the batch (NCHW, like DicFace/PGTFormer), groups of `group` frames: each output frame
    is its own conv plus the mean of its group (so the grouping and the frame order are visible)."""

    def __init__(self, ch: int = 3, group: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.group = group
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.shapes.append(tuple(x.shape))
        g = x.reshape(-1, self.group, *x.shape[1:]).mean(1, keepdim=True)
        out = self.conv(x) + g.expand(-1, self.group, -1, -1, -1).reshape(x.shape)
        return out, g


def _model(**kw) -> NetClipModel:
    torch.manual_seed(0)
    kw.setdefault("schedule", Schedule.window(5))
    kw.setdefault("canvas", None)
    return NetClipModel(FrameNet(group=kw.pop("group", 1)), name="frames", layout="NCHW", **kw)


def test_nchw_layout_equals_the_plain_call_and_keeps_frame_order():
    m = _model(output_map="none")
    clip = torch.rand(5, 3, 16, 24)
    out = m.restore_clip(clip)
    ref, _ = m.net(clip)
    assert out.shape == clip.shape
    assert torch.equal(out, ref)
    assert contract_of(m).schedule == Schedule.window(5) and (m.clip_len, m.overlap) == (5, 0)


def test_time_and_space_padding_are_dropped_again():
    m = _model(output_map="none", spatial_multiple=8, time_multiple=5, group=5)
    clip = torch.rand(3, 3, 13, 10)
    out = m.restore_clip(clip)
    assert m.net.shapes[-1] == (5, 3, 16, 16)  # T 3 -> 5 (last frame repeated), 13x10 -> 16x16
    assert out.shape == clip.shape
    # the padded input is what the network saw: frames 3, 4 are copies of frame 2, edges replicated
    padded = torch.nn.functional.pad(torch.cat([clip, clip[-1:].expand(2, -1, -1, -1)]), (0, 6, 0, 3),
                                     mode="replicate")
    ref, _ = m.net(padded)
    assert torch.allclose(out, ref[:3, :, :13, :10], atol=1e-6)


def test_value_range_and_output_maps():
    x = torch.tensor([-3.0, -1.0, 0.0, 2.0])
    assert torch.equal(map_output(x, "clamp", (-1.0, 1.0)), torch.tensor([-1.0, -1.0, 0.0, 1.0]))
    mm = map_output(x, "minmax", (-1.0, 1.0))
    assert mm.min() == -1 and mm.max() == 1 and torch.allclose(mm, (x + 3) / 5 * 2 - 1)
    assert torch.equal(map_output(x, "none"), x)
    with pytest.raises(ConfigError):
        map_output(x, "sigmoid")
    m = _model(value_range=(-1.0, 1.0))
    out = m.restore_clip(torch.rand(5, 3, 8, 8) * 4 - 2)
    assert out.min() >= -1 and out.max() <= 1 and out.min() < -0.5  # clamped into [-1, 1], not [0, 1]
    assert contract_of(m).value_range == (-1.0, 1.0)


def test_canvas_is_checked_unless_optional():
    m = _model(canvas=(8, 8))
    with pytest.raises(ModelError, match="needs 8x8 frames"):
        m.restore_clip(torch.rand(5, 3, 16, 16))
    assert _model(canvas=(8, 8), canvas_required=False).restore_clip(torch.rand(5, 3, 16, 16)).shape[-1] == 16
    with pytest.raises(ModelError, match=r"\[T, 3, H, W\]"):
        m.restore_clip(torch.rand(5, 8, 8))


def test_precision_policy_fp32_official_layout_bf16_channels_last():
    a = _model(precision="fp32")
    assert not a.channels_last and a.net.conv.weight.is_contiguous()
    b = _model(precision="bf16")
    assert b.channels_last and b.net.conv.weight.is_contiguous(memory_format=torch.channels_last)
    clip = torch.rand(5, 3, 16, 16)
    diff = (a.restore_clip(clip) - b.restore_clip(clip)).abs().max().item()
    assert 0 < diff < 0.05  # bf16 really ran (not bit-equal) and stays close
    with pytest.raises(ConfigError):
        _model(precision="fp16")  # fp16 on the CPU
    with pytest.raises(ConfigError):
        NetClipModel(FrameNet(), name="x", schedule=Schedule.clips(4), canvas=None, layout="TCHW")


# ----------------------------------------------------------------------------------------- load_net

class Small(nn.Module):
    def __init__(self, width: int = 4, depth: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(*[nn.Conv2d(3 if i == 0 else width, width, 3) for i in range(depth)])
        self.register_buffer("scale", torch.ones(width))


def _small_net(config, *, device=None, **opts):
    with torch.device(device or "cpu"):
        return Small(**config, **opts)


@pytest.fixture()
def small_model(monkeypatch, tmp_path):
    """A model `small` registered like a real one: a spec + a weights entry with two URLs, a mirror variable,
    and a Hugging Face config mapping."""
    monkeypatch.setenv("BFVR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BFVR_WEIGHTS_BASE_URL", raising=False)
    monkeypatch.delenv("BFVR_SMALL_MIRROR", raising=False)
    served = tmp_path / "served"
    served.mkdir()
    entry = W.WeightsEntry("small", "small.pth", (f"file://{tmp_path}/missing/small.pth", f"file://{served}/small.pth"),
                           key="params_ema", mirror_env="BFVR_SMALL_MIRROR")
    spec = hub.ModelSpec("small", "test model", lambda **kw: None, weights="small",
                         config={"width": 4, "depth": 1}, net=_small_net,
                         hf_config=lambda c: {"width": c["hidden"], "depth": c["layers"]})
    monkeypatch.setitem(W.WEIGHTS, "small", entry)
    monkeypatch.setitem(hub.MODELS, "small", spec)
    return served


def _state(width=4, depth=1):
    torch.manual_seed(1)
    return Small(width, depth).state_dict()


def test_load_net_downloads_from_the_first_url_that_answers_and_loads_exactly(small_model):
    sd = _state()
    torch.save({"params_ema": sd, "params": {}}, small_model / "small.pth")
    net, path = hub.load_net("small", progress=False)
    assert path == W.cached_path("small") and path.is_file()  # the first URL failed, the second answered
    assert all(torch.equal(net.state_dict()[k], v) for k, v in sd.items())
    assert not net.training
    with pytest.raises(WeightsNotFoundError, match="--offline"):
        path.unlink()
        hub.load_net("small", offline=True)


def test_each_entry_has_its_own_mirror(small_model, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    torch.save({"params_ema": _state()}, mirror / "small.pth")
    monkeypatch.setenv("BFVR_SMALL_MIRROR", f"file://{mirror}")
    assert W.source_urls(W.get_entry("small")) == [f"file://{mirror}/small.pth"]
    assert W.source_urls(W.get_entry("stc"))[0].startswith("https://github.com/")  # other entries unaffected
    hub.load_net("small", progress=False)
    assert W.read_registry()["small.pth"]["source"] == f"file://{mirror}/small.pth"


def test_mismatching_keys_are_named(small_model, tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"params_ema": _state(width=6)}, bad)
    with pytest.raises(ModelError) as e:
        hub.load_net("small", weights=bad)
    assert "mismatching keys" in str(e.value) and "body.0.weight" in str(e.value)
    assert run_cli("models", "verify", "small", str(bad)) == 2


def test_hugging_face_folder_with_config_json(small_model, tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    save_file(_state(width=6, depth=2), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"hidden": 6, "layers": 2}))
    entry = W.WeightsEntry("small", "small.pth", key=None)
    W.WEIGHTS["small"] = entry
    net, path = hub.load_net("small", weights=folder)
    assert path == folder / "model.safetensors" and len(net.body) == 2 and net.body[0].out_channels == 6
    assert run_cli("models", "verify", "small", str(folder)) == 0
    (folder / "config.json").write_text(json.dumps({"hidden": 6}))
    with pytest.raises(ModelError, match="config.json"):
        hub.load_net("small", weights=folder)
    (folder / "config.json").unlink()  # without it, the spec's config (width 4) is used: the shapes say so
    with pytest.raises(ModelError, match="mismatching keys"):
        hub.load_net("small", weights=folder)


def test_hf_config_is_fetched_beside_the_cached_weights(small_model, tmp_path, monkeypatch):
    save_file(_state(width=6, depth=2), str(small_model / "model.safetensors"))
    (small_model / "config.json").write_text(json.dumps({"hidden": 6, "layers": 2}))
    entry = W.WeightsEntry("small", "small.safetensors", (f"file://{small_model}/model.safetensors",),
                           key=None, config_urls=(f"file://{small_model}/config.json",))
    monkeypatch.setitem(W.WEIGHTS, "small", entry)
    net, path = hub.load_net("small", progress=False)
    assert path.name == "small.safetensors" and (path.parent / "small.config.json").is_file()
    assert net.body[0].out_channels == 6


def test_builtin_models_go_through_load_net(monkeypatch):
    calls = []
    real = hub.load_net

    def spy(name, **kw):
        calls.append(name)
        return real(name, **kw)

    monkeypatch.setattr(hub, "load_net", spy)
    m = hub.load_model("bfvr-lite", offline=True)
    assert calls == ["bfvr-lite"] and m.name == "bfvr-lite"
    assert Path(W.cached_path("bfvr-lite")).is_file()

"""The motion-adaptive temporal filter (`bfvr.engine.temporal`): it damps frame-to-frame noise where a real
picture stands still, leaves moving content sharp, and the engine applies it to the clips of a model that asks
for it (BFVR-Lite by default, `--temporal-filter` to change or turn it off)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bfvr.engine.temporal import temporal_filter
from bfvr.errors import ConfigError


def _real_frame(faces_dir, size: int = 128) -> torch.Tensor:
    from bfvr.train.data import load_clip

    gt = load_clip(faces_dir / "lp_driving_d0.mp4", 1, size, face_crop=True)
    return torch.from_numpy(gt[0]).permute(2, 0, 1).float() / 255


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / (a - b).square().mean()))


def test_still_picture_noise_is_damped(faces_dir) -> None:
    """A real face held still with fresh noise in every frame (sigma 2 levels): the filter brings the frames
    closer to the clean picture and lowers their frame-to-frame change by more than a third."""
    clean = _real_frame(faces_dir)
    g = torch.Generator().manual_seed(0)
    noisy = (clean + torch.randn((8,) + clean.shape, generator=g) * (2 / 255)).clamp(0, 1)
    out = temporal_filter(noisy.clone(), 3.0)
    assert _psnr(out, clean) > _psnr(noisy, clean) + 2.0
    change_in = (noisy[1:] - noisy[:-1]).abs().mean()
    change_out = (out[1:] - out[:-1]).abs().mean()
    assert change_out < 0.65 * change_in, (float(change_in), float(change_out))


def test_moving_picture_is_not_smeared(faces_dir) -> None:
    """The same face panning 6 px per frame: a plain 3-frame mean smears it, the filter keeps each frame
    close to itself (where brightness changes by more than sigma the neighbours get little weight)."""
    clean = _real_frame(faces_dir, 160)
    frames = torch.stack([clean[:, 16:144, 6 * i:6 * i + 128] for i in range(5)])
    out = temporal_filter(frames.clone(), 3.0)
    mean3 = (frames[:-2] + frames[1:-1] + frames[2:]) / 3
    assert _psnr(out, frames) > 34.0
    assert _psnr(mean3, frames[1:-1]) < _psnr(out[1:-1], frames[1:-1]) - 8.0


def test_each_frame_is_averaged_with_its_unfiltered_neighbours() -> None:
    """The in-place sweep equals the formula computed out of place (frame t with the *unfiltered* t-1 and t+1,
    one neighbour at the clip's ends)."""
    import cv2

    g = torch.Generator().manual_seed(2)
    x = torch.rand(5, 3, 24, 32, generator=g) * 0.05 + torch.linspace(0, 0.5, 32)  # small changes
    sigma = 4.0
    luma = [(0.299 * f[0] + 0.587 * f[1] + 0.114 * f[2]).numpy() for f in x]
    guide = [torch.from_numpy(cv2.GaussianBlur(y, (0, 0), 1.5, borderType=cv2.BORDER_REPLICATE))
             for y in luma]
    ref = []
    for t in range(5):
        num, den = x[t].clone(), torch.ones(24, 32)
        for s in (t - 1, t + 1):
            if 0 <= s < 5:
                w = torch.exp(-(((guide[t] - guide[s]) * 255 / sigma) ** 2))
                num, den = num + w * x[s], den + w
        ref.append(num / den)
    out = temporal_filter(x.clone(), sigma)
    assert torch.allclose(out, torch.stack(ref), atol=1e-6)
    assert (out - x).abs().max() > 1e-3  # the neighbours did count


def test_engine_never_filters_the_input_in_place_and_ignores_time_padding(faces_dir) -> None:
    """With strength 0 the engine gives the input back exactly (the filter works on the model's output, never
    on the input). A stream shorter than the clip is padded in time; the filter sees only the real frames."""
    from bfvr.engine.chunker import ClipEngine
    from bfvr.models.hub import load_model

    clean = _real_frame(faces_dir, 64)
    g = torch.Generator().manual_seed(3)
    clip = (clean + torch.randn((3,) + clean.shape, generator=g) * (2 / 255)).clamp(0, 1)
    frames = [(f.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for f in clip]
    ident = load_model("identity")
    ident.temporal_filter = 3.0
    engine = ClipEngine(ident, clip_len=6, overlap=0, strength=0.0)
    back = np.stack([f for f, _ in engine.run((f, i) for i, f in enumerate(frames))])
    assert np.array_equal(back, np.stack(frames))
    plain = ClipEngine(ident, clip_len=6, overlap=0)
    out = np.stack([f for f, _ in plain.run((f, i) for i, f in enumerate(frames))])
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255
    ref = ClipEngine.clip_to_uint8(temporal_filter(x, 3.0))
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1


def test_off_one_frame_and_bad_strengths() -> None:
    x = torch.rand(4, 3, 16, 16)
    assert torch.equal(temporal_filter(x.clone(), 0), x)
    assert torch.equal(temporal_filter(x[:1].clone(), 3.0), x[:1])
    for bad in (-1, float("nan"), "strong"):
        with pytest.raises(ConfigError, match="temporal filter strength"):
            temporal_filter(x.clone(), bad)


def test_engine_applies_the_models_filter_and_lite_asks_for_it(faces_dir) -> None:
    """A model with ``temporal_filter`` gets it on every clip (here the identity, so the engine's output is
    exactly the filtered input); BFVR-Lite sets 1 by default, 0 when asked, and refuses a bad value."""
    from bfvr.engine.base import contract_of
    from bfvr.engine.chunker import ClipEngine
    from bfvr.models.hub import load_model

    clean = _real_frame(faces_dir, 64)
    g = torch.Generator().manual_seed(1)
    clip = (clean + torch.randn((6,) + clean.shape, generator=g) * (2 / 255)).clamp(0, 1)
    frames = [(f.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for f in clip]
    ident = load_model("identity")
    plain = ClipEngine(ident, clip_len=6, overlap=0).forward_clip(frames)
    ident.temporal_filter = 3.0
    filtered = ClipEngine(ident, clip_len=6, overlap=0).forward_clip(frames)
    assert torch.allclose(filtered, temporal_filter(plain.clone(), 3.0), atol=1e-6)
    assert (filtered - plain).abs().mean() > 1e-3
    assert contract_of(load_model("bfvr-lite")).temporal_filter == 1.0
    assert contract_of(load_model("bfvr-lite", temporal_filter=0)).temporal_filter == 0.0
    with pytest.raises(ConfigError, match="temporal filter strength"):
        load_model("bfvr-lite", temporal_filter=-2)


def test_cli_flag_is_refused_by_models_without_a_filter(tmp_path, capsys) -> None:
    from helpers import SHARED, TRAIN_VIDEO, run_cli

    out = tmp_path / "out.mp4"
    src = SHARED / "data" / "faces" / TRAIN_VIDEO
    assert run_cli("restore", str(src), "-o", str(out), "--model", "identity", "--has-aligned",
                   "--temporal-filter", "3", "-q") != 0
    assert "--temporal-filter goes with --model bfvr-lite" in capsys.readouterr().err
    assert not out.exists()

"""The incremental official window schedule (`DicFaceWindowSession`, the default) against the naive loop (one
full forward per window, ``incremental=False``), frame by frame in fp32 through the engine: a small DicFace
on real frames and on the golden input (fast), the golden fixture weights at 512x512 (slow)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bfvr.engine.chunker import ClipEngine
from bfvr.models.dicface import DicFace
from bfvr.models.dicface.clip import DicFaceClipModel, DicFaceWindowSession
from helpers import DICFACE_SMALL as SMALL
from helpers import golden_weights, shared_path


@pytest.fixture(autouse=True)
def _threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(2 if request.node.get_closest_marker("slow") else 1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def small_sd() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    net = DicFace(**SMALL)
    with torch.no_grad():  # lively weights: peaked alphas, a codebook that matters
        net.position_emb.normal_(0, 0.5)
        net.position_emb_temporal.normal_(0, 0.5)
        net.idx_pred_layer[1].weight.normal_(0, 0.5)
        net.quantize.embedding.weight.normal_(0, 1.0)
    return net.state_dict()


def _real(n: int, size: int | None = None) -> np.ndarray:
    from bfvr.io import read_frames

    fr = read_frames(shared_path("data", "faces", "lp_driving_d0.mp4"), max_frames=n)
    if size is None:
        return fr
    x = torch.from_numpy(fr).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="area")
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _golden_input(n: int, size: int | None = None) -> np.ndarray:
    io = golden_weights().load_safetensors(str(shared_path("golden", "dicface", "io.safetensors")))
    x = io["input"][:n]
    if size is not None:
        x = F.interpolate(x, size=(size, size), mode="area")
    return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _run(model: DicFaceClipModel, frames: np.ndarray) -> tuple[torch.Tensor, ClipEngine]:
    """The engine's restored frames as floats (before the rounding to uint8), in output order."""
    eng = ClipEngine(model)
    got: list[torch.Tensor] = []

    def capture(a: torch.Tensor) -> np.ndarray:
        got.append(a.clone())
        return ClipEngine.clip_to_uint8(a)

    eng.clip_to_uint8 = capture  # type: ignore[method-assign]
    out = eng.restore_array(frames)
    assert out.shape == frames.shape
    return torch.cat(got), eng


def _both(make_net, frames: np.ndarray, **kw) -> tuple[torch.Tensor, torch.Tensor, ClipEngine, ClipEngine]:
    naive, e_naive = _run(DicFaceClipModel(make_net(), incremental=False, **kw), frames)
    inc, e_inc = _run(DicFaceClipModel(make_net(), **kw), frames)
    return naive, inc, e_naive, e_inc


@pytest.mark.parametrize("sampling", ["official", "mean"])
@pytest.mark.parametrize("source", ["real", "golden"])
def test_incremental_equals_naive_official_loop(small_sd, sampling, source):
    """9 frames, official schedule (keep=1): every frame within 1e-4 of the full-window loop (seeded
    official draws included: the session draws the whole window's sample, as the full forward does), each
    frame encoded once; and the fast keep=2 schedule too."""
    frames = _real(9, 32) if source == "real" else np.concatenate([_golden_input(5, 32)] * 2)[:9]

    def make_net():
        net = DicFace(**SMALL).eval()
        net.load_state_dict(small_sd)
        return net

    for keep in (1, 2):
        naive, inc, e_naive, e_inc = _both(make_net, frames, sampling=sampling, seed=5, keep=keep)
        assert naive.shape == inc.shape == (len(frames), 3, 32, 32)
        diff = (naive - inc).abs().amax(dim=(1, 2, 3))
        assert diff.max() <= 1e-4, diff
        assert e_naive.clips_run == e_inc.clips_run == -(-len(frames) // keep)
        assert e_naive.new_window_session() is None and e_inc.new_window_session() is not None
    # not trivially equal: neighbouring windows give another frame, another seed another draw
    assert (naive[1:] - naive[:-1]).abs().max() > 0.05
    if sampling == "official":
        other, _ = _run(DicFaceClipModel(make_net(), sampling=sampling, seed=6, keep=2), frames)
        assert (other - inc).abs().max() > 0.01


def test_session_encodes_each_frame_once_and_forgets(small_sd):
    net = DicFace(**SMALL).eval()
    net.load_state_dict(small_sd)
    m = DicFaceClipModel(net, sampling="mean")
    s = m.window_session()
    assert isinstance(s, DicFaceWindowSession)
    x = torch.from_numpy(_real(8, 32)).permute(0, 3, 1, 2).float() / 127.5 - 1
    n = len(x)
    for i in range(n):
        ids = [min(max(i - 2 + j, 0), n - 1) for j in range(5)]
        out = s.restore(x[ids], ids, [2])
        assert out.shape == (1, 3, 32, 32)
        full = m.restore_clip(x[ids])[2:3]
        assert (out - full).abs().max() <= 1e-4
        assert len(s.lq) <= 5 and len(s.feats) <= 3  # bounded: the window, undecoded frames only
    assert s.encoded == n
    assert DicFaceClipModel(net, incremental=False).window_session() is None


@pytest.mark.slow
@pytest.mark.parametrize("source", ["golden", "real"])
def test_fixture_weights_incremental_equals_naive(source, tmp_path):
    """512x512, the golden manifest's weights (official layout), fp32, seeded official sampling: 3 frames
    of the golden input / of a real clip through the naive loop (3 full windows) and the incremental one,
    frame by frame <= 1e-4. ~2-4 min on 2 busy cores."""
    import json

    meta = json.loads(shared_path("golden", "dicface", "meta.json").read_text())
    sd = golden_weights().make_state_dict(str(shared_path("golden", "dicface", "manifest.json")))

    def make_net():
        with torch.device("meta"):
            net = DicFace(**meta["constructor"]["kwargs"])
        net.load_state_dict(sd, strict=True, assign=True)
        return net.eval()

    frames = _golden_input(3) if source == "golden" else _real(3)
    naive, inc, _, e_inc = _both(make_net, frames, sampling="official", seed=0)
    diff = (naive - inc).abs().amax(dim=(1, 2, 3))
    print(source, "max abs diff per frame", diff.tolist())
    assert diff.max() <= 1e-4


def test_fp32_transformer_under_bf16_autocast(small_sd):
    """`fp32_transformer=True` runs the transformer layers in fp32 inside a bf16 autocast: the tokens equal
    the fp32 ones; without it they carry bf16 rounding."""
    net = DicFace(**SMALL).eval()
    net.load_state_dict(small_sd)
    lq = torch.randn(5, SMALL["emb_dim"], 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = net.transform(lq)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net.transform(lq)
            DicFaceClipModel(net, precision="bf16", fp32_transformer=True)
            assert net.fp32_transformer
            high = net.transform(lq)
    assert high.dtype == torch.float32 and (high - ref).abs().max() <= 1e-5
    assert (low.float() - ref).abs().max() > 1e-3

"""PGTFormer's incremental official schedule (per-frame work cached by frame, only the kept frame decoded)
against the naive official loop (one full network call per 3-frame window, edges replicated), frame by
frame in fp32: a small network on real face frames (fast), and (slow) the golden-fixture weights at 512x512
on the fixture's window and on real frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bfvr.engine import ClipEngine
from bfvr.io import read_frames
from bfvr.models.pgtformer import OFFICIAL_CONFIG, PGTFormer
from bfvr.models.pgtformer.clip import PGTFormerClipModel
from helpers import golden_weights, small_net

pytestmark = pytest.mark.usefixtures("one_thread")  # small networks: see conftest.one_thread


def windows(n: int, keep: int = 1) -> list[tuple[list[int], tuple[int, int]]]:
    """The engine's window schedule for n frames: (input indices, kept output positions) per call."""
    out, b, a = [], 0, 1 - keep // 2
    while b < n:
        idx = [min(max(b - a + j, 0), n - 1) for j in range(3)]
        stop = min(b + keep, n)
        out.append((idx, (a, a + stop - b)))
        b = stop
    return out


def compare(net, x: torch.Tensor, keep: int = 1):
    """Max |naive - incremental| over all restored frames of x [N, 3, H, W] (float, clamped as the
    engine gets them) on the window schedule; returns (max diff, the incremental session)."""
    naive = PGTFormerClipModel(net, keep=keep, incremental=False)
    inc = PGTFormerClipModel(net, keep=keep)
    assert naive.window_session() is None
    session = inc.window_session()
    worst, got = 0.0, 0
    for idx, (a, b) in windows(len(x), keep):
        ref = naive.restore_clip(x[idx])[a:b]
        out = session.restore(x[idx], idx, list(range(a, b)))
        assert out.shape == ref.shape
        worst = max(worst, (out - ref).abs().max().item())
        got += len(out)
        assert len(session.cache) <= 3 + keep  # at most L + K frames' features held
    assert got == len(x)
    return worst, session


@pytest.fixture(scope="module")
def faces32(faces_dir) -> torch.Tensor:
    """4 real face frames (lp_driving_d0) at the small network's 32x32 canvas, [4, 3, 32, 32] in [0, 1]."""
    fr = torch.from_numpy(read_frames(faces_dir / "lp_driving_d0.mp4", max_frames=4))
    fr = fr.permute(0, 3, 1, 2).float()
    return (F.interpolate(fr, size=(32, 32), mode="area").round() / 255).contiguous()


@pytest.mark.parametrize("keep", [1, 2])
def test_incremental_equals_the_naive_loop_frame_by_frame(faces32, keep):
    worst, session = compare(small_net(0), faces32, keep)
    assert worst <= 1e-4, worst
    assert session.frames_encoded == len(faces32)  # each frame's per-frame work ran exactly once


def test_the_engine_uses_a_session_per_stream_and_gives_the_naive_frames(faces32):
    net = small_net(0)
    u8 = (faces32 * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    a = ClipEngine(PGTFormerClipModel(net, incremental=False)).restore_array(u8)
    inc = PGTFormerClipModel(net)
    sessions = []
    make = inc.window_session

    def recording():
        sessions.append(make())
        return sessions[-1]

    inc.window_session = recording
    engine = ClipEngine(inc)
    b = engine.restore_array(u8)
    assert np.abs(a.astype(int) - b).max() <= 1  # float parity 1e-4 (above): at most a rounding step
    used = [s for s in sessions if s.frames_encoded]
    assert len(used) == 1 and used[0].frames_encoded == len(u8) and engine.clips_run == len(u8)


def test_decoding_only_some_frames_equals_the_full_decode_without_fidelity_blocks(faces32):
    """w = 0: the last cross-frame operation is a window attention, not a fidelity block."""
    net = small_net(2)
    with torch.no_grad():
        full = net(faces32[:3], w=0.0)[0]
        feats = net.frame_features(faces32[:3])
        for keep in ([0], [2], [0, 2]):
            part = net.forward_window(feats, keep=keep, w=0.0)
            assert (part - full[keep]).abs().max() < 1e-5
        # per-frame features of a frame alone equal those inside a batch
        one = net.frame_features(faces32[1:2])
        assert (one["h"] - feats["h"][1:2]).abs().max() < 1e-5
        assert (one["cond"] - feats["cond"][1:2]).abs().max() < 1e-5


def test_a_session_rejects_a_window_without_ids_or_kept_positions(faces32):
    from bfvr.errors import ModelError

    session = PGTFormerClipModel(small_net(0)).window_session()
    with pytest.raises(ModelError, match="frame ids"):
        session.restore(faces32[:3], [0, 1], [1])
    with pytest.raises(ModelError, match="frame ids"):
        session.restore(faces32[:3], [0, 1, 2], [])


# ------------------------------------------------------------------------------ golden fixture (slow)


@pytest.mark.slow
def test_incremental_equals_naive_with_the_golden_fixture_weights(golden_dir):
    gw = golden_weights()
    g = golden_dir / "pgtformer"
    with torch.device("meta"):
        net = PGTFormer(**OFFICIAL_CONFIG)
    sd = gw.make_state_dict(str(g / "manifest.json"), overrides=str(g / "int_buffers.safetensors"))
    net.load_state_dict(sd, strict=True, assign=True)
    del sd
    net.eval()
    torch.set_num_threads(2)
    fixture = gw.load_safetensors(str(g / "io.safetensors"))["input"]  # the fixture's 3 frames
    worst, _ = compare(net, fixture.contiguous())
    print(f"golden fixture window, incremental vs naive: max |diff| {worst:.2e}")
    assert worst <= 1e-4
    real = torch.from_numpy(
        read_frames(golden_dir.parent / "data" / "faces" / "lp_driving_d0.mp4", max_frames=4)
    )
    real = (real.permute(0, 3, 1, 2).float() / 255).contiguous()
    worst, session = compare(net, real)
    print(f"lp_driving_d0 (4 frames, 512x512), incremental vs naive: max |diff| {worst:.2e}")
    assert worst <= 1e-4 and session.frames_encoded == 4

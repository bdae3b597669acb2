"""The sliding-window schedule (DicFace / PGTFormer style) and the rest of the clip-model contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bfvr.engine import ClipEngine, Schedule, WindowStream, contract_of
from bfvr.errors import ConfigError


class CentreWindow:
    """A cheap temporal test model with a 5-frame window: output frame j is a fixed, j-dependent mix of all
    five input frames (so using the wrong window, position or edge padding changes the result)."""

    name = "centre-window"
    canvas = None
    device = torch.device("cpu")
    clip_len, overlap = 5, 0

    def __init__(self, length: int = 5, keep: int = 1) -> None:
        self.schedule = Schedule.window(length, keep)
        self.clip_len = length
        w = torch.rand(length, length, generator=torch.Generator().manual_seed(3)) + 0.1
        self.mix = w / w.sum(dim=1, keepdim=True)
        self.calls = 0

    def restore_clip(self, clip: torch.Tensor) -> torch.Tensor:
        assert clip.shape[0] == self.schedule.length
        self.calls += 1
        return torch.einsum("jk,kchw->jchw", self.mix, clip)


def official_loop(frames: np.ndarray, model: CentreWindow) -> np.ndarray:
    """The official schedule written plainly: for every frame i, the window i-2 .. i+2 with the first/last
    frame repeated past the ends, and the model's centre output (index L//2)."""
    n, L = len(frames), model.schedule.length
    c = L // 2
    out = []
    for i in range(n):
        window = [frames[min(max(i - c + j, 0), n - 1)] for j in range(L)]
        x = torch.from_numpy(np.stack(window)).permute(0, 3, 1, 2).float() / 255
        y = model.restore_clip(x)[c].clamp(0, 1)
        out.append((y * 255 + 0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy())
    return np.stack(out)


@pytest.fixture(scope="module")
def real_clip(faces_dir) -> np.ndarray:
    from bfvr.io import read_frames

    frames = read_frames(faces_dir / "lp_driving_d11.mp4", max_frames=100)
    assert frames.shape == (100, 512, 512, 3)
    return frames


@pytest.mark.slow  # 14 s of CPU, OMP_NUM_THREADS=1 (measured 2026-12-06)
def test_official_window_schedule_on_a_real_clip_frame_for_frame(real_clip: np.ndarray) -> None:
    model = CentreWindow()
    engine = ClipEngine(model)
    stream = engine.stream()
    assert isinstance(stream, WindowStream)
    out, held = [], []
    for i, f in enumerate(real_clip):
        out += stream.push(f, i)
        held.append(stream.buffered)
    out += stream.flush()
    assert [t for _, t in out] == list(range(100))
    assert model.calls == 100 == engine.clips_for(100)  # stride 1: one call per frame
    ref = official_loop(real_clip, model)
    assert np.array_equal(np.stack([f for f, _ in out]), ref)
    assert max(held) <= 5  # never more than one window of input frames held
    assert not np.array_equal(ref[0], real_clip[0])  # the model really changes the frames


@pytest.mark.slow  # 23 s of CPU, OMP_NUM_THREADS=1 (measured 2026-12-06)
def test_window_stream_memory_does_not_grow_with_length(real_clip: np.ndarray) -> None:
    def held_for(n: int, keep: int) -> int:
        stream = ClipEngine(CentreWindow(keep=keep)).stream()
        most, emitted = 0, 0
        for i in range(n):
            emitted += len(stream.push(real_clip[i % 100], i))
            most = max(most, stream.buffered)
            assert i + 1 - emitted <= 5  # output lags the input by at most one window
        assert emitted + len(stream.flush()) == n
        return most

    for keep in (1, 3, 5):
        assert held_for(40, keep) == held_for(400, keep) <= 5


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 11])
def test_short_and_odd_lengths_match_the_official_loop(real_clip: np.ndarray, n: int) -> None:
    frames = np.ascontiguousarray(real_clip[:n, ::16, ::16])
    for length in (3, 5):  # PGTFormer's 3-frame window too
        model = CentreWindow(length)
        got = ClipEngine(model).restore_array(frames)
        assert np.array_equal(got, official_loop(frames, model))


def fast_loop(frames: np.ndarray, model: CentreWindow, keep: int) -> np.ndarray:
    """The documented faster schedule written plainly: blocks of `keep` frames, window starting
    L//2 - keep//2 frames before the block, edges replicated, outputs L//2 - keep//2 ... kept."""
    n, L = len(frames), model.schedule.length
    a = L // 2 - keep // 2
    out = []
    for b in range(0, n, keep):
        window = [frames[min(max(b - a + j, 0), n - 1)] for j in range(L)]
        x = torch.from_numpy(np.stack(window)).permute(0, 3, 1, 2).float() / 255
        y = model.restore_clip(x)[a:a + keep].clamp(0, 1)
        out += list((y * 255 + 0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.stack(out[:n])


@pytest.mark.parametrize("keep", [2, 3, 5])
def test_fast_schedule_keeps_several_centre_frames(real_clip: np.ndarray, keep: int) -> None:
    frames = np.ascontiguousarray(real_clip[:23, ::8, ::8])
    model = CentreWindow()
    engine = ClipEngine(model, keep=keep)
    got = engine.restore_array(frames)
    assert model.calls == -(-23 // keep) == engine.clips_for(23)
    assert np.array_equal(got, fast_loop(frames, CentreWindow(), keep))
    assert not np.array_equal(got, official_loop(frames, CentreWindow()))


def test_window_goes_through_the_face_pipeline_runner(real_clip: np.ndarray) -> None:
    from bfvr.faces.pipeline import ClipRunner, FaceOptions, FacePipeline

    frames = np.ascontiguousarray(real_clip[:9, ::8, ::8])
    model = CentreWindow()
    model.face_crop_mode = "align"
    runner = ClipRunner(model)
    out = [f for fr in frames for f in runner.push(fr)] + runner.flush()
    assert np.array_equal(np.stack(out), official_loop(frames, model))
    auto = FaceOptions(crop_mode="auto")
    # the model's preference, via its contract
    assert FacePipeline.for_model(model, auto).opt.crop_mode == "align"
    # a factory of engines (what Restorer gives)
    engines = FacePipeline.for_model(lambda: ClipEngine(model), auto)
    assert engines.opt.crop_mode == "align"


def test_value_range_is_mapped_by_the_engine() -> None:
    seen = []

    class MinusOneToOne:
        name, canvas, device, clip_len, overlap = "pm1", None, torch.device("cpu"), 2, 0
        value_range = (-1.0, 1.0)

        def restore_clip(self, clip: torch.Tensor) -> torch.Tensor:
            seen.append((float(clip.min()), float(clip.max())))
            return -clip  # in [-1, 1]: the negative picture

    frames = np.zeros((2, 4, 4, 3), np.uint8)
    frames[1] = 255
    out = ClipEngine(MinusOneToOne()).restore_array(frames)
    assert seen == [(-1.0, 1.0)]
    assert np.array_equal(out, 255 - frames)


def test_contract_defaults_and_errors() -> None:
    from bfvr.engine import IdentityModel

    c = contract_of(IdentityModel())
    assert c.schedule == Schedule("clips", None, 0, 1) and c.value_range == (0.0, 1.0)
    assert c.precision is None and c.face_crop_mode is None
    with pytest.raises(ConfigError, match="keep must be between 1 and the window length 5"):
        ClipEngine(CentreWindow(), keep=6)
    with pytest.raises(ConfigError, match="overlap does not apply"):
        ClipEngine(CentreWindow(), overlap=2)
    with pytest.raises(ConfigError, match="keep applies to sliding-window models"):
        ClipEngine(IdentityModel(), keep=2)
    bad = IdentityModel()
    bad.face_crop_mode = "ffhq"
    with pytest.raises(ConfigError, match="face_crop_mode"):
        contract_of(bad)
    assert Schedule.window(5).first_kept == 2 and Schedule.window(5, 3).first_kept == 1
    assert Schedule.window(3, 3).first_kept == 0 and Schedule.window(4, 2).first_kept == 1


@pytest.mark.parametrize("keep", [1, 2])
def test_restore_keep_flag(real_clip: np.ndarray, tmp_path, monkeypatch: pytest.MonkeyPatch,
                           keep: int) -> None:
    """`bfvr restore --keep K` runs a window model with K centre frames per call (1 = the official loop)."""
    import cv2

    from bfvr.io import read_frames
    from helpers import run_cli

    frames = np.ascontiguousarray(real_clip[:23, ::8, ::8])
    src = tmp_path / "in"
    src.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(src / f"{i:04d}.png"), f[..., ::-1])
    model = CentreWindow()
    monkeypatch.setattr("bfvr.models.hub.load_model", lambda name, **kw: model)
    out = tmp_path / "out"  # a PNG folder: lossless
    assert run_cli("restore", str(src), "-o", str(out), "--model", "centre-window", "--has-aligned",
                   "--keep", str(keep), "--precision", "fp32", "-q") == 0
    want = official_loop(frames, CentreWindow()) if keep == 1 else fast_loop(frames, CentreWindow(), keep)
    assert np.array_equal(read_frames(out), want)
    assert model.calls == -(-23 // keep)


def test_restore_keep_flag_refused_for_clip_models(synth_clip, tmp_path, capsys) -> None:
    from helpers import run_cli

    out = tmp_path / "o.mp4"
    assert run_cli("restore", str(synth_clip), "-o", str(out), "--model", "identity", "--has-aligned",
                   "--keep", "2", "-q") == 2
    assert "keep applies to sliding-window models" in capsys.readouterr().err
    assert not out.exists()

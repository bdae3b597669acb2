"""The clip engine (chunking, cross-fade, padding, canvas), the device/precision policy and the Restorer
API."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from bfvr.engine import ClipEngine, IdentityModel, autocast, blend_weights, pad_indices
from bfvr.engine.device import cpu_has_native_bf16, resolve_device, resolve_precision
from bfvr.errors import ConfigError


class Recorder:
    """A fixed-length model that records, for each call, which input frames it saw (frame i is filled with
    the value i % 256 in its first pixel) and returns a per-call constant (call k -> value k / 100)."""

    name = "recorder"
    canvas = None
    device = torch.device("cpu")

    def __init__(self, clip_len: int | None, overlap: int, constant: bool = False) -> None:
        self.clip_len, self.overlap, self.constant = clip_len, overlap, constant
        self.calls: list[list[int]] = []

    def restore_clip(self, clip: torch.Tensor) -> torch.Tensor:
        if self.clip_len is not None:
            assert clip.shape[0] == self.clip_len
        assert clip.dtype == torch.float32 and 0 <= float(clip.min()) and float(clip.max()) <= 1
        self.calls.append([int(round(float(v) * 255)) for v in clip[:, 0, 0, 0]])
        if self.constant:
            return torch.full_like(clip, (len(self.calls) - 1) / 100)
        return clip


def numbered(n: int, h: int = 4, w: int = 5) -> np.ndarray:
    f = np.random.default_rng(n).integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    f[:, 0, 0, 0] = np.arange(n) % 256
    return f


def test_blend_weights() -> None:
    for kind in ("linear", "cosine"):
        w = blend_weights(6, kind)
        assert w.shape == (6,) and np.all(np.diff(w) > 0) and 0 < w[0] < w[-1] < 1
        assert np.allclose(w + w[::-1], 1)  # symmetric: the two clips get mirrored weights
    assert blend_weights(0).shape == (0,)
    assert np.allclose(blend_weights(3, "linear"), [0.25, 0.5, 0.75])
    with pytest.raises(ValueError):
        blend_weights(2, "nope")


def test_pad_indices() -> None:
    assert pad_indices(3, 8) == [0, 1, 2, 1, 0, 1, 2, 1]
    assert pad_indices(3, 6, "replicate") == [0, 1, 2, 2, 2, 2]
    assert pad_indices(1, 4) == [0, 0, 0, 0]
    assert pad_indices(5, 5) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("T,ov", [(8, 2), (8, 0), (24, 8), (5, 4), (None, 0), (3, 1), (1, 0)])
@pytest.mark.parametrize("n", [0, 1, 2, 5, 7, 8, 9, 13, 24, 25, 31, 50])
def test_every_frame_once_in_order_with_pts(T: int | None, ov: int, n: int) -> None:
    frames = numbered(n)
    m = Recorder(T, ov)
    out = list(ClipEngine(m).run((f, 1000 + 7 * i) for i, f in enumerate(frames)))
    assert len(out) == n
    assert [p for _, p in out] == [1000 + 7 * i for i in range(n)]
    if n:
        assert np.array_equal(np.stack([f for f, _ in out]), frames)  # identity through blending is exact
    # fixed-length models only ever see real frames unless the whole video is shorter than a clip
    for call in m.calls:
        if T is not None and n >= T:
            assert call == list(range(call[0], call[0] + T))
    if T is not None and 0 < n < T:
        assert m.calls == [[i % 256 for i in pad_indices(n, T)]]


class ShortClipsRecorder(Recorder):
    """A model that also takes clips shorter than its clip_len (`short_clips`, as BFVR-Lite)."""

    short_clips = True

    def restore_clip(self, clip: torch.Tensor) -> torch.Tensor:
        assert 1 <= clip.shape[0] <= self.clip_len
        self.calls.append([int(round(float(v) * 255)) for v in clip[:, 0, 0, 0]])
        return clip


@pytest.mark.parametrize("n", [1, 2, 5, 7, 8, 13])
def test_a_short_stream_goes_unpadded_to_a_model_that_takes_short_clips(n: int) -> None:
    frames = numbered(n)
    m = ShortClipsRecorder(8, 2)
    out = list(ClipEngine(m).run((f, i) for i, f in enumerate(frames)))
    assert np.array_equal(np.stack([f for f, _ in out]), frames)
    if n < 8:  # the whole stream once, as it is (a padded model sees pad_indices(n, 8))
        assert m.calls == [list(range(n))]
    else:  # longer streams: full clips as for any fixed-length model
        assert all(len(c) == 8 for c in m.calls)


def test_cross_fade_values() -> None:
    T, ov = 8, 3
    m = Recorder(T, ov, constant=True)
    eng = ClipEngine(m, blend="linear")
    out = np.stack([f for f, _ in eng.run((f,
                                           i) for i, f in enumerate(numbered(20, 2, 2)))]).astype(float) / 255
    # clips start at 0, 5, 10 (full) and the tail clip at 12 (ends at frame 19)
    assert [c[0] for c in m.calls] == [0, 5, 10, 12]
    v = out[:, 0, 0, 0]
    w = blend_weights(ov, "linear")
    expect = np.zeros(20)
    expect[0:5] = 0.00
    expect[5:8] = (1 - w) * 0.00 + w * 0.01
    expect[8:10] = 0.01
    expect[10:13] = (1 - w) * 0.01 + w * 0.02
    expect[13:15] = 0.02
    # tail clip (value 0.03) covers 12..19: frames 15..17 were pending from clip 2 and get blended
    expect[15:18] = (1 - w) * 0.02 + w * 0.03
    expect[18:20] = 0.03
    assert np.allclose(v, np.round(expect * 255) / 255, atol=1.01 / 255)


def test_engine_streams_with_bounded_lookahead() -> None:
    T, ov = 8, 2
    read = 0

    def source():
        nonlocal read
        for i, f in enumerate(numbered(200)):
            read += 1
            yield f, i

    max_ahead = 0
    for k, _ in enumerate(ClipEngine(Recorder(T, ov)).run(source())):
        max_ahead = max(max_ahead, read - k)
    assert max_ahead <= T + 1  # never more than one clip ahead of the output


def test_canvas_resize_and_back() -> None:
    class CanvasModel(IdentityModel):
        canvas = (32, 32)
        clip_len = 4
        seen: list[tuple[int, ...]] = []

        def restore_clip(self, clip: torch.Tensor) -> torch.Tensor:
            self.seen.append(tuple(clip.shape))
            return clip

    m = CanvasModel()
    frames = np.stack([np.full((48, 64, 3), 40 * i, np.uint8) for i in range(6)])
    out = ClipEngine(m).restore_array(frames)
    assert out.shape == frames.shape
    assert all(s == (4, 3, 32, 32) for s in m.seen)
    assert np.abs(out.astype(int) - frames).max() <= 1  # flat frames survive the resize round trip


def test_model_with_wrong_output_shape_is_reported() -> None:
    class Bad(IdentityModel):
        def restore_clip(self, clip: torch.Tensor) -> torch.Tensor:
            return clip[:, :, :-1]

    with pytest.raises(RuntimeError, match="returned"):
        ClipEngine(Bad()).restore_array(numbered(3))


def test_engine_argument_checks() -> None:
    with pytest.raises(ConfigError, match="overlap must be between 0 and clip_len-1"):
        ClipEngine(Recorder(4, 4))
    with pytest.raises(ValueError):
        ClipEngine(Recorder(4, 0), pad="zeros")


def test_device_policy() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    for bad in ("gpu", "cuda:x", "tpu"):
        with pytest.raises(ConfigError):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA"):
            resolve_device("cuda:0")
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ConfigError):
        resolve_precision("fp16", cpu)
    with pytest.raises(ConfigError):
        resolve_precision("int8", cpu)
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    assert cpu_has_native_bf16() == ("amx_bf16" in flags or "avx512_bf16" in flags)


def test_missing_cuda_index_names_the_valid_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ConfigError) as e:
        resolve_device("cuda:5")
    assert "cuda:0 .. cuda:1." in str(e.value) and "{" not in str(e.value)


def test_autocast_context() -> None:
    lin = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with autocast(torch.device("cpu"), "bf16"):
        assert lin(x).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "fp32"):
        assert lin(x).dtype == torch.float32


def test_engine_applies_precision_only_for_models_without_their_own() -> None:
    class Probe(IdentityModel):
        clip_len = 2
        dtypes: list[torch.dtype] = []

        def restore_clip(self, clip: torch.Tensor) -> torch.Tensor:
            self.dtypes.append(torch.nn.functional.linear(clip[..., :2], torch.eye(2)).dtype)
            return clip

    m = Probe()
    ClipEngine(m, precision="bf16").restore_array(numbered(2))
    assert m.dtypes[-1] == torch.bfloat16
    m.precision = "fp32"  # the model manages precision itself: the engine stays out of it
    ClipEngine(m, precision="bf16").restore_array(numbered(2))
    assert m.dtypes[-1] == torch.float32


# ----------------------------------------------------------------------------------------- Restorer
class Invert:
    """A model on a 64x64 canvas that changes every pixel (x -> 1 - x)."""

    name = "invert"
    clip_len, overlap, canvas = None, 0, (64, 64)
    device = torch.device("cpu")

    def restore_clip(self, clip: torch.Tensor) -> torch.Tensor:
        return 1 - clip


def test_restorer_has_aligned_is_the_engine_on_whole_frames(faces_dir: Path) -> None:
    """One aligned path: whole frames through the clip engine (canvas resize and back), pts kept."""
    from bfvr import Restorer
    from bfvr.io import read_frames

    frames = read_frames(faces_dir / "lp_driving_d0.mp4", max_frames=10)
    r = Restorer(Invert(), device="cpu", precision="fp32")  # has_aligned=True is the library default
    assert r.has_aligned and r.face_pipeline is None
    out = list(r.restore_frames((f, 40 * i) for i, f in enumerate(frames)))
    assert [p for _, p in out] == [40 * i for i in range(10)]
    restored = np.stack([f for f, _ in out])
    assert np.array_equal(restored, ClipEngine(Invert()).restore_array(frames))
    assert np.array_equal(r.restore_clip(frames), restored)
    # the whole frame was inverted (through the 64x64 canvas): dark where the input is bright
    assert abs(float(restored.mean()) - (255 - float(frames.mean()))) < 3
    with pytest.raises(ConfigError, match="has_aligned=False"):
        Restorer(Invert(), device="cpu", faces=object())


def test_restorer_face_pipeline_restores_only_the_face(faces_dir: Path) -> None:
    from bfvr import Restorer
    from bfvr.faces import FaceOptions
    from bfvr.io import read_frames

    frames = read_frames(faces_dir / "lp_driving_d0.mp4", max_frames=6)
    r = Restorer(Invert(), device="cpu", precision="fp32", has_aligned=False,
                 faces=FaceOptions(detector="opencv", min_hits=1))
    out = list(r.restore_frames((f, 40 * i) for i, f in enumerate(frames)))
    assert [p for _, p in out] == [40 * i for i in range(6)]
    restored = np.stack([f for f, _ in out])
    stats = r.face_pipeline.stats
    assert stats["detector"] == "opencv" and stats["tracks"] >= 1 and stats["frames_with_face"] == 6
    changed = np.abs(restored.astype(int) - frames.astype(int)).max(axis=(0, 3)) > 0
    assert changed.any() and not changed.all()  # a pasted face, not a whole inverted frame
    assert not changed[0, 0] and not changed[-1, -1]  # the corners are background


def test_restorer_restore_video(tmp_path: Path, synth_clip: Path) -> None:
    from bfvr import Restorer
    from bfvr.io import probe, read_frames

    res = Restorer("identity", device="cpu").restore_video(synth_clip, tmp_path / "o.mp4", crf=10,
                                                           progress=False)
    a, b = probe(synth_clip), probe(res.output)
    assert res.frames == 48 and res.audio
    assert (b.frame_count, b.fps, b.audio_codec) == (a.frame_count, a.fps, "aac")
    assert abs(b.duration - a.duration) <= 1 / float(a.fps)
    src, out = read_frames(synth_clip).astype(float), read_frames(res.output).astype(float)
    assert 10 * np.log10(255**2 / np.mean((src - out) ** 2)) >= 40
    # a preview stops early and leaves the audio out
    res2 = Restorer("identity", device="cpu").restore_video(synth_clip, tmp_path / "p.mp4", max_frames=5,
                                                           progress=False)
    assert probe(res2.output).frame_count == 5 and not probe(res2.output).has_audio
    # image folder in, PNG folder out
    res3 = Restorer("identity", device="cpu").restore_video(synth_clip, tmp_path / "pngs", max_frames=4,
                                                           progress=False)
    assert len(list(res3.output.glob("*.png"))) == 4
    res4 = Restorer("identity", device="cpu").restore_video(res3.output, tmp_path / "from_pngs.mp4", fps=12.5,
                                                           progress=False)
    assert probe(res4.output).fps == Fraction(25, 2) and probe(res4.output).frame_count == 4


def test_strength_blends_the_restoration_with_the_input() -> None:
    class Plus:
        name, clip_len, overlap, canvas, device = "plus", None, 0, None, torch.device("cpu")

        def restore_clip(self, clip):
            return clip + 0.2

    frames = np.full((3, 16, 16, 3), 100, np.uint8)
    full = ClipEngine(Plus()).restore_array(frames).astype(int)
    half = ClipEngine(Plus(), strength=0.5).restore_array(frames).astype(int)
    none = ClipEngine(Plus(), strength=0.0).restore_array(frames)
    assert (full == 151).all() and (half == 126).all() and np.array_equal(none, frames)
    with pytest.raises(ConfigError):
        ClipEngine(Plus(), strength=1.5)

    class OnCanvas(Plus):
        canvas = (16, 16)

    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (2, 64, 64, 3)).astype(np.uint8)  # resized to the canvas and back
    assert np.array_equal(ClipEngine(OnCanvas(), strength=0.0).restore_array(big), big)

    class Short(Plus):
        def restore_clip(self, clip):
            return clip[:1]

    with pytest.raises(RuntimeError, match="returned"):  # a wrong shape is an error at any strength
        ClipEngine(Short(), clip_len=2, strength=0.5).restore_array(frames)


_MALLOC_PROBE = """
import ctypes, json
import numpy as np
from bfvr.engine import ClipEngine, IdentityModel
from bfvr.io.memory import tune_malloc_for_streaming

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info

def mapped_by(nbytes):  # bytes of fresh mappings while a buffer of nbytes is alive
    before = libc.mallinfo2().hblkhd
    buf = np.ones(nbytes, np.uint8)
    grew = libc.mallinfo2().hblkhd - before
    del buf
    return grew

class Heavy(IdentityModel):  # a model whose forward allocates 16 and 30 MiB intermediates
    inside = []
    def restore_clip(self, clip):
        self.inside += [mapped_by(16 << 20), mapped_by(30 << 20)]
        return clip

tuned = tune_malloc_for_streaming()
outside = mapped_by(16 << 20)
ClipEngine(Heavy(), clip_len=2, overlap=0).restore_array(np.zeros((4, 8, 8, 3), np.uint8))
print(json.dumps({"tuned": tuned, "outside": outside, "inside": Heavy.inside, "after": mapped_by(256 << 20)}))
"""


def test_model_calls_use_the_heap_in_a_malloc_tuned_process() -> None:
    # the CLI's streaming malloc tuning maps every buffer of 4 MiB or more afresh; inside a model call that
    # made STC's forward 15 % slower (page faults on thousands of intermediates), so the engine's model_call()
    # puts the heap back for the call, and the streaming threshold after it
    import ctypes.util
    import json
    import subprocess
    import sys

    if not sys.platform.startswith("linux") or "libc.so.6" not in (ctypes.util.find_library("c") or ""):
        pytest.skip("glibc only")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                                         os.environ.get("PYTHONPATH", "")])}
    r = json.loads(subprocess.run([sys.executable, "-c", _MALLOC_PROBE], check=True, capture_output=True,
                                  text=True, env=env).stdout)
    assert r["tuned"] is True
    assert r["outside"] >= 16 << 20, r  # streaming: mapped afresh
    assert r["inside"] == [0, 0, 0, 0], r  # two model calls: served by the heap
    # after the calls the streaming settings are back: a buffer larger than what the heap holds free (it keeps
    # the calls' memory for the next call) is mapped afresh
    assert r["after"] >= 256 << 20, r

"""bfvr.io on real encoded videos: the synthetic clip (made here) and the shared face clips."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from bfvr.errors import InputError, OutputError
from bfvr.io import Chunk, VideoWriter, open_video, probe, read_frames, write_video
from bfvr.io.synth import pattern_frame, synth_video
from helpers import make_bad_input, psnr


def patterns(n: int, w: int, h: int) -> np.ndarray:
    return np.stack([pattern_frame(i, w, h) for i in range(n)])


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


# ----------------------------------------------------------------------------------------- reading
def test_synth_clip_info(synth_clip: Path) -> None:
    info = probe(synth_clip)
    assert (info.width, info.height) == (256, 256)
    assert info.fps == Fraction(25) and isinstance(info.fps, Fraction)
    assert info.frame_count == 48 and info.frame_count_exact
    assert info.duration == pytest.approx(1.92, abs=0.04)
    assert info.has_audio and info.audio_codec == "aac" and info.audio_sample_rate == 48000
    assert info.audio_duration == pytest.approx(1.92, abs=0.05)
    assert info.codec == "h264" and info.pix_fmt == "yuv420p" and info.rotation == 0


def test_frames_are_the_encoded_pattern(synth_clip: Path) -> None:
    frames = read_frames(synth_clip)
    assert frames.shape == (48, 256, 256, 3) and frames.dtype == np.uint8
    ref = patterns(48, 256, 256)
    per_frame = [psnr(f, r) for f, r in zip(frames, ref)]
    assert min(per_frame) > 35
    # in order: frame i is much closer to pattern i than to pattern i+5
    assert all(psnr(frames[i], ref[i]) > psnr(frames[i], ref[i + 5]) + 5 for i in range(0, 40, 7))
    assert read_frames(synth_clip, max_frames=5).shape[0] == 5


def test_chunks_match_frames_and_timestamps(synth_clip: Path) -> None:
    with open_video(synth_clip) as r:
        all_frames = [(f, p) for f, p in r.frames()]
    with open_video(synth_clip) as r:
        chunks = list(r.chunks(10))
    assert [len(c) for c in chunks] == [10, 10, 10, 10, 8]
    assert [c.start for c in chunks] == [0, 10, 20, 30, 40]
    stacked = np.concatenate([c.frames for c in chunks])
    assert np.array_equal(stacked, np.stack([f for f, _ in all_frames]))
    pts = [p for c in chunks for p in c.pts]
    assert pts == [p for _, p in all_frames]
    tb = probe(synth_clip).time_base
    assert [float(p * tb) for p in pts[:3]] == pytest.approx([0.0, 0.04, 0.08])
    t = chunks[0].tensor()
    assert tuple(t.shape) == (10, 3, 256, 256) and 0 <= float(t.min()) and float(t.max()) <= 1


def test_reader_is_lazy(synth_clip: Path) -> None:
    with open_video(synth_clip) as r:
        it = r.chunks(4)
        first = next(it)
        assert isinstance(first, Chunk) and first.frames.shape == (4, 256, 256, 3)
        # the first frame was decoded on open, the rest only on demand
        assert r._decoded == 4


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_video_comes_out_upright(make_clip, rotation: int) -> None:
    p = make_clip(f"rot{rotation}.mp4", frames=4, width=160, height=96, rotation=rotation, audio=False)
    info = probe(p)
    assert info.rotation == rotation
    assert (info.width, info.height) == (160, 96)
    frames = read_frames(p)
    assert frames.shape == (4, 96, 160, 3)
    assert psnr(frames[0], pattern_frame(0, 160, 96)) > 35


@pytest.mark.parametrize("pix_fmt,codec,name", [
    ("yuv420p10le", "libx264", "ten_bit.mp4"),
    ("yuv444p", "libx264", "yuv444.mp4"),
    ("yuv422p", "libx264", "yuv422.mp4"),
    ("gray", "ffv1", "gray.mkv"),
])
def test_pixel_formats_decode_to_rgb8(make_clip, pix_fmt: str, codec: str, name: str) -> None:
    p = make_clip(name, frames=3, width=96, height=64, pix_fmt=pix_fmt, codec=codec, audio=False)
    info = probe(p)
    assert info.pix_fmt == pix_fmt
    frames = read_frames(p)
    assert frames.shape == (3, 64, 96, 3) and frames.dtype == np.uint8
    ref = patterns(3, 96, 64)
    if pix_fmt == "gray":
        assert np.array_equal(frames[..., 0], frames[..., 1])
        assert np.array_equal(frames[..., 1], frames[..., 2])
        luma = cv2.cvtColor(ref[0], cv2.COLOR_RGB2GRAY)
        assert psnr(frames[0, ..., 0], luma) > 30
    else:
        assert psnr(frames, ref) > 35
    if pix_fmt == "yuv420p10le":
        assert info.bit_depth == 10


@pytest.mark.parametrize("pix_fmt,bits", [("gray16le", 16), ("gray10le", 10), ("gray12le", 12),
                                           ("gray", 8), ("yuv420p", 8)])
def test_bit_depth_of_gray_and_deep_formats(make_clip, capsys, pix_fmt: str, bits: int) -> None:
    """`bfvr info` used to read the depth from a `p<N>le` name only, so gray16le showed as 8-bit."""
    from bfvr.io.reader import bit_depth
    from helpers import run_cli

    codec = "libx264" if pix_fmt == "yuv420p" else "ffv1"
    p = make_clip(f"depth_{pix_fmt}.mkv", frames=2, width=64, height=48, pix_fmt=pix_fmt, codec=codec,
                  audio=False)
    assert probe(p).pix_fmt == pix_fmt and probe(p).bit_depth == bits
    assert run_cli("info", str(p)) == 0
    assert f"{pix_fmt} ({bits}-bit)" in capsys.readouterr().out
    assert [bit_depth(f) for f in ("rgb48le", "rgba64be", "gbrp12le", "p010le", "yuva444p16le", "pal8",
                                   "bgr0")] == [16, 16, 12, 10, 16, 8, 8]


def test_image_folder_and_gif_inputs(tmp_path: Path) -> None:
    ref = patterns(12, 64, 48)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(ref):  # unpadded numbers: natural order must put 2 before 10
        cv2.imwrite(str(folder / f"f{i}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("ignored")
    with open_video(folder, fps=12) as r:
        assert r.info.kind == "images" and r.info.frame_count == 12 and r.info.fps == 12
        got = [(f, p) for f, p in r.frames()]
    assert np.array_equal(np.stack([f for f, _ in got]), ref)
    assert [p for _, p in got] == list(range(12))

    gif = tmp_path / "anim.gif"
    c = av.open(str(gif), "w")
    s = c.add_stream("gif", rate=10)
    s.width, s.height, s.pix_fmt = 64, 48, "rgb8"
    for i, f in enumerate(ref):
        vf = av.VideoFrame.from_ndarray(f, format="rgb24")
        vf.pts = i
        for pkt in s.encode(vf):
            c.mux(pkt)
    for pkt in s.encode():
        c.mux(pkt)
    c.close()
    info = probe(gif)
    assert info.kind == "gif" and (info.width, info.height) == (64, 48)
    frames = read_frames(gif)
    assert frames.shape == (12, 48, 64, 3)
    assert psnr(frames, ref) > 20  # 8-bit palette


def test_list_videos_one_suffix_set_for_every_command(tmp_path: Path) -> None:
    """The folder listing that degrade, prepare, training data, evaluate and the ui samples share."""
    from bfvr.io import list_videos
    from bfvr.metrics.evaluate import match_videos

    for name in ("b.MP4", "a.mkv", "c.mpg", "d.ts", ".hidden.mp4", "notes.txt", "e.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "f.mov").mkdir()  # a folder named like a video is not one
    assert [p.name for p in list_videos(tmp_path)] == ["a.mkv", "b.MP4", "c.mpg", "d.ts"]
    frames = tmp_path / "g"  # evaluate also takes folders of PNG frames
    frames.mkdir()
    (frames / "0.png").write_bytes(b"x")
    pairs, _ = match_videos(tmp_path, None)
    assert [k for k, _, _ in pairs] == ["a", "b", "c", "d", "g"]


@pytest.mark.parametrize("case", ["missing", "empty_dir", "text", "png_as_mp4", "jpg_as_mp4", "truncated",
                                  "truncated_faststart", "zero_frames", "audio_only", "empty_file"])
def test_bad_inputs_raise_input_error(tmp_path: Path, synth_clip: Path, case: str) -> None:
    p = make_bad_input(tmp_path, synth_clip, case)
    with pytest.raises(InputError) as e:
        with open_video(p) as r:
            for _ in r.frames():
                pass
    msg = str(e.value)
    assert "\n" not in msg and str(p.name) in msg


# ----------------------------------------------------------------------------------------- writing
def test_roundtrip_keeps_frames_timestamps_and_audio(tmp_path: Path, synth_clip: Path) -> None:
    out = tmp_path / "out.mp4"
    with open_video(synth_clip) as r, VideoWriter(out, fps=r.info.fps, time_base=r.info.time_base,
                                                  audio_from=synth_clip, crf=10) as w:
        src_pts = []
        for chunk in r.chunks(7):
            w.write(chunk.frames, chunk.pts)
            src_pts += chunk.pts
    a, b = probe(synth_clip), probe(out)
    assert b.frame_count == a.frame_count and b.fps == a.fps
    assert abs(b.duration - a.duration) <= 1 / float(a.fps)
    assert b.has_audio and b.audio_codec == a.audio_codec
    assert b.audio_duration == pytest.approx(a.audio_duration, abs=0.03)
    with open_video(out) as r:
        out_sec = [float(p * r.info.time_base) for _, p in r.frames()]
    assert out_sec == pytest.approx([float(p * a.time_base) for p in src_pts], abs=1e-3)
    assert psnr(read_frames(out), read_frames(synth_clip)) >= 40
    assert leftovers(tmp_path) == []
    assert oct(out.stat().st_mode & 0o777) != oct(0o600)  # not the temp file's private mode


def test_audio_packets_are_copied_bit_exact(tmp_path: Path, synth_clip: Path) -> None:
    out = write_video(tmp_path / "o.mp4", read_frames(synth_clip), fps=25, audio_from=synth_clip)

    def audio_payload(p: Path) -> list[bytes]:
        with av.open(str(p)) as c:
            return [bytes(pkt) for pkt in c.demux(c.streams.audio[0]) if pkt.size]

    assert audio_payload(out) == audio_payload(synth_clip)


def test_uncopyable_audio_is_reencoded_to_aac(tmp_path: Path) -> None:
    src = synth_video(tmp_path / "pcm.mkv", frames=25, width=64, height=64, audio_codec="pcm_s16le")
    assert probe(src).audio_codec == "pcm_s16le"
    out = write_video(tmp_path / "o.mp4", read_frames(src), fps=25, audio_from=src)
    info = probe(out)
    assert info.audio_codec == "aac"
    assert info.audio_duration == pytest.approx(1.0, abs=0.05)
    with av.open(str(out)) as c:
        samples = np.concatenate([f.to_ndarray().ravel() for f in c.decode(c.streams.audio[0])])
    assert 0.15 < float(np.abs(samples).max()) < 0.45  # the 0.3-amplitude tone survived


def test_variable_frame_rate_survives(tmp_path: Path) -> None:
    pts = [0, 1, 2, 4, 7, 8, 12, 20, 21, 30]
    src = synth_video(tmp_path / "vfr.mp4", frames=10, width=64, height=64, pts=pts,
                      time_base=Fraction(1, 25), audio=False)
    out = tmp_path / "vfr_out.mkv"
    with open_video(src) as r, VideoWriter(out, fps=r.info.fps, time_base=r.info.time_base) as w:
        for chunk in r.chunks(3):
            w.write(chunk.frames, chunk.pts)
    with open_video(out) as r:
        sec = [float(p * r.info.time_base) for _, p in r.frames()]
    assert sec == pytest.approx([p / 25 for p in pts], abs=1e-3)


@pytest.mark.parametrize("w,h", [(257, 255), (64, 33), (31, 64)])
def test_odd_sizes_are_padded_and_cropped_back(tmp_path: Path, w: int, h: int) -> None:
    ref = patterns(5, w, h)
    out = write_video(tmp_path / "odd.mp4", ref, fps=25, crf=10)
    info = probe(out)
    assert (info.width, info.height) == (w, h)
    assert info.coded_size == (w + (w & 1), h + (h & 1))
    got = read_frames(out)
    assert got.shape == ref.shape and psnr(got, ref) > 30
    # aligned: the crop removed the padding where it was added (a 1-pixel shift would be much worse)
    assert psnr(got[:, :, 1:], ref[:, :, 1:]) > psnr(got[:, :, 1:], ref[:, :, :-1]) + 3


def test_temp_file_until_complete_and_nothing_left_on_error(tmp_path: Path) -> None:
    out = tmp_path / "v.mp4"
    w = VideoWriter(out, fps=25)
    w.write(patterns(3, 64, 64))
    assert not out.exists() and len(leftovers(tmp_path)) == 1
    w.close()
    assert out.exists() and leftovers(tmp_path) == []

    out2 = tmp_path / "v2.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(out2, fps=25) as w2:
            w2.write(patterns(3, 64, 64))
            raise RuntimeError("model crashed")
    assert not out2.exists() and leftovers(tmp_path) == []


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "v.mp4"
    out.write_bytes(b"precious")
    with pytest.raises(OutputError, match="--overwrite"):
        VideoWriter(out, fps=25)
    assert out.read_bytes() == b"precious"
    with pytest.raises(OutputError, match="not written by bfvr"):  # --overwrite replaces only bfvr's videos
        write_video(out, patterns(2, 32, 32), fps=25, overwrite=True)
    assert out.read_bytes() == b"precious"
    out.unlink()
    write_video(out, patterns(2, 32, 32), fps=25)
    write_video(out, patterns(3, 32, 32), fps=25, overwrite=True)
    assert probe(out).frame_count == 3


def test_unwritable_outputs(tmp_path: Path) -> None:
    f = tmp_path / "a_file"
    f.write_text("x")
    with pytest.raises(OutputError):
        VideoWriter(f / "out.mp4", fps=25)
    with pytest.raises(OutputError):
        VideoWriter(tmp_path / "out.avi", fps=25)  # unsupported suffix
    if Path("/proc/self").exists():
        with pytest.raises(OutputError):
            VideoWriter("/proc/bfvr_out.mp4", fps=25)
    if os.geteuid() != 0:  # root ignores permission bits
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(OutputError):
                VideoWriter(ro / "out.mp4", fps=25)
        finally:
            ro.chmod(0o700)


def test_png_folder_output_is_lossless(tmp_path: Path) -> None:
    ref = patterns(4, 40, 30)
    out = write_video(tmp_path / "frames_out", ref, fps=25)
    # the frames plus the hidden marker that tells --overwrite this folder is bfvr's own output
    assert out.is_dir() and sorted(p.name for p in out.iterdir()) == [".bfvr-frames"] + [f"{i:06d}.png"
                                                                                         for i in range(4)]
    assert np.array_equal(read_frames(out), ref)


def test_shared_clip_roundtrip(tmp_path: Path, faces_dir: Path) -> None:
    src = faces_dir / "lp_driving_d18.mp4"
    if not src.exists():
        pytest.skip(f"{src} not found")
    info = probe(src)
    assert (info.width, info.height, info.fps, info.frame_count) == (480, 480, 30, 216) and info.has_audio
    frames = read_frames(src, max_frames=30)
    out = write_video(tmp_path / "d18.mp4", frames, fps=info.fps, crf=10)
    assert psnr(read_frames(out), frames) >= 40

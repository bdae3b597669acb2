"""Nothing lost, ever (issue 10): bfvr never deletes or rewrites a file it did not create in that run.

Each test does what a user did: point an output at a folder holding their own files (and the input
itself), with --overwrite, and checks every file's sha256 before and after, the exit code and the one
sentence on stderr."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from helpers import run_cli


def _snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under root (folders as 'dir')."""
    out = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _user_folder(tmp_path: Path, faces_dir: Path, name: str = "work") -> tuple[Path, Path]:
    """A user's folder: an unrelated file, a subfolder with a file, and the input video inside."""
    d = tmp_path / name
    (d / "sub").mkdir(parents=True)
    (d / "notes.txt").write_text("my notes\n")
    (d / "sub" / "keep.bin").write_bytes(b"\x00\x01" * 100)
    inp = d / "in.mp4"
    shutil.copyfile(faces_dir / "lp_driving_d18.mp4", inp)
    return d, inp


def _one_sentence_error(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("bfvr: error: "), err
    assert "Traceback" not in err and "internal error" not in err, err
    return lines[0]


def test_restore_overwrite_into_user_folder_with_input_inside(tmp_path, faces_dir, capsys) -> None:
    d, inp = _user_folder(tmp_path, faces_dir)
    before = _snapshot(d)
    code = run_cli("restore", str(inp), "-o", str(d), "--overwrite", "--model", "identity", "-q")
    assert code != 0
    line = _one_sentence_error(capsys.readouterr().err)
    assert "input" in line
    assert _snapshot(d) == before


def test_restore_overwrite_refuses_a_folder_with_other_files(tmp_path, faces_dir, capsys) -> None:
    d, inp = _user_folder(tmp_path, faces_dir)
    target = tmp_path / "frames"
    (target / "deep").mkdir(parents=True)
    (target / "000000.png").write_bytes(b"not mine")  # looks like a frame, but no bfvr marker
    (target / "deep" / "x.txt").write_text("x")
    before, before_in = _snapshot(target), _snapshot(d)
    code = run_cli("restore", str(inp), "-o", str(target), "--overwrite", "--model", "identity", "-q",
                   "--max-frames", "2", "--has-aligned")
    assert code != 0
    _one_sentence_error(capsys.readouterr().err)
    assert _snapshot(target) == before and _snapshot(d) == before_in
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no hidden partial left


def test_restore_overwrite_replaces_only_its_own_frames(tmp_path, faces_dir, capsys) -> None:
    """A frame folder bfvr wrote is replaced by --overwrite; once a user adds a file it is refused."""
    _, inp = _user_folder(tmp_path, faces_dir)
    out = tmp_path / "frames"
    args = ["restore", str(inp), "-o", str(out), "--model", "identity", "-q", "--has-aligned"]
    assert run_cli(*args, "--max-frames", "3") == 0
    assert sorted(p.name for p in out.iterdir()) == [".bfvr-frames", "000000.png", "000001.png", "000002.png"]
    assert out.stat().st_mode & 0o777 == 0o777 & ~_umask()  # not mkdtemp's 0700
    assert (out / "000000.png").stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert run_cli(*args, "--max-frames", "2", "--overwrite") == 0
    assert sorted(p.name for p in out.iterdir()) == [".bfvr-frames", "000000.png", "000001.png"]
    (out / "mine.txt").write_text("added by the user")
    before = _snapshot(out)
    capsys.readouterr()
    assert run_cli(*args, "--max-frames", "2", "--overwrite") != 0
    _one_sentence_error(capsys.readouterr().err)
    assert _snapshot(out) == before


def _umask() -> int:
    import os

    m = os.umask(0)
    os.umask(m)
    return m


@pytest.mark.parametrize("out_rel", [".", "sub", "in.mp4"])
def test_prepare_refuses_output_that_is_in_or_around_the_input(tmp_path, faces_dir, capsys, out_rel) -> None:
    d, inp = _user_folder(tmp_path, faces_dir)
    before = _snapshot(tmp_path)
    src = str(d) if out_rel != "in.mp4" else str(inp)
    out = str(d / out_rel) if out_rel != "in.mp4" else str(d)
    code = run_cli("prepare", src, out, "--overwrite", "--no-orientation", "--ocr", "none", "-q")
    assert code != 0
    _one_sentence_error(capsys.readouterr().err)
    assert _snapshot(tmp_path) == before


def test_prepare_output_around_the_input_folder(tmp_path, faces_dir, capsys) -> None:
    d, _ = _user_folder(tmp_path, faces_dir)
    before = _snapshot(tmp_path)
    argv = ["prepare", str(d), str(tmp_path), "--overwrite", "--no-orientation", "--ocr", "none", "-q"]
    assert run_cli(*argv) != 0
    _one_sentence_error(capsys.readouterr().err)
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("cmd", ["degrade", "compare", "evaluate"])
def test_other_commands_refuse_to_write_over_their_inputs(tmp_path, faces_dir, capsys, cmd) -> None:
    d, inp = _user_folder(tmp_path, faces_dir)
    before = _snapshot(tmp_path)
    if cmd == "degrade":
        argv = ["degrade", str(d), str(d / "sub"), "--overwrite", "-q"]
    elif cmd == "compare":
        argv = ["compare", str(inp), str(inp), "-o", str(inp), "--overwrite", "-q"]
    else:
        argv = ["evaluate", "--pred", str(d), "--gt", str(d), "-o", str(d), "--overwrite", "-q"]
    assert run_cli(*argv) != 0
    _one_sentence_error(capsys.readouterr().err)
    assert _snapshot(tmp_path) == before
    # the same with the output file = the input (degrade without audio: no audio copy to catch it)
    if cmd == "degrade":
        assert run_cli("degrade", str(inp), str(inp), "--overwrite", "--no-audio", "-q") != 0
        _one_sentence_error(capsys.readouterr().err)
        assert _snapshot(tmp_path) == before


def test_url_input_says_urls_are_not_supported(tmp_path, capsys) -> None:
    assert run_cli("restore", "https://example.com/v.mp4", "-o", str(tmp_path / "o.mp4"), "--model",
                   "identity") == 2
    line = _one_sentence_error(capsys.readouterr().err)
    assert "URL" in line and "https://example.com/v.mp4" in line
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------- signals
def _hidden(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if p.name != ".bfvr-frames"]


# one signal per command in the default run; the others are slow (a restore child: 7-11 s of CPU each)
@pytest.mark.parametrize("cmd,sig", [("restore", "SIGTERM"),
                                     pytest.param("restore", "SIGHUP", marks=pytest.mark.slow),
                                     pytest.param("restore", "SIGINT", marks=pytest.mark.slow),
                                     ("prepare", "SIGTERM"),
                                     pytest.param("prepare", "SIGHUP", marks=pytest.mark.slow),
                                     pytest.param("prepare", "SIGINT", marks=pytest.mark.slow)])
def test_signal_mid_run_leaves_nothing(tmp_path, faces_dir, cmd, sig) -> None:
    """kill / timeout / a closed terminal / Ctrl-C in the middle of writing: the command stops with
    128 + signal number, removes its hidden partial output and leaves the input as it was."""
    import signal
    import subprocess
    import sys
    import time

    inp_dir = tmp_path / "in"
    inp_dir.mkdir()
    inp = inp_dir / "clip.mp4"
    shutil.copyfile(faces_dir / "lp_driving_d18.mp4", inp)
    before = _snapshot(inp_dir)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    if cmd == "restore":
        argv = ["restore", str(inp), "-o", str(out_dir / "restored.mp4"), "--model", "identity", "-q"]
    else:
        argv = ["prepare", str(inp), str(out_dir / "prep"), "--no-orientation", "--ocr", "none", "-q"]
    p = subprocess.Popen([sys.executable, "-m", "bfvr.cli", *argv], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any(".partial" in h.name for h in _hidden(out_dir)):  # mid-write
            assert p.poll() is None, p.communicate()[1]
            assert time.monotonic() < deadline, "no partial output appeared"
            time.sleep(0.05)
        time.sleep(0.3)
        num = getattr(signal, sig)
        p.send_signal(num)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 128 + num, err
    assert "Traceback" not in err
    # Ctrl-C says it too (typer used to turn it into a silent exit 130)
    said = "interrupted" if sig == "SIGINT" else f"stopped by {sig}"
    assert err.strip().splitlines()[-1] == f"bfvr: error: {said}; no output was written.", err
    assert _snapshot(inp_dir) == before
    assert not _hidden(out_dir) and not list(out_dir.rglob("*.mp4")) and not list(out_dir.rglob("manifest*"))
    assert not (out_dir / "prep").exists()  # prepare made that folder in this run: removed again


# ------------------------------------------------------------------------------ short clips, sparse detection
class _Invert:
    """A ClipModel that changes every pixel (1 - x), so a restored face is plain to see."""

    name = "invert"
    clip_len = None
    overlap = 0
    canvas = (256, 256)

    def __init__(self) -> None:
        import torch

        self.device = torch.device("cpu")

    def restore_clip(self, clip):
        return 1.0 - clip


@pytest.mark.parametrize("frames,extra", [(2, []), (1, []), (12, ["--detect-every", "10"])])
def test_short_clip_faces_are_restored(tmp_path, faces_dir, capsys, monkeypatch, recwarn, frames,
                                       extra) -> None:
    import numpy as np

    import bfvr.models.hub as hub
    from bfvr.faces.detect import make_detector
    from bfvr.io import read_frames, write_video

    src = read_frames(faces_dir / "lp_driving_d10.mp4", max_frames=frames)
    clip = write_video(tmp_path / "short.mp4", src, fps=30, crf=0)
    inp = read_frames(clip)
    monkeypatch.setattr(hub, "load_model", lambda *a, **k: _Invert())
    out = tmp_path / "out.mp4"
    assert run_cli("restore", str(clip), "-o", str(out), "--crf", "0", *extra) == 0
    cap = capsys.readouterr()
    from bfvr.faces import NoFaceWarning

    assert not [w for w in recwarn if issubclass(w.category, NoFaceWarning)]
    summary = cap.out.strip().splitlines()[-1]
    assert f"detector {make_detector('auto').name}" in summary and "1 face track restored" in summary, summary
    res = read_frames(out)
    assert res.shape == inp.shape
    c = slice(200, 312)  # the middle of the 512x512 talking head: the face
    diff = np.abs(res[:, c, c].astype(int) - inp[:, c, c].astype(int)).mean(axis=(1, 2, 3))
    assert (diff > 60).all(), diff  # every frame's face inverted (identity would give ~0)


def test_no_face_warning_only_without_any_detection(tmp_path, capsys, monkeypatch) -> None:
    import numpy as np

    import bfvr.models.hub as hub
    from bfvr.io import write_video

    flat = np.full((2, 128, 128, 3), 90, np.uint8)  # nothing to detect
    clip = write_video(tmp_path / "flat.mp4", flat, fps=25)
    from bfvr.faces import NoFaceWarning

    monkeypatch.setattr(hub, "load_model", lambda *a, **k: _Invert())
    with pytest.warns(NoFaceWarning, match="no face was found in any of the 2 frames"):
        assert run_cli("restore", str(clip), "-o", str(tmp_path / "o.mp4")) == 0
    assert "0 face tracks restored" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ VFR honesty
def _vfr_mkv(path: Path, faces_dir: Path, n: int = 60) -> list[int]:
    """A variable-frame-rate MKV as screen recorders / phones write it: a millisecond time base, the
    stream rate left at the time base (players show "1000 fps"), irregular gaps between frames."""
    from fractions import Fraction

    import av
    import numpy as np

    from bfvr.io import read_frames

    frames = read_frames(faces_dir / "lp_driving_d18.mp4", max_frames=n)
    rng = np.random.default_rng(0)
    pts = np.concatenate([[0], np.cumsum(rng.choice([17, 33, 40, 67, 120], size=n - 1))]).astype(int).tolist()
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=1000)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        for f, p in zip(frames, pts):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts, vf.time_base = p, Fraction(1, 1000)
            for k in s.encode(vf):
                c.mux(k)
        for k in s.encode():
            c.mux(k)
    return pts


def test_info_on_a_vfr_mkv_gives_the_true_rate_and_count(tmp_path, faces_dir, capsys) -> None:
    from bfvr.io import open_video, probe

    clip = tmp_path / "vfr.mkv"
    pts = _vfr_mkv(clip, faces_dir)
    info = probe(clip)
    true_fps = (len(pts) - 1) / (pts[-1] / 1000)
    assert info.frame_count == len(pts)
    assert abs(float(info.fps) - true_fps) < 1e-6, (info.fps, true_fps)
    assert run_cli("info", str(clip)) == 0
    out = capsys.readouterr().out
    assert "1000" not in out.split("fps", 1)[1].splitlines()[0] and f"{len(pts)}" in out
    # restore keeps every frame and its timestamp
    o = tmp_path / "o.mkv"
    assert run_cli("restore", str(clip), "-o", str(o), "--model", "identity", "--has-aligned", "-q") == 0
    with open_video(o) as r:
        got = [p for _, p in r.frames()]
    assert got == pts


# ------------------------------------------------------------------------------------------ audio copy
def _audio_packets(path: Path) -> list[bytes]:
    import av

    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_mp3_audio_is_copied_byte_for_byte(tmp_path, faces_dir, capsys, suffix) -> None:
    """A real face clip whose soundtrack is MP3 (its AAC re-encoded once, as a camera or an editor
    would): restore copies the MP3 packets unchanged and says so."""
    import av

    src = faces_dir / "lp_driving_d18.mp4"
    clip = tmp_path / "mp3.mp4"
    with av.open(str(src)) as i, av.open(str(clip), "w") as o:  # video copied, audio to MP3
        vin, ain = i.streams.video[0], i.streams.audio[0]
        vout = o.add_stream_from_template(vin)
        aout = o.add_stream("libmp3lame", rate=ain.codec_context.sample_rate)
        aout.layout = "stereo"
        n = 0
        for pkt in i.demux(vin, ain):
            if pkt.dts is None:
                continue
            if pkt.stream is vin:
                n += 1
                if n > 40:
                    continue
                pkt.stream = vout
                o.mux(pkt)
            elif float(pkt.pts * pkt.time_base) < 40 / 30:
                for fr in pkt.decode():
                    fr.pts = None
                    for p in aout.encode(fr):
                        o.mux(p)
        for p in aout.encode(None):
            o.mux(p)
    assert _audio_packets(clip)
    out = tmp_path / f"out{suffix}"
    assert run_cli("restore", str(clip), "-o", str(out), "--model", "identity", "--has-aligned") == 0
    assert "audio copied" in capsys.readouterr().out
    with av.open(str(out)) as c:
        assert c.streams.audio[0].codec_context.codec.canonical_name == "mp3"
    assert _audio_packets(out) == _audio_packets(clip)


def test_vfr_mkv_keeps_its_length(tmp_path, faces_dir) -> None:
    """The last frame lasts as long as in the input (not 1/average fps): a VFR mkv keeps its duration."""
    import av

    clip = tmp_path / "vfr.mkv"
    _vfr_mkv(clip, faces_dir)
    o = tmp_path / "o.mkv"
    assert run_cli("restore", str(clip), "-o", str(o), "--model", "identity", "--has-aligned", "-q") == 0
    with av.open(str(clip)) as a, av.open(str(o)) as b:
        assert b.duration == a.duration, (a.duration, b.duration)


def _durations(path: Path) -> tuple[float, float]:
    """(the container's duration, the end of the last frame: its pts + its duration), in seconds."""
    import av

    with av.open(str(path)) as c:
        last = list(c.decode(video=0))[-1]
        return c.duration / 1e6, float((last.pts + last.duration) * last.time_base)


@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
def test_mp4_mov_outputs_keep_the_input_duration(tmp_path, faces_dir, suffix) -> None:
    """The last frame of an mp4/mov output lasts as long as the input's (not 1/average fps), so a real
    clip and variable-frame-rate mp4s keep their duration (issue 10)."""
    from fractions import Fraction

    from bfvr.io import probe
    from bfvr.io.synth import synth_video

    # a real clip (with AAC audio) whose frames are all of one rate
    real = faces_dir / "lp_driving_d0.mp4"
    o = tmp_path / f"real{suffix}"
    assert run_cli("restore", str(real), "-o", str(o), "--model", "identity", "--has-aligned", "-q") == 0
    assert _durations(o) == _durations(real)
    # variable frame rates: a 1.023 s clip whose last frame lasts 83 ms at an average of 11.7 frames/s
    pts = [0, 40, 80, 200, 240, 280, 500, 540, 580, 620, 900, 940]
    clean = synth_video(tmp_path / "vfr.mp4", frames=len(pts), width=64, height=64, fps=12, pts=pts,
                        time_base=Fraction(1, 1000), audio=False, extra_options={"bf": "0"})
    assert probe(clean).vfr
    o = tmp_path / f"vfr_out{suffix}"
    assert run_cli("restore", str(clean), "-o", str(o), "--model", "identity", "--has-aligned", "-q") == 0
    assert _durations(o) == _durations(clean) == (pytest.approx(1.0233, abs=1e-4),) * 2
    # with B-frames the input's own mp4 track ends early (its decode times run behind); the output ends
    # where the input's frames do
    bframes = synth_video(tmp_path / "vfr_b.mp4", frames=len(pts), width=64, height=64, fps=12, pts=pts,
                          time_base=Fraction(1, 1000), audio=False)
    assert _durations(bframes)[0] < 0.8
    o = tmp_path / f"vfr_b_out{suffix}"
    assert run_cli("restore", str(bframes), "-o", str(o), "--model", "identity", "--has-aligned", "-q") == 0
    assert _durations(o) == (pytest.approx(_durations(bframes)[1], abs=1e-6),) * 2  # (container: in us)


# ------------------------------------------------------------- --overwrite: only what bfvr wrote (issue 27)
def _foreign(kind: str, path: Path, outside: Path) -> Path:
    """A file in an output's place that bfvr did not write: a text file, a video PyAV made (no bfvr tag),
    or a link to a file outside the test's folder. Returns the file whose bytes must not change."""
    import os

    from bfvr.io.synth import synth_video

    if kind == "text":
        path.write_text("my notes, not a video\n")
        return path
    if kind == "pyav":
        synth_video(path, frames=3, width=32, height=32, fps=25, audio=False)
        return path
    target = outside / f"{path.stem}_target.mp4"
    target.write_text("the file the link points to\n")
    os.symlink(target, path)
    return target


def _small_clip(folder: Path, name: str) -> Path:
    from bfvr.io.synth import synth_video

    folder.mkdir(parents=True, exist_ok=True)
    return synth_video(folder / name, frames=3, width=32, height=32, fps=25, audio=False)


@pytest.mark.parametrize("kind", ["text", "pyav", "symlink"])
def test_restore_overwrite_refuses_an_output_bfvr_did_not_write(tmp_path, tmp_path_factory, capsys,
                                                                kind) -> None:
    clip = _small_clip(tmp_path / "in", "clip.mp4")
    out = tmp_path / "out.mp4"
    guarded = _foreign(kind, out, tmp_path_factory.mktemp("outside"))
    before = guarded.read_bytes()
    args = ["restore", str(clip), "-o", str(out), "--model", "identity", "--has-aligned", "-q",
            "--preset", "ultrafast"]
    assert run_cli(*args, "--overwrite") == 2
    line = _one_sentence_error(capsys.readouterr().err)
    assert ("not written by bfvr" if kind != "symlink" else "symbolic link") in line, line
    assert guarded.read_bytes() == before and out.is_symlink() == (kind == "symlink")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_restore_overwrite_replaces_a_video_bfvr_wrote(tmp_path) -> None:
    from bfvr.io import probe
    from bfvr.io.paths import is_own_video

    clip = _small_clip(tmp_path / "in", "clip.mp4")
    out = tmp_path / "out.mp4"
    args = ["restore", str(clip), "-o", str(out), "--model", "identity", "--has-aligned", "-q",
            "--preset", "ultrafast"]
    assert run_cli(*args, "--max-frames", "2") == 0
    assert is_own_video(out) and probe(out).frame_count == 2
    assert run_cli(*args, "--overwrite") == 0
    assert probe(out).frame_count == 3


def test_batch_overwrite_follows_the_same_rule(tmp_path, tmp_path_factory) -> None:
    """`bfvr restore folder/ -o OUT --overwrite`: a text file, a PyAV video and a link in the outputs'
    places fail with the single-file reason and stay as they are; an output bfvr wrote is redone."""
    import json

    from bfvr.io import probe

    src = tmp_path / "in"
    for n in ("a", "b", "c", "d"):
        _small_clip(src, f"{n}.mp4")
    out = tmp_path / "out"
    args = ["restore", str(src), "-o", str(out), "--model", "identity", "--has-aligned", "-q",
            "--preset", "ultrafast"]
    assert run_cli(*args, "--max-frames", "2") == 0  # bfvr's own outputs (2 frames each)
    outside = tmp_path_factory.mktemp("outside")
    guarded = {}
    for n, kind in (("a", "text"), ("b", "pyav"), ("c", "symlink")):
        (out / f"{n}.mp4").unlink()
        guarded[n] = _foreign(kind, out / f"{n}.mp4", outside)
    before = {n: g.read_bytes() for n, g in guarded.items()}
    assert run_cli(*args, "--overwrite") == 3  # some failed, the others done
    s = json.loads((out / "bfvr-summary.json").read_text())
    status = {v["key"]: (v["status"], v.get("reason", "")) for v in s["videos"]}
    assert status["d.mp4"][0] == "done" and probe(out / "d.mp4").frame_count == 3
    for n in ("a", "b"):
        assert status[f"{n}.mp4"][0] == "failed" and "not written by bfvr" in status[f"{n}.mp4"][1]
    assert status["c.mp4"][0] == "failed" and "symbolic link" in status["c.mp4"][1]
    assert {n: g.read_bytes() for n, g in guarded.items()} == before
    assert (out / "c.mp4").is_symlink()
    assert not [p for p in out.iterdir() if p.name.startswith(".") and "partial" in p.name]


# ------------------------------------------------------------------ degrade: sidecars follow the video's rule
def _degrade_in(tmp_path: Path) -> Path:
    from bfvr.io.synth import synth_video

    (tmp_path / "in").mkdir()
    return synth_video(tmp_path / "in" / "clip.mp4", frames=3, width=64, height=64, fps=25, audio=False)


@pytest.mark.parametrize("sidecar,kind", [("mask.png", "png"), ("mask.png", "symlink"), ("json", "json")])
def test_degrade_refuses_a_sidecar_bfvr_did_not_write(tmp_path, tmp_path_factory, capsys, sidecar,
                                                      kind) -> None:
    """`bfvr degrade in.mp4 lq.mp4 --recipe inpaint` beside a foreign lq.mask.png / lq.json: refused before
    any work without --overwrite, and with it too (bfvr did not write them); nothing is written."""
    import os

    import cv2
    import numpy as np

    clip = _degrade_in(tmp_path)
    out = tmp_path / "lq.mp4"
    foreign = tmp_path / f"lq.{sidecar}"
    if kind == "png":
        cv2.imwrite(str(foreign), np.full((64, 64), 255, np.uint8))  # the user's own mask
        guarded = foreign
    elif kind == "symlink":
        guarded = tmp_path_factory.mktemp("outside") / "elsewhere.png"
        guarded.write_bytes(b"not to be touched")
        os.symlink(guarded, foreign)
    else:
        foreign.write_text('{"my": "annotations"}\n')
        guarded = foreign
    before = guarded.read_bytes()
    args = ["degrade", str(clip), str(out), "--recipe", "inpaint", "-q", "--no-audio"]
    for extra in ([], ["--overwrite"]):
        assert run_cli(*args, *extra) == 2
        line = _one_sentence_error(capsys.readouterr().err)
        assert str(foreign) in line
        assert ("pass --overwrite" if not extra else "--overwrite will not") in line, line
        assert guarded.read_bytes() == before and not out.exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in", foreign.name]  # no temporary file left


def test_degrade_overwrite_replaces_its_own_sidecars(tmp_path) -> None:
    import json

    from bfvr.io.paths import is_own_json, is_own_png

    clip = _degrade_in(tmp_path)
    out = tmp_path / "lq.mp4"
    args = ["degrade", str(clip), str(out), "--recipe", "inpaint", "-q", "--no-audio"]
    assert run_cli(*args, "--seed", "1") == 0
    mask, side = tmp_path / "lq.mask.png", tmp_path / "lq.json"
    assert is_own_png(mask) and is_own_json(side)
    first = mask.read_bytes()
    assert run_cli(*args, "--seed", "2") == 2  # exists: --overwrite needed
    assert run_cli(*args, "--seed", "2", "--overwrite") == 0
    assert json.loads(side.read_text())["seed"] == 2 and mask.read_bytes() != first


# --------------------------------------------------- predictable names that are links (issue 27, item 3)
def _link_outside(link: Path, outside: Path, name: str = "target.txt") -> tuple[Path, bytes]:
    """Make `link` a symbolic link to a file outside the test's folder; returns (that file, its bytes)."""
    import os

    target = outside / name
    target.write_bytes(b"a file elsewhere that bfvr must not change\n")
    os.symlink(target, link)
    return target, target.read_bytes()


def _eval_dirs(root: Path) -> tuple[Path, Path]:
    from bfvr.io.synth import synth_video

    for d in ("pred", "gt"):
        (root / d).mkdir(parents=True)
        synth_video(root / d / "a.mp4", frames=3, width=32, height=32, fps=25, audio=False)
    return root / "pred", root / "gt"


def test_evaluate_never_writes_through_a_link(tmp_path, tmp_path_factory, capsys) -> None:
    import os

    pred, gt = _eval_dirs(tmp_path)
    outside = tmp_path_factory.mktemp("outside")
    out = tmp_path / "rep"
    out.mkdir()
    # the temporary names bfvr used to write first (`.metrics.md.partial`, ...), planted as links
    planted = [_link_outside(out / f".{n}.partial", outside, n) for n in ("metrics.md", "metrics.csv",
                                                                          "metrics.json")]
    args = ["evaluate", "--pred", str(pred), "--gt", str(gt), "-m", "psnr", "-o", str(out), "-q"]
    assert run_cli(*args) == 0
    assert all(t.read_bytes() == b for t, b in planted)
    assert "psnr" in (out / "metrics.md").read_text() and not (out / "metrics.md").is_symlink()
    # the report itself a link: --overwrite does not replace it (nor write through it)
    (out / "metrics.md").unlink()
    target, before = _link_outside(out / "metrics.md", outside, "report.md")
    capsys.readouterr()
    assert run_cli(*args, "--overwrite") == 2
    assert "symbolic link" in _one_sentence_error(capsys.readouterr().err)
    assert target.read_bytes() == before and os.path.islink(out / "metrics.md")


def test_profile_never_writes_through_a_link(tmp_path, tmp_path_factory, capsys) -> None:
    pred, _ = _eval_dirs(tmp_path)
    outside = tmp_path_factory.mktemp("outside")
    out = tmp_path / "p.png"
    target, before = _link_outside(tmp_path / ".p.partial.png", outside)  # the old temporary name
    assert run_cli("profile", str(pred / "a.mp4"), "-o", str(out), "-q") == 0
    assert target.read_bytes() == before and out.is_file() and not out.is_symlink()
    out.unlink()
    target2, before2 = _link_outside(out, outside, "image.png")
    capsys.readouterr()
    assert run_cli("profile", str(pred / "a.mp4"), "-o", str(out), "-q", "--overwrite") == 2
    assert "symbolic link" in _one_sentence_error(capsys.readouterr().err)
    assert target2.read_bytes() == before2 and out.is_symlink()


def test_prepare_never_writes_through_a_link(tmp_path, tmp_path_factory) -> None:
    import json

    pred, _ = _eval_dirs(tmp_path)  # no face in these: prepare records the clip as dropped
    out = tmp_path / "prep"
    out.mkdir()
    target, before = _link_outside(out / "manifest.jsonl.partial", tmp_path_factory.mktemp("outside"))
    assert run_cli("prepare", str(pred / "a.mp4"), str(out), "--no-orientation", "--ocr", "none", "-q") == 0
    assert target.read_bytes() == before
    rec = json.loads((out / "manifest.jsonl").read_text())
    assert rec["name"] == "a" and rec["kept"] is False


@pytest.mark.parametrize("name", [".bfvr-batch.lock", "summary-temp"])
def test_batch_never_writes_through_its_lock_or_summary_temp(tmp_path, tmp_path_factory, capsys,
                                                             name) -> None:
    import os

    src = tmp_path / "in"
    _small_clip(src, "a.mp4")
    _small_clip(src, "b.mp4")
    out = tmp_path / "out"
    out.mkdir()
    # the summary's temporary file used to be `.bfvr-summary.json.<pid>.partial` (this process's pid here)
    link = out / (name if name != "summary-temp" else f".bfvr-summary.json.{os.getpid()}.partial")
    target, before = _link_outside(link, tmp_path_factory.mktemp("outside"))
    code = run_cli("restore", str(src), "-o", str(out), "--model", "identity", "--has-aligned", "-q",
                   "--preset", "ultrafast")
    assert target.read_bytes() == before and link.is_symlink()
    if name == ".bfvr-batch.lock":
        assert code == 2
        assert "symbolic link" in _one_sentence_error(capsys.readouterr().err)
        assert sorted(p.name for p in out.iterdir()) == [name]  # refused before anything was written
    else:
        assert code == 0 and (out / "a.mp4").is_file() and (out / "bfvr-summary.json").is_file()


def test_batch_lock_left_by_a_killed_run_is_reused_but_a_foreign_file_is_not(tmp_path, capsys) -> None:
    src = tmp_path / "in"
    _small_clip(src, "a.mp4")
    out = tmp_path / "out"
    out.mkdir()
    args = ["restore", str(src), "-o", str(out), "--model", "identity", "--has-aligned", "-q",
            "--preset", "ultrafast"]
    (out / ".bfvr-batch.lock").write_text("12345\n")  # a killed batch's lock
    assert run_cli(*args) == 0 and not (out / ".bfvr-batch.lock").exists()
    (out / ".bfvr-batch.lock").write_text("my own notes\n")
    assert run_cli(*args) == 2
    assert "not a bfvr batch lock" in _one_sentence_error(capsys.readouterr().err)
    assert (out / ".bfvr-batch.lock").read_text() == "my own notes\n"


# ------------------------------------------------------------------ bfvr train --out (issue 27, item 1)
def _train_cfg(faces_dir: Path, path: Path, out: Path, **top) -> Path:
    import yaml

    from helpers import tiny_dict

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(tiny_dict(faces_dir, out, **top)))
    return path


@pytest.mark.parametrize("user_files", [["config.yaml"], ["notes.txt", "metrics.jsonl"]])
def test_train_refuses_a_folder_bfvr_did_not_make(tmp_path, faces_dir, capsys, user_files) -> None:
    """`bfvr train -c exp1/config.yaml --out exp1`, or a run folder holding the user's notes and metrics:
    refused with one sentence, nothing in it changes."""
    exp = tmp_path / "exp1"
    cfg = _train_cfg(faces_dir, exp / "config.yaml", tmp_path / "elsewhere")
    if "config.yaml" not in user_files:
        cfg.unlink()
        cfg = _train_cfg(faces_dir, tmp_path / "c.yaml", tmp_path / "elsewhere")
    for n in user_files:
        if n != "config.yaml":
            (exp / n).write_text(f"the user's {n}\n")
    before = _snapshot(tmp_path)
    for extra in ([], ["--resume"]):
        assert run_cli("train", "-c", str(cfg), "--out", str(exp), "-q", *extra) == 2
        line = _one_sentence_error(capsys.readouterr().err)
        assert str(exp) in line and "bfvr train" in line, line
        assert _snapshot(tmp_path) == before


def test_train_refuses_its_own_run_once_it_holds_user_files_and_resumes_otherwise(tmp_path, faces_dir,
                                                                               capsys) -> None:
    import json

    run = tmp_path / "run"
    run.mkdir()  # an empty folder: a new run makes it its own
    cfg = _train_cfg(faces_dir, tmp_path / "c.yaml", run, max_steps=1, ckpt_every=1)
    assert run_cli("train", "-c", str(cfg), "-q") == 0
    assert (run / ".bfvr-run").is_file() and (run / "checkpoints" / "step_00000001").is_dir()
    (run / "notes.txt").write_text("my notes\n")
    before = _snapshot(run)
    args = ["train", "-c", str(cfg), "-q", "--max-steps", "2", "--resume"]
    assert run_cli(*args) == 2
    assert "notes.txt" in _one_sentence_error(capsys.readouterr().err)
    assert _snapshot(run) == before
    # without the user's file the run resumes; a run made before the marker existed resumes too
    (run / "notes.txt").unlink()
    (run / ".bfvr-run").unlink()
    assert run_cli(*args) == 0
    assert (run / ".bfvr-run").is_file() and (run / "checkpoints" / "step_00000002").is_dir()
    assert [r["resume"] for r in json.loads((run / "run.json").read_text())] == [False, True]


# ------------------------------------------------------------------------------- the longest legal names
@pytest.mark.slow  # 7 s of CPU, OMP_NUM_THREADS=1 (measured 2026-12-06)
def test_longest_legal_output_names_work(tmp_path, make_clip, capsys) -> None:
    """A legal output name of 230+ bytes used to fail with "File name too long" because its hidden
    temporary name (`.<stem>.XXXXXXXX.partial<suffix>`) was longer: those names are shortened with a hash
    now, for videos, PNG-frame folders, reports and sidecars, and the segment folder."""
    import json
    import os

    import numpy as np

    from bfvr.io import probe, write_video
    from bfvr.io.paths import temp_beside, write_atomic
    from bfvr.scale.plan import partial_files

    frames = np.zeros((3, 32, 32, 3), np.uint8)
    long_mp4 = tmp_path / ("v" * 251 + ".mp4")  # 255 bytes: the longest name ext4 takes
    long_utf8 = tmp_path / ("é" * 125 + ".mkv")  # 254 bytes in 129 characters
    long_dir = tmp_path / ("p" * 255)  # a PNG-frame folder
    for out in (long_mp4, long_utf8, long_dir):
        write_video(out, frames, fps=25)
        assert probe(out).frame_count == 3
    report = tmp_path / ("r" * 250 + ".json")
    write_atomic(report, json.dumps({"tool": "bfvr"}))
    assert json.loads(report.read_text()) == {"tool": "bfvr"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (long_mp4, long_utf8, long_dir, report))  # no temporary file left
    # a killed run's temporary file of such an output is still recognised as bfvr's
    tmp = temp_beside(tmp_path / ("w" * 251 + ".mp4"))
    assert len(os.fsencode(tmp.name)) <= 255 and partial_files(tmp_path / ("w" * 251 + ".mp4")) == [tmp]
    tmp.unlink()

    # the CLI: a restore (also in segments) and a degrade with its JSON sidecar
    clip = make_clip("long_names.mp4", frames=16, width=64, height=64, audio=False)
    out = tmp_path / "cli"
    out.mkdir()
    name = "o" * 251 + ".mp4"
    assert run_cli("restore", str(clip), "-o", str(out / name), "--model", "identity",
                   "--has-aligned", "-q", "--preset", "ultrafast") == 0
    assert run_cli("restore", str(clip), "-o", str(out / ("s" + name[1:])), "--model", "identity",
                   "--has-aligned", "-q", "--preset", "ultrafast", "--segments", "2", "--workers", "1") == 0
    lq = "d" * 250 + ".mp4"  # its sidecar, d...d.json, is 255 bytes
    assert run_cli("degrade", str(clip), str(out / lq), "--recipe", "keep", "-q") == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([name, "s" + name[1:], lq, lq[:-4] + ".json"])
    assert "Traceback" not in capsys.readouterr().err
    # a name no folder takes (256 bytes), or one whose sidecar would be: one sentence, nothing written
    for args in (["restore", str(clip), "-o", str(out / ("x" * 252 + ".mp4")), "--model", "identity"],
                 ["restore", str(clip), "-o", str(out / ("x" * 256) / "y.mp4"), "--segments", "2"],
                 ["degrade", str(clip), str(out / ("x" * 251 + ".mp4"))]):
        assert run_cli(*args) == 2
        err = capsys.readouterr().err
        assert err.startswith("bfvr: error: ") and err.count("\n") == 1 and "256 bytes long" in err, err
    assert len(list(out.iterdir())) == 4

"""The `bfvr` command line: restore/info/bench end to end, and every bad input of issue 2 through the CLI
(exit code != 0, one line on stderr, no output or temporary file left behind)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bfvr.io import probe, read_frames
from bfvr.io.synth import pattern_frame
from helpers import make_bad_input, psnr, run_cli


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = run_cli(*argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("bfvr: error:")]


def assert_clean_failure(code: int, err: str, out_dir: Path, out_name: str) -> None:
    assert code != 0
    errs = error_lines(err)
    assert len(errs) == 1, err
    assert "Traceback" not in err
    assert not (out_dir / out_name).exists()
    assert [p.name for p in out_dir.iterdir() if ".partial" in p.name] == []


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    """Each subcommand is registered, listed in the root help as a row of its own, and answers its own
    --help with its own usage line (a name that only appears in the root help's prose does not pass)."""
    import typer

    from bfvr.cli import app

    code, root, _ = run(["--help"], capsys)
    assert code == 0
    registered = typer.main.get_command(app).commands
    for cmd in ("restore", "info", "degrade", "prepare", "train", "evaluate", "profile", "compare", "bench",
                "models", "export", "ui", "evaluate-codes"):
        assert cmd in registered, cmd
        assert re.search(rf"^\W*{re.escape(cmd)}\s{{2,}}\S", root, re.MULTILINE), f"{cmd}: no row"
        code, out, err = run([cmd, "--help"], capsys)
        assert code == 0, err
        assert re.search(rf"Usage: bfvr {re.escape(cmd)} ", out), out[:200]
    code, out, _ = run(["restore", "--help"], capsys)
    assert code == 0
    for opt in ("--output", "--model", "--weights", "--device", "--precision", "--crf", "--preset",
                "--overwrite", "--quiet", "--offline"):
        assert opt in out


def test_info_prints_metadata(synth_clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["info", str(synth_clip)], capsys)
    assert code == 0
    assert "256x256" in out and "48" in out and "aac" in out and "1/12800" in out
    code, out, _ = run(["info", "--json", str(synth_clip)], capsys)
    d = json.loads(out)
    assert (d["width"], d["height"], d["fps"], d["frame_count"], d["has_audio"]) == (256, 256, "25", 48, True)


def test_restore_identity_end_to_end(tmp_path: Path, synth_clip: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "restored.mp4"
    code, stdout, err = run(["restore", str(synth_clip), "-o", str(out), "--model", "identity", "--crf", "10",
                             "--device", "cpu"], capsys)
    assert code == 0, err
    assert "frame/s" in err  # the progress bar (rate and ETA) went to stderr
    assert "48 frames" in stdout
    a, b = probe(synth_clip), probe(out)
    assert (b.frame_count, b.fps, b.width, b.height) == (a.frame_count, a.fps, a.width, a.height)
    assert abs(b.duration - a.duration) <= 1 / float(a.fps)
    assert b.has_audio and b.audio_codec == a.audio_codec
    assert b.audio_duration == pytest.approx(a.audio_duration, abs=1 / float(a.fps))
    assert psnr(read_frames(out), read_frames(synth_clip)) >= 40

    # exists without --overwrite: refused, untouched; with --overwrite and --quiet: replaced, silent
    before = out.read_bytes()
    code, _, err = run(["restore", str(synth_clip), "-o", str(out), "--model", "identity", "--has-aligned"],
                       capsys)
    assert code != 0 and len(error_lines(err)) == 1 and "--overwrite" in err
    assert out.read_bytes() == before
    code, stdout, err = run(["restore", str(synth_clip), "-o", str(out), "--model", "identity", "--overwrite",
                             "--quiet", "--crf", "30", "--preset", "ultrafast", "--has-aligned"], capsys)
    assert code == 0 and stdout == "" and "frame/s" not in err
    assert out.read_bytes() != before and probe(out).frame_count == 48


BAD_INPUTS = ["missing", "empty_dir", "text", "png_as_mp4", "jpg_as_mp4", "truncated", "truncated_faststart",
              "zero_frames", "audio_only", "empty_file"]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_inputs_fail_cleanly(tmp_path: Path, synth_clip: Path, case: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    bad = make_bad_input(tmp_path, synth_clip, case)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _, err = run(["restore", str(bad), "-o", str(out_dir / "o.mp4"), "--model", "identity", "--quiet"],
                       capsys)
    assert_clean_failure(code, err, out_dir, "o.mp4")
    # an output in a folder that does not exist yet: the folder is not created for a failing run
    code, _, err = run(["restore", str(bad), "-o", str(out_dir / "new" / "o.mp4"), "--model", "identity"],
                       capsys)
    assert code != 0 and len(error_lines(err)) == 1
    assert list(out_dir.iterdir()) == []
    # `info` reads the metadata only; with --count it decodes everything and finds the truncation as well
    code, _, err = run(["info", "--count", str(bad)], capsys)
    assert code != 0 and len(error_lines(err)) == 1


def test_bad_outputs_fail_cleanly(tmp_path: Path, synth_clip: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for target in (a_file / "o.mp4", tmp_path / "o.avi", Path("/proc/bfvr_test_out.mp4")):
        code, _, err = run(["restore", str(synth_clip), "-o", str(target), "--model", "identity", "--quiet"],
                           capsys)
        assert code != 0 and len(error_lines(err)) == 1 and "Traceback" not in err
        assert not target.exists()
    # the input itself as output
    copy = tmp_path / "in.mp4"
    copy.write_bytes(synth_clip.read_bytes())
    code, _, err = run(["restore", str(copy), "-o", str(copy), "--model", "identity", "--overwrite",
                        "--quiet"],
                       capsys)
    assert code != 0 and len(error_lines(err)) == 1
    assert copy.read_bytes() == synth_clip.read_bytes()


def test_bad_flags_fail_cleanly(tmp_path: Path, synth_clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for flags in (["--device", "tpu"], ["--precision", "int4"], ["--model", "no-such-model"],
                  ["--preset", "warp"]):
        code, _, err = run(["restore", str(synth_clip), "-o", str(tmp_path / "o.mp4"), "--model", "identity",
                            "--quiet", *flags], capsys)
        assert code != 0 and len(error_lines(err)) == 1, (flags, err)
        assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("name,kwargs", [
    ("odd.mp4", {"width": 97, "height": 65, "pix_fmt": "yuv444p"}),  # 4:2:0 cannot be odd; 4:4:4 can
    ("rotated.mp4", {"width": 96, "height": 64, "rotation": 270}),
    ("ten_bit.mp4", {"width": 96, "height": 64, "pix_fmt": "yuv420p10le"}),
    ("yuv444.mp4", {"width": 96, "height": 64, "pix_fmt": "yuv444p"}),
    ("gray.mkv", {"width": 96, "height": 64, "pix_fmt": "gray", "codec": "ffv1"}),
])
def test_unusual_inputs_work(tmp_path: Path, make_clip, name: str, kwargs: dict,
                             capsys: pytest.CaptureFixture[str]) -> None:
    src = make_clip(name, frames=6, **kwargs)
    out = tmp_path / "o.mp4"
    code, _, err = run(["restore", str(src), "-o", str(out), "--model", "identity", "--crf", "10", "--quiet"],
                       capsys)
    assert code == 0, err
    info = probe(out)
    w, h = kwargs["width"], kwargs["height"]
    assert (info.width, info.height, info.frame_count, info.rotation) == (w, h, 6, 0)
    assert info.has_audio and info.pix_fmt == "yuv420p"
    got = read_frames(out)
    ref = np.stack([pattern_frame(i, w, h) for i in range(6)])
    if kwargs.get("pix_fmt") == "gray":
        assert np.abs(got[..., 0].astype(int) - got[..., 2]).max() <= 3  # still gray after 4:2:0
    else:
        assert psnr(got, ref) > 30


def test_console_script_exit_code_and_one_line(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("bfvr")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "bfvr.cli"]
    r = subprocess.run([*cmd, "restore", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o.mp4"),
                        "--model", "identity"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("bfvr: error:") and "does not exist" in r.stderr


def test_bench_io_reports_real_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["bench", "io", "--size", "64", "--frames", "12", "--preset", "ultrafast", "--json"],
                         capsys)
    assert code == 0, err
    d = json.loads(out)
    for key in ("decode_fps", "encode_fps", "restore_identity_fps", "peak_rss_mb"):
        assert d[key] > 0


def test_process_wide_state_stays_in_the_cli_process(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import warnings

    import bfvr.io.memory
    from bfvr import cli

    tuned: list[bool] = []
    monkeypatch.setattr(bfvr.io.memory, "tune_malloc_for_streaming", lambda *a, **k: tuned.append(True))
    before = warnings.formatwarning
    seen = []
    monkeypatch.setattr(cli, "app", lambda *a, **k: seen.append(warnings.formatwarning))
    assert run(["--version"], capsys)[0] == 0
    assert seen == [cli.one_line_warning]  # while the command runs: warnings on one line
    assert warnings.formatwarning is before and tuned == []  # in-process call: nothing left behind
    monkeypatch.setattr(sys, "argv", ["bfvr", "--version"])
    cli.main()  # the console script (argv None): malloc tuned once
    assert tuned == [True] and len(seen) == 2 and warnings.formatwarning is before
    assert cli.one_line_warning("no face\n  found", UserWarning, "f.py",
                                1) == "bfvr: warning: no face found\n"

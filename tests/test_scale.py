"""Batch restore (bfvr.scale): folders with real clips and corrupt files, resume, SIGKILL, exact segments."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import REPO, run_cli
from helpers import audio_packets as _audio_packets
from helpers import cut_clip as _cut
from helpers import frames_and_pts as _frames_and_pts
from helpers import lite_small as _lite_small

CLIPS = [
    "lp_driving_d0",
    "lp_driving_d11",
    "lp_driving_d18",
    "lp_driving_d20",
    "tpsmm_driving",
    "lp_driving_d14",
]


@pytest.fixture(scope="module")
def corpus(faces_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 short real clips (two in a subfolder) and 2 corrupt files."""
    root = tmp_path_factory.mktemp("corpus") / "in"
    (root / "sub").mkdir(parents=True)
    for i, name in enumerate(CLIPS):
        _cut(faces_dir / f"{name}.mp4", root / ("sub" if i >= 4 else ".") / f"{name}.mp4", frames=10 + 2 * i)
    (root / "notes.mp4").write_text("this is not a video\n")
    data = (faces_dir / "lp_driving_d18.mp4").read_bytes()
    (root / "sub" / "cut_short.mp4").write_bytes(data[: len(data) // 3])  # a download cut off
    (root / "readme.txt").write_text("not a video suffix: ignored by the folder walk\n")
    return root


def _check_outputs(corpus: Path, out: Path) -> None:
    from bfvr.io import probe
    from bfvr.scale.plan import incomplete_reason

    for src in sorted(corpus.rglob("*.mp4")):
        rel = src.relative_to(corpus)
        if src.name in ("notes.mp4", "cut_short.mp4"):
            assert not (out / rel).exists()
            continue
        info = probe(src)
        assert incomplete_reason(out / rel, info) is None, rel
        o = probe(out / rel)
        assert o.frame_count == info.frame_count and o.has_audio == info.has_audio
    assert not [p for p in out.rglob(".*partial*")], "temporary files left behind"


def test_batch_folder_real_clips_and_corrupt_files(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [
        "restore",
        str(corpus),
        "-o",
        str(out),
        "--model",
        "identity",
        "--has-aligned",
        "-q",
        "--preset",
        "ultrafast",
    ]
    assert run_cli(*args) == 3  # some failed: the documented exit rule
    _check_outputs(corpus, out)
    s = json.loads((out / "bfvr-summary.json").read_text())
    assert s["tool"] == "bfvr" and s["state"] == "finished" and s["exit_code"] == 3
    assert s["counts"] == {"done": 6, "skipped": 0, "failed": 2, "pending": 0, "total": 8}
    failed = {v["key"]: v["reason"] for v in s["videos"] if v["status"] == "failed"}
    assert set(failed) == {"notes.mp4", "sub/cut_short.mp4"}
    assert "not a readable video" in failed["notes.mp4"]
    assert all("\n" not in r for r in failed.values())
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")}

    # a rerun does no work: every output is opened, found complete and skipped; nothing is rewritten
    t0 = time.perf_counter()
    assert run_cli(*args) == 3
    s2 = json.loads((out / "bfvr-summary.json").read_text())
    assert s2["counts"] == {"done": 0, "skipped": 6, "failed": 2, "pending": 0, "total": 8}
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")} == stamps
    assert time.perf_counter() - t0 < 30


def test_batch_list_manifest_and_guards(corpus: Path, tmp_path: Path) -> None:
    from bfvr.errors import OutputError
    from bfvr.scale.plan import collect_jobs

    lst = corpus.parent / "list.txt"
    lst.write_text(
        f"# two of the clips\nin/{CLIPS[0]}.mp4\n\n{corpus / 'sub' / (CLIPS[4] + '.mp4')}\n"
        f"in/{CLIPS[0]}.mp4\n"
    )
    jobs = collect_jobs(lst, tmp_path / "o")
    assert [j.key for j in jobs] == [f"in/{CLIPS[0]}.mp4", f"in/sub/{CLIPS[4]}.mp4"]  # mirrored, deduplicated
    man = corpus.parent / "m.jsonl"
    man.write_text(
        json.dumps({"path": f"in/{CLIPS[1]}.mp4", "output": "x/y.mkv"})
        + "\n"
        + json.dumps({"path": f"in/{CLIPS[2]}.mp4", "kept": False})
        + "\n"
        + json.dumps({"input": f"in/{CLIPS[3]}.mp4", "output": "../escape.mp4"})
        + "\n"
    )
    jobs = collect_jobs(man, tmp_path / "o")
    assert [j.key for j in jobs] == ["x/y.mkv", "../escape.mp4"] and jobs[0].error is None
    assert "not a path inside" in jobs[1].error
    for bad in (corpus, corpus / "sub"):  # the output folder may not be, or lie inside, the input folder
        with pytest.raises(OutputError):
            collect_jobs(corpus, bad)
    with pytest.raises(OutputError):  # nor contain it
        collect_jobs(corpus, corpus.parent)
    with pytest.raises(OutputError, match="must be a folder"):  # a batch writes into a folder
        collect_jobs(corpus, tmp_path / "restored.mp4")
    # a file in the summary's place that bfvr did not write is refused before anything runs
    out = tmp_path / "o2"
    out.mkdir()
    (out / "bfvr-summary.json").write_text("my notes")
    assert run_cli("restore", str(corpus), "-o", str(out), "--model", "identity", "--has-aligned", "-q") == 2
    assert (out / "bfvr-summary.json").read_text() == "my notes" and len(list(out.iterdir())) == 1


def test_two_inputs_one_output_both_fail_before_any_work(corpus: Path, tmp_path: Path, capsys) -> None:
    """`a.mp4` and `a.mov` (or a manifest naming one output twice) would write one output: each of them
    fails (exit 3) naming both inputs and the output, and that output is not written; the others run."""
    from bfvr.scale.plan import collect_jobs

    d = tmp_path / "d"
    d.mkdir()
    (d / "a.mp4").symlink_to(corpus / f"{CLIPS[0]}.mp4")
    (d / "a.mov").symlink_to(corpus / f"{CLIPS[1]}.mp4")
    (d / "b.mp4").symlink_to(corpus / f"{CLIPS[2]}.mp4")
    out = tmp_path / "out"
    assert run_cli("restore", str(d), "-o", str(out), "--model", "identity", "--has-aligned", "--preset",
                   "ultrafast") == 3
    printed = capsys.readouterr().out
    assert "1 done, 0 skipped (complete already), 2 failed of 3 videos" in printed
    s = json.loads((out / "bfvr-summary.json").read_text())
    assert s["exit_code"] == 3 and s["counts"]["failed"] == 2 and s["counts"]["done"] == 1
    failed = [v for v in s["videos"] if v["status"] == "failed"]
    assert sorted(v["input"] for v in failed) == [str(d / "a.mov"), str(d / "a.mp4")]
    for v in failed:
        assert all(x in v["reason"] for x in ("'a.mp4'", str(d / "a.mov"), str(d / "a.mp4")))
    assert len({v["key"] for v in s["videos"]}) == 3  # one record per input
    assert not (out / "a.mp4").exists() and (out / "b.mp4").is_file()

    man = tmp_path / "m.jsonl"
    man.write_text("".join(json.dumps({"input": str(d / n), "output": "same.mkv"}) + "\n"
                           for n in ("a.mp4", "b.mp4")) + json.dumps({"input": str(d / "a.mov")}) + "\n")
    jobs = collect_jobs(man, tmp_path / "o2")
    assert [j.error is not None for j in jobs] == [True, True, False]
    assert all("'same.mkv'" in j.error and "a.mp4" in j.error and "b.mp4" in j.error for j in jobs[:2])


@pytest.mark.parametrize("what", ["empty", "readme", "dir_named_mp4", "empty_list"])
def test_nothing_to_restore_says_so(tmp_path: Path, capsys, what: str) -> None:
    """An empty folder, one holding only a readme, or an empty folder named x.mp4, restored to -o f.mp4,
    used to say it "holds many videos"."""
    src = tmp_path / ("x.mp4" if what == "dir_named_mp4" else "d")
    if what == "empty_list":
        src = tmp_path / "list.txt"
        src.write_text("# nothing yet\n")
    else:
        src.mkdir()
    if what == "readme":
        (src / "README.md").write_text("notes\n")
    assert run_cli("restore", str(src), "-o", str(tmp_path / "f.mp4"), "--model", "identity") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("bfvr: error: "), err
    assert "many" not in err
    assert ("lists no videos" if what == "empty_list" else "holds no video files") in err and str(src) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]  # nothing written


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_ctrl_c_mid_batch_says_what_is_kept(faces_dir: Path, tmp_path: Path, sig: str) -> None:
    """Ctrl-C (SIGINT) used to print nothing (typer turned it into a silent exit 130 before bfvr saw it),
    while SIGTERM said "N kept, M not done; rerun": both say it now, and exit 128 + the signal."""
    corpus = tmp_path / "in"
    corpus.mkdir()
    for name in CLIPS[:4]:
        (corpus / f"{name}.mp4").symlink_to(faces_dir / f"{name}.mp4")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "bfvr.cli", "restore", str(corpus), "-o", str(out), "--model", "identity",
           "--has-aligned", "-q", "--preset", "ultrafast", "--max-frames", "60"]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and p.poll() is None:
            done = [o for o in out.glob("*.mp4") if not o.name.startswith(".")]
            if done and list(out.glob(".*.partial.mp4")):
                break  # one output done and the next one being written
            time.sleep(0.02)
        assert p.poll() is None, "the batch finished before it could be interrupted"
        p.send_signal(getattr(signal, sig))
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 128 + getattr(signal, sig), err
    assert err.strip(), "nothing was said"
    line = err.strip().splitlines()[-1]
    assert "Traceback" not in err and line.startswith("bfvr: error: "), err
    assert line.startswith("bfvr: error: " + ("interrupted;" if sig == "SIGINT" else "stopped by SIGTERM;"))
    kept = len([o for o in out.glob("*.mp4") if not o.name.startswith(".")])
    assert f"{kept} videos complete are kept, {4 - kept} not done" in line
    assert "rerun the same command" in line
    assert not list(out.glob(".*partial*"))  # the interrupted video's temporary file was removed
    assert json.loads((out / "bfvr-summary.json").read_text())["state"] == "interrupted"


def test_sigkill_mid_batch_then_rerun(faces_dir: Path, tmp_path: Path) -> None:
    """SIGKILL while a video is being written (the real clips, 60 frames each): every output present is
    complete; a rerun finishes the rest and removes the dead run's temporary file."""
    from bfvr.io import probe
    from bfvr.scale.plan import incomplete_reason

    corpus = tmp_path / "in"
    (corpus / "sub").mkdir(parents=True)
    for i, name in enumerate(CLIPS):
        (corpus / ("sub" if i >= 4 else ".") / f"{name}.mp4").symlink_to(faces_dir / f"{name}.mp4")
    (corpus / "notes.mp4").write_text("this is not a video\n")
    (corpus / "empty.mov").write_bytes(b"")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [
        sys.executable,
        "-m",
        "bfvr.cli",
        "restore",
        str(corpus),
        "-o",
        str(out),
        "--model",
        "identity",
        "--has-aligned",
        "-q",
        "--preset",
        "ultrafast",
        "--max-frames",
        "60",
    ]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def outputs() -> list[Path]:
        return [o for o in out.rglob("*.mp4") if not o.name.startswith(".")]

    try:
        deadline = time.time() + 300
        while time.time() < deadline and p.poll() is None:
            if outputs() and list(out.rglob(".*.partial.mp4")):
                break  # one output done and the next one being written
            time.sleep(0.02)
        assert p.poll() is None, "the batch finished before it could be killed"
        p.send_signal(signal.SIGKILL)
        p.wait()
    finally:
        if p.poll() is None:
            p.kill()
    assert list(out.rglob(".*.partial.mp4"))  # the killed run left its temporary file, not a truncated output
    done = outputs()
    assert 1 <= len(done) < 6
    for o in done:
        assert incomplete_reason(o, probe(corpus / o.relative_to(out)), max_frames=60) is None
    assert json.loads((out / "bfvr-summary.json").read_text())["state"] == "running"  # written as it went
    left = sorted(out.rglob(".*.partial.mp4"))  # the killed run's temporary file(s)
    assert run_cli(*cmd[3:]) == 3
    s = json.loads((out / "bfvr-summary.json").read_text())
    assert s["counts"] == {"done": 6 - len(done), "skipped": len(done), "failed": 2, "pending": 0, "total": 8}
    for src in corpus.rglob("lp_*.mp4"):
        assert incomplete_reason(out / src.relative_to(corpus), probe(src), max_frames=60) is None
    for src in corpus.rglob("tpsmm*.mp4"):
        assert incomplete_reason(out / src.relative_to(corpus), probe(src), max_frames=60) is None
    # the rerun leaves the dead run's temporary file alone (bfvr never deletes what another run made)
    # and makes none of its own
    assert sorted(out.rglob(".*partial*")) == left


def _process_group(pgid: int) -> list[tuple[int, str]]:
    """The live (not zombie) processes of a process group, with their command lines (read from /proc:
    psutil may not be installed)."""
    found = []
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            stat = Path(f"/proc/{e}/stat").read_text()
            cmd = Path(f"/proc/{e}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, _ppid, group = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(group) == pgid and state not in ("Z", "X"):
            found.append((int(e), cmd[:120]))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_segment_workers_die_with_their_parent(faces_dir: Path, tmp_path: Path, sig: str) -> None:
    """A --segments restore with 2 worker processes: SIGKILL of the parent alone used to leave both
    workers and the multiprocessing resource tracker running for good; SIGTERM of the parent alone waited
    for the segments being restored (7.9 s on this clip, 19.7 s in the issue's trial). Now no child
    survives 10 s of a SIGKILL, and SIGTERM stops the workers at once: the segments being restored are
    abandoned (their temporary files removed), not finished."""
    out = tmp_path / "out.mp4"
    wd = tmp_path / ".out.mp4.bfvr-segments"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "bfvr.cli", "restore", str(faces_dir / "lp_driving_d0.mp4"), "-o", str(out),
           "--model", "identity", "--has-aligned", "-q", "--segments", "2", "--workers", "2", "--preset",
           "ultrafast"]
    log = tmp_path / "stderr.txt"  # a file, not a pipe: orphans holding a pipe would block reading it
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=f)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and p.poll() is None:
            if list(wd.glob(".seg-*.partial.mkv")) and len(_process_group(p.pid)) >= 3:
                break  # the workers are restoring segments
            time.sleep(0.01)
        assert p.poll() is None, "the restore finished before it could be stopped"
        children = [pid for pid, _ in _process_group(p.pid) if pid != p.pid]
        assert len(children) >= 2, _process_group(p.pid)  # 2 workers (+ the resource tracker)
        finished = sorted(x.name for x in wd.glob("seg-*.mkv"))
        t0 = time.monotonic()
        p.send_signal(getattr(signal, sig))  # the parent alone, not its group
        p.wait(timeout=60)
        took = time.monotonic() - t0
        deadline = time.monotonic() + 10
        while _process_group(p.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = _process_group(p.pid)
    finally:
        for pid, _ in _process_group(p.pid):  # never leave them behind, even when the test fails
            os.kill(pid, signal.SIGKILL)
        if p.poll() is None:
            p.kill()
    err = log.read_text()
    assert not left, f"still running after the parent's {sig}: {left}"
    assert not list(wd.glob(".*partial*")), "a worker's temporary file was left"
    if sig == "SIGTERM":
        assert p.returncode == 143 and "Traceback" not in err, err
        assert "stopped by SIGTERM; 0 videos complete are kept, 1 not done" in err
        assert sorted(x.name for x in wd.glob("seg-*.mkv")) == finished  # abandoned, not finished
        assert took < 5, f"SIGTERM took {took:.1f} s"
        assert not out.exists()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_worker_watchdog_alone_ends_an_orphan(tmp_path: Path) -> None:
    """Without the parent-death signal (systems other than Linux), the thread watching the parent's pid
    ends a worker whose parent was SIGKILLed."""
    child = (
        "import os, sys, time\n"
        "sys.platform = 'other'  # no prctl: the watching thread alone\n"
        "from bfvr.scale.backends import die_with_parent\n"
        "die_with_parent(os.getppid())\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = (f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', {child!r}])\n"
              "time.sleep(60)\n")
    log = tmp_path / "out.txt"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    with open(log, "w") as f:
        p = subprocess.Popen([sys.executable, "-c", parent], env=env, start_new_session=True, stdout=f)
    try:
        deadline = time.time() + 60
        while "ready" not in log.read_text() and time.time() < deadline:
            time.sleep(0.05)
        assert "ready" in log.read_text() and len(_process_group(p.pid)) == 2
        p.send_signal(signal.SIGKILL)
        p.wait()
        deadline = time.monotonic() + 10
        while _process_group(p.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = _process_group(p.pid)
    finally:
        for pid, _ in _process_group(p.pid):
            os.kill(pid, signal.SIGKILL)
    assert not left


# ------------------------------------------------------------------------------------------ segments


class _TemporalToy:
    """A deterministic clip model whose output depends on the whole clip (its mean over time) and on each
    frame's position in the clip: any wrong clip boundary or missing context changes the result."""

    name = "toy"
    canvas = None
    device = torch.device("cpu")

    def __init__(self, clip_len: int | None, overlap: int, window: tuple[int, int] | None = None) -> None:
        from bfvr.engine.base import Schedule

        self.clip_len, self.overlap = clip_len, overlap
        if window:
            self.schedule = Schedule.window(window[0], window[1])

    def restore_clip(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.linspace(0.2, 0.8, x.shape[0]).view(-1, 1, 1, 1)
        return (0.5 * x + 0.3 * t * x.mean(0, keepdim=True) + 0.1 * x.roll(1, 0)).clamp(0, 1)


@pytest.mark.parametrize(
    "T,V,window",
    [
        (24, 4, None),
        (24, 8, None),
        (10, 7, None),
        (8, 0, None),
        (None, 3, None),
        (5, 0, (5, 1)),
        (5, 0, (5, 3)),
        (3, 0, (3, 1)),
    ],
)
def test_segment_grid_is_exact(T, V, window) -> None:
    """Restoring the planned segments (with their context) and keeping [start, stop) gives exactly the
    frames of one pass, for clip schedules (any overlap V, also V > T - V) and window schedules."""
    from bfvr.engine.chunker import ClipEngine
    from bfvr.scale.plan import Grid, plan_segments

    rng = np.random.default_rng(0)
    for n in (29, 61, 100):
        frames = rng.integers(0, 256, (n, 6, 5, 3), dtype=np.uint8)
        eng = ClipEngine(_TemporalToy(T, V, window), chunk=6)
        whole = eng.restore_array(frames)
        grid = Grid.of_engine(eng)
        for k in (2, 3, 5):
            segs = plan_segments(n, k, grid)
            assert segs[0].start == 0 and segs[-1].stop == n
            assert all(a.stop == b.start for a, b in zip(segs, segs[1:]))
            joined = np.concatenate(
                [
                    eng.restore_array(frames[g.read_start : g.read_stop])[
                        g.start - g.read_start : g.stop - g.read_start
                    ]
                    for g in segs
                ]
            )
            assert np.array_equal(joined, whole), (n, k, segs)
            if n == 100:
                assert len(segs) == k


def test_segments_equal_single_process(faces_dir: Path, tmp_path: Path) -> None:
    """--segments on a real clip with audio (BFVR-Lite, a temporal model): the joined output has the same
    frames, timestamps and audio as the one-process restore."""
    from bfvr.api import Restorer
    from bfvr.scale import BatchOptions, RestoreSettings
    from bfvr.scale.batch import run_segmented

    torch.set_num_threads(1)
    src = _cut(faces_dir / "lp_driving_d9.mp4", tmp_path / "clip.mp4", frames=50, size=64, crop=(120, 200))
    model = _lite_small()
    one = tmp_path / "one.mp4"
    Restorer(model, progress=False).restore_video(src, one, preset="ultrafast")
    seg = tmp_path / "seg.mp4"
    settings = RestoreSettings(model=model, preset="ultrafast", threads=1)
    res = run_segmented(src, seg, settings, BatchOptions(segments=3, workers=1, progress=False))
    assert res.exit_code == 0 and res.videos[0].segments == 3
    # the video's time runs from its first segment to the end of the join, not the join's alone
    v = res.videos[0]
    assert 0 < v.join_seconds < v.seconds <= res.finished - res.started and res.backend == "inline"
    a, pa = _frames_and_pts(one)
    b, pb = _frames_and_pts(seg)
    assert a.shape == b.shape and pa == pb
    assert np.array_equal(a, b)
    assert _audio_packets(one) == _audio_packets(src) == _audio_packets(seg) != []
    assert not list(tmp_path.glob(".*segments*"))  # the work folder is removed after the join
    from bfvr.errors import OutputError

    with pytest.raises(
        OutputError, match="already exists"
    ):  # one video: as `bfvr restore`, no silent replace
        run_segmented(src, seg, settings, BatchOptions(segments=3, workers=1, progress=False))


@pytest.mark.slow
def test_segments_in_local_processes(faces_dir: Path, tmp_path: Path) -> None:
    """The same in 2 spawned worker processes (each loads the model once)."""
    from bfvr.api import Restorer
    from bfvr.scale import BatchOptions, RestoreSettings
    from bfvr.scale.batch import run_segmented

    src = _cut(faces_dir / "lp_driving_d9.mp4", tmp_path / "clip.mp4", frames=50, size=64, crop=(120, 200))
    model = _lite_small()
    torch.set_num_threads(1)
    one = tmp_path / "one.mp4"
    Restorer(model, progress=False).restore_video(src, one, preset="ultrafast")
    seg = tmp_path / "seg.mp4"
    res = run_segmented(
        src,
        seg,
        RestoreSettings(model=model, preset="ultrafast"),
        BatchOptions(segments=3, workers=2, progress=False),
    )
    assert res.exit_code == 0 and len(set(res.videos[0].hosts)) == 1
    a, pa = _frames_and_pts(one)
    b, pb = _frames_and_pts(seg)
    assert pa == pb and np.array_equal(a, b)


def test_segmented_restores_lock_their_output_not_the_folder(tmp_path: Path, make_clip, capsys) -> None:
    """Two --segments restores into one folder with different outputs: the second was refused with
    "another bfvr batch is writing to <folder>". Each locks its own output now: another output in the
    folder is fine, the same output and a batch into the folder are refused with one sentence."""
    from bfvr.scale.batch import LOCK_NAME, _Lock, output_lock_path

    clip = make_clip("seg_lock.mp4", frames=16, width=64, height=64, audio=False)
    folder = tmp_path / "out"
    a, b = folder / "a.mp4", folder / "b.mp4"
    # a first segmented restore of a.mp4, as it holds its locks while it runs
    first = [_Lock(folder, shared=True), _Lock(folder, name=output_lock_path(a).name)]
    seg = ["--model", "identity", "--has-aligned", "-q", "--preset", "ultrafast", "--segments", "2",
           "--workers", "1"]
    try:
        assert run_cli("restore", str(clip), "-o", str(b), *seg) == 0  # another output: written
        assert b.is_file() and capsys.readouterr().err == ""
        assert run_cli("restore", str(clip), "-o", str(a), *seg) == 2  # the same output: refused
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "another bfvr restore is writing" in err and str(a) in err, err
        batch_in = tmp_path / "in"
        batch_in.mkdir()
        (batch_in / "c.mp4").symlink_to(clip)
        assert run_cli("restore", str(batch_in), "-o", str(folder), "--model", "identity", "--has-aligned",
                       "-q") == 2  # a batch into the folder: refused while a segmented restore writes there
        assert "is writing to" in capsys.readouterr().err
        assert (folder / LOCK_NAME).exists() and output_lock_path(a).exists()  # still held by the first run
    finally:
        for lock in reversed(first):
            lock.release()
    assert not a.exists() and sorted(x.name for x in folder.iterdir()) == ["b.mp4"]  # no lock file left
    assert run_cli("restore", str(clip), "-o", str(a), *seg) == 0 and a.is_file()


def test_killed_segmented_run_reuses_finished_segments(faces_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """Interrupted after its first segment, a segmented restore keeps that segment (lossless, in the hidden
    work folder) and the rerun restores only the others; the joined output is still the one-process one."""
    from bfvr.api import Restorer
    from bfvr.scale import BatchOptions, RestoreSettings
    from bfvr.scale import batch as B
    from bfvr.scale.batch import run_segmented
    from bfvr.scale.worker import Worker

    torch.set_num_threads(1)
    src = _cut(faces_dir / "lp_driving_d11.mp4", tmp_path / "clip.mp4", frames=50, size=64, crop=(150, 200))
    model = _lite_small()
    one = tmp_path / "one.mp4"
    Restorer(model, progress=False).restore_video(src, one, preset="ultrafast")
    seg = tmp_path / "seg.mp4"
    settings = RestoreSettings(model=model, preset="ultrafast", threads=1)
    real_bar = B._bar

    def bar_that_interrupts(total, enabled, desc, unit, position):
        b = real_bar(total, False, desc, unit, position)
        if desc == "frames":

            def update(k=1):
                b.n += k
                if b.n > 25:  # in the second segment (the first has 20 frames)
                    raise KeyboardInterrupt

            b.update = update
        return b

    monkeypatch.setattr(B, "_bar", bar_that_interrupts)
    with pytest.raises(KeyboardInterrupt) as exc:
        run_segmented(src, seg, settings, BatchOptions(segments=3, workers=1, progress=False))
    assert "rerun the same command" in exc.value.batch_note
    assert not seg.exists() and len(list(tmp_path.glob(".seg.mp4.bfvr-segments/seg-*.mkv"))) == 1
    monkeypatch.setattr(B, "_bar", real_bar)
    statuses = []
    real_run = Worker.run

    def spy(self, task, on_frame=None):
        res = real_run(self, task, on_frame)
        statuses.append((task.kind, res["status"]))
        return res

    monkeypatch.setattr(Worker, "run", spy)
    res = run_segmented(src, seg, settings, BatchOptions(segments=3, workers=1, progress=False))
    assert res.exit_code == 0
    assert statuses == [("segment", "skipped"), ("segment", "done"), ("segment", "done"), ("join", "done")]
    a, pa = _frames_and_pts(one)
    b, pb = _frames_and_pts(seg)
    assert pa == pb and np.array_equal(a, b)
    assert not list(tmp_path.glob(".*"))


def test_sighup_to_a_segmented_run_group(faces_dir: Path, tmp_path: Path) -> None:
    """SIGHUP to the process group of `--segments` (a closed terminal: the driver, its worker processes and
    multiprocessing's resource tracker all get it) while segments are written: one line, exit 129, no
    traceback, no temporary file; the segment folder is gone or holds only finished segments (named in the
    line, for the rerun). The summary names the backend that ran, not "inline"."""
    clip = tmp_path / "in.mp4"
    clip.symlink_to(faces_dir / "lp_driving_d11.mp4")
    out, summary = tmp_path / "out.mp4", tmp_path / "s.json"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "bfvr.cli", "restore", str(clip), "-o", str(out), "--model", "identity",
           "--has-aligned", "--segments", "3", "--preset", "ultrafast", "--summary", str(summary), "-q"]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    wd = tmp_path / ".out.mp4.bfvr-segments"
    try:
        deadline = time.time() + 120
        while not list(wd.glob(".seg-*.partial.mkv")):  # the workers are writing segments
            assert p.poll() is None, p.communicate()[1]
            assert time.time() < deadline, "no segment was being written"
            time.sleep(0.02)
        os.killpg(p.pid, signal.SIGHUP)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 128 + signal.SIGHUP, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("bfvr: error: stopped by SIGHUP;") and "rerun the same command" in err
    assert not out.exists() and not list(tmp_path.glob(".*partial*")) and not list(wd.glob(".*partial*"))
    left = sorted(q.name for q in wd.iterdir()) if wd.exists() else []
    finished = [q for q in left if q.endswith(".json") and q != "plan.json"]
    if finished:
        assert f"'{wd}' ({len(finished)} of 3)" in err
        assert set(left) == {"plan.json", *finished, *(q.replace(".json", ".mkv") for q in finished)}
    else:
        assert not wd.exists()
    workers = min(os.cpu_count() or 1, 3)
    backend = "inline" if workers == 1 else f"{workers} processes"
    assert json.loads(summary.read_text())["backend"] == backend


def test_batch_bar_eta_leaves_out_the_warm_up() -> None:
    """The first update of a batch bar comes after the model's warm-up (here 60 s for the first frame): no
    ETA until a later update, then the rate since the first update (1 frame/s: 89 s left of 100), not the
    warm-up extrapolated (89 frames at 11/70 frames/s: 9 minutes)."""
    import io

    from bfvr.scale.batch import _eta_bar_class

    now = [0.0]
    bar = _eta_bar_class()(total=100, desc="frames", unit="frame", file=io.StringIO(), mininterval=0,
                           miniters=1)
    bar._time = lambda: now[0]
    bar.start_t = bar.last_print_t = 0.0
    now[0] = 60.0
    bar.update(1)
    assert "<?" in str(bar)
    for _ in range(10):
        now[0] += 1.0
        bar.update(1)
    text = str(bar)
    assert "11/100" in text and "<01:29" in text, text
    bar.close()


def _durations(path: Path) -> tuple[float, float]:
    """(video stream, container) durations in seconds as the file states them."""
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return float(v.duration * v.time_base), c.duration / 1e6


@pytest.mark.parametrize("kind", ["real", "vfr"])
def test_segmented_output_lasts_as_long_as_one_process(faces_dir: Path, tmp_path: Path, kind: str) -> None:
    """--segments 3 joins the frames of one process with the same stream and container durations (issue 27
    saw a joined mp4 whose container said 4.1e18 s). A variable-rate input was joined with B-frames, whose
    decode times end an mp4 track early: it lasted 3.783 s instead of 4.023 s and failed its check."""
    from fractions import Fraction

    from bfvr.api import Restorer
    from bfvr.io.synth import synth_video
    from bfvr.scale import BatchOptions, RestoreSettings
    from bfvr.scale.batch import run_segmented

    if kind == "real":  # AAC audio longer than the video
        src = _cut(faces_dir / "lp_driving_d11.mp4", tmp_path / "in.mp4", frames=60, size=64)
    else:  # uneven timestamps, with audio
        one_s = (0, 40, 80, 200, 240, 280, 500, 540, 580, 620, 900, 940)
        pts = [p + 1000 * k for k in range(4) for p in one_s]
        src = synth_video(tmp_path / "in.mp4", frames=len(pts), width=64, height=64, fps=12, pts=pts,
                          time_base=Fraction(1, 1000), extra_options={"bf": "0"})
    one, seg = tmp_path / "one.mp4", tmp_path / "seg.mp4"
    # the default preset: B-frames (ultrafast has none)
    Restorer("identity", has_aligned=True, progress=False).restore_video(src, one)
    settings = RestoreSettings(model="identity", threads=1)  # faces None: whole frames (--has-aligned)
    res = run_segmented(src, seg, settings, BatchOptions(segments=3, workers=1, progress=False))
    assert res.exit_code == 0 and res.videos[0].segments == 3
    a, pa = _frames_and_pts(one)
    b, pb = _frames_and_pts(seg)
    assert pa == pb and np.array_equal(a, b)
    d_one, d_seg = _durations(one), _durations(seg)
    assert d_seg == pytest.approx(d_one, abs=1e-3) and d_seg[1] < 10, (d_one, d_seg)

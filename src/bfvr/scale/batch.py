"""`run_batch`: restore every video of a folder / list / manifest (or one long video in segments).

The run:

1. plan (`bfvr.scale.plan.collect_jobs`): the jobs, each input opened (a corrupt one fails here with its
   reason), outputs already complete skipped (opened and compared: frame count, size, duration); no model
   is loaded when nothing is left to do;
2. start the workers (`bfvr.scale.backends`: this process, local processes or Ray actors; one model load
   each) and cut videos into segments on the model's clip grid where asked;
3. hand tasks to free workers until all are done; a video's segments are joined as soon as all of them
   are restored; a failure is recorded with its one-line reason and the others go on;
4. the summary (`BatchSummary`): printed, and written as JSON (after every finished video, so a killed run
   leaves one too) to OUT_DIR/bfvr-summary.json.

Exit rule (`BatchSummary.exit_code`): 0 when every video is done or was complete already; 3 when some
failed (the others are done); a batch that cannot start at all exits 2 like every bfvr error; an
interrupted batch exits 128 + the signal (130 for Ctrl-C) and a rerun of the same command finishes it.
Only one batch may write to an OUT_DIR at a time (a lock file, ``.bfvr-batch.lock``); segmented restores of
one video each lock their own output (``.NAME.bfvr-lock``), so several may write into one folder.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bfvr.errors import BfvrError, ConfigError, InputError, OutputError
from bfvr.scale.plan import (
    CONTAINERS,
    VIDEO_SUFFIXES,
    Grid,
    Job,
    RestoreSettings,
    collect_jobs,
    expected_frames,
    incomplete_reason,
    plan_segments,
    remove_partials,
    segments_for,
)
from bfvr.scale.worker import Task, frame_pts, one_line, prepare_work_dir, work_dir_for

log = logging.getLogger(__name__)

SUMMARY_NAME = "bfvr-summary.json"
LOCK_NAME = ".bfvr-batch.lock"
#: exit status of a batch in which some videos failed (the others are done)
EXIT_SOME_FAILED = 3


@dataclass
class BatchOptions:
    """How a batch runs (the restore settings themselves are a `RestoreSettings`)."""

    container: str = "mp4"  # mp4 | mov | mkv | png (a folder of PNG frames per video)
    overwrite: bool = False  # redo (replace) outputs bfvr wrote, even complete ones
    segments: int | None = None  # cut each video into this many segments ...
    segment_seconds: float | None = None  # ... or into pieces of about this many seconds
    workers: int | None = None  # local processes (1 = this process) or Ray actors (None = what fits)
    ray: str | None = None  # None: no Ray; "auto" | "local" | "host:port"
    cpus_per_worker: float = 1
    gpus_per_worker: float = 0
    retries: int = 3  # Ray: times a task is retried after its worker died
    max_failures: int | None = None  # stop handing out work after this many failed videos
    summary: Path | None = None  # where the JSON summary goes (default OUT_DIR/bfvr-summary.json)
    progress: bool = True
    ray_init: dict[str, Any] | None = None  # extra ray.init() arguments


@dataclass
class VideoRecord:
    key: str
    input: str
    output: str
    status: str = "pending"  # pending | running | done | skipped | failed
    reason: str | None = None
    frames: int | None = None
    seconds: float | None = None
    segments: int | None = None
    join_seconds: float | None = None  # of `seconds` (the whole video's), the join of its segments
    audio: str | None = None
    hosts: list[str] = field(default_factory=list)


@dataclass
class BatchSummary:
    """What a batch did; `as_dict()` is the JSON written to the summary file."""

    source: str
    output_dir: str
    settings: dict[str, Any]
    backend: str
    videos: list[VideoRecord]
    state: str = "running"  # running | finished | interrupted | stopped (max failures)
    started: float = field(default_factory=time.time)
    finished: float | None = None
    path: Path | None = None  # where the JSON is written

    def count(self, status: str) -> int:
        return sum(v.status == status for v in self.videos)

    @property
    def exit_code(self) -> int:
        return EXIT_SOME_FAILED if self.count("failed") or self.count("pending") else 0

    def as_dict(self) -> dict[str, Any]:
        from bfvr import __version__

        end = self.finished or time.time()
        return {
            "tool": "bfvr",
            "kind": "restore-batch",
            "version": __version__,
            "state": self.state,
            "source": self.source,
            "output_dir": self.output_dir,
            "backend": self.backend,
            "settings": self.settings,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "seconds": round(end - self.started, 3),
            "counts": {s: self.count(s) for s in ("done", "skipped", "failed", "pending")}
            | {"total": len(self.videos)},
            "exit_code": self.exit_code,
            "videos": [{k: v for k, v in vars(r).items() if v not in (None, [])} for r in self.videos],
        }

    def write(self) -> None:
        if self.path is None:
            return
        from bfvr.io.paths import make_folder, write_atomic

        make_folder(self.path.parent, "summary")
        write_atomic(self.path, json.dumps(self.as_dict(), indent=1) + "\n")

    def lines(self) -> list[str]:
        """The printed summary: one line of counts, then one per failed or unfinished video."""
        secs = (self.finished or time.time()) - self.started
        out = [
            f"{self.count('done')} done, {self.count('skipped')} skipped (complete already), "
            f"{self.count('failed')} failed"
            + (f", {self.count('pending')} not done" if self.count("pending") else "")
            + f" of {len(self.videos)} videos in {secs:.1f} s"
        ]
        out += [f"failed: {v.key}: {v.reason}" for v in self.videos if v.status == "failed"]
        if self.path is not None:
            out.append(f"summary: {self.path}")
        return out


def check_summary_path(path: Path) -> None:
    """The summary may replace only an earlier bfvr summary (nothing else is overwritten)."""
    from bfvr.io.paths import check_output_file, is_own_json

    check_output_file(path, "summary")
    if path.exists() or path.is_symlink():
        if not is_own_json(path):
            raise OutputError(
                f"'{path}' exists and is not a bfvr summary; move it away or pass --summary "
                "with another path."
            )


def output_lock_path(output: Path) -> Path:
    """The lock a segmented restore of one video holds beside its output, ``.<name>.bfvr-lock`` (a name
    too long for that is shortened, `bfvr.io.paths.short_name`)."""
    from bfvr.io.paths import short_name

    suffix = ".bfvr-lock"
    return output.parent / f".{short_name(output.name, 1 + len(suffix), output.parent)}{suffix}"


class _Lock:
    """A lock for the run (flock on a hidden file, `LOCK_NAME` in OUT_DIR by default).

    A batch holds OUT_DIR's lock exclusively: a second batch, or a segmented restore, into the same folder
    is refused instead of racing on the same outputs and temp files. A segmented restore of one video
    (`shared`) holds the folder's lock shared, so several of them may write into one folder (each has its
    own temporary names and segment folder) while a batch may not, plus its output's own lock
    (`output_lock_path`) exclusively, so two restores of one output are refused."""

    def __init__(self, folder: Path, *, name: str = LOCK_NAME, shared: bool = False,
                 busy: str | None = None) -> None:
        import errno
        import fcntl
        import re
        import stat

        from bfvr.io.paths import make_folder

        make_folder(folder)
        self.path = folder / name
        self.shared = shared
        for _ in range(10):  # a run releasing the lock may remove the file between our open and flock
            try:  # never through a link: O_NOFOLLOW fails on one
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError as e:
                if not os.path.lexists(self.path):  # nothing there: the folder refuses a new file
                    raise OutputError(
                        f"cannot write into the output folder '{folder}' ({e.strerror or type(e).__name__}); "
                        "choose a writable location."
                    ) from None
                why = "a symbolic link" if e.errno == errno.ELOOP else f"not usable ({e.strerror})"
                raise OutputError(
                    f"the batch lock '{self.path}' is {why}; bfvr does not write through it, so move it "
                    "away and run again."
                ) from None
            try:
                fcntl.flock(self.fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except OSError:
                os.close(self.fd)
                raise OutputError(
                    busy or f"another bfvr batch or segmented restore is writing to '{folder}' (it holds "
                    f"{self.path}); wait for it or choose another output folder."
                ) from None
            try:
                if os.path.samestat(os.lstat(self.path), os.fstat(self.fd)):
                    break
            except OSError:
                pass
            os.close(self.fd)  # removed (or replaced) by the run that released it: open the new one
        else:
            raise OutputError(f"cannot take the batch lock '{self.path}'; run again.")
        # an existing file there is a lock a killed batch left (its pid) or something bfvr did not write
        held = os.read(self.fd, 64)
        if not stat.S_ISREG(os.fstat(self.fd).st_mode) or (held and not re.fullmatch(rb"\d+\n?", held)):
            os.close(self.fd)
            raise OutputError(
                f"'{self.path}' is not a bfvr batch lock; bfvr does not write over it, so move it away "
                "and run again."
            )
        if not shared:  # one holder: its pid (shared holders write nothing, so the file stays one pid)
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        import fcntl

        try:  # only the lock file this run holds (not a file put in its place since), and only when no
            # other run holds it too (a shared lock: upgraded to exclusive first)
            if self.shared:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.path.samestat(os.lstat(self.path), os.fstat(self.fd)):
                os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)


# ---------------------------------------------------------------------------------------------- the run


def run_batch(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    settings: RestoreSettings,
    options: BatchOptions | None = None,
) -> BatchSummary:
    """Restore every video `source` names (folder, list or manifest) into `out_dir`; see the module doc."""
    options = options or BatchOptions()
    out_root = Path(os.path.abspath(Path(out_dir).expanduser()))
    jobs = collect_jobs(source, out_root, options.container)
    if not jobs:
        raise InputError(
            f"no videos found in '{source}' (files ending in "
            f"{', '.join(sorted(VIDEO_SUFFIXES)[:8])}, ...); give a folder of videos, a list or a "
            "manifest."
        )
    summary_path = Path(options.summary).expanduser() if options.summary else out_root / SUMMARY_NAME
    check_summary_path(summary_path)
    log.info("batch: %d videos from %s into %s", len(jobs), source, out_root)
    return run_jobs(jobs, out_root, settings, options, source=str(source), summary_path=summary_path)


def run_segmented(
    inp: str | os.PathLike[str],
    out: str | os.PathLike[str],
    settings: RestoreSettings,
    options: BatchOptions,
    *,
    fps: float | None = None,
) -> BatchSummary:
    """Restore one video in segments (`options.segments` or `segment_seconds`) in parallel and join them."""
    from bfvr.io.writer import output_kind, prepare_output

    out_path = Path(os.path.abspath(Path(out).expanduser()))
    output_kind(out_path)
    prepare_output(out_path, options.overwrite, create=False, inputs=[inp])
    job = Job(input=Path(inp), output=out_path, key=out_path.name, fps=fps)
    summary_path = Path(options.summary).expanduser() if options.summary else None
    if summary_path is not None:
        check_summary_path(summary_path)
    return run_jobs(
        [job], out_path.parent, settings, options, source=str(inp), summary_path=summary_path, single=True
    )


def run_jobs(
    jobs: list[Job],
    out_root: Path,
    settings: RestoreSettings,
    options: BatchOptions,
    *,
    source: str,
    summary_path: Path | None,
    single: bool = False,
) -> BatchSummary:
    from bfvr.io import open_video

    if options.container not in CONTAINERS:
        raise ConfigError(f"--container {options.container!r} is not one of: {', '.join(CONTAINERS)}.")
    records = {j.key: VideoRecord(j.key, str(j.input), str(j.output)) for j in jobs}
    summary = BatchSummary(
        source=source,
        output_dir=str(out_root),
        settings=settings.describe(),
        backend=_backend_name(options),
        videos=list(records.values()),
        path=summary_path,
    )
    if single:  # one video in segments: other outputs in the folder may be written meanwhile, not this one
        locks = [_Lock(out_root, shared=True)]
        out = jobs[0].output
        try:
            locks.append(_Lock(out_root, name=output_lock_path(out).name, busy=(
                f"another bfvr restore is writing '{out}' (it holds {output_lock_path(out)}); wait for it "
                "or choose another output.")))
        except BaseException:
            locks[0].release()
            raise
    else:
        locks = [_Lock(out_root)]
    since = summary.started
    bars: list[Any] = []
    backend = None
    stop_now = False  # interrupted or an error: workers are stopped at once, not after their tasks
    workdirs: list[tuple[Path, bool, int]] = []  # segment folders: (path, made by this run, segments)
    stopped = None  # the interrupt (Ctrl-C, SIGTERM, SIGHUP) that ended the run
    try:
        summary.write()
        # 1. plan: open every input, skip complete outputs (no model needed for that)
        todo: list[tuple[Job, Any]] = []
        upscale = int(getattr(settings.faces, "upscale", 1) or 1)
        vbar = _bar(len(jobs), options.progress, "videos", "video", 0)
        bars.append(vbar)
        for job in jobs:
            rec = records[job.key]
            if job.error:
                _finish(rec, "failed", job.error, vbar)
                continue
            try:
                with open_video(job.input, fps=job.fps) as r:
                    info = r.info
            except BfvrError as e:
                _finish(rec, "failed", one_line(e), vbar)
                continue
            if not options.overwrite and (job.output.exists() or job.output.is_symlink()):
                why = incomplete_reason(job.output, info, settings.max_frames, upscale)
                if why is None:
                    rec.frames = expected_frames(info, settings.max_frames)
                    _finish(rec, "skipped", "complete (restored earlier)", vbar)
                    continue
                _finish(
                    rec,
                    "failed",
                    f"'{job.output}' exists but is not a complete restore of the input ({why}); "
                    "pass --overwrite to redo it or move it away",
                    vbar,
                )
                continue
            todo.append((job, info))
        summary.write()
        if todo:
            total = sum(expected_frames(i, settings.max_frames) for _, i in todo)
            fbar = _bar(total, options.progress, "frames", "frame", 1)
            bars.append(fbar)
            backend = _make_backend(settings, options, fbar)
            summary.backend = _backend_name(options, backend)
            _dispatch(todo, backend, records, summary, settings, options, since, vbar, fbar, workdirs)
        summary.state = "finished" if summary.state == "running" else summary.state
    except BaseException as e:
        stop_now = True
        if isinstance(e, (KeyboardInterrupt, SystemExit)) or type(e).__name__ == "Terminated":
            summary.state = "interrupted"
            for r in summary.videos:
                if r.status == "running":
                    r.status = "pending"
            note = (
                f"{summary.count('done') + summary.count('skipped')} videos complete are kept, "
                f"{summary.count('pending')} not done"
                + (f"; summary: {summary.path}" if summary.path else "")
                + "; rerun the same command to finish"
            )
            stopped = (e, note)
        else:
            summary.state = f"error: {one_line(e)}"
        raise
    finally:
        for b in reversed(bars):
            b.close()
        if backend is not None:
            backend.close(now=stop_now)
            for job in jobs:  # temp files of workers that died in this run (all workers are stopped now)
                remove_partials(job.output, created_since=since)
        try:
            kept = _tidy_work_dirs(workdirs, since)
        except OSError:
            kept = []
        if stopped is not None:
            e, note = stopped
            if kept:
                note += "; finished segments are kept for it in " + ", ".join(kept)
            try:
                e.batch_note = note  # the CLI prints it instead of "no output was written"
            except AttributeError:
                pass
        summary.finished = time.time()
        try:
            summary.write()
        finally:
            for lock in reversed(locks):
                lock.release()
    return summary


def _backend_name(options: BatchOptions, backend: Any = None) -> str:
    """What runs the work: the backend made (its worker count), else what the options ask for."""
    if options.ray:
        return f"ray ({options.ray})"
    workers = getattr(backend, "workers", None) or options.workers
    if backend is not None:
        from bfvr.scale.backends import InlineBackend

        return "inline" if isinstance(backend, InlineBackend) else f"{workers} processes"
    return "inline" if not workers or workers == 1 else f"{workers} processes"


def _tidy_work_dirs(workdirs: list[tuple[Path, bool, int]], since: float) -> list[str]:
    """After the run: remove the temporary segment files this run's workers left (killed mid-segment), and a
    segment folder this run made in which no segment was finished. Returns the folders kept with finished
    segments, as "'FOLDER' (k of n)"."""
    from bfvr.scale.worker import clear_work_dir

    kept = []
    for wd, made, n in workdirs:
        if not wd.is_dir():
            continue  # joined (and removed)
        for i in range(n):
            remove_partials(wd / f"seg-{i:04d}.mkv", created_since=since)
        done = sum((wd / f"seg-{i:04d}.json").is_file() for i in range(n))
        if done:
            kept.append(f"'{wd}' ({done} of {n})")
        elif made:
            clear_work_dir(wd)
    return kept


def _make_backend(settings: RestoreSettings, options: BatchOptions, fbar):
    from bfvr.scale.backends import InlineBackend, ProcessBackend, RayBackend

    if options.ray:
        return RayBackend(
            settings,
            options.ray,
            workers=options.workers,
            cpus_per_worker=options.cpus_per_worker,
            gpus_per_worker=options.gpus_per_worker,
            retries=options.retries,
            init_kwargs=options.ray_init,
        )
    workers = options.workers
    if workers is None:
        workers = 1
        if options.segments or options.segment_seconds:  # segments are for parallel work: one per core
            workers = max(1, min(os.cpu_count() or 1, options.segments or os.cpu_count() or 1))
    if workers == 1:
        return InlineBackend(settings, on_frame=fbar.update)
    return ProcessBackend(settings, workers)


def _dispatch(
    todo,
    backend,
    records,
    summary: BatchSummary,
    settings: RestoreSettings,
    options: BatchOptions,
    since: float,
    vbar,
    fbar,
    workdirs: list[tuple[Path, bool, int]] | None = None,
) -> None:
    """Hand tasks to free workers until every job is finished (see the module doc); the segment folders
    are added to `workdirs`."""
    segmenting = bool(options.segments or options.segment_seconds)
    grid = Grid(**backend.describe()["grid"]) if segmenting else None
    live = hasattr(backend, "on_frame")  # the inline backend advances the frame bar itself
    queue: deque[Task] = deque()
    parts: dict[str, dict[str, Any]] = {}  # key -> {"left": segments to go, "join": Task}
    failures = 0
    for job, info in todo:
        n = segments_for(info, options.segments, options.segment_seconds) if segmenting else 1
        base = dict(
            key=job.key,
            input=str(job.input),
            output=str(job.output),
            fps=job.fps,
            overwrite=options.overwrite,
            since=since,
        )
        count = expected_frames(info, settings.max_frames)
        segs = plan_segments(count, n, grid) if n > 1 else []
        if len(segs) <= 1:
            queue.append(Task("video", **base))
            continue
        wd = work_dir_for(job.output)
        pts = frame_pts(job.input) if info.kind != "images" else list(range(info.frame_count))
        plan = {
            "tool": "bfvr",
            "input": str(job.input),
            "size": _stat(job.input),
            "frames": count,
            "settings": settings.describe(),
            "segments": [g.as_dict() for g in segs],
        }
        made = not (wd.exists() or wd.is_symlink())
        try:
            prepare_work_dir(wd, plan)
        except (BfvrError, OSError) as e:
            _finish(records[job.key], "failed", one_line(e), vbar)
            continue
        if workdirs is not None:
            workdirs.append((wd, made, len(segs)))
        records[job.key].segments = len(segs)
        for g in segs:
            seek = pts[g.read_start] if pts is not None and len(pts) > g.read_start else None
            queue.append(Task("segment", segment=g.as_dict(), seek_pts=seek, workdir=str(wd), **base))
        parts[job.key] = {
            "left": len(segs),
            "join": Task("join", workdir=str(wd), segments=[g.as_dict() for g in segs], **base),
            "started": None,  # when its first segment was handed out
        }

    last_write = 0.0
    while queue or backend.busy:
        while queue and backend.idle and summary.state == "running":
            task = queue.popleft()
            records[task.key].status = "running"
            if task.key in parts and parts[task.key]["started"] is None:
                parts[task.key]["started"] = time.time()
            backend.submit(task)
        if not backend.busy:
            for task in queue:  # no worker is left to take them (Ray workers that can no longer start)
                if records[task.key].status not in ("failed", "done"):
                    _finish(records[task.key], "failed", "no worker left to restore it", vbar)
            break
        for res in backend.results():
            rec = records[res["key"]]
            if res.get("host") and res["host"] not in rec.hosts:
                rec.hosts.append(res["host"])
            if not live and res.get("status") == "done" and res["kind"] != "join":
                fbar.update(res.get("frames") or 0)
            if res["kind"] == "segment":
                p = parts[res["key"]]
                if res["status"] == "failed":
                    if rec.status != "failed":
                        failures += 1
                        reason = f"segment {res.get('segment')}: {res.get('reason')}"
                        _finish(rec, "failed", reason, vbar)
                        for t in [t for t in queue if t.key == res["key"]]:
                            queue.remove(t)
                    continue
                p["left"] -= 1
                if p["left"] == 0 and rec.status != "failed":
                    queue.appendleft(p["join"])  # the join first: outputs complete as early as possible
                continue
            if res["status"] == "failed":
                failures += 1
            rec.frames, rec.audio = res.get("frames"), res.get("audio")
            seconds = res.get("seconds")
            if res["kind"] == "join":  # the video took from its first segment to the end of the join
                rec.join_seconds = seconds
                if parts[res["key"]]["started"] is not None:
                    seconds = round(time.time() - parts[res["key"]]["started"], 3)
            _finish(rec, res["status"], res.get("reason"), vbar, seconds)
            if options.max_failures is not None and failures >= options.max_failures:
                summary.state = "stopped"
                queue.clear()
        if time.time() - last_write > 2.0:
            summary.write()
            last_write = time.time()


def _stat(p: Path) -> list[int] | None:
    try:
        st = p.stat()
        return [st.st_size, int(st.st_mtime)]
    except OSError:
        return None


def _finish(rec: VideoRecord, status: str, reason: str | None, vbar, seconds: float | None = None) -> None:
    rec.status, rec.reason = status, reason
    if seconds is not None:
        rec.seconds = seconds
    vbar.update(1)
    if status == "failed" and not vbar.disable:
        vbar.write(f"bfvr: failed: {rec.key}: {reason}", file=sys.stderr)


#: the bar while its rate is not known yet: no ETA
_NO_ETA = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<?{postfix}]"
#: seconds of work after the first update before the ETA is shown
SETTLE_SECONDS = 2.0


def _eta_bar_class():
    from tqdm import tqdm

    class EtaBar(tqdm):
        """A tqdm bar whose rate and ETA leave out everything up to its first update: the model loading,
        the first clip's warm-up, the first segment or video of a worker (extrapolated, that start made the
        first ETA 30-80 minutes). No ETA until an update `SETTLE_SECONDS` after the first, then the
        average rate since the first update."""

        _first: tuple[float, float] | None = None  # (time, n) at the first update

        def update(self, n=1):
            shown = super().update(n)
            if self._first is None and self.n > 0:
                self._first = (self._time(), self.n)
            return shown

        @property
        def format_dict(self):
            d = super().format_dict
            first = self._first
            dt = self._time() - first[0] if first is not None else 0.0
            if first is None or self.n <= first[1] or dt < SETTLE_SECONDS:
                if d.get("bar_format") is None:
                    d["bar_format"] = _NO_ETA
            else:
                d["rate"] = (self.n - first[1]) / dt
            return d

    return EtaBar


def _bar(total: int, enabled: bool, desc: str, unit: str, position: int):
    """The batch's progress bars (`_eta_bar_class`)."""
    return _eta_bar_class()(
        total=total,
        disable=not enabled,
        desc=desc,
        unit=unit,
        position=position,
        dynamic_ncols=True,
        leave=True,
    )

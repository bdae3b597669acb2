"""One loaded model and the three kinds of work a batch gives it.

`Worker(settings)` loads the model once (a `Restorer`); `Worker.run(task)` then

* ``video``: restores one whole video (`Restorer.restore_video`: temp file + rename), unless its output is
  already complete (a retry, or a rerun);
* ``segment``: restores frames [start, stop) of a long video from the input frames [read_start, read_stop)
  (the context the engine needs, `bfvr.scale.plan.Grid`) into a lossless FFV1 ``.mkv`` in the video's
  hidden work folder, with the kept frames' timestamps in a JSON file beside it;
* ``join``: encodes the segments, in order and with the input's timestamps, audio and last-frame duration,
  into the output exactly as `Restorer.restore_video` writes a video, then removes the work folder.

`run` never raises for a video's own problem (corrupt input, output in the way, ...): it returns a result
dict with ``status`` "done", "skipped" or "failed" and a one-line ``reason``. The same code runs in the
driver process, in a local process pool and in a Ray actor (`bfvr.scale.backends`).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bfvr.errors import BfvrError, InputError, OutputError
from bfvr.scale.plan import (
    Grid,
    RestoreSettings,
    Segment,
    expected_frames,
    incomplete_reason,
)

#: marks a segment work folder as bfvr's (its plan); only such folders are ever cleared
WORK_PLAN = "plan.json"


@dataclass
class Task:
    """One unit of work for a `Worker` (picklable; see the module doc for the kinds)."""

    kind: str  # "video" | "segment" | "join"
    key: str  # the video's output path relative to OUT_DIR
    input: str
    output: str
    fps: float | None = None
    overwrite: bool = False
    #: when this run started (epoch s): bfvr temp files older than it are left over from an earlier run
    since: float = 0.0
    segment: dict[str, int] | None = None  # Segment.as_dict() of a "segment" task
    seek_pts: int | None = None  # pts of the segment's first input frame (None: read from the start)
    workdir: str | None = None  # the video's segment folder ("segment" and "join")
    segments: list[dict[str, int]] = field(default_factory=list)  # all segments ("join")

    @property
    def label(self) -> str:
        return self.key if self.kind != "segment" else f"{self.key} [segment {self.segment['index']}]"


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split()).rstrip(".")


def work_dir_for(output: Path) -> Path:
    """The hidden folder beside `output` holding its segments while they are restored (a name too long
    for that is shortened, `bfvr.io.paths.short_name`)."""
    from bfvr.io.paths import short_name

    suffix = ".bfvr-segments"
    return output.parent / f".{short_name(output.name, 1 + len(suffix), output.parent)}{suffix}"


def frame_pts(path: str | os.PathLike[str]) -> list[int] | None:
    """The display-order pts of every video frame, from the packets (demux only, no decoding); None when
    some packet has no pts (then a segment is found by decoding from the start)."""
    import av

    try:
        with av.open(str(path), mode="r") as c:
            st = c.streams.video[0]
            pts = []
            for pkt in c.demux(st):
                if pkt.size == 0 and pkt.pts is None:
                    continue
                if pkt.pts is None:
                    return None
                pts.append(int(pkt.pts))
    except (av.FFmpegError, OSError, IndexError, ValueError):
        return None
    return sorted(pts)


class Worker:
    """A model loaded once, restoring videos, segments and joins (`run`)."""

    def __init__(self, settings: RestoreSettings) -> None:
        self.settings = settings
        self.restorer = settings.restorer()

    # ------------------------------------------------------------------ what the driver asks first
    def describe(self) -> dict[str, Any]:
        """Where a video may be cut for this model (`Grid`), and who this worker is."""
        grid = Grid.of_engine(self.restorer.engine())
        faces = self.settings.faces
        if faces is not None:
            # the tracker's look-ahead (smoothing, gaps, confirmation) both ways, plus two model clips
            la = max(int(np.ceil(3 * faces.sigma)) if faces.smooth else 0, faces.max_gap, faces.min_hits - 1)
            grid = grid.for_faces(2 * la + 2 * self.restorer.engine().clip_len)
        return {
            "grid": asdict(grid),
            "model": self.restorer.name,
            "device": str(self.restorer.device),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }

    # ------------------------------------------------------------------ the work
    def run(self, task: Task, on_frame: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Do `task`; the result says "done" / "skipped" / "failed" (with a one-line reason), never raises for
        a problem of the video itself. `on_frame(k)` is called as k more output frames are written."""
        t0 = time.perf_counter()
        try:
            res = getattr(self, f"_{task.kind}")(task, on_frame)
        except BfvrError as e:
            res = {"status": "failed", "reason": one_line(e)}
        except Exception as e:  # a bug or a library error on this video: reported, the batch goes on
            res = {"status": "failed", "reason": f"internal error ({type(e).__name__}: {one_line(e)})"}
        res.update(
            key=task.key,
            kind=task.kind,
            seconds=round(time.perf_counter() - t0, 3),
            host=socket.gethostname(),
            pid=os.getpid(),
        )
        if task.kind == "segment":
            res["segment"] = task.segment["index"]
        return res

    def _upscale(self) -> int:
        return int(getattr(self.settings.faces, "upscale", 1) or 1)

    def _probe(self, task: Task):
        from bfvr.io import open_video

        with open_video(task.input, fps=task.fps) as r:
            return r.info

    def _video(self, task: Task, on_frame) -> dict[str, Any]:
        s, out = self.settings, Path(task.output)
        info = self._probe(task)
        if not task.overwrite and (out.exists() or out.is_symlink()):
            why = incomplete_reason(out, info, s.max_frames, self._upscale())
            if why is None:
                return {
                    "status": "skipped",
                    "reason": "complete (restored earlier)",
                    "frames": info.frame_count,
                }
            raise OutputError(
                f"'{out}' exists but is not a complete restore of the input ({why}); pass "
                "--overwrite to redo it or move it away"
            )
        cb = (lambda done, total: on_frame(1)) if on_frame is not None else None
        res = self.restorer.restore_video(
            task.input,
            out,
            overwrite=task.overwrite,
            crf=s.crf,
            preset=s.preset,
            progress=False,
            max_frames=s.max_frames,
            fps=task.fps,
            lossless=s.lossless,
            on_frame=cb,
        )
        return self._verified(out, info, res.frames, {"audio": res.audio_mode, "faces": res.faces})

    def _verified(self, out: Path, info, frames: int, extra: dict[str, Any]) -> dict[str, Any]:
        why = incomplete_reason(out, info, frames, self._upscale())
        if why is not None:
            raise OutputError(f"'{out}' was written but does not verify ({why})")
        return {"status": "done", "frames": frames, **extra}

    # ------------------------------------------------------------------ segments
    def _read_range(self, task: Task, seg: Segment) -> Iterator[tuple[np.ndarray, int | None]]:
        """Input frames [read_start, read_stop) with their pts; seeks when the start's pts is known."""
        from bfvr.io import open_video

        want = seg.read_stop - seg.read_start
        with open_video(task.input, fps=task.fps) as r:
            skip = seg.read_start
            target = task.seek_pts if seg.read_start > 0 else None
            if target is not None and hasattr(r, "seek"):
                r.seek(target)
                skip = 0
            got = 0
            for frame, p in r.frames():
                if target is not None and skip == 0 and got == 0:
                    if p is not None and p < target:
                        continue  # decoded from the key frame before the segment
                    if p != target:
                        raise InputError(
                            f"seeking in '{task.input}' landed on pts {p}, not {target}; re-export "
                            "the video (mp4/mkv) or restore it without --segments"
                        )
                if skip:
                    skip -= 1
                    continue
                yield frame, p
                got += 1
                if got == want:
                    break
            if got < want:
                raise InputError(
                    f"'{task.input}' ended after {seg.read_start + got} frames, before frame "
                    f"{seg.read_stop} of its segment; the file changed or is corrupt"
                )
            self._last_duration = r.last_duration

    def _segment(self, task: Task, on_frame) -> dict[str, Any]:
        from bfvr.io import VideoWriter, open_video
        from bfvr.io.writer import lossless_codec

        seg = Segment(**task.segment)
        wd = Path(task.workdir)
        mkv, side = wd / f"seg-{seg.index:04d}.mkv", wd / f"seg-{seg.index:04d}.json"
        done = _segment_record(side)
        if done is not None and mkv.is_file() and done.get("frames") == seg.stop - seg.start:
            try:
                with open_video(mkv) as r:
                    ok = r.info.frame_count == seg.stop - seg.start
            except InputError:
                ok = False
            if ok:
                return {
                    "status": "skipped",
                    "reason": "segment restored earlier",
                    "frames": seg.stop - seg.start,
                }
        info = self._probe(task)
        kept_pts: list[int | None] = []
        self._last_duration = None
        with VideoWriter(mkv, fps=info.fps, overwrite=True, inputs=[task.input], **lossless_codec(mkv)) as w:
            for i, (frame, p) in enumerate(self.restorer.restore_frames(self._read_range(task, seg))):
                g = seg.read_start + i
                if seg.start <= g < seg.stop:
                    w.write(frame)
                    kept_pts.append(p)
                    if on_frame is not None:
                        on_frame(1)
        if len(kept_pts) != seg.stop - seg.start:
            raise OutputError(
                f"segment {seg.index} gave {len(kept_pts)} frames, expected {seg.stop - seg.start}"
            )
        record = {
            "frames": len(kept_pts),
            "pts": kept_pts,
            "last_duration": self._last_duration,
            **seg.as_dict(),
        }
        _write_json(side, record)
        return {"status": "done", "frames": len(kept_pts)}

    def _join(self, task: Task, on_frame) -> dict[str, Any]:
        from bfvr.io import VideoWriter, open_video
        from bfvr.io.writer import lossless_codec, output_kind

        s, out, wd = self.settings, Path(task.output), Path(task.workdir)
        info = self._probe(task)
        if (not task.overwrite and (out.exists() or out.is_symlink())  # a retried join, its output in place
                and incomplete_reason(out, info, s.max_frames, self._upscale()) is None):
            clear_work_dir(wd)
            return {"status": "done", "reason": "joined by an earlier attempt",
                    "frames": expected_frames(info, s.max_frames)}
        segs = sorted((Segment(**d) for d in task.segments), key=lambda g: g.index)
        records = []
        for g in segs:
            rec = _segment_record(wd / f"seg-{g.index:04d}.json")
            if rec is None or rec.get("frames") != g.stop - g.start:
                raise OutputError(f"segment {g.index} of '{task.key}' is missing; rerun to restore it")
            records.append(rec)
        n = sum(r["frames"] for r in records)
        audio = info.has_audio and output_kind(out) == "video" and s.max_frames is None
        codec = lossless_codec(out, s.preset) if s.lossless else {}
        with VideoWriter(
            out,
            fps=info.fps,
            time_base=info.time_base,
            vfr=info.vfr,  # as Restorer.restore_video: no B-frames for uneven timestamps in mp4/mov
            audio_from=task.input if audio else None,
            crf=s.crf,
            preset=s.preset,
            overwrite=task.overwrite,
            inputs=[task.input],
            color=info.color,
            **codec,
        ) as w:
            for g, rec in zip(segs, records):
                with open_video(wd / f"seg-{g.index:04d}.mkv") as r:
                    k = 0
                    for (frame, _), p in zip(r.frames(), rec["pts"]):
                        w.write(frame, [p])
                        k += 1
                        if on_frame is not None:
                            on_frame(1)
                if k != rec["frames"]:
                    raise OutputError(
                        f"segment {g.index} of '{task.key}' holds {k} of {rec['frames']} frames; "
                        "rerun to restore it again"
                    )
            if s.max_frames is None or n < s.max_frames:  # as Restorer.restore_video: the input's last frame
                w.last_duration = records[-1].get("last_duration")
        res = self._verified(out, info, n, {"audio": w.audio_mode, "segments": len(segs)})
        clear_work_dir(wd)
        return res


def _segment_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (a new temporary file + rename, `bfvr.io.paths.write_atomic`)."""
    from bfvr.io.paths import write_atomic

    write_atomic(path, json.dumps(data, indent=1) + "\n")


def prepare_work_dir(wd: Path, plan: dict[str, Any]) -> None:
    """Make the segment folder for `plan` (kept when it holds the same plan: its finished segments are reused;
    cleared when its plan differs). Refuses a folder that is not bfvr's."""
    plan = json.loads(json.dumps(plan))  # as it reads back (tuples -> lists)
    if wd.exists():
        old = _segment_record(wd / WORK_PLAN)
        if old is None or old.get("tool") != "bfvr":
            raise OutputError(f"'{wd}' exists and is not a bfvr segment folder; move it away")
        if old == plan:
            return
        clear_work_dir(wd, keep=True)
    wd.mkdir(parents=True, exist_ok=True)
    _write_json(wd / WORK_PLAN, plan)


def clear_work_dir(wd: Path, keep: bool = False) -> None:
    """Delete a segment folder's own files (segments, their JSON, temp files, the plan), then the folder."""
    import re

    own = re.compile(r"(seg-\d{4}\.(mkv|json)|plan\.json|\..*\.partial.*)")
    if not wd.is_dir():
        return
    for e in os.scandir(wd):
        if own.fullmatch(e.name) and e.is_file(follow_symlinks=False):
            os.unlink(e.path)
        elif own.fullmatch(e.name) and e.is_dir(follow_symlinks=False):
            shutil.rmtree(e.path, ignore_errors=True)
    if not keep:
        try:
            wd.rmdir()
        except OSError:
            pass  # something else is in it: left as it is

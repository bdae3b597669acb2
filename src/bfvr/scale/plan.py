"""What a batch restores and where: inputs, output paths, complete outputs, segments of a long video.

Inputs (`collect_jobs`):

* a folder: every file below it whose suffix is a video's (`VIDEO_SUFFIXES`), hidden names skipped, in
  sorted order; outputs mirror the paths relative to the folder;
* a list (any other text file, e.g. ``LIST.txt``): one path per line (a video file, GIF or a folder of
  PNG/JPG frames), relative to the list's folder; blank lines and ``#`` comments skipped;
* a manifest (``*.jsonl``): one JSON object per line with ``input`` (or ``path``, as `bfvr prepare` writes),
  optionally ``output`` (a path inside OUT_DIR) and ``fps`` (of a frame folder); ``"kept": false`` records
  are skipped.

Listed inputs mirror their paths relative to the list's folder (or, when some lie outside it, to the
deepest folder holding them all). The output suffix is the chosen container's.

Segments (`plan_segments`): a long video is cut at frame boundaries on the engine's clip grid, and each
segment is restored with the context frames the engine needs on both sides (`Grid`), so that joining
the segments gives exactly the frames one process gives (see docs/scale.md for the derivation).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from bfvr.errors import ConfigError, InputError, OutputError
from bfvr.io.reader import VIDEO_SUFFIXES, fps_problem  # VIDEO_SUFFIXES: the one set of video suffixes
from bfvr.models import DEFAULT_MODEL

#: --container choices and the output suffix each gives ("" = a folder of PNG frames)
CONTAINERS = {"mp4": ".mp4", "mov": ".mov", "mkv": ".mkv", "png": ""}


@dataclass
class RestoreSettings:
    """Everything a worker needs to rebuild the same `Restorer` and write the same outputs (picklable)."""

    model: Any = DEFAULT_MODEL  # a name from `bfvr models`, or a ready (picklable) ClipModel
    device: str = "auto"
    precision: str = "auto"
    weights: str | None = None
    offline: bool = False
    clip_len: int | None = None
    overlap: int | None = None
    keep: int | None = None
    strength: float = 1.0  # input + strength * (restored - input)
    faces: Any = None  # None (whole frames: --has-aligned) or a bfvr.faces.FaceOptions (the face pipeline)
    model_options: dict[str, Any] = field(default_factory=dict)
    crf: float = 18
    preset: str = "medium"
    lossless: bool = False
    max_frames: int | None = None
    #: torch threads per worker process (None: leave torch's default; Ray sets it from the worker's CPUs)
    threads: int | None = None

    def restorer(self):
        from bfvr.api import Restorer

        if self.threads:
            import torch

            torch.set_num_threads(int(self.threads))
        return Restorer(
            self.model,
            device=self.device,
            precision=self.precision,
            weights=self.weights,
            offline=self.offline,
            has_aligned=self.faces is None,
            faces=self.faces,
            clip_len=self.clip_len,
            overlap=self.overlap,
            keep=self.keep,
            model_options=dict(self.model_options),
            progress=False,
            strength=self.strength,
        )

    def describe(self) -> dict[str, Any]:
        """The settings as JSON-able values (for the summary)."""
        faces = self.faces
        return {
            "model": self.model if isinstance(self.model, str) else getattr(self.model, "name", "?"),
            "device": self.device,
            "precision": self.precision,
            "weights": self.weights,
            "clip_len": self.clip_len,
            "overlap": self.overlap,
            "keep": self.keep,
            "strength": self.strength,
            # e.g. temporal_filter, sampling, mask (a path, as text)
            "model_options": {k: v if isinstance(v, (str, int, float, bool, type(None))) else str(v)
                              for k, v in (self.model_options or {}).items()},
            "faces": None
            if faces is None
            else {k: v for k, v in vars(faces).items() if isinstance(v, (str, int, float, bool, type(None)))},
            "crf": self.crf,
            "preset": self.preset,
            "lossless": self.lossless,
            "max_frames": self.max_frames,
        }


@dataclass
class Job:
    """One input video and where its output goes."""

    input: Path
    output: Path  # absolute
    key: str  # the output path relative to OUT_DIR (posix): the video's name in the summary
    fps: float | None = None  # frame rate of a frame-folder input
    #: why the job cannot run at all (e.g. its output name collides with another's); None = runnable
    error: str | None = None


# ---------------------------------------------------------------------------------------------- inputs


def source_kind(source: Path) -> str:
    """'folder' (a folder holding videos), 'frames' (a folder of PNG/JPG frames: one video), 'manifest',
    'list' or 'file' (one video)."""
    from bfvr.io.reader import IMAGE_SUFFIXES

    if source.is_dir():
        has_video = False
        for _root, dirs, files in os.walk(source):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            if any(Path(f).suffix.lower() in VIDEO_SUFFIXES and not f.startswith(".") for f in files):
                has_video = True
                break
        if has_video:
            return "folder"
        if any(p.suffix.lower() in IMAGE_SUFFIXES for p in source.iterdir() if p.is_file()):
            return "frames"
        return "folder"  # an empty folder: a batch of nothing, said so in the summary
    suffix = source.suffix.lower()
    if suffix == ".jsonl":
        return "manifest"
    if suffix in (".txt", ".list", ".lst"):
        return "list"
    return "file"


def _walk(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            if not f.startswith(".") and Path(f).suffix.lower() in VIDEO_SUFFIXES:
                found.append(Path(root) / f)
    return found


def _read_list(path: Path) -> list[dict[str, Any]]:
    """Records {"input": Path, "line": n, ...} of a list or manifest file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(
            f"cannot read the list '{path}' ({getattr(e, 'strerror', None) or e}); "
            "give a readable UTF-8 text file."
        ) from None
    manifest = path.suffix.lower() == ".jsonl"
    recs = []
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or (not manifest and s.startswith("#")):
            continue
        if manifest:
            try:
                r = json.loads(s)
            except json.JSONDecodeError as e:
                raise InputError(
                    f"line {n} of '{path}' is not JSON ({e.msg}); write one object per line, "
                    'e.g. {"input": "clip.mp4"}.'
                ) from None
            if not isinstance(r, dict) or not isinstance(r.get("input", r.get("path")), str):
                raise InputError(
                    f"line {n} of '{path}' has no \"input\" path; write one object per line, "
                    'e.g. {"input": "clip.mp4", "output": "clip.mp4"}.'
                )
            if r.get("kept", True) is False:
                continue
            fps = r.get("fps")
            why = None if fps is None else fps_problem(fps)
            if why:
                raise InputError(f'line {n} of \'{path}\': "fps" {fps!r} {why}; give the frame rate of a '
                                 'frame folder as a number, e.g. "fps": 25.')
            rec = {"input": r.get("input", r.get("path")), "output": r.get("output"),
                   "fps": None if fps is None else float(Fraction(str(fps)) if isinstance(fps, str) else fps)}
        else:
            rec = {"input": s, "output": None, "fps": None}
        p = Path(rec["input"]).expanduser()
        rec["input"] = p if p.is_absolute() else path.parent / p
        rec["line"] = n
        recs.append(rec)
    return recs


def _common_root(paths: list[Path], preferred: Path) -> Path:
    absolute = [Path(os.path.abspath(p)) for p in paths]
    pref = Path(os.path.abspath(preferred))
    if all(pref in p.parents for p in absolute):
        return pref
    return Path(os.path.commonpath([str(p.parent) for p in absolute])) if absolute else pref


def collect_jobs(
    source: str | os.PathLike[str], out_dir: str | os.PathLike[str], container: str = "mp4"
) -> list[Job]:
    """The jobs of a folder, list or manifest (see the module doc), in order, one per distinct input.

    Two or more inputs whose outputs would be one path (``a.mov`` and ``a.mp4`` both -> ``a.mp4``, or a
    manifest naming one output twice) all get `Job.error` (naming the inputs and the output) and are
    reported as failed, before any work; so does a job whose output leaves OUT_DIR. The others run. A
    failed colliding job's key is its output's followed by ``(from INPUT)``, so every record stays apart.
    A source that holds or lists no video at all is refused (`InputError`)."""
    from bfvr.io.paths import check_name_fits, check_not_url, check_separate, check_writable_folder

    if container not in CONTAINERS:
        raise ConfigError(f"--container {container!r} is not one of: {', '.join(CONTAINERS)}.")
    suffix = CONTAINERS[container]
    src = Path(source).expanduser()
    check_not_url(src)
    if not src.exists():
        raise InputError(f"input '{src}' does not exist; check the path.")
    kind = source_kind(src)
    if kind == "folder":
        recs = [{"input": p, "output": None, "fps": None} for p in _walk(src)]
        root = src
        if not recs:
            raise InputError(
                f"'{source}' holds no video files (files ending in {', '.join(sorted(VIDEO_SUFFIXES)[:8])}, "
                "...) and no PNG/JPG frames; give a video, a folder of videos or frames, a list (.txt) or "
                "a manifest (.jsonl)."
            )
    elif kind in ("list", "manifest"):
        recs = _read_list(src)
        if not recs:
            raise InputError(
                f"'{source}' lists no videos; write one path a line"
                + (' (a manifest: one JSON object a line, e.g. {"input": "clip.mp4"})' if kind == "manifest"
                   else "")
                + "."
            )
        root = _common_root([r["input"] for r in recs], src.parent)
    else:
        raise ConfigError(
            f"'{src}' is one video; a batch takes a folder, a list (.txt) or a manifest (.jsonl)."
        )
    out_root = Path(os.path.abspath(Path(out_dir).expanduser()))
    check_name_fits(out_root, "output folder")
    if out_root.exists() and not out_root.is_dir():
        raise OutputError(f"the output '{out_dir}' is a file; give a folder for a batch (-o OUT_DIR).")
    check_writable_folder(out_root)
    if not out_root.exists() and out_root.suffix.lower() in VIDEO_SUFFIXES:
        raise OutputError(
            f"'{source}' holds {len(recs)} video{'s' if len(recs) != 1 else ''}, so -o must be a folder, not "
            f"'{out_dir}'; give a folder for the batch (-o OUT_DIR)."
        )
    if kind == "folder":
        check_separate([src], out_root, out_is_dir=True)
    else:
        check_separate([r["input"] for r in recs], out_root, out_is_dir=True)

    jobs: list[Job] = []
    seen_inputs: set[str] = set()
    root_abs = Path(os.path.abspath(root))
    for r in recs:
        inp = Path(r["input"])
        ident = os.path.realpath(inp)
        if ident in seen_inputs:
            continue  # the same video listed twice: restored once
        seen_inputs.add(ident)
        error = None
        if r.get("output"):
            rel = Path(str(r["output"]))
            if rel.is_absolute() or ".." in rel.parts:
                error = f"its manifest output '{rel}' is not a path inside the output folder"
        else:
            rel = Path(os.path.relpath(os.path.abspath(inp), root_abs))
            rel = (
                rel.with_name(rel.name + suffix)
                if inp.is_dir() or not inp.suffix
                else rel.with_suffix(suffix)
            )
        fps = r.get("fps")
        jobs.append(
            Job(input=inp, output=out_root / rel, key=rel.as_posix(), fps=float(fps) if fps else None,
                error=error)
        )
    # outputs written by more than one input: each of those inputs fails (none silently wins)
    by_output: dict[str, list[Job]] = {}
    for j in jobs:
        if j.error is None:
            by_output.setdefault(os.path.normcase(j.key), []).append(j)
    for same in by_output.values():
        if len(same) < 2:
            continue
        names = [f"'{j.input}'" for j in same]
        names = (", ".join(names[:-1]) + " and " + names[-1]) if len(names) > 1 else names[0]
        both = "both" if len(same) == 2 else "all"
        for j in same:
            j.error = (f"the inputs {names} would {both} be written to '{j.key}', so none of them was "
                       "restored; rename one of them or give each its own manifest output")
            j.key = f"{j.key} (from {j.input})"
    return jobs


# ---------------------------------------------------------------------------------------------- outputs


def duration_tolerance(fps: float) -> float:
    """How far (s) an output's duration may be from the input's and still count as complete: mp4/mov give the
    last frame 1/fps and mkv rounds to milliseconds (measured: 0.0 ms on five shared clips, mkv and mp4)."""
    return 2.0 / max(float(fps), 1e-3) + 0.02


def expected_frames(info, max_frames: int | None) -> int:
    return info.frame_count if max_frames is None else min(max_frames, info.frame_count)


def incomplete_reason(output: Path, info, max_frames: int | None = None, upscale: int = 1) -> str | None:
    """None when `output` is a complete restore of the input described by `info` (`VideoInfo`), else why
    not: it is opened (a PNG folder: its frames counted) and its frame count, size and duration compared."""
    from bfvr.io import open_video
    from bfvr.io.paths import FRAME_NAME, FRAMES_MARKER

    if not (output.exists() or output.is_symlink()):
        return "missing"
    want = expected_frames(info, max_frames)
    if output.suffix == "":
        if not output.is_dir() or not (output / FRAMES_MARKER).is_file():
            return "not a PNG folder bfvr wrote"
        n = sum(1 for e in os.scandir(output) if FRAME_NAME.fullmatch(e.name))
        return None if n == want else f"{n} of {want} frames"
    try:
        with open_video(output) as r:
            o = r.info
    except InputError as e:
        return f"unreadable ({e})"
    slack = 0 if info.frame_count_exact else 1
    if abs(o.frame_count - want) > slack:
        return f"{o.frame_count} of {want} frames"
    if (o.width, o.height) != (info.width * upscale, info.height * upscale):
        return f"{o.width}x{o.height} frames, not {info.width * upscale}x{info.height * upscale}"
    if max_frames is None or want == info.frame_count:
        if info.duration and abs(o.duration - info.duration) > duration_tolerance(float(info.fps)):
            return f"lasts {o.duration:.3f} s, the input {info.duration:.3f} s"
    return None


def partial_files(output: Path) -> list[Path]:
    """bfvr's temporary files (or PNG folders) for `output` left by an interrupted run: the hidden
    ``.<stem>.XXXXXXXX.partial<suffix>`` names `VideoWriter` gives them."""
    import re

    from bfvr.io.paths import temp_parts

    parent = output.parent
    if not parent.is_dir():
        return []
    prefix, suffix = temp_parts(output, folder=not output.suffix)
    pat = re.compile(rf"{re.escape(prefix)}[A-Za-z0-9_]{{8}}{re.escape(suffix)}")
    try:
        return sorted(parent / e.name for e in os.scandir(parent) if pat.fullmatch(e.name))
    except OSError:
        return []


def remove_partials(output: Path, created_since: float) -> int:
    """Delete bfvr's own temporary files of `output` (see `partial_files`) that this run made: those last
    modified at or after `created_since` (epoch s, the run's start); a PNG folder only while it holds nothing
    but bfvr's frames. Files of earlier runs are left alone (bfvr never deletes what it did not create in
    the run). Returns how many."""
    import shutil

    from bfvr.io.paths import is_own_frames_dir

    n = 0
    for p in partial_files(output):
        try:
            if p.lstat().st_mtime < created_since:
                continue
            if p.is_dir() and not p.is_symlink():
                if is_own_frames_dir(p):
                    shutil.rmtree(p)
                    n += 1
            else:
                p.unlink()
                n += 1
        except OSError:
            pass
    return n


# ---------------------------------------------------------------------------------------------- segments


@dataclass(frozen=True)
class Grid:
    """Where a stream may be cut and how much context a cut needs, for one engine schedule.

    Cuts lie on multiples of `step` (clips: T - O; window: keep). A segment [b, c) is restored from the
    input frames [b - left, c + right) (clamped to the video) and its frames [b, c) are kept. `min_tail`:
    the last segment's restored stream must have at least this many frames (a shorter one would be padded
    in time, which one process would not do). `exact`: the joined frames equal one process's (whole-frame
    engine); False for the face pipeline, whose tracker state cannot be cut (context only)."""

    step: int
    left: int
    right: int
    min_tail: int = 0
    exact: bool = True

    @classmethod
    def of_engine(cls, engine) -> Grid:
        """The grid of a `ClipEngine` (see docs/scale.md for why these contexts make the join exact)."""
        sch = engine.schedule
        if sch.kind == "window":
            k, a, L = sch.keep, sch.first_kept, engine.clip_len
            return cls(step=k, left=math.ceil(a / k) * k, right=max(0, L - k - a))
        T, V = engine.clip_len, engine.overlap
        S = T - V
        # the blend chain: frames of clip k depend on clips k-1 .. k-ceil(V/S) (only k-1 when V <= S),
        # V the overlap
        return cls(step=S, left=math.ceil(V / S) * S if V else 0, right=V, min_tail=T if engine.fixed else 0)

    def for_faces(self, context: int) -> Grid:
        """The face pipeline: `context` frames of warm-up on each side, on the same grid; not exact."""
        left = max(self.left, math.ceil(context / self.step) * self.step)
        return Grid(
            step=self.step, left=left, right=max(self.right, context), min_tail=self.min_tail, exact=False
        )


@dataclass(frozen=True)
class Segment:
    """Frames [start, stop) of a video, restored from the input frames [read_start, read_stop)."""

    index: int
    start: int
    stop: int
    read_start: int
    read_stop: int

    def as_dict(self) -> dict[str, int]:
        return {
            "index": self.index,
            "start": self.start,
            "stop": self.stop,
            "read_start": self.read_start,
            "read_stop": self.read_stop,
        }


def plan_segments(n: int, segments: int, grid: Grid) -> list[Segment]:
    """Cut n frames into at most `segments` pieces of about equal length on `grid` (fewer when the video is
    too short for that many cuts; one segment = no cut)."""
    if segments < 1:
        raise ConfigError(f"--segments must be >= 1, got {segments}.")
    s = grid.step
    # a cut c needs the regular clip [c - S, c + right) inside the video, and the last segment's stream
    # [c - left, n) at least min_tail frames long
    hi = n - grid.right
    if grid.min_tail:
        hi = min(hi, n - grid.min_tail + grid.left)
    cuts: list[int] = []
    for j in range(1, segments):
        c = int(round(n * j / segments / s)) * s
        if c <= (cuts[-1] if cuts else 0) or c > hi or c >= n:
            continue
        cuts.append(c)
    bounds = [0, *cuts, n]
    out = []
    for i, (b, c) in enumerate(zip(bounds, bounds[1:])):
        out.append(Segment(i, b, c, max(0, b - grid.left), n if c == n else min(n, c + grid.right)))
    return out


def segments_for(info, segments: int | None, segment_seconds: float | None) -> int:
    """How many segments a video gets: `segments`, or one per `segment_seconds` of its duration."""
    if segment_seconds:
        dur = info.duration or info.frame_count / float(info.fps)
        return max(1, math.ceil(dur / segment_seconds - 1e-9))
    return max(1, int(segments or 1))

"""What the page does, without Gradio: the UI's temporary folder, upload checks, models, restore jobs.

Everything the UI writes lives under one folder it creates itself (`Workspace`, ``bfvr-ui-*`` in the
system temp dir or ``--temp-dir``): Gradio's upload/result cache and one sub-folder per browser
session. A session's folder is removed when its tab closes, the whole workspace when the server stops;
nothing outside it is ever deleted.

A `RestoreJob` runs `Restorer.restore_video` (then the side-by-side video and the temporal profile)
in a thread; its progress is read by the page, and `cancel()` makes the next frame's callback raise,
which unwinds through the writer: the temporary output is removed and nothing is left.
"""

from __future__ import annotations

import copy
import logging
import math
import re
import shutil
import tempfile
import threading
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from bfvr.errors import BfvrError, InputError, ModelError
from bfvr.io.reader import VIDEO_SUFFIXES, list_videos, natural_key

log = logging.getLogger(__name__)

#: what the upload box accepts: the usual video suffixes (anything FFmpeg decodes works) and zips of frames
UPLOAD_SUFFIXES = (*VIDEO_SUFFIXES, ".zip")
FACE_CHOICES = ("largest", "all", "aligned")


class Cancelled(Exception):
    """Raised inside a run when its cancel button was pressed (not a user error: a request)."""


def one_line(e: BaseException, *, replace: tuple[str, str] | None = None) -> str:
    """The error as the CLI prints it (one line), with a server path replaced by the file's name."""
    if isinstance(e, BfvrError):
        msg = " ".join(str(e).split())
    else:  # a bug: one line too, never a traceback in the page
        msg = (f"internal error ({type(e).__name__}: {' '.join(str(e).split())}); "
               "please report it (the terminal has no more detail unless BFVR_DEBUG=1).")
    if replace is not None and replace[0]:
        msg = msg.replace(replace[0], replace[1])
    return msg


# ------------------------------------------------------------------------------------------ folders

class Workspace:
    """The UI's own temporary folder: ``gradio/`` (Gradio's cache) and ``sessions/<id>/``."""

    def __init__(self, parent: str | Path | None = None) -> None:
        if parent is not None:
            Path(parent).mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="bfvr-ui-", dir=parent))
        self.gradio_dir = self.root / "gradio"
        self.sessions_dir = self.root / "sessions"
        self.gradio_dir.mkdir()
        self.sessions_dir.mkdir()
        self._lock = threading.Lock()
        self._counter = 0
        #: folders a run (or a probe) is using: `drop_old` never removes them, whatever session asks
        self._busy: set[Path] = set()
        self._ended: set[Path] = set()  # folders of sessions that ended while a run still used one

    def session(self, session_id: str | None) -> Path:
        sid = re.sub(r"[^A-Za-z0-9_-]", "_", session_id or "anonymous")[:64] or "anonymous"
        d = self.sessions_dir / sid
        d.mkdir(exist_ok=True)
        return d

    def new_dir(self, session_id: str | None, kind: str) -> Path:
        """A fresh ``<kind>-<n>`` folder in the session's folder, in use (by its caller) until `release`."""
        with self._lock:
            self._counter += 1
            d = self.session(session_id) / f"{kind}-{self._counter}"
            d.mkdir()
            self._busy.add(d)
        return d

    def release(self, d: Path) -> None:
        """The run that made `d` no longer uses it (its files stay until `drop_old` or the session ends)."""
        with self._lock:
            self._busy.discard(d)
            if d.parent in self._ended:  # the session ended while this run was writing: remove it now
                shutil.rmtree(d, ignore_errors=True)
                if not any(b.parent == d.parent for b in self._busy):
                    shutil.rmtree(d.parent, ignore_errors=True)
                    self._ended.discard(d.parent)

    def drop_old(self, session_id: str | None, kind: str, keep: Path | None = None) -> None:
        """Remove the session's earlier ``<kind>-*`` folders (the UI made them; Gradio has its own copies),
        except the ones a run still uses (two runs of one session with --concurrency 2)."""
        with self._lock:
            for d in self.session(session_id).glob(f"{kind}-*"):
                if d.is_dir() and d != keep and d not in self._busy:
                    shutil.rmtree(d, ignore_errors=True)

    def drop_session(self, session_id: str | None) -> None:
        """Remove the session's folder; a folder a run still uses stays until that run releases it."""
        with self._lock:
            d = self.session(session_id)
            if not any(b.parent == d for b in self._busy):
                shutil.rmtree(d, ignore_errors=True)
                return
            self._ended.add(d)
            for sub in d.iterdir():
                if sub not in self._busy:
                    shutil.rmtree(sub, ignore_errors=True)

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


# ------------------------------------------------------------------------------------------- inputs

@dataclass(frozen=True)
class Limits:
    max_upload_mb: float = 500.0
    max_seconds: float = 600.0
    #: the largest frame the page takes (4096x4096), checked from the file's headers before decoding
    max_frame_megapixels: float = 16.8
    #: the most pixels one run restores (width x height x frames: ~10 minutes of 1080p at 30 fps)
    max_megapixels: float = 40_000.0


def check_frame_pixels(name: str, width: int, height: int, limits: Limits) -> None:
    """Refuse (one sentence) frames larger than the page takes, before any of them is decoded."""
    mp = width * height / 1e6
    if mp > limits.max_frame_megapixels:
        raise InputError(f"the frames of '{name}' are {width}x{height} ({mp:.0f} megapixels); this page "
                         f"takes frames of up to {limits.max_frame_megapixels:g} megapixels (start bfvr ui "
                         "with a larger --max-frame-megapixels, or scale the video down).")


def check_run_pixels(name: str, width: int, height: int, frames: int, limits: Limits) -> None:
    """Refuse (one sentence) a run of more pixels (width x height x frames) than the page restores."""
    mp = width * height * frames / 1e6
    if mp > limits.max_megapixels:
        raise InputError(f"'{name}' is {frames} frames of {width}x{height} ({mp:.0f} megapixels); this page "
                         f"restores up to {limits.max_megapixels:g} megapixels in one run: set a shorter "
                         "preview (or start bfvr ui with a larger --max-megapixels).")


def header_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of the first video stream from the container and codec headers, decoding nothing;
    None when the file does not open (the reader then says why)."""
    import av

    try:
        with av.open(str(path), mode="r") as c:
            if not c.streams.video:
                return None
            cc = c.streams.video[0].codec_context
            return int(cc.width or 0), int(cc.height or 0)
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError):
        return None


def find_samples(folder: str | Path | None) -> list[Path]:
    """The video files in `folder` (sample clips the page offers), sorted by name."""
    if folder is None:
        return []
    return list_videos(Path(folder).expanduser())


def extract_frames_zip(path: Path, dest: Path, limits: Limits, name: str) -> Path:
    """Extract the PNG/JPG frames of a zip into `dest` (renamed 000000.png ... in natural order); no other
    member is written, paths inside the zip are never used as paths here."""
    from bfvr.io.reader import IMAGE_SUFFIXES

    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise InputError(f"'{name}' is not a readable zip file ({e}); give a video, a GIF or a zip of "
                         "PNG/JPG frames.") from None
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()
                   and PurePosixPath(m.filename).suffix.lower() in IMAGE_SUFFIXES
                   and not any(part.startswith((".",
                                                "__MACOSX")) for part in PurePosixPath(m.filename).parts)]
        if not members:
            raise InputError(f"'{name}' has no PNG/JPG frames; zip the "
                             "frames of one video (one image per frame).")
        total = sum(m.file_size for m in members)
        max_bytes = 4 * limits.max_upload_mb * 2**20
        if total > max_bytes:
            raise InputError(f"the frames in '{name}' unpack to {total / 2**20:.0f} "
                             f"MB; this page takes up to {max_bytes / 2**20:.0f} MB of "
                             "frames (start bfvr ui with a larger --max-upload-mb).")
        members.sort(key=lambda m: natural_key(m.filename))

        def damaged(m: zipfile.ZipInfo, e: BaseException) -> InputError:
            why = " ".join(str(e).split()) or type(e).__name__
            return InputError(f"'{name}' has a damaged member '{m.filename}' ({why}); zip the frames again.")

        from PIL import Image

        for m in members:  # every frame's size from its header, before anything is decoded
            try:
                with zf.open(m) as f, Image.open(f) as im:
                    w, h = im.size
            except Image.DecompressionBombError:  # Pillow's own limit (~179 megapixels), far above the page's
                raise InputError(f"the frame '{m.filename}' in '{name}' is larger than the "
                                 f"{limits.max_frame_megapixels:g} megapixels this page takes; scale the "
                                 "frames down.") from None
            except Image.UnidentifiedImageError:
                raise InputError(f"'{m.filename}' in '{name}' is not a readable image; zip only the PNG/JPG "
                                 "frames.") from None
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError,
                    ValueError) as e:
                raise damaged(m, e) from None
            check_frame_pixels(f"{name}: {m.filename}", w, h, limits)
        dest.mkdir(parents=True, exist_ok=True)
        for i, m in enumerate(members):
            target = dest / f"{i:06d}{PurePosixPath(m.filename).suffix.lower()}"
            try:
                with zf.open(m) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError,
                    ValueError) as e:
                raise damaged(m, e) from None
            except OSError as e:
                raise InputError(f"cannot unpack '{name}' ({e.strerror or e}); check the free space of the "
                                 "page's temporary folder.") from None
    return dest


def check_upload_size(path: Path, name: str, limits: Limits) -> None:
    size = path.stat().st_size
    if size > limits.max_upload_mb * 2**20:
        raise InputError(f"'{name}' is {size / 2**20:.0f} MB; this page accepts uploads up to "
                         f"{limits.max_upload_mb:g} MB (start bfvr ui with --max-upload-mb to change it).")


@dataclass
class Source:
    """An input ready for the reader: `path` (a file, or a folder of frames from a zip) and its info."""

    path: Path
    name: str
    info: Any  # bfvr.io.VideoInfo
    fps: float | None = None  # frame rate given to an image folder


def open_source(path: str | Path, work: Path | None, limits: Limits, *, name: str | None = None,
                frames_fps: float | None = None, check_size: bool = True) -> Source:
    """Check an upload (or sample) and probe it: `InputError` with the CLI's sentence when it is unusable."""
    from bfvr.io import probe
    from bfvr.io.reader import open_video

    p = Path(path)
    name = name or p.name
    try:
        if not p.exists():
            raise InputError(f"'{p}' does not exist; upload the file again.")
        if check_size and p.is_file():
            check_upload_size(p, name, limits)
        fps = None
        if p.suffix.lower() == ".zip":
            if work is None:
                raise InputError("a zip of frames needs a work folder.")
            p = extract_frames_zip(p, work / "frames", limits, name)
            fps = frames_fps or 25.0
            with open_video(p, fps=fps) as r:
                info = r.info
        else:
            size = header_size(p)
            if size is not None:  # a huge frame is refused before one is decoded (a small GIF can hold one)
                check_frame_pixels(name, *size, limits)
            info = probe(p)
        check_frame_pixels(name, info.width, info.height, limits)
        if info.frame_count <= 0:
            raise InputError(f"'{name}' has no video frames; give a video with at least one frame.")
    except BfvrError as e:
        raise InputError(one_line(e, replace=(str(path), name)).replace(str(p), name)) from None
    return Source(path=p, name=name, info=info, fps=fps)


def describe(info: Any) -> str:
    """One line of what the reader sees: size, fps, frames, duration, audio."""
    fps = float(info.fps)
    audio = (f"audio {info.audio_codec} {info.audio_sample_rate} Hz, {info.audio_channels} ch"
             if info.has_audio else "no audio")
    count = f"{info.frame_count}" + ("" if info.frame_count_exact else " (estimated)")
    return (f"{info.width}×{info.height} · {fps:.3g} fps · {count} frames · {info.duration:.2f} "
            f"s · {audio} · {info.kind}{' ' + info.codec if info.codec else ''}")


def read_frame(path: Path, index: int, fps: float | None = None) -> np.ndarray:
    """Frame `index` (clamped to the last frame) of a video, RGB uint8."""
    from bfvr.io.reader import open_video

    last = None
    with open_video(path, fps=fps) as r:
        for i, (f, _) in enumerate(r.frames()):
            last = f
            if i >= index:
                break
    if last is None:
        raise InputError(f"'{path.name}' has no frames.")
    return last


def preview_frames(info: Any, seconds: float | None) -> int | None:
    """The frame count of a preview of the first `seconds` (None: the whole video)."""
    if not seconds or seconds <= 0:
        return None
    n = max(1, math.ceil(seconds * float(info.fps) - 1e-6))
    return None if n >= info.frame_count else n


# ------------------------------------------------------------------------------------------- models

def model_problem(name: str) -> str | None:
    """Why model `name` cannot run here (weights missing, unknown name), or None when it can."""
    from bfvr.api import model_problem as problem

    return problem(name)


def model_table() -> list[tuple[str, str, str | None]]:
    """(name, description, problem or None) of every model the installed methods offer."""
    from bfvr.api import available_models

    return [(name, description, model_problem(name)) for name, description in available_models()]


def default_model() -> str:
    """`bfvr.api.DEFAULT_MODEL` when it can run here, else the first model that can (identity)."""
    from bfvr.api import DEFAULT_MODEL

    if model_problem(DEFAULT_MODEL) is None:
        return DEFAULT_MODEL
    for name, _, problem in model_table():
        if problem is None:
            return name
    return DEFAULT_MODEL


def takes_temporal_filter(name: str) -> bool:
    """Whether model `name` has a temporal filter whose strength the page may set (BFVR-Lite)."""
    from bfvr.models.hub import supports

    try:
        return supports(name, "temporal-filter")
    except BfvrError:  # an unknown name: the run reports it
        return False


class RestorerCache:
    """Loaded models, one per name (loading STC takes seconds; every run of the process shares it)."""

    def __init__(self, device: str = "auto") -> None:
        self.device = device
        self._lock = threading.Lock()
        self._restorers: dict[str, Any] = {}

    def get(self, name: str, faces: Any, *, strength: float = 1.0,
            temporal_filter: float | None = None) -> Any:
        """A restorer for model `name` with this run's face options (None: whole frames), `strength` and
        temporal-filter strength (None: the model's default; ignored by models without a filter)."""
        from bfvr.api import Restorer
        from bfvr.engine.base import contract_of
        from bfvr.engine.temporal import check_sigma

        problem = model_problem(name)
        if problem is not None:
            raise ModelError(f"model '{name}' is unavailable: {problem}.")
        if not 0.0 <= float(strength) <= 1.0:
            raise InputError(f"strength must be between 0 and 1, got {strength:g}.")
        tf = None  # the model's default (and a model without a filter ignores the value)
        if temporal_filter is not None and takes_temporal_filter(name):
            tf = check_sigma(temporal_filter)
        with self._lock:
            r = self._restorers.get(name)
            if r is None:
                # offline: the page never downloads weights by itself (`bfvr models download NAME` does)
                r = self._restorers[name] = Restorer(name, device=self.device, offline=True, progress=False)
        r = copy.copy(r)  # same loaded model, this run's face settings (None: whole frames) and strength
        r.has_aligned, r.faces, r.strength = faces is None, faces, float(strength)
        if tf is not None and tf != contract_of(r.model).temporal_filter:
            # this run's filter strength on a shallow copy of the model: the network stays shared
            r.model = copy.copy(r.model)
            r.model.temporal_filter = tf
        return r

    def default_temporal_filter(self, name: str) -> float | None:
        """The temporal-filter strength model `name` uses by default (loading it, once: the runs reuse it), or
        None when it has no filter the page may set or cannot be loaded here (the run then says why)."""
        from bfvr.engine.base import contract_of

        if not takes_temporal_filter(name) or model_problem(name) is not None:
            return None
        try:
            return contract_of(self.get(name, None).model).temporal_filter
        except Exception:  # noqa: BLE001 - the page still starts; a run with this model reports the error
            log.debug("model %s did not load for its default temporal filter", name, exc_info=True)
            return None


# ---------------------------------------------------------------------------------------------- jobs

@dataclass
class Settings:
    model: str
    faces: str = "largest"
    crf: float = 18
    preview_seconds: float = 0.0
    frames_fps: float | None = None
    #: 0..1: the output is input + strength * (restored - input) (`bfvr restore --strength`)
    strength: float = 1.0
    #: the model's temporal filter strength in 8-bit levels (`--temporal-filter`); None = the model's default
    temporal_filter: float | None = None

    def face_options(self) -> Any:
        if self.faces not in FACE_CHOICES:
            raise InputError(f"faces must be one of {', '.join(FACE_CHOICES)}, not {self.faces!r}.")
        if self.faces == "aligned":
            return None  # whole frames: the input is already a face crop (bfvr restore --has-aligned)
        from bfvr.faces import FaceOptions

        opts = FaceOptions(select=self.faces, crop_mode="auto")
        opts.validate()
        return opts


@dataclass
class Result:
    restored: Path
    side_by_side: Path
    profile: Path
    frames: int
    audio: bool
    settings: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def _temporal_filter_text(model: Any) -> str:
    from bfvr.engine.base import contract_of

    tf = contract_of(model).temporal_filter
    return f"{tf:g} (8-bit levels)" if tf else "off"


class RestoreJob:
    """One run in a thread: restore, side-by-side video, temporal profile. Read `stage`/`done`/`total`."""

    def __init__(self, source: Source, settings: Settings, out_dir: Path, restorers: RestorerCache,
                 limits: Limits) -> None:
        self.source, self.settings, self.out_dir = source, settings, out_dir
        self.restorers, self.limits = restorers, limits
        self.stage = "starting …"
        self.done = 0
        self.total = 0
        self.t_restore: float | None = None
        self.result: Result | None = None
        self.error: str | None = None
        self.cancelled = False
        self._finished: list[Path] = []
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bfvr-ui-restore", daemon=True)

    # -- control
    def start(self) -> RestoreJob:
        self._thread.start()
        return self

    def cancel(self) -> None:
        self._cancel.set()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _check(self, *_: object) -> None:
        if self._cancel.is_set():
            raise Cancelled()

    # -- progress
    def progress_text(self) -> str:
        if self.stage == "loading":
            return f"loading model {self.settings.model} …"
        if self.stage in ("restoring", "side-by-side"):
            what = "restoring" if self.stage == "restoring" else "writing the side-by-side video"
            if not self.t_restore or not self.done:
                return f"{what}: 0/{self.total} frames"
            dt = max(time.perf_counter() - self.t_restore, 1e-6)
            rate = self.done / dt
            left = (self.total - self.done) / rate if rate > 0 else float("nan")
            return f"{what}: {self.done}/{self.total} frames · {rate:.1f} frames/s · {left:.0f} s left"
        if self.stage == "profile":
            return "drawing the temporal profile …"
        return self.stage

    # -- work
    def _run(self) -> None:
        try:
            self._work()
            self.stage = "done"
        except Cancelled:
            self.cancelled = True
            self.stage = "cancelled"
            self._remove_partial()
        except BaseException as e:  # noqa: BLE001 - reported in the page as one line
            self.error = one_line(e, replace=(str(self.source.path), self.source.name))
            self.stage = "failed"
            self._remove_partial()

    def _remove_partial(self) -> None:
        # the writers remove their own temporary files when a run stops; what this run already finished
        # (the restored video when the side-by-side step is cancelled) is removed too: no half result
        for f in self._finished:
            f.unlink(missing_ok=True)

    def _work(self) -> None:
        from bfvr.metrics.pictures import profile_image, side_by_side_video

        s, src, info = self.settings, self.source, self.source.info
        t0 = time.perf_counter()
        max_frames = preview_frames(info, s.preview_seconds)
        n = info.frame_count if max_frames is None else max_frames
        seconds = n / float(info.fps)
        if seconds > self.limits.max_seconds + 1e-6:
            raise InputError(f"'{src.name}' lasts {info.duration:.1f} s; this page restores up "
                             f"to {self.limits.max_seconds:g} s: set a preview of at most that "
                             "many seconds (or start bfvr ui with a larger --max-seconds).")
        check_run_pixels(src.name, info.width, info.height, n, self.limits)
        faces = s.face_options()
        self.stage = "loading"
        self._check()
        restorer = self.restorers.get(s.model, faces, strength=s.strength, temporal_filter=s.temporal_filter)
        t_load = time.perf_counter() - t0
        self._check()
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(src.name).stem)[:60] or "video"
        restored = self.out_dir / f"{stem}_restored.mp4"
        self.total, self.done = n, 0
        self.t_restore = time.perf_counter()
        self.stage = "restoring"

        def on_frame(done: int, total: int) -> None:
            self.done = done
            self._check()

        res = restorer.restore_video(src.path, restored, crf=s.crf, max_frames=max_frames, fps=src.fps,
                                     on_frame=on_frame)
        t_rest = time.perf_counter() - self.t_restore
        self._finished.append(restored)
        self._check()
        # side by side: input | restored (the library function `bfvr compare` calls)
        self.stage = "side-by-side"
        self.done, self.total, self.t_restore = 0, res.frames, time.perf_counter()
        side = self.out_dir / f"{stem}_side_by_side.mp4"
        t1 = time.perf_counter()

        def on_frames(k: int) -> None:
            self.done += k
            self._check()

        side_by_side_video([src.path, restored], side, labels=["input", f"restored ({restorer.name})"],
                           max_frames=res.frames, crf=s.crf, on_frames=on_frames)
        t_side = time.perf_counter() - t1
        self._finished.append(side)
        self.stage = "profile"
        self._check()
        t2 = time.perf_counter()
        scale = max(1, min(4, 256 // max(res.frames, 1)))
        img = profile_image([src.path, restored], max_frames=res.frames, labels=["input", "restored"],
                            scale=scale)
        import cv2

        profile = self.out_dir / f"{stem}_profile.png"
        self._finished.append(profile)
        cv2.imwrite(str(profile), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        t_prof = time.perf_counter() - t2
        settings = {
            "input": src.name, "input video": describe(info), "model": restorer.name,
            "device": str(restorer.device), "precision": restorer.precision, "faces": s.faces,
            "crf": s.crf, "strength": restorer.strength,
            "temporal filter": _temporal_filter_text(restorer.model),
            "preview": f"first {res.frames} frames (audio left out)" if max_frames else "whole video",
            "frames restored": res.frames, "audio": "copied" if res.audio else "none",
        }
        if src.fps:
            settings["frame rate of the zipped frames"] = src.fps
        timings = {"load model s": round(t_load, 2), "restore s": round(t_rest, 2),
                   "restore frames/s": round(res.frames / t_rest, 2) if t_rest > 0 else 0.0,
                   "side-by-side s": round(t_side, 2), "profile s": round(t_prof, 2),
                   "total s": round(time.perf_counter() - t0, 2)}
        self.result = Result(restored=restored, side_by_side=side, profile=profile, frames=res.frames,
                             audio=res.audio, settings=settings, timings=timings)

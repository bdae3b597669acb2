"""The library API the CLI calls: load a model once, restore videos and clips.

```python
from bfvr import Restorer
r = Restorer("identity")                       # or "stc"; device="auto", precision="auto"
r.restore_video("in.mp4", "out.mp4", crf=18)   # streaming: any length, same fps/timestamps/audio
restored = r.restore_clip(frames_uint8_NHWC)   # a clip already in memory
```

Faces: with `faces=None` (the library default: the input is already a face crop) whole frames go
through the clip engine (resized to the model's canvas and back when it has one, like the official STC
script). `bfvr restore` turns the face pipeline on unless `--has-aligned` is given.
`faces` may be a stream transformer `f(model, frames) -> frames` (frames uint8 [H, W, 3], one out per
one in, in order), or `True` / a `bfvr.faces.FaceOptions` to use `bfvr.faces.restore_faces_stream`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bfvr.errors import DependencyError
from bfvr.io import VideoInfo, VideoWriter, open_video
from bfvr.io.paths import check_not_url
from bfvr.io.writer import h264_size_ok, lossless_codec, output_kind, prepare_output

FaceHook = Callable[[Any, Iterable[np.ndarray]], Iterable[np.ndarray]]


@dataclass
class RestoreResult:
    """What `Restorer.restore_video` did."""

    output: Path
    frames: int
    seconds: float
    input_info: VideoInfo
    audio: bool
    #: what the face pipeline did (`FacePipeline.stats`: "detector", "tracks", "frames_with_face", ...), or
    #: None when it did not run (whole frames restored)
    faces: dict | None = None
    #: "copied", "re-encoded" (to AAC) or None (no audio written)
    audio_mode: str | None = None

    @property
    def fps(self) -> float:
        """Processing speed in frames per second (wall clock, including decode and encode)."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class Restorer:
    """A loaded restoration model plus the streaming pipeline around it.

    `model` is a name from `bfvr.models.hub` (`bfvr models` lists them) or a ready `ClipModel`.
    `device`: auto | cpu | cuda | cuda:N | mps. `precision`: auto | fp32 | bf16 | fp16 (see
    `bfvr.engine.device`). `weights`: a local weights file (else the model's cache/download);
    `offline=True` never touches the network. `clip_len`/`overlap`/`blend` tune the clip engine (`keep`: centre
    frames kept per call by a sliding-window model, 1 = its official schedule);
    `model_options` go to the model builder; `faces` is the face-pipeline hook (module doc).
    """

    def __init__(self, model: str | Any = "identity", *, device: str = "auto", precision: str = "auto",
                 weights: str | os.PathLike[str] | None = None, offline: bool = False,
                 faces: FaceHook | bool | Any | None = None, clip_len: int | None = None,
                 overlap: int | None = None, keep: int | None = None, blend: str = "cosine", chunk: int = 8,
                 model_options: dict[str, Any] | None = None, progress: bool = True) -> None:
        from bfvr.engine.device import resolve_device, resolve_precision

        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        if isinstance(model, str):
            from bfvr.models.hub import load_model

            self.model = load_model(model, device=self.device, weights=str(weights) if weights else None,
                                    precision=self.precision, offline=offline, **(model_options or {}))
        else:
            self.model = model
        self.faces = faces
        self.clip_len, self.overlap, self.keep, self.blend, self.chunk = clip_len, overlap, keep, blend, chunk
        self.progress = progress
        try:  # schedule (clip length / overlap / keep) and blend checked now, not in the middle of a video
            self.engine()
        except ValueError as e:  # a bad blend or pad name
            from bfvr.errors import ConfigError

            raise ConfigError(f"{e}.") from None
        self.face_pipeline: Any = None  # the face pipeline of the last stream (see `_face_hook`)

    @property
    def name(self) -> str:
        return str(getattr(self.model, "name", type(self.model).__name__))

    def engine(self):
        """A fresh `ClipEngine` for this model (one per stream)."""
        from bfvr.engine.chunker import ClipEngine

        return ClipEngine(self.model, clip_len=self.clip_len, overlap=self.overlap, keep=self.keep,
                          blend=self.blend, precision=self.precision, chunk=self.chunk)

    # ------------------------------------------------------------------ streams
    def _face_hook(self) -> FaceHook | None:
        f = self.faces
        if f is None or f is False or (isinstance(f, str) and f.lower() in ("off", "none", "no")):
            return None
        if callable(f) and not isinstance(f, type):
            return f
        try:
            from bfvr.faces import FaceOptions, FacePipeline
        except ImportError as e:  # pragma: no cover - depends on the faces package being present
            raise DependencyError(f"the face pipeline is not available ({e}); run without faces.") from None
        options = f if isinstance(f, FaceOptions) else None

        def hook(model: Any, frames: Iterable[np.ndarray]) -> Iterable[np.ndarray]:
            # one ClipEngine per face track, so the engine's clip length, overlap, blend and precision apply
            pipe = FacePipeline.for_model(self.engine if model is self.model else model,
                                          dataclasses.replace(options) if options is not None else None)
            self.face_pipeline = pipe  # its `stats` tell afterwards what was detected and restored
            return pipe.process(frames)

        return hook

    def restore_frames(self, frames: Iterable[tuple[np.ndarray, int | None]]) -> Iterator[tuple[np.ndarray, int | None]]:
        """Restore a stream of (frame uint8 [H, W, 3], pts); yields (frame, pts) in order, lazily."""
        from bfvr.engine.base import contract_of

        prepare = contract_of(self.model).prepare_frames
        if prepare is not None:  # the model's own input preparation of whole frames (e.g. an inpainting mask)
            frames = prepare(frames)
        hook = self._face_hook()
        if hook is None:
            yield from self.engine().run(frames)
            return
        pts_q: deque[int | None] = deque()

        def only_frames() -> Iterator[np.ndarray]:
            for f, p in frames:
                pts_q.append(p)
                yield f

        for out in hook(self.model, only_frames()):
            yield np.asarray(out), pts_q.popleft()

    def restore_clip(self, frames: np.ndarray) -> np.ndarray:
        """Restore a clip in memory: uint8 [N, H, W, 3] RGB -> uint8 [N, H, W, 3]."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 [N, H, W, 3], got {frames.dtype} {frames.shape}")
        out = [f for f, _ in self.restore_frames((f, i) for i, f in enumerate(frames))]
        return np.stack(out) if out else frames[:0].copy()

    # ------------------------------------------------------------------ files
    def restore_video(self, inp: str | os.PathLike[str], out: str | os.PathLike[str], *, overwrite: bool = False,
                      crf: float = 18, preset: str = "medium", progress: bool | None = None,
                      max_frames: int | None = None, fps: float | None = None,
                      lossless: bool = False,
                      on_frame: Callable[[int, int], None] | None = None) -> RestoreResult:
        """Restore `inp` (video file, GIF or PNG/JPG folder) into `out` (.mp4/.mov/.mkv, or a folder of PNGs
        when it has no suffix), streaming, with the input's timestamps and its audio (copied).

        `max_frames` stops early (a preview); `fps` is the frame rate of an image-folder input.
        `lossless` stores the restored RGB frames exactly (FFV1 in .mkv, RGB H.264 in .mp4/.mov; `crf` unused).
        `on_frame(done, total)` is called after each written frame (a front end's progress bar); an
        exception it raises stops the run (a cancel button) and propagates.
        The output appears only when complete; on any error (or cancel) nothing is left behind.
        """
        show = self.progress if progress is None else progress
        self.face_pipeline = None
        out_path = Path(out).expanduser()
        output_kind(out_path)  # fail on a bad suffix before decoding anything
        in_path = Path(inp).expanduser()
        check_not_url(inp)
        prepare_output(out_path, overwrite, create=False, inputs=[in_path])
        t0 = time.perf_counter()
        with open_video(in_path, fps=fps) as reader:
            info = reader.info
            up = getattr(self.faces, "upscale", 1) or 1
            if output_kind(out_path) == "video" and not h264_size_ok(info.width * up, info.height * up):
                from bfvr.errors import ConfigError

                raise ConfigError(f"--upscale {up} makes {info.width * up}x{info.height * up} frames, larger than "
                                  "the H.264 encoder takes (about 16000x16000); use a smaller --upscale or a PNG "
                                  "folder output.")
            total = info.frame_count if max_frames is None else min(max_frames, info.frame_count)
            audio = info.has_audio and output_kind(out_path) == "video" and max_frames is None
            n = 0
            codec = lossless_codec(out_path, preset) if lossless else {}
            with VideoWriter(out_path, fps=info.fps, time_base=info.time_base,
                             audio_from=in_path if audio else None, crf=crf, preset=preset,
                             overwrite=overwrite, inputs=[in_path], **codec) as writer:
                bar = _progress(total, show, f"restore ({self.name})")
                try:
                    for frame, pts in self.restore_frames(_limit(reader.frames(), max_frames)):
                        writer.write(frame, [pts])
                        n += 1
                        bar.update(1)
                        if on_frame is not None:
                            on_frame(n, total)
                    if max_frames is None or n < max_frames:  # the input's last frame lasts as long as before
                        writer.last_duration = reader.last_duration
                finally:
                    bar.close()
        fp = self.face_pipeline
        return RestoreResult(output=writer.path, frames=n, seconds=time.perf_counter() - t0, input_info=info,
                             audio=audio, faces=dict(fp.stats) if fp is not None else None,
                             audio_mode=writer.audio_mode)


def _limit(it: Iterable[tuple[np.ndarray, int | None]], n: int | None) -> Iterator[tuple[np.ndarray, int | None]]:
    if n is None:
        yield from it
        return
    for i, x in enumerate(it):
        if i >= n:
            return
        yield x


def _progress(total: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total or None, disable=not enabled, unit="frame", desc=desc, dynamic_ncols=True,
                smoothing=0.1, leave=True)

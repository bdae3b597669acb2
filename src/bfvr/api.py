"""The library API the CLI calls: load a model once, restore videos and clips.

```python
from bfvr import Restorer
r = Restorer("identity")                       # or "stc"; device="auto", precision="auto"
r.restore_video("in.mp4", "out.mp4", crf=18)   # streaming: any length, same fps/timestamps/audio
restored = r.restore_clip(frames_uint8_NHWC)   # a clip already in memory
```

Faces: one flag, `has_aligned`, as in `bfvr restore --has-aligned`. With `has_aligned=True` (the library
default: the input is already a face crop) whole frames go through the clip engine, resized to the model's
canvas and back when it has one, like the official STC script. With `has_aligned=False` the face pipeline
(`bfvr.faces.FacePipeline`: detection, tracking, crops through the clip engine, paste-back) runs, set up by
`faces` (a `bfvr.faces.FaceOptions`; None = its defaults). `bfvr restore` runs the face pipeline unless
`--has-aligned` is given.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bfvr.io import VideoInfo, VideoWriter, open_video
from bfvr.io.paths import check_not_url
from bfvr.io.writer import h264_size_ok, lossless_codec, output_kind, prepare_output
from bfvr.models import DEFAULT_MODEL  # noqa: F401  (re-exported: front ends ask the API, not the registry)

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from bfvr.faces import FaceOptions


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
    `offline=True` never touches the network. `clip_len`/`overlap`/`blend` tune the clip engine (`keep`:
    centre frames kept per call by a sliding-window model, 1 = its official schedule);
    `model_options` go to the model builder. `strength` (0..1) blends the restoration with the input:
    ``input + strength * (restored - input)``. `has_aligned`: the frames are face crops already (whole frames
    restored) or not (the face pipeline, with the `faces` options), see the module doc.
    """

    def __init__(self, model: str | Any = "identity", *, device: str = "auto", precision: str = "auto",
                 weights: str | os.PathLike[str] | None = None, offline: bool = False,
                 has_aligned: bool = True, faces: FaceOptions | None = None, clip_len: int | None = None,
                 overlap: int | None = None, keep: int | None = None, blend: str = "cosine", chunk: int = 8,
                 model_options: dict[str, Any] | None = None, progress: bool = True,
                 strength: float = 1.0) -> None:
        from bfvr.engine.device import resolve_device, resolve_precision

        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        t0 = time.perf_counter()
        if isinstance(model, str):
            from bfvr.models.hub import load_model

            self.model = load_model(model, device=self.device, weights=str(weights) if weights else None,
                                    precision=self.precision, offline=offline, **(model_options or {}))
        else:
            self.model = model
        if has_aligned and faces is not None:
            from bfvr.errors import ConfigError

            raise ConfigError("face options apply to the face pipeline; pass has_aligned=False with them.")
        self.has_aligned, self.faces = bool(has_aligned), faces
        self.clip_len, self.overlap, self.keep, self.blend, self.chunk = clip_len, overlap, keep, blend, chunk
        self.strength = strength
        self.progress = progress
        try:  # schedule (clip length / overlap / keep) and blend checked now, not in the middle of a video
            self.engine()
        except ValueError as e:  # a bad blend or pad name
            from bfvr.errors import ConfigError

            raise ConfigError(f"{e}.") from None
        self.face_pipeline: Any = None  # the face pipeline of the last stream (has_aligned=False)
        log.info("model %s on %s, precision %s, %s, ready in %.2f s", self.name, self.device, self.precision,
                 "whole frames" if self.has_aligned else "face pipeline", time.perf_counter() - t0)

    @property
    def name(self) -> str:
        return str(getattr(self.model, "name", type(self.model).__name__))

    def engine(self):
        """A fresh `ClipEngine` for this model (one per stream)."""
        from bfvr.engine.chunker import ClipEngine

        return ClipEngine(self.model, clip_len=self.clip_len, overlap=self.overlap, keep=self.keep,
                          blend=self.blend, precision=self.precision, chunk=self.chunk,
                          strength=self.strength)

    #: the background pass (whole frames through a model that takes any size): clip length and overlap; short
    #: clips keep a 1080p pass within about 1.5 GB
    BACKGROUND_CLIP, BACKGROUND_OVERLAP = 10, 2

    def background_runner(self):
        """A push/flush runner restoring whole frames at their own size (the face pipeline's background)."""
        from bfvr.engine.chunker import ClipEngine
        from bfvr.faces.pipeline import ClipRunner

        return ClipRunner(ClipEngine(self.model, clip_len=self.BACKGROUND_CLIP,
                                     overlap=self.BACKGROUND_OVERLAP, blend=self.blend,
                                     precision=self.precision, native=True, strength=self.strength))

    # ------------------------------------------------------------------ streams
    def restore_frames(self, frames: Iterable[tuple[np.ndarray, int | None]]
                       ) -> Iterator[tuple[np.ndarray, int | None]]:
        """Restore a stream of (frame uint8 [H, W, 3], pts); yields (frame, pts) in order, lazily."""
        from bfvr.engine.base import contract_of

        prepare = contract_of(self.model).prepare_frames
        if prepare is not None:  # the model's own input preparation of whole frames (e.g. an inpainting mask)
            frames = prepare(frames)
        if self.has_aligned:
            yield from self.engine().run(frames)
            return
        from bfvr.faces import FacePipeline

        # one ClipEngine per face track, so the engine's clip length, overlap, keep, blend and precision
        # apply; the pipeline's `stats` tell afterwards what was detected and restored
        options = dataclasses.replace(self.faces) if self.faces is not None else None
        background = None
        if (options is None or options.background_model) and contract_of(self.model).whole_frames:
            background = self.background_runner
        pipe = self.face_pipeline = FacePipeline.for_model(self.engine, options,
                                                           background_runner=background)
        if options is not None and options.mask_shape not in pipe.paste_masks:
            from bfvr.models.hub import paste_mask_factory

            factory = paste_mask_factory(options.mask_shape, options.parsing_weights)
            if factory is not None:  # a mask a method offers (e.g. face parsing), the model not running it
                pipe.paste_masks[options.mask_shape] = factory
        pts_q: deque[int | None] = deque()

        def only_frames() -> Iterator[np.ndarray]:
            for f, p in frames:
                pts_q.append(p)
                yield f

        for out in pipe.process(only_frames()):
            yield np.asarray(out), pts_q.popleft()

    def restore_clip(self, frames: np.ndarray) -> np.ndarray:
        """Restore a clip in memory: uint8 [N, H, W, 3] RGB -> uint8 [N, H, W, 3] (`ClipEngine.restore_array`
        through `restore_frames`: the same path as a video)."""
        return self.engine().restore_array(frames, run=self.restore_frames)

    # ------------------------------------------------------------------ files
    def restore_video(self, inp: str | os.PathLike[str], out: str | os.PathLike[str], *,
                      overwrite: bool = False,
                      crf: float = 18, preset: str = "medium", progress: bool | None = None,
                      max_frames: int | None = None, fps: float | None = None,
                      lossless: bool = False,
                      on_frame: Callable[[int, int], None] | None = None) -> RestoreResult:
        """Restore `inp` (video file, GIF or PNG/JPG folder) into `out` (.mp4/.mov/.mkv, or a folder of PNGs
        when it has no suffix), streaming, with the input's timestamps and its audio (copied).

        `max_frames` stops early (a preview); `fps` is the frame rate of an image-folder input.
        `lossless` stores the restored RGB frames exactly (FFV1 in .mkv, RGB H.264 in .mp4/.mov; `crf`
        unused).
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
            up = 1 if self.has_aligned or self.faces is None else self.faces.upscale
            if output_kind(out_path) == "video" and not h264_size_ok(info.width * up, info.height * up):
                from bfvr.errors import ConfigError

                raise ConfigError(f"--upscale {up} makes {info.width * up}x{info.height * up} "
                                  "frames, larger than the H.264 encoder takes (about "
                                  "16000x16000); use a smaller --upscale or a PNG folder output.")
            total = info.frame_count if max_frames is None else min(max_frames, info.frame_count)
            audio = info.has_audio and output_kind(out_path) == "video" and max_frames is None
            n = 0
            codec = lossless_codec(out_path, preset) if lossless else {}
            with VideoWriter(out_path, fps=info.fps, time_base=info.time_base, vfr=info.vfr,
                             audio_from=in_path if audio else None, crf=crf, preset=preset,
                             overwrite=overwrite, inputs=[in_path], color=info.color, **codec) as writer:
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


def _limit(it: Iterable[tuple[np.ndarray, int | None]],
           n: int | None) -> Iterator[tuple[np.ndarray, int | None]]:
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


# ------------------------------------------------------------------ models


def available_models() -> list[tuple[str, str]]:
    """(name, description) of every model the installed methods offer (`bfvr models`), the default first."""
    from bfvr.models.hub import available_models as specs

    return [(s.name, s.description) for s in specs()]


def model_problem(name: str) -> str | None:
    """Why model `name` cannot run here (an unknown name, weights not on this machine), or None when it can
    (checked without loading or downloading anything)."""
    from bfvr.errors import BfvrError
    from bfvr.models import weights as W
    from bfvr.models.hub import get_spec

    try:
        spec = get_spec(name)
        if spec.weights is None:
            return None
        path = W.cached_path(spec.weights)
    except BfvrError as e:
        return " ".join(str(e).split())
    if path.is_file():
        return None
    return (f"its weights are not on this machine (run `bfvr models download {name}` or put the file at "
            f"{path})")

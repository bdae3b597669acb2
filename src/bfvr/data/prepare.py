"""Dataset preparation from the STC paper: (A) face-proportion crop, (B) orientation filter with 68-point
landmarks, (C) text filter through an OCR backend (pluggable), (D) motion intensity. One JSON line per
clip in a manifest. See docs/data.md for the exact rules."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bfvr.errors import DependencyError, InputError

log = logging.getLogger(__name__)

LEFT_EYE_OUTER, RIGHT_EYE_OUTER, NOSE_TIP = 36, 45, 30  # iBUG 68-point indices (image left / right)


@dataclass
class PrepareOptions:
    """Every threshold of `bfvr prepare` (defaults = the STC preprocessing where it is known)."""

    size: int = 512                  # output frames are size x size
    expand: float = 1.3              # each Haar box is scaled by this around its centre
    # square crop (padded with black where it leaves the frame); False = stretch
    keep_aspect: bool = True
    detect_every: int = 5            # Haar detection on every k-th frame for the union box
    check_every: int = 5             # 68-point orientation check on every k-th cropped frame
    ratio_range: tuple[float, float] = (0.4, 2.5)
    max_no_face: float = 0.5         # drop when more than this fraction of checked frames has no face
    motion_threshold: float = 15.0   # |gray difference| above this (0..255) counts as a moving pixel
    motion_size: int = 128           # frames are resized to this before differencing
    min_motion: float = 0.0          # drop clips whose mean moving fraction is below this (0 = keep all)
    text_backend: str = "auto"       # auto | none | rapidocr | paddleocr | easyocr
    text_score: float = 0.95         # drop when any text box on the first frame scores above this
    crf: float = 15                  # x264 CRF of the written crops
    max_frames: int | None = None    # use only the first N frames of each clip
    keep_dropped: bool = False       # keep crops of dropped clips (in OUT/dropped/)
    extra: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------- (A) crop
def union_box(boxes: list[np.ndarray], expand: float) -> np.ndarray | None:
    """The union of the boxes [x0, y0, x1, y1], each first scaled by ``expand`` around its centre."""
    if not boxes:
        return None
    b = np.asarray(boxes, np.float64)
    c = (b[:, :2] + b[:, 2:]) / 2
    half = (b[:, 2:] - b[:, :2]) * expand / 2
    return np.concatenate([(c - half).min(0), (c + half).max(0)])


def drop_outliers(boxes: list[np.ndarray], size_range: tuple[float, float] = (0.6, 1.6)) -> list[np.ndarray]:
    """Boxes whose side (sqrt of area) is within ``size_range`` x the median side: one Haar false positive
    three times the face's size (seen on lp_source_s13) would otherwise inflate the union."""
    if len(boxes) < 3:
        return list(boxes)
    b = np.asarray(boxes, np.float64)
    side = np.sqrt(np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None))
    med = np.median(side)
    keep = (side >= size_range[0] * med) & (side <= size_range[1] * med)
    return [bx for bx, k in zip(boxes, keep) if k]


def crop_box(box: np.ndarray, width: int, height: int, keep_aspect: bool = True) -> np.ndarray:
    """Integer crop rectangle [x0, y0, x1, y1] for the union ``box``.

    keep_aspect: a square of side max(box w, box h) centred on the box, shifted to stay inside the frame
    where possible (it can extend past the frame only when it is larger than the frame; those parts are
    padded black). Otherwise the box clipped to the frame (the official crop, later stretched)."""
    x0, y0, x1, y1 = box
    if not keep_aspect:
        return np.array([max(0, int(np.floor(x0))), max(0, int(np.floor(y0))),
                         min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1)))])
    side = int(np.ceil(max(x1 - x0, y1 - y0)))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2

    def place(c: float, n: int) -> int:
        s = int(round(c - side / 2))
        if side <= n:
            s = min(max(s, 0), n - side)
        else:  # larger than the frame: centre the frame in it
            s = -((side - n) // 2)
        return s

    sx, sy = place(cx, width), place(cy, height)
    return np.array([sx, sy, sx + side, sy + side])


def apply_crop(frame: np.ndarray, rect: np.ndarray, size: int) -> np.ndarray:
    """Crop ``rect`` (may leave the frame: padded black) and resize to size x size."""
    import cv2

    h, w = frame.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in rect)
    pad = (max(0, -y0), max(0, y1 - h), max(0, -x0), max(0, x1 - w))
    if any(pad):
        frame = cv2.copyMakeBorder(frame, *pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        x0, x1, y0, y1 = x0 + pad[2], x1 + pad[2], y0 + pad[0], y1 + pad[0]
    crop = frame[y0:y1, x0:x1]
    interp = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interp)


# ---------------------------------------------------------------------------------- (B) orientation
class Landmarks68:
    """dlib HOG face detector + the 68-point shape predictor (model file located by bfvr.faces)."""

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError:
            raise DependencyError("dlib is not installed; `pip install dlib-bin` for the orientation filter "
                                  "(or pass --no-orientation).") from None
        from bfvr.faces.detect import dlib_model_dir

        mdir = dlib_model_dir()
        if mdir is None or not (mdir / "shape_predictor_68_face_landmarks.dat").exists():
            raise DependencyError("dlib's 68-point model is missing; `pip install "
                                  "face-recognition-models` (or set BFVR_DLIB_MODELS) "
                                  "for the orientation filter, or pass --no-orientation.")
        self._det = dlib.get_frontal_face_detector()
        self._sp = dlib.shape_predictor(str(mdir / "shape_predictor_68_face_landmarks.dat"))
        self._dlib = dlib

    def __call__(self, rgb: np.ndarray, detect_size: int = 320) -> np.ndarray | None:
        """68 points [68, 2] of the largest face, or None when no face is found. The detector sees a copy
        whose longer side is ``detect_size`` (faces fill most of a face-proportion crop); the shape
        predictor runs on the full-resolution frame."""
        import cv2

        h, w = rgb.shape[:2]
        s = min(1.0, detect_size / max(h, w))
        small = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA) if s < 1 else rgb
        rects = self._det(small, 0)
        if len(rects) == 0:
            rects = self._det(small, 1)  # small faces: one upsampling step
        if len(rects) == 0:
            return None
        r = max(rects, key=lambda r: r.width() * r.height())
        r = self._dlib.rectangle(round(r.left() / s), round(r.top() / s), round(r.right() / s),
                                 round(r.bottom() / s))
        shape = self._sp(rgb, r)
        return np.array([(p.x, p.y) for p in shape.parts()], np.float32)


def orientation(points: np.ndarray) -> tuple[float, bool]:
    """(side ratio, nose inside the eyes' span) from 68 points.

    ratio = (nose_x - x36) / (x45 - nose_x): the horizontal distance from the outer corner of the eye on
    the image left (36) to the nose tip (30), over the nose tip to the outer corner of the other eye
    (45). A frontal face gives ~1; turning the head moves it towards 0 or infinity."""
    x36, x45, xn = (float(points[LEFT_EYE_OUTER, 0]), float(points[RIGHT_EYE_OUTER, 0]),
                    float(points[NOSE_TIP, 0]))
    inside = min(x36, x45) < xn < max(x36, x45)
    den = x45 - xn
    ratio = (xn - x36) / den if abs(den) > 1e-6 else float("inf")
    return ratio, inside


# ------------------------------------------------------------------------------------------ (C) text
#: backends tried by ``text_backend("auto")``, in order (Python module of each)
OCR_BACKENDS = {"rapidocr": "rapidocr_onnxruntime", "paddleocr": "paddleocr", "easyocr": "easyocr"}


def installed_ocr(name: str = "auto") -> str | None:
    """The backend `text_backend(name)` would load (without loading it), or None when none is installed."""
    import importlib.util

    for n in (list(OCR_BACKENDS) if name == "auto" else [name]):
        if n in OCR_BACKENDS and importlib.util.find_spec(OCR_BACKENDS[n]) is not None:
            return n
    return None


def text_backend(name: str = "auto", threads: int = 1
                 ) -> tuple[str, Callable[[np.ndarray], list[tuple[str, float]]]] | None:
    """An OCR backend ``(name, fn(rgb) -> [(text, score), ...])``, or None when none is installed.

    Tried in order for "auto": rapidocr (``rapidocr-onnxruntime``: PaddleOCR's PP-OCRv4 detection and
    recognition models as ONNX inside its wheel, so nothing is downloaded), paddleocr, easyocr (both
    download their models at first use). The scores are the recognition confidences of every detected
    text line."""
    import importlib.util

    if name not in ("auto", "none", *OCR_BACKENDS):
        raise DependencyError(f"unknown OCR backend '{name}'; choose auto, none, {', '.join(OCR_BACKENDS)}.")
    names = list(OCR_BACKENDS) if name == "auto" else [name]
    for n in names:
        if n == "none" or importlib.util.find_spec(OCR_BACKENDS[n]) is None:
            continue
        if n == "rapidocr":
            from rapidocr_onnxruntime import RapidOCR  # type: ignore

            # text_score 0: report every recognised line with its score (the threshold is ours)
            engine = RapidOCR(text_score=0.0, intra_op_num_threads=threads, inter_op_num_threads=1)

            def run(rgb, engine=engine):
                res, _ = engine(np.ascontiguousarray(rgb[..., ::-1]))  # ndarray input is read as BGR
                return [(str(t[1]), float(t[2])) for t in res or []]

            return n, run
        if n == "paddleocr":
            from paddleocr import PaddleOCR  # type: ignore

            ocr = PaddleOCR(lang="ch")

            def run(rgb, ocr=ocr):
                res = ocr.ocr(rgb[..., ::-1].copy()) or []
                return [(str(t[1][0]), float(t[1][1])) for page in res if page for t in page]

            return n, run
        if n == "easyocr":
            import easyocr  # type: ignore

            reader = easyocr.Reader(["en", "ch_sim"], gpu=False)

            def run(rgb, reader=reader):
                return [(str(t), float(s)) for _, t, s in reader.readtext(rgb)]

            return n, run
    if name not in ("auto", "none"):
        how = ('`pip install "bfvr[ocr]"` then `pip install --no-deps rapidocr-onnxruntime==1.4.4` '
               "(docs/data.md)"
               if name == "rapidocr" else f"`pip install {name}`")
        raise DependencyError(f"OCR backend '{name}' is not installed; install it with {how} "
                              "or use --ocr none.")
    return None


# ---------------------------------------------------------------------------------------- (D) motion
class Motion:
    """Motion intensity: mean over consecutive frame pairs of the fraction of pixels whose gray value
    changed by more than ``threshold`` (frames resized to ``size`` x ``size`` first)."""

    def __init__(self, threshold: float = 15.0, size: int = 128) -> None:
        self.threshold, self.size = threshold, size
        self._prev: np.ndarray | None = None
        self.values: list[float] = []

    def update(self, rgb: np.ndarray) -> None:
        import cv2

        g = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (self.size, self.size),
                       interpolation=cv2.INTER_AREA).astype(np.int16)
        if self._prev is not None:
            self.values.append(float((np.abs(g - self._prev) > self.threshold).mean()))
        self._prev = g

    @property
    def score(self) -> float:
        return float(np.mean(self.values)) if self.values else 0.0


# -------------------------------------------------------------------------------------------- driver
class Preparer:
    """Prepares clips one by one (keeps the detectors loaded)."""

    def __init__(self, opts: PrepareOptions | None = None, *, orientation_check: bool = True) -> None:
        from bfvr.faces.detect import HaarDetector

        self.opts = opts or PrepareOptions()
        # full-resolution Haar boxes, no landmarks: the official face-proportion step
        self.haar = HaarDetector(landmarks=False)  # on a copy of at most 640 px (boxes scaled back)
        self.landmarks = Landmarks68() if orientation_check else None
        self.ocr = text_backend(self.opts.text_backend)

    @property
    def text_status(self) -> str:
        if self.ocr:
            return f"checked with {self.ocr[0]}"
        if self.opts.text_backend == "none":
            return "not checked (--ocr none)"
        return "not checked (no OCR backend installed: see docs/data.md, e.g. rapidocr-onnxruntime)"

    def face_boxes(self, src: Path,
                   progress: Callable[[int], Any] | None = None) -> tuple[list[np.ndarray], int]:
        from bfvr.io import open_video

        o = self.opts
        boxes, checked = [], 0
        with open_video(src) as r:
            for i, (frame, _) in enumerate(r.frames()):
                if o.max_frames is not None and i >= o.max_frames:
                    break
                if i % o.detect_every == 0:
                    checked += 1
                    faces = self.haar(frame)
                    if faces:  # the most confident detection of the frame
                        boxes.append(max(faces, key=lambda f: f.score).box)
                if progress:
                    progress(1)
        return boxes, checked

    def face_rect(self, src: Path, width: int, height: int, progress: Callable[[int], Any] | None = None
                  ) -> tuple[np.ndarray | None, dict[str, int]]:
        """Step (A): the crop rectangle of clip `src` (width x height) from its Haar boxes (None: no face),
        and the detection counts recorded in the manifest."""
        boxes, n_det = self.face_boxes(src, progress)
        good = drop_outliers(boxes)
        stats = {"frames_checked": n_det, "frames_with_face": len(boxes),
                 "outlier_boxes": len(boxes) - len(good)}
        box = union_box(good, self.opts.expand)
        return (None if box is None else crop_box(box, width, height, self.opts.keep_aspect)), stats

    def prepare(self, src: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                overwrite: bool = False, progress: Callable[[int], Any] | None = None) -> dict[str, Any]:
        """Crop, check and write one clip; return its manifest record."""
        from bfvr.io import VideoWriter, open_video, probe

        log.info("preparing %s", src)

        src, out_dir = Path(src), Path(out_dir)
        o = self.opts
        info = probe(src)
        rec: dict[str, Any] = {"name": src.stem, "source": str(src), "path": None, "size": [o.size, o.size],
                               "source_size": [info.width, info.height], "fps": _fps(info.fps), "frames": 0,
                               "crop_box": None, "scores": {}, "kept": False, "reasons": []}
        seen = [0]  # frames of the first pass, counted on the bar only when no second pass follows
        rect, rec["scores"]["faces"] = self.face_rect(src, info.width, info.height,
                                                      lambda k: seen.__setitem__(0, seen[0] + k))
        if rect is None:
            rec["reasons"].append("no face found in "
                                  f"{rec['scores']['faces']['frames_checked']} checked frames")
            if progress:
                progress(seen[0])
            return rec
        rec["crop_box"] = [int(v) for v in rect]
        dst = out_dir / f"{src.stem}.mp4"
        motion = Motion(o.motion_threshold, o.motion_size)
        ratios: list[float] = []
        bad_frames: list[int] = []
        no_face: list[int] = []
        checked = 0
        first = None
        n = 0
        with open_video(src) as r, VideoWriter(dst, fps=info.fps, crf=o.crf, overwrite=overwrite,
                                                   color=info.color) as w:
            for i, (frame, _) in enumerate(r.frames()):
                if o.max_frames is not None and i >= o.max_frames:
                    break
                crop = apply_crop(frame, rect, o.size)
                w.write(crop)
                n += 1
                if first is None:
                    first = crop
                motion.update(crop)
                if self.landmarks is not None and i % o.check_every == 0:
                    checked += 1
                    pts = self.landmarks(crop)
                    if pts is None:
                        no_face.append(i)
                    else:
                        ratio, inside = orientation(pts)
                        ratios.append(ratio)
                        if not inside or not (o.ratio_range[0] <= ratio <= o.ratio_range[1]):
                            bad_frames.append(i)
                if progress:
                    progress(1)
        rec["frames"] = n
        rec["path"] = str(dst)
        if self.landmarks is not None:
            fin = [x for x in ratios if np.isfinite(x)]
            rec["scores"]["orientation"] = {
                "frames_checked": checked, "frames_without_face": len(no_face),
                "ratio_min": round(min(fin), 4) if fin else None,
                "ratio_max": round(max(fin), 4) if fin else None,
                "frames_out_of_range": bad_frames[:50], "n_out_of_range": len(bad_frames)}
            if bad_frames:
                rec["reasons"].append(f"orientation: {len(bad_frames)} of {checked} checked frames have the "
                                      f"eye/nose ratio outside [{o.ratio_range[0]}, {o.ratio_range[1]}] or "
                                      f"the nose outside the eyes (first: frame {bad_frames[0]})")
            if checked and len(no_face) / checked > o.max_no_face:
                rec["reasons"].append(f"no landmarks in {len(no_face)} of {checked} checked frames")
        else:
            rec["scores"]["orientation"] = "not checked"
        if self.ocr is None or first is None:
            rec["scores"]["text"] = "not checked"
        else:
            found = self.ocr[1](first)
            rec["scores"]["text"] = {"backend": self.ocr[0], "boxes": [[t, round(s, 4)] for t, s in found]}
            hits = [(t, s) for t, s in found if s > o.text_score]
            if hits:
                t, sc = max(hits, key=lambda h: h[1])
                rec["reasons"].append(f"text: {t!r} (score {sc:.3f} > {o.text_score}) on the first frame")
        rec["scores"]["motion"] = round(motion.score, 5)
        if motion.score < o.min_motion:
            rec["reasons"].append(f"motion {motion.score:.4f} < {o.min_motion}")
        rec["kept"] = not rec["reasons"]
        if not rec["kept"]:
            if o.keep_dropped:
                (out_dir / "dropped").mkdir(exist_ok=True)
                moved = out_dir / "dropped" / dst.name
                shutil.move(dst, moved)
                rec["path"] = str(moved)
            else:
                dst.unlink(missing_ok=True)
                rec["path"] = None
        return rec


def _fps(f) -> str:
    return f"{f.numerator}/{f.denominator}" if f.denominator != 1 else str(f.numerator)


#: beside the manifest while a prepare runs: the clips finished so far, so a rerun resumes (hidden)
PARTIAL_STATE = ".manifest.jsonl.bfvr-partial"


def _stat_of(path: str | os.PathLike[str] | None) -> list[int] | None:
    try:
        st = os.stat(path, follow_symlinks=False) if path else None
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns] if st is not None else None


def _read_state(state: Path, settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The clips an earlier, unfinished prepare with the same settings completed (by absolute source path),
    from its state file; {} when there is none or it is of other settings. A file there that bfvr did not
    write is refused."""
    from bfvr.errors import OutputError
    from bfvr.io.paths import is_own_json

    if not (state.exists() or state.is_symlink()):
        return {}
    if not is_own_json(state):
        raise OutputError(f"'{state}' is not the state bfvr keeps for resuming a prepare; bfvr does not "
                          "write over it, so move it away and run again.")
    data = json.loads(state.read_text(encoding="utf-8"))
    if data.get("kind") != "prepare-partial" or data.get("settings") != settings:
        return {}
    clips = data.get("clips")
    return {c["key"]: c for c in clips if isinstance(c, dict) and isinstance(c.get("key"), str)} \
        if isinstance(clips, list) else {}


def _resumable(clip: dict[str, Any] | None, src: Path) -> dict[str, Any] | None:
    """The record of `clip` (from `_read_state`) when its source and its output are as that run left them
    (same size and modification time), else None (the clip is prepared again)."""
    if clip is None or clip.get("source") != _stat_of(src) or not isinstance(clip.get("record"), dict):
        return None
    rec = clip["record"]
    if rec.get("path") is not None and clip.get("output") != _stat_of(rec["path"]):
        return None
    return rec


def prepare_clips(inputs: list[Path], out_dir: str | os.PathLike[str], opts: PrepareOptions | None = None, *,
                  orientation_check: bool = True, overwrite: bool = False,
                  progress: Callable[[int], Any] | None = None,
                  on_record: Callable[[dict[str, Any]], Any] | None = None) -> Path:
    """Prepare every input clip into ``out_dir`` and write ``out_dir/manifest.jsonl``; returns its path.

    Resumable: after every clip the finished records go to the hidden state file `PARTIAL_STATE`, with the
    size and modification time of the source and of the crop written. A run that stops (an error, Ctrl-C,
    SIGTERM) keeps it; a rerun with the same settings (without --overwrite) reuses the clips whose source and
    crop are unchanged (`on_record` gets them with ``"resumed": True``) and prepares the rest. The state
    file is removed when the manifest is written. Crops in the way that the state does not vouch for are
    refused as before (bfvr replaces only its own videos, and only with --overwrite)."""
    from bfvr.errors import OutputError
    from bfvr.io.paths import (
        check_distinct_outputs,
        check_output_folder,
        check_replaceable,
        check_separate,
        make_folder,
        publish,
        temp_beside,
        write_atomic,
    )

    out_dir = Path(out_dir)
    if not inputs:
        raise InputError("no input videos; give a video file or a folder of videos.")
    check_separate(inputs, out_dir, out_is_dir=True)
    check_output_folder(out_dir)
    # a crop is named by its clip's stem (kept: OUT/<stem>.mp4, dropped: OUT/dropped/<stem>.mp4): two clips
    # with one stem would write one crop (and the manifest would name it twice); refused before any work
    check_distinct_outputs((Path(src), [out_dir / f"{Path(src).stem}.mp4"]) for src in inputs)
    manifest = out_dir / "manifest.jsonl"
    if (manifest.exists() or manifest.is_symlink()) and not overwrite:
        raise OutputError(f"'{manifest}' already exists; pass --overwrite "
                          "to replace it or choose another folder.")
    check_replaceable(manifest, "file")  # never a link, nor a folder
    prep = Preparer(opts, orientation_check=orientation_check)
    options = {k: v for k, v in asdict(prep.opts).items() if k != "extra"}
    settings = json.loads(json.dumps({"options": options, "orientation_check": orientation_check,
                                      "text_filter": prep.text_status}))
    state = out_dir / PARTIAL_STATE
    earlier = _read_state(state, settings)
    if overwrite:
        earlier = {}
    created = [d for d in (out_dir.absolute(), *out_dir.absolute().parents) if not d.exists()]
    make_folder(out_dir)
    tmp = None
    clips: list[dict[str, Any]] = []
    try:
        try:
            tmp = temp_beside(manifest)  # a new file (never an existing one or a link), renamed when complete
        except OSError as e:
            raise OutputError(f"cannot write into the output folder '{out_dir}' "
                              f"({e.strerror or type(e).__name__}); choose a writable location.") from None
        with open(tmp, "w") as f:
            for src in inputs:
                key = os.path.abspath(src)
                rec = _resumable(earlier.get(key), Path(src))
                resumed = rec is not None
                if resumed:
                    if progress:
                        from bfvr.io import probe

                        n = probe(src).frame_count
                        progress(min(n, prep.opts.max_frames) if prep.opts.max_frames else n)
                else:
                    rec = prep.prepare(src, out_dir, overwrite=overwrite, progress=progress)
                    rec["text_filter"] = prep.text_status
                    rec["options"] = options
                f.write(json.dumps(rec) + "\n")
                f.flush()
                clips.append({"key": key, "source": _stat_of(src), "output": _stat_of(rec.get("path")),
                              "record": rec})
                write_atomic(state, json.dumps({"tool": "bfvr", "kind": "prepare-partial",
                                                "settings": settings, "clips": clips}) + "\n")
                if on_record:
                    on_record({**rec, "resumed": True} if resumed else rec)
        publish(tmp, manifest)
    except BaseException as e:  # an error or an interrupt: no partial manifest, no folder made and left empty
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        done = len(clips) or sum(os.path.abspath(src) in earlier for src in inputs)  # what the state holds
        if done:
            note = (f"{done} of {len(inputs)} clips are done and kept (state: '{state}'); rerun the same "
                    "command to finish")
            try:
                e.batch_note = note  # the CLI says it for an interrupt
            except AttributeError:
                pass
        for d in created:  # deepest first
            try:
                d.rmdir()
            except OSError:
                break
        raise
    try:
        state.unlink()
    except OSError:
        pass
    return manifest


def _manifest_record(path: Path, n: int, line: str) -> dict[str, Any]:
    """Line `n` of a manifest as a record, checked where readers rely on it: a JSON object whose "path" is
    a string and whose "frames" (when given) is a whole number of 0 or more; else one sentence."""
    where = f"line {n} of the manifest '{path}'"
    try:
        r = json.loads(line)
    except ValueError as e:
        raise InputError(f"{where} is not JSON ({getattr(e, 'msg', e)}); write one object per line, as "
                         "`bfvr prepare` does.") from None
    if not isinstance(r, dict):
        raise InputError(f"{where} is not a JSON object; write one object per line, as `bfvr prepare` does.")
    if "path" in r and r["path"] is not None and not isinstance(r["path"], str):
        raise InputError(f'{where} has "path" {r["path"]!r}, not a file path.')
    frames = r.get("frames")
    if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int) or frames < 0):
        raise InputError(f'{where} has "frames" {frames!r}, not a whole number of frames; fix the line or '
                         "run `bfvr prepare` again.")
    return r


def read_manifest(path: str | os.PathLike[str], kept_only: bool = True) -> list[dict[str, Any]]:
    """The records of a manifest (only kept clips by default); relative paths resolve against its folder."""
    path = Path(path)
    recs = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read the manifest '{path}' ({getattr(e, 'strerror', None) or e}); give the "
                         "manifest.jsonl `bfvr prepare` wrote.") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        r = _manifest_record(path, n, line)
        if kept_only and not r.get("kept", True):
            continue
        if r.get("path") and not Path(r["path"]).is_absolute():
            r["path"] = str(path.parent / r["path"])
        recs.append(r)
    return recs

"""Face pipeline: detectors, tracking/smoothing, shot cuts, crop/align, paste-back, the streaming pipeline.

Real clips from ../shared/data/faces (a handful of frames each); synthetic clips made here.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
import torch

from bfvr.engine.base import IdentityModel
from bfvr.errors import ConfigError
from bfvr.faces import (
    ClipRunner,
    FaceOptions,
    FacePipeline,
    FaceTracker,
    NoFaceWarning,
    ShotCutDetector,
    available_detectors,
    make_detector,
)
from bfvr.faces.align import FFHQ_TEMPLATE_512, align_matrix, proportion_matrix, template_for, warp_crop
from bfvr.faces.detect import Face
from bfvr.faces.paste import paste_back, soft_mask
from helpers import run_cli


def _decode(path, n, size=None):
    """First n frames of a video as RGB uint8 (PyAV directly; small and independent of bfvr.io)."""
    import av

    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            a = f.to_ndarray(format="rgb24")
            out.append(cv2.resize(a, size, interpolation=cv2.INTER_AREA) if size else a)
            if len(out) >= n:
                break
    return out


_CACHE: dict = {}


def clip(faces_dir, name, n=12, size=None):
    key = (name, n, size)
    if key not in _CACHE:
        _CACHE[key] = _decode(faces_dir / f"{name}.mp4", n, size)
    return [f.copy() for f in _CACHE[key]]


def psnr(a, b):
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def box_motion(boxes):
    """Mean absolute per-frame change of the box coordinates (px)."""
    b = np.asarray(boxes, np.float64)
    return float(np.abs(np.diff(b, axis=0)).mean())


# ---------------------------------------------------------------- alignment and crops

def test_align_matrix_recovers_a_known_similarity():
    # put the template into a frame with a known rotation/scale/shift, then align back
    ang, s, t = np.deg2rad(17), 0.6, np.array([300.0, 120.0])
    r = s * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    pts = FFHQ_TEMPLATE_512 @ r.T + t
    m = align_matrix(pts, (512, 512))
    back = pts @ m[:, :2].T + m[:, 2]
    assert np.abs(back - FFHQ_TEMPLATE_512).max() < 0.05
    assert np.allclose(template_for((256, 256)), FFHQ_TEMPLATE_512 / 2)


def test_proportion_crop_is_an_expanded_square_centred_on_the_box():
    box = np.array([100, 50, 200, 170], np.float64)  # 100 x 120, centre (150, 110)
    m = proportion_matrix(box, (512, 512), expand=1.3)
    side = 120 * 1.3
    # boxes are in pixel-edge coordinates (pixel i spans [i, i+1]), matrices map pixel centres: the box
    # centre (pixel-centre coordinates 149.5, 109.5) goes to the canvas centre (255.5, 255.5)
    c = m[:, :2] @ [149.5, 109.5] + m[:, 2]
    assert np.allclose(c, [255.5, 255.5])
    assert np.isclose(m[0, 0], 512 / side) and np.isclose(m[1, 1], 512 / side) and m[0, 1] == 0


def test_warp_then_paste_back_is_nearly_lossless_and_exact_outside():
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (360, 480, 3), dtype=np.uint8), (0, 0), 3)
    m = proportion_matrix(np.array([180, 100, 300, 240.0]), (512, 512))
    crop = warp_crop(frame, m, (512, 512))
    mask = soft_mask((512, 512))
    out = paste_back(frame, crop, m, mask)
    assert out is not frame and out.shape == frame.shape
    # outside the crop square: bit-exact
    sq = np.ones(frame.shape[:2], bool)
    sq[100 - 40:240 + 40, 180 - 40:300 + 40] = False
    assert np.array_equal(out[sq], frame[sq])
    assert psnr(out, frame) > 45


def test_soft_mask_is_zero_at_the_border_one_inside_and_smooth():
    m = soft_mask((512, 512), "box", 0.04, 0.06)
    assert m[0].max() == 0 and m[:, -1].max() == 0
    assert m[256, 256] == pytest.approx(1.0, abs=1e-4)
    row = m[256]
    assert np.all(np.diff(row[:256]) >= -1e-6)  # rises monotonically towards the centre
    assert np.abs(np.diff(row)).max() < 0.05  # no hard step anywhere
    e = soft_mask((256, 256), "ellipse")
    assert e[0, 0] == 0 and e[128, 128] == pytest.approx(1.0, abs=1e-3)


# ---------------------------------------------------------------- tracking

def _f(box, lm=None):
    return Face(box=np.asarray(box, np.float32), score=1.0, landmarks=lm)


def _run_tracker(tr, per_frame, cuts=()):
    got = []
    for i, faces in enumerate(per_frame):
        got += tr.update(i, faces, i in cuts)
    got += tr.flush()
    return got


def test_tracker_smooths_a_still_jittering_box_below_one_pixel():
    rng = np.random.default_rng(1)
    base = np.array([200, 150, 320, 290.0])
    dets = [[_f(base + rng.normal(0, 3, 4))] for _ in range(60)]
    raw = _run_tracker(FaceTracker(smooth=False), dets)
    sm = _run_tracker(FaceTracker(sigma=4), dets)
    assert [t for t, _ in sm] == list(range(60))
    raw_b = [s[0].box for _, s in raw]
    sm_b = [s[0].box for _, s in sm]
    assert box_motion(sm_b) < 1.0 < box_motion(raw_b)
    assert box_motion(sm_b) < box_motion(raw_b) / 4


def test_tracker_follows_a_moving_face_without_lag():
    dets = [[_f([10 + 3 * i, 50, 110 + 3 * i, 150])] for i in range(50)]
    out = _run_tracker(FaceTracker(sigma=4), dets)
    for t, states in out[12:-12]:  # full window: a centred linear motion is reproduced exactly
        assert np.allclose(states[0].box[0], 10 + 3 * t, atol=1e-6)


def test_tracker_fills_gaps_keeps_ids_and_handles_enter_leave_and_false_positives():
    a = lambda i: _f([100 + i, 100, 200 + i, 200])  # noqa: E731
    b = lambda i: _f([400, 100 + i, 480, 180 + i])  # noqa: E731
    frames = []
    for i in range(40):
        faces = []
        if i not in (10, 11, 12):  # face A missed for 3 frames: filled
            faces.append(a(i))
        if 20 <= i < 35:  # face B enters at 20, leaves at 35
            faces.append(b(i))
        if i == 5:  # a one-off false positive: dropped (min_hits)
            faces.append(_f([600, 300, 640, 340]))
        frames.append(faces)
    out = _run_tracker(FaceTracker(sigma=2, max_gap=6), frames)
    ids = {}
    for t, states in out:
        for s in states:
            ids.setdefault(s.track_id, []).append(t)
    assert len(ids) == 2
    tracks = sorted(ids.values(), key=len)
    assert tracks[1] == list(range(40))  # A: never dropped, gaps filled
    assert tracks[0] == list(range(20, 35))  # B: exactly while visible
    st = {t: s for t, ss in out for s in ss if s.track_id == 0}
    assert not st[11].observed and np.allclose(st[11].raw_box, [111, 100, 211, 200])


def test_tracker_resets_at_a_shot_cut_and_is_streaming():
    dets = [[_f([100, 100, 200, 200])] if i < 30 else [_f([110, 100, 210, 200])] for i in range(60)]
    tr = FaceTracker(sigma=4)
    got = []
    for i, faces in enumerate(dets):
        ready = tr.update(i, faces, cut=(i == 30))
        # a frame becomes final exactly `lookahead` frames later: bounded look-ahead
        assert [t for t, _ in ready] == ([i - tr.lookahead] if i >= tr.lookahead else [])
        got += ready
    got += tr.flush()
    ids = {s.track_id for t, ss in got for s in ss}
    assert len(ids) == 2 and tr.cuts == [30]
    # smoothing does not mix the shots: the box just before and after the cut is the shot's own box
    assert np.allclose(got[29][1][0].box, [100, 100, 200, 200])
    assert np.allclose(got[30][1][0].box, [110, 100, 210, 200])


def test_shot_cut_detector_on_real_clips(faces_dir):
    a = clip(faces_dir, "lp_source_s32", 10, (320, 320))
    b = clip(faces_dir, "musetalk_sun", 10, (320, 320))
    d = ShotCutDetector()
    flags = [d(f) for f in a + b]
    assert flags == [False] * 10 + [True] + [False] * 9


# ---------------------------------------------------------------- detectors

@pytest.mark.parametrize("name", ["dlib", "opencv", "mediapipe"])
def test_detector_finds_the_face_in_a_real_frame(faces_dir, name):
    reason = available_detectors()[name]
    if reason:
        pytest.skip(f"detector {name} not usable: {reason}")
    # 1280x720, one face around (530, 408) (all three backends agree within ~15 px)
    frame = clip(faces_dir, "lp_source_s32", 1)[0]
    faces = make_detector(name)(frame)
    assert len(faces) >= 1
    f = max(faces, key=lambda x: x.area)
    assert np.linalg.norm(f.center - [530, 408]) < 40
    assert 180 < np.sqrt(f.area) < 320
    if f.landmarks is not None:
        lm = f.landmarks
        assert lm.shape == (5, 2)
        assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # image-left before image-right
        assert lm[0, 1] < lm[2, 1] < lm[3, 1]  # eyes above nose above mouth
        assert np.all((lm >= f.box[:2]) & (lm <= f.box[2:]))


def test_auto_detector_and_bad_names():
    avail = available_detectors()
    if all(avail.values()):
        pytest.skip("no detector installed")
    assert make_detector("auto").name in [n for n, r in avail.items() if not r]
    with pytest.raises(ConfigError):
        make_detector("retinaface")


# ---------------------------------------------------------------- runner

class _RecordingModel:
    """Adds 0.1 to the clip (to see which outputs come from which clip) and records clip lengths."""

    name = "rec"
    canvas = None
    device = torch.device("cpu")

    def __init__(self, clip_len, overlap):
        self.clip_len, self.overlap, self.calls = clip_len, overlap, []

    def restore_clip(self, clip):
        self.calls.append(clip.shape[0])
        return clip


@pytest.mark.parametrize("clip_len,overlap,n",
                         [(5, 2, 13), (4, 0, 9), (None, 0, 3), (6, 3, 6), (6, 3, 7), (6, 2, 3)])
def test_clip_runner_is_fifo_exact_and_uses_full_clips(clip_len, overlap, n):
    model = _RecordingModel(clip_len, overlap)
    r = ClipRunner(model, chunk=4)
    crops = [np.full((8, 8, 3), 10 * i, np.uint8) for i in range(n)]
    out = []
    for c in crops:
        out += r.push(c)
    out += r.flush()
    assert len(out) == n
    assert all(np.array_equal(a, b) for a, b in zip(out, crops))
    if clip_len:
        assert set(model.calls) == {clip_len}  # fixed-length models only ever see full clips
    else:
        assert sum(model.calls) == n


def test_clip_runner_matches_the_clip_engine():
    """The push adapter gives exactly what ClipEngine.run gives for the same stream (blend included)."""
    from bfvr.engine.chunker import ClipEngine

    class Wobble(_RecordingModel):
        def restore_clip(self, clip):  # output depends on the clip's content: the cross-fade matters
            return (clip * 0.8 + clip.mean(0, keepdim=True) * 0.2).clamp(0, 1)

    rng = np.random.default_rng(3)
    crops = [rng.integers(0, 256, (6, 6, 3), dtype=np.uint8) for _ in range(17)]
    ref = [f for f, _ in ClipEngine(Wobble(5, 2)).run((c, i) for i, c in enumerate(crops))]
    r = ClipRunner(ClipEngine(Wobble(5, 2)))
    out = [o for c in crops for o in r.push(c)] + r.flush()
    assert len(out) == len(ref) == 17
    assert all(np.array_equal(a, b) for a, b in zip(out, ref))


# ---------------------------------------------------------------- the pipeline on real clips

@pytest.mark.parametrize("name", ["lp_source_s13", "lp_source_s32", "musetalk_sun", "lp_driving_d13"])
def test_identity_restore_through_the_face_pipeline_reproduces_the_frame(faces_dir, name):
    frames = clip(faces_dir, name, 10)
    pipe = FacePipeline.for_model(IdentityModel(), FaceOptions(), record_boxes=True)
    out = list(pipe.process(iter(frames)))
    assert len(out) == len(frames) and pipe.stats["frames_with_face"] == len(frames)
    assert pipe.stats["tracks"] == 1
    p = psnr(np.stack(out), np.stack(frames))
    assert p >= 38, f"{name}: PSNR {p:.2f} dB"
    # outside the pasted crop the frame is untouched, bit for bit
    boxes = pipe.stats["boxes"][next(iter(pipe.stats["boxes"]))]
    for t, (o, f) in enumerate(zip(out, frames)):
        x0, y0, x1, y1 = boxes[t][0]
        side = max(x1 - x0, y1 - y0) * 1.3 / 2 + 2
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        keep = np.ones(f.shape[:2], bool)
        keep[max(0, int(cy - side)):int(cy + side) + 1, max(0, int(cx - side)):int(cx + side) + 1] = False
        assert np.array_equal(o[keep], f[keep])
        assert not np.array_equal(o, f) or p == float("inf")


def test_align_mode_identity_restore(faces_dir):
    frames = clip(faces_dir, "lp_source_s32", 8)
    out = list(FacePipeline.for_model(IdentityModel(), FaceOptions(crop_mode="align")).process(frames))
    assert psnr(np.stack(out), np.stack(frames)) >= 38


@pytest.mark.slow  # 16 s of CPU, OMP_NUM_THREADS=1 (measured 2026-12-06)
def test_crop_is_stable_on_a_still_head(faces_dir):
    # Haar (always installed) jitters most frame to frame (dlib's HOG boxes are quantised and may not
    # move at all on a still head); the smoothed crop must still move < 1 px per frame
    frames = clip(faces_dir, "musetalk_sun", 40)
    res = {}
    for smooth in (True, False):
        pipe = FacePipeline.for_model(IdentityModel(), FaceOptions(smooth=smooth, detector="opencv"),
                                      record_boxes=True)
        for _ in pipe.process(iter(frames)):
            pass
        (boxes,) = pipe.stats["boxes"].values()
        res[smooth] = box_motion([boxes[t][0] for t in sorted(boxes)])
    assert res[True] < 1.0
    assert res[True] < res[False] / 3


def test_no_face_video_passes_through_unchanged_with_a_warning():
    h, w = 144, 176
    frames = [np.dstack([np.tile(np.linspace(0, 255, w, dtype=np.float32), (h, 1)) * (0.5 + i / 40)] * 3)
              .clip(0, 255).astype(np.uint8) for i in range(12)]
    pipe = FacePipeline.for_model(IdentityModel(), FaceOptions(detector="opencv"))
    with pytest.warns(NoFaceWarning, match="no face"):
        out = list(pipe.process(iter(frames)))
    assert len(out) == 12 and all(np.array_equal(a, b) for a, b in zip(out, frames))


@pytest.mark.slow  # 4 s of CPU, OMP_NUM_THREADS=1 (measured 2026-12-06)
def test_two_faces_select_all_or_largest(faces_dir):
    a = clip(faces_dir, "lp_driving_d0", 8, (256, 256))
    b = clip(faces_dir, "lp_source_s32", 8, (480, 270))
    frames = []
    for fa, fb in zip(a, b):
        canvas = np.zeros((300, 800, 3), np.uint8)
        canvas[20:276, 20:276] = fa
        canvas[15:285, 300:780] = fb
        frames.append(canvas)
    counts = {}
    for sel in ("all", "largest", "center"):
        pipe = FacePipeline.for_model(IdentityModel(), FaceOptions(select=sel, draw_box=(sel == "all")),
                                      record_boxes=True)
        out = list(pipe.process(iter(frames)))
        assert len(out) == len(frames)
        counts[sel] = (pipe.stats["tracks"], pipe.stats["crops"])
        if sel == "all":
            assert not np.array_equal(out[0], frames[0])  # boxes drawn
    assert counts["all"] == (2, 16)
    assert counts["largest"] == (1, 8) and counts["center"] == (1, 8)


def test_bounded_buffer(faces_dir):
    frames = clip(faces_dir, "lp_driving_d0", 30)
    pipe = FacePipeline.for_model(_RecordingModel(6, 2), FaceOptions())
    out = list(pipe.process(iter(frames)))
    assert len(out) == 30
    # never more than the tracker's look-ahead plus one model clip of frames in memory
    assert pipe.stats["max_buffered_frames"] <= 12 + 6 + 2


def test_bad_options_raise_config_errors():
    with pytest.raises(ConfigError):
        FaceOptions(select="biggest").validate()
    with pytest.raises(ConfigError):
        FaceOptions(crop_mode="stretch").validate()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FaceOptions().validate()


# ---------------------------------------------------------------- the restore command

@pytest.mark.slow  # 7 s of CPU, OMP_NUM_THREADS=1 (measured 2026-12-06)
def test_restore_command_runs_the_face_pipeline(faces_dir, tmp_path, capsys):
    from bfvr.io import read_frames, write_video

    src = tmp_path / "in.mp4"
    write_video(src, np.stack(clip(faces_dir, "lp_source_s32", 12, (640, 360))), fps=25, crf=0)
    frames = read_frames(src)
    assert 0 == run_cli("restore", str(src), "-o", str(tmp_path / "faces.mp4"), "--model", "identity", "-q",
                        "--crf", "0")
    assert 0 == run_cli("restore", str(src), "-o", str(tmp_path / "boxes.mp4"), "--model", "identity", "-q",
                        "--crf", "0",
                        "--draw-box", "--crop-mode", "align", "--detector", "opencv", "--face-select", "all")
    faces, boxes = read_frames(tmp_path / "faces.mp4"), read_frames(tmp_path / "boxes.mp4")
    assert faces.shape == boxes.shape == frames.shape
    assert psnr(faces, frames) >= 38
    # the outline is drawn in green around the face
    diff = np.abs(boxes.astype(int) - faces.astype(int)).sum(-1) > 60
    ys, xs = np.nonzero(diff[0])
    assert diff[0].mean() > 0.002 and 150 < xs.mean() < 450 and 80 < ys.mean() < 300
    assert 0 == run_cli("restore", str(src), "-o", str(tmp_path / "up.mp4"), "--model", "identity", "-q",
                        "--upscale", "2", "--max-frames", "3")
    assert read_frames(tmp_path / "up.mp4").shape == (3, 720, 1280, 3)
    assert 0 != run_cli("restore", str(src), "-o", str(tmp_path / "bad.mp4"), "--model", "identity",
                        "--detector", "yolo")
    assert "--detector" in capsys.readouterr().err and not (tmp_path / "bad.mp4").exists()


def test_restore_command_no_face_video_passes_through_with_a_warning(tmp_path):
    from bfvr.io import read_frames, write_video

    h, w = 96, 128
    grad = [np.dstack([np.tile(np.linspace(20 + i, 230, w), (h, 1))] * 3).astype(np.uint8) for i in range(10)]
    src = tmp_path / "grad.mp4"
    write_video(src, np.stack(grad), fps=25, crf=0)
    frames = read_frames(src)
    with pytest.warns(NoFaceWarning):
        assert 0 == run_cli("restore", str(src), "-o", str(tmp_path / "out.mp4"), "--model", "identity", "-q",
                            "--crf", "0",
                            "--detector", "opencv")
    ref = tmp_path / "ref.mp4"
    assert 0 == run_cli("restore", str(src), "-o", str(ref), "--model", "identity", "-q", "--crf", "0",
                        "--has-aligned")
    # unchanged: identical to the no-face-pipeline path (same encoder)
    assert np.array_equal(read_frames(tmp_path / "out.mp4"), read_frames(ref))
    assert psnr(read_frames(ref), frames) > 40


def test_sparse_detection_is_interpolated(faces_dir):
    frames = clip(faces_dir, "lp_source_s32", 24)
    pipe = FacePipeline.for_model(IdentityModel(), FaceOptions(detect_every=5), record_boxes=True)
    out = list(pipe.process(iter(frames)))
    assert pipe.stats["frames_with_face"] == 24 and pipe.stats["tracks"] == 1
    assert psnr(np.stack(out), np.stack(frames)) >= 38


class _Brighten(_RecordingModel):
    """A 'restoration' that lifts the face by 20 levels: a hard paste would leave a 20-level step."""

    def restore_clip(self, clip):
        return (clip + 20 / 255).clamp(0, 1)


@pytest.mark.slow  # 18 s of CPU, OMP_NUM_THREADS=1 (measured 2026-12-06)
def test_paste_back_has_no_seam_and_no_boundary_flicker(faces_dir):
    frames = clip(faces_dir, "musetalk_sun", 20)
    res = {}
    for smooth in (True, False):
        run = {}
        for model in (_Brighten(None, 0), IdentityModel()):
            pipe = FacePipeline.for_model(model, FaceOptions(smooth=smooth, detector="opencv"))  # jittery
            run[model.name] = np.stack(list(pipe.process(iter(frames)))).astype(np.float32)
        d = run["rec"] - run["identity"]  # the pasted change alone (the crop's resampling cancels out)
        inner = d[(d > 15).all(-1)]
        assert inner.size and np.median(inner) == pytest.approx(20, abs=1)
        # spatially smooth: no step anywhere (a hard paste would step by 20 levels); pixels the +20 would
        # clip at 255 are left out (their change is smaller for a reason that is not the seam)
        ok = (run["identity"] < 230).all(-1)
        step = max(np.abs(np.diff(d, axis=a))[(ok[:, 1:, :] & ok[:, :-1, :]) if a == 1 else
                                              (ok[:, :, 1:] & ok[:, :, :-1])].max() for a in (1, 2))
        res[smooth] = (step, float(np.abs(np.diff(d, axis=0)).mean()))
    assert res[True][0] <= 3
    # the mask moves with the smoothed track: less change frame to frame than when it follows raw boxes
    assert res[True][1] < res[False][1]


def test_the_model_canvas_and_clip_length_are_used(faces_dir):
    class Canvas(_RecordingModel):
        canvas = (128, 128)

        def restore_clip(self, clip):
            self.calls.append(tuple(clip.shape))
            return clip

    model = Canvas(5, 2)
    frames = clip(faces_dir, "lp_driving_d0", 11, (256, 256))
    out = list(FacePipeline.for_model(model, FaceOptions()).process(iter(frames)))
    assert len(out) == 11
    assert set(model.calls) == {(5, 3, 128, 128)}
    assert psnr(np.stack(out), np.stack(frames)) >= 30  # a 128² crop of a ~170 px face: some detail lost


def test_upscale_resizes_the_background_and_pastes_the_face_at_the_new_size(faces_dir):
    frames = clip(faces_dir, "lp_source_s32", 6, (480, 270))
    calls = []

    def bg(frame, s):  # the background-upsampler hook
        calls.append(s)
        return cv2.resize(frame, (frame.shape[1] * s, frame.shape[0] * s), interpolation=cv2.INTER_CUBIC)

    pipe = FacePipeline.for_model(IdentityModel(), FaceOptions(upscale=2, background=bg))
    out = np.stack(list(pipe.process(iter(frames))))
    assert out.shape == (6, 540, 960, 3) and calls == [2] * 6
    ref = np.stack([bg(f, 2) for f in frames])
    assert psnr(out, ref) >= 45  # the identity face lands exactly where the upscaled face is (~60 dB)


def test_a_shot_cut_in_a_real_stream_starts_new_tracks(faces_dir):
    # two shots of (about) the same framing: without the cut the tracker would join them into one track
    a = clip(faces_dir, "lp_driving_d0", 10, (384, 384))
    b = clip(faces_dir, "lp_driving_d13", 10)
    b = [cv2.resize(f[280:1000, :], (384, 384), interpolation=cv2.INTER_AREA) for f in b]
    pipe = FacePipeline.for_model(IdentityModel(), FaceOptions(), record_boxes=True)
    out = list(pipe.process(iter(a + b)))
    assert len(out) == 20 and pipe.stats["cuts"] == [10]
    spans = sorted(sorted(d) for d in pipe.stats["boxes"].values())
    assert spans == [list(range(10)), list(range(10, 20))]


# ---------------------------------------------------------------- background pass, residual paste

class _BrightenAnySize:
    """Adds 0.1 (about 25 levels) to every pixel; takes any frame size (`whole_frames`)."""

    name = "brighten"
    clip_len, overlap, canvas = None, 0, (128, 128)
    device = torch.device("cpu")
    whole_frames = True

    def restore_clip(self, clip):
        return clip + 0.1


def test_background_pass_restores_the_whole_frame_and_faces_only_keeps_it(faces_dir):
    from bfvr import Restorer

    frames = np.stack(clip(faces_dir, "lp_source_s32", 6, (480, 270)))
    frames = np.minimum(frames, 200).astype(np.uint8)  # no clipping at 255 after +25
    corner = (slice(0, 40), slice(0, 40))  # far from the face
    r = Restorer(_BrightenAnySize(), has_aligned=False, progress=False)
    out = r.restore_clip(frames)
    assert r.face_pipeline.stats["background"] and r.face_pipeline.stats["frames_with_face"] == 6
    assert abs(float(out[:, corner[0], corner[1]].astype(int).mean() - frames[:, corner[0], corner[1]].mean())
               - 25.5) < 1
    from bfvr.faces import FaceOptions

    r = Restorer(_BrightenAnySize(), has_aligned=False, progress=False,
                 faces=FaceOptions(background_model=False))
    out = r.restore_clip(frames)
    assert not r.face_pipeline.stats["background"]
    assert np.array_equal(out[:, corner[0], corner[1]], frames[:, corner[0], corner[1]])  # --faces-only
    assert not np.array_equal(out, frames)  # the face itself was restored


def test_residual_paste_keeps_a_large_face_exactly_where_the_model_changes_nothing(faces_dir):
    frame = clip(faces_dir, "latentsync_demo1_video", 1)[0]
    face = Face(box=np.array([300.0, 500.0, 800.0, 1000.0]), score=1.0)
    m = proportion_matrix(face.box, (256, 256), expand=1.3)  # a 650 px square into 256: downsampled
    crop = warp_crop(frame, m, (256, 256))
    mask = soft_mask((256, 256))
    plain = paste_back(frame, crop, m, mask)
    residual = paste_back(frame, crop, m, mask, crop=crop, base=frame)
    assert np.array_equal(residual, frame)  # nothing changed, nothing resampled
    inner = (slice(560, 940), slice(360, 740))
    assert psnr(plain[inner], frame[inner]) < 40  # pasting the resampled face itself blurs it
    bright = np.clip(crop.astype(int) + 10, 0, 255).astype(np.uint8)  # a change the model made is pasted
    out = paste_back(frame, bright, m, mask, crop=crop, base=frame)
    assert abs(float(out[inner].astype(int).mean() - frame[inner].astype(int).mean()) - 10) < 0.5


def test_a_face_smaller_than_the_canvas_is_not_resampled_where_the_model_changes_nothing(faces_dir):
    """The clean phone clip's ~240 px face is upsampled into the 512 canvas; pasting the crop itself back
    would resample it twice (it kept 69 % of its high-frequency energy that way); the residual paste leaves
    the frame bit-exact when the model changes nothing, through the default face pipeline."""
    from bfvr import Restorer

    frames = np.stack(clip(faces_dir, "latentsync_demo2_video", 3))
    r = Restorer(IdentityModel(), has_aligned=False, progress=False)
    out = r.restore_clip(frames)
    assert r.face_pipeline.stats["frames_with_face"] == 3
    assert np.array_equal(out, frames)
    plain = Restorer(IdentityModel(), has_aligned=False, progress=False,
                     faces=FaceOptions(residual_paste=False)).restore_clip(frames)
    assert not np.array_equal(plain, frames)  # the old paste did resample the face


def test_background_clips_never_span_a_shot_cut():
    """A background model that mixes its clip's frames (here: their mean) sees each shot on its own."""
    from bfvr.engine.chunker import ClipEngine
    from bfvr.faces.pipeline import ClipRunner

    class Mean:
        name, clip_len, overlap, canvas, device = "mean", None, 0, None, torch.device("cpu")

        def restore_clip(self, clip):
            return clip.mean(0, keepdim=True).expand_as(clip).clone()

    frames = [np.full((64, 64, 3), 20 if i < 5 else 230, np.uint8) for i in range(14)]
    pipe = FacePipeline.for_model(IdentityModel(), FaceOptions(), background_runner=lambda: ClipRunner(
        ClipEngine(Mean(), clip_len=10, overlap=2, native=True)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = [int(f.mean()) for f in pipe.process(iter(frames))]
    assert pipe.stats["cuts"] == [5]
    assert out == [20] * 5 + [230] * 9

"""`bfvr prepare`: crop geometry, orientation rule, motion score, and a run on a real face clip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bfvr.data.prepare import (
    Motion,
    PrepareOptions,
    apply_crop,
    crop_box,
    orientation,
    read_manifest,
    text_backend,
    union_box,
)
from bfvr.errors import DependencyError


def test_union_of_expanded_boxes() -> None:
    b = union_box([np.array([10, 10, 20, 20]), np.array([30, 12, 40, 22])], 1.3)
    assert np.allclose(b, [8.5, 8.5, 41.5, 23.5])
    assert union_box([], 1.3) is None


def test_square_crop_keeps_aspect_and_stays_inside() -> None:
    r = crop_box(np.array([100, 50, 200, 250]), 640, 360)  # 100x200 box -> 200x200 square
    assert r[2] - r[0] == r[3] - r[1] == 200
    assert r[0] == 50 and r[1] == 50
    r = crop_box(np.array([0, 0, 50, 80]), 640, 360)  # near the corner: shifted inside
    assert list(r) == [0, 0, 80, 80]
    r = crop_box(np.array([10, 0, 600, 300]), 640, 360)  # wider than the frame is tall: padded
    assert r[2] - r[0] == 590 and r[1] < 0 and r[3] > 360
    assert list(crop_box(np.array([-5, 10, 50, 400]), 640, 360, keep_aspect=False)) == [0, 10, 50, 360]


def test_apply_crop_pads_black_outside_the_frame() -> None:
    f = np.full((100, 200, 3), 200, np.uint8)
    out = apply_crop(f, np.array([0, -50, 200, 150]), 64)
    assert out.shape == (64, 64, 3)
    assert out[:10].max() < 5 and out[-10:].max() < 5 and out[32, 32, 0] == 200


def test_orientation_rule_on_points() -> None:
    pts = np.zeros((68, 2), np.float32)
    pts[36, 0], pts[45, 0] = 100, 200
    for nose, ratio, inside in [(150, 1.0, True), (120, 0.25, True), (185, 85 / 15, True),
                                (90, -0.1 / 1.1, False)]:
        pts[30, 0] = nose
        r, i = orientation(pts)
        assert r == pytest.approx(ratio, rel=1e-4) and i == inside


def test_motion_score_counts_changed_pixels() -> None:
    m = Motion(threshold=15, size=32)
    a = np.zeros((64, 64, 3), np.uint8)
    b = a.copy()
    b[:, :32] = 100  # half the frame changes
    for f in (a, a, b):
        m.update(f)
    assert m.values[0] == 0 and m.values[1] == pytest.approx(0.5, abs=0.02)
    assert m.score == pytest.approx(0.25, abs=0.01)


def test_no_ocr_backend_is_reported_not_guessed(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",  # as on a machine without any OCR package
                        lambda name, *a: None if name in ("rapidocr_onnxruntime", "paddleocr", "easyocr")
                        else real(name, *a))
    assert text_backend("auto") is None
    from bfvr.errors import DependencyError

    with pytest.raises(DependencyError, match="not installed"):
        text_backend("easyocr")


def test_prepare_real_clip_crop_contains_the_face(faces_dir, tmp_path) -> None:
    """A whole-frame 1280x720 clip: the crop is square, holds the face, and the manifest says why."""
    pytest.importorskip("dlib")
    from bfvr.data.prepare import prepare_clips
    from bfvr.faces.detect import HaarDetector
    from bfvr.io import read_frames

    opts = PrepareOptions(size=256, max_frames=10, detect_every=5, check_every=5, text_backend="none")
    try:
        m = prepare_clips([faces_dir / "lp_source_s32.mp4"], tmp_path, opts)
    except DependencyError as e:  # dlib's 68-point model is not installed
        pytest.skip(str(e))
    rec = json.loads(m.read_text().splitlines()[0])
    assert rec["frames"] == 10 and rec["size"] == [256, 256] and rec["scores"]["text"] == "not checked"
    assert "not checked" in rec["text_filter"]
    x0, y0, x1, y1 = rec["crop_box"]
    assert x1 - x0 == y1 - y0 and 150 < x1 - x0 < 720  # a face-sized square, not the whole frame
    o = rec["scores"]["orientation"]
    assert o["frames_checked"] == 2 and o["frames_without_face"] == 0
    assert 0.4 <= o["ratio_min"] <= o["ratio_max"] <= 2.5 and rec["kept"]
    crops = read_frames(rec["path"])
    faces = HaarDetector(landmarks=False)(crops[0])
    assert faces, "no face in the crop"
    f = max(faces, key=lambda f: f.area)
    assert f.area > 0.15 * 256 * 256  # the face fills a good part of the crop
    assert abs(f.center[0] - 128) < 40 and abs(f.center[1] - 128) < 50
    assert read_manifest(m)[0]["name"] == "lp_source_s32"


def test_mirrored_face_inverts_the_ratio(faces_dir) -> None:
    pytest.importorskip("dlib")
    from bfvr.data.prepare import Landmarks68
    from bfvr.io import read_frames

    try:
        lm = Landmarks68()
    except DependencyError as e:  # dlib's model file is not installed; any other error fails
        pytest.skip(str(e))
    f = read_frames(faces_dir / "lp_source_s32.mp4", max_frames=1)[0][150:700, 350:850]
    r, inside = orientation(lm(f))
    rm, inside_m = orientation(lm(np.ascontiguousarray(f[:, ::-1])))
    assert inside and inside_m
    assert rm == pytest.approx(1 / r, rel=0.2)  # mirror swaps the two sides
    assert r < 0.8  # this speaker looks to the side: a clearly non-frontal ratio


def test_outlier_boxes_do_not_inflate_the_union() -> None:
    from bfvr.data.prepare import drop_outliers

    face = [np.array([300 + i, 60, 400 + i, 160]) for i in range(8)]
    fp = np.array([47, 123, 362, 438])  # a false positive 3x larger (lp_source_s13, frame 90)
    kept = drop_outliers(face + [fp])
    assert len(kept) == 8 and not any(np.array_equal(k, fp) for k in kept)


def test_turned_head_is_dropped_by_a_tighter_ratio_bound(faces_dir, tmp_path) -> None:
    """lp_source_s32 opens in a 3/4 view (ratio ~0.42, checked by eye): kept at [0.4, 2.5], dropped at
    [0.5, 2.5] with the reason recorded and no crop left behind."""
    pytest.importorskip("dlib")
    from bfvr.data.prepare import prepare_clips

    opts = PrepareOptions(size=128, max_frames=6, detect_every=5, check_every=5, ratio_range=(0.5, 2.5))
    try:
        m = prepare_clips([faces_dir / "lp_source_s32.mp4"], tmp_path, opts)
    except DependencyError as e:  # dlib's 68-point model is not installed
        pytest.skip(str(e))
    rec = json.loads(m.read_text().splitlines()[0])
    assert not rec["kept"] and rec["path"] is None
    assert rec["reasons"] and rec["reasons"][0].startswith("orientation:")
    assert 0.4 < rec["scores"]["orientation"]["ratio_min"] < 0.5
    assert not (tmp_path / "lp_source_s32.mp4").exists()


def test_prepare_interrupted_in_its_second_clip_resumes(faces_dir, tmp_path) -> None:
    """Ctrl-C in the second clip keeps the first clip's crop and the state; the rerun reuses that crop (not
    "already exists") and writes the manifest; a crop changed since, or a state file bfvr did not write, is
    refused and left as it is (issue 27)."""
    import shutil

    from bfvr.data.prepare import PARTIAL_STATE, prepare_clips
    from bfvr.errors import OutputError

    src = tmp_path / "in"
    src.mkdir()
    for name in ("lp_driving_d0", "lp_driving_d18"):
        shutil.copyfile(faces_dir / f"{name}.mp4", src / f"{name}.mp4")
    inputs = sorted(src.glob("*.mp4"))
    opts = PrepareOptions(size=64, max_frames=6, detect_every=3, text_backend="none")

    def interrupted_run(out):
        seen = []

        def progress(k):
            seen.append(k)
            if sum(seen) > 6:  # the first frame of the second clip's crop
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt) as exc:
            prepare_clips(inputs, out, opts, orientation_check=False, progress=progress)
        return exc.value

    out = tmp_path / "out"
    e = interrupted_run(out)
    assert "1 of 2 clips are done and kept" in e.batch_note and "rerun the same command" in e.batch_note
    first = out / "lp_driving_d0.mp4"
    # no partial crop, no manifest
    assert sorted(p.name for p in out.iterdir()) == [PARTIAL_STATE, first.name]
    before = (first.read_bytes(), first.stat().st_mtime_ns)
    records = []
    m = prepare_clips(inputs, out, opts, orientation_check=False, on_record=records.append)
    assert [(r["name"], r.get("resumed", False)) for r in records] == [("lp_driving_d0", True),
                                                                       ("lp_driving_d18", False)]
    assert [r["name"] for r in read_manifest(m)] == ["lp_driving_d0", "lp_driving_d18"]
    assert all(r["frames"] == 6 and r["kept"] for r in read_manifest(m))
    assert (first.read_bytes(), first.stat().st_mtime_ns) == before  # reused, not rewritten
    assert sorted(p.name for p in out.iterdir()) == [first.name, "lp_driving_d18.mp4", "manifest.jsonl"]
    # the user's file in the first crop's place after the interrupt: refused, untouched
    out2 = tmp_path / "out2"
    interrupted_run(out2)
    (out2 / "lp_driving_d0.mp4").write_text("my notes\n")
    with pytest.raises(OutputError, match="already exists"):
        prepare_clips(inputs, out2, opts, orientation_check=False)
    assert (out2 / "lp_driving_d0.mp4").read_text() == "my notes\n"
    # a state file bfvr did not write (here a link to a file outside): refused, the file unchanged
    out3 = tmp_path / "out3"
    out3.mkdir()
    target = tmp_path / "elsewhere.json"
    target.write_text('{"mine": 1}\n')
    (out3 / PARTIAL_STATE).symlink_to(target)
    with pytest.raises(OutputError, match="move it away"):
        prepare_clips(inputs, out3, opts, orientation_check=False)
    assert target.read_text() == '{"mine": 1}\n' and (out3 / PARTIAL_STATE).is_symlink()
    assert not list(out3.glob("*.mp4"))

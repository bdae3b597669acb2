"""`bfvr evaluate`, `bfvr profile`, `bfvr compare` end to end on small clips made from a shared real video."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from helpers import run_cli


@pytest.fixture(scope="module")
def clips(faces_dir, tmp_path_factory):
    import cv2

    from bfvr.io import read_frames, write_video

    root = tmp_path_factory.mktemp("eval")
    src = read_frames(faces_dir / "lp_driving_d0.mp4", max_frames=10)
    gt = np.stack([cv2.resize(f, (128, 128), interpolation=cv2.INTER_AREA) for f in src])
    lq = np.stack([cv2.resize(cv2.resize(cv2.GaussianBlur(f, (0, 0), 1.5), (32, 32),
                                         interpolation=cv2.INTER_AREA),
                              (128, 128), interpolation=cv2.INTER_CUBIC) for f in gt])
    for d, frames in (("gt", gt), ("lq", lq), ("same", gt)):
        (root / d).mkdir()
        write_video(root / d / "a.mp4", frames, 25, crf=0)
    (root / "short").mkdir()
    write_video(root / "short" / "a.mp4", gt[:7], 25, crf=0)
    (root / "small").mkdir()
    write_video(root / "small" / "a.mp4", gt[:, ::2, ::2].copy(), 25, crf=0)
    return root


def _run(args, capsys):
    return run_cli(*args), capsys.readouterr()


def test_evaluate_report_values(clips, tmp_path, capsys):
    from bfvr.io import read_frames
    from bfvr.metrics import fullref

    out = tmp_path / "rep"
    code, _ = _run(["evaluate", "--pred", str(clips / "lq"), "--gt", str(clips / "gt"), "-m",
                    "psnr,ssim,msrl,flow_score,warp_error", "-o", str(out), "-q"], capsys)
    assert code in (0, None)
    rep = json.loads((out / "metrics.json").read_text())
    row = rep["rows"][0]
    assert row["video"] == "a" and row["frames"] == 10
    p, g = read_frames(clips / "lq" / "a.mp4"), read_frames(clips / "gt" / "a.mp4")
    assert row["psnr"] == pytest.approx(fullref.psnr_frames(p, g).mean(), abs=1e-9)
    assert row["ssim"] == pytest.approx(fullref.ssim_frames(p, g).mean(), abs=1e-9)
    assert 15 < row["psnr"] < 40 and 0 < row["ssim"] < 1
    assert rep["mean"]["psnr"] == pytest.approx(row["psnr"])
    md = (out / "metrics.md").read_text()
    assert "| a |" in md and "**mean**" in md and "psnr ↑" in md
    # the header names the back-end of every column that has one (issue 26)
    assert md.splitlines()[0] == "Back-ends: flow_score, warp_error: OpenCV DIS optical flow (preset medium)."
    assert rep["backends"] == {"flow_score": "OpenCV DIS optical flow (preset medium)",
                               "warp_error": "OpenCV DIS optical flow (preset medium)"}
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["video"] for r in rows] == ["a", "mean"]
    # identical videos: PSNR and MSRL are inf in every format
    out2 = tmp_path / "rep2"
    _run(["evaluate", "--pred", str(clips / "same"), "--gt", str(clips / "gt"), "-m", "psnr,msrl", "-o",
          str(out2), "-q"], capsys)
    rep2 = json.loads((out2 / "metrics.json").read_text())
    assert rep2["rows"][0]["psnr"] == "inf" and rep2["rows"][0]["msrl"] == "inf"


def test_evaluate_mismatches_and_modes(clips, tmp_path, capsys):
    base = ["evaluate", "--gt", str(clips / "gt"), "-m", "psnr", "-q"]
    code, cap = _run(base + ["--pred", str(clips / "short"), "-o", str(tmp_path / "a")], capsys)
    assert code == 2 and "--length min" in cap.err and "7 frames" in cap.err
    (tmp_path / "rt.json").write_text('{"a": 1.5}')
    code, _ = _run(base + ["--pred", str(clips / "short"), "--length", "min", "--runtime",
                           str(tmp_path / "rt.json"), "-o", str(tmp_path / "b")], capsys)
    row = json.loads((tmp_path / "b" / "metrics.json").read_text())["rows"][0]
    assert row["frames"] == 7 and row["runtime_s"] == 1.5
    assert "runtime_s ↓" in (tmp_path / "b" / "metrics.md").read_text()
    code, cap = _run(base + ["--pred", str(clips / "small"), "-o", str(tmp_path / "c")], capsys)
    assert code == 2 and "--resize pred-to-gt" in cap.err
    _run(base + ["--pred", str(clips / "small"), "--resize", "pred-to-gt", "-o", str(tmp_path / "d")], capsys)
    assert json.loads((tmp_path / "d" / "metrics.json").read_text())["rows"][0]["psnr"] > 20
    code, cap = _run(["evaluate", "--pred", str(clips / "lq"), "--gt", str(clips / "gt"), "-m", "lpips", "-q",
                      "-o", str(tmp_path / "e")], capsys)
    assert code == 2 and "LPIPS unavailable: needs weights" in cap.err
    code, cap = _run(["evaluate", "--pred", str(clips / "lq"), "--no-reference", "-m", "psnr", "-q",
                      "-o", str(tmp_path / "f")], capsys)
    assert code == 2 and "need GT" in cap.err
    _run(["evaluate", "--pred", str(clips / "lq"), "--no-reference", "-m", "flow_score,warp_error", "-q",
          "-o", str(tmp_path / "g")], capsys)
    row = json.loads((tmp_path / "g" / "metrics.json").read_text())["rows"][0]
    assert set(row) == {"video", "frames", "flow_score", "warp_error"}
    (tmp_path / "nogt").mkdir()  # a GT folder without matching names (the report goes outside it)
    code, cap = _run(["evaluate", "--pred", str(clips / "lq"), "--gt", str(tmp_path / "nogt"), "-q", "-m",
                      "psnr", "-o", str(tmp_path / "h")], capsys)
    assert code == 2 and "same file stem" in cap.err


def test_evaluate_mean_row_skips_videos_without_a_value(clips, tmp_path, capsys):
    """A 1-frame video has no MSRL (nan); the mean row averages the videos that have one and says which
    were left out, instead of turning n/a itself."""
    from bfvr.io import read_frames, write_video

    g = read_frames(clips / "gt" / "a.mp4")
    for d in ("pred", "gt"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "a.mp4").symlink_to(clips / ("lq" if d == "pred" else "gt") / "a.mp4")
        write_video(tmp_path / d / "b.mp4", g[:1], 25, crf=0)  # b: one frame, identical
    code, _ = _run(["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "-m",
                    "ssim,msrl,tdiff_psnr", "-o", str(tmp_path / "rep"), "-q"], capsys)
    assert code in (0, None)
    rep = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    rows = {r["video"]: r for r in rep["rows"]}
    assert rows["b"]["msrl"] is None and rows["b"]["tdiff_psnr"] is None  # nan is null in JSON
    assert rep["mean"]["msrl"] == rows["a"]["msrl"] and rep["mean"]["tdiff_psnr"] == rows["a"]["tdiff_psnr"]
    assert rep["mean"]["ssim"] == pytest.approx((rows["a"]["ssim"] + rows["b"]["ssim"]) / 2)
    line = "the mean row leaves out videos without a value: msrl (b); msrl_scales (b); tdiff_psnr (b)"
    assert rep["warnings"] == [line]
    assert f"- warning: {line}" in (tmp_path / "rep" / "metrics.md").read_text()


def test_profile_and_compare(clips, tmp_path, capsys):
    import cv2

    from bfvr.io import probe, read_frames

    png = tmp_path / "p.png"
    _run(["profile", str(clips / "lq" / "a.mp4"), str(clips / "gt" / "a.mp4"), "--column", "64", "--labels",
          "LQ,GT", "-o", str(png), "-q"], capsys)
    img = cv2.imread(str(png))
    assert img.shape == (128 + 28, 10 + 4 + 10, 3)
    gt = read_frames(clips / "gt" / "a.mp4")
    right = cv2.cvtColor(img[28:, 14:], cv2.COLOR_BGR2RGB)
    assert np.array_equal(right, gt[:, :, 64].transpose(1, 0, 2))
    mp4 = tmp_path / "sbs.mp4"
    _run(["compare", str(clips / "lq" / "a.mp4"), str(clips / "gt" / "a.mp4"), str(clips / "gt" / "a.mp4"),
          "-o", str(mp4), "-q"], capsys)
    info = probe(mp4)
    assert (info.width, info.height, info.frame_count) == (3 * 128 + 2 * 4, 128 + 28, 10)


@pytest.mark.slow  # 7 s of CPU, OMP_NUM_THREADS=1 (measured 2026-12-06)
def test_evaluate_face_metrics_and_fvd(clips, tmp_path, capsys):
    pytest.importorskip("dlib")
    import torch

    class Tiny(torch.nn.Module):  # stand-in with the I3D TorchScript call signature (no I3D weights offline)
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv3d(3, 4, 3, stride=2)

        def forward(self, x, rescale: bool = False, resize: bool = False, return_features: bool = True):
            return self.conv(x).mean((2, 3, 4))

    torch.manual_seed(0)
    i3d = tmp_path / "i3d.pt"
    torch.jit.script(Tiny()).save(str(i3d))
    m = "ids,face_cons,akd,tlme,fvd"
    rep = {}
    for name in ("same", "lq"):
        code, cap = _run(["evaluate", "--pred", str(clips / name), "--gt", str(clips / "gt"), "-m", m,
                          "--i3d", str(i3d), "--max-frames", "6", "-o", str(tmp_path / name), "-q"], capsys)
        assert code in (0, None), cap.err
        rep[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    same, lq = rep["same"]["rows"][0], rep["lq"]["rows"][0]
    assert same["faces_missing"] == 0
    assert same["ids"] == pytest.approx(1.0, abs=1e-9) and same["akd"] == 0 and same["tlme"] == 0
    assert lq["ids"] < same["ids"] and lq["akd"] > 0 and lq["tlme"] > 0
    assert 0.9 < same["face_cons"] <= 1
    assert rep["same"]["mean"]["fvd"] < 1e-6 and same["fvd_per_pair"] < 1e-9
    assert rep["lq"]["mean"]["fvd"] > 0 and lq["fvd_per_pair"] > 0


def test_metric_backends_name_the_model_of_each_column():
    from bfvr.metrics.evaluate import EvalOptions, metric_backends

    b = metric_backends(["psnr", "deg", "ids", "lmd", "tlme", "msrl"], EvalOptions())
    assert b == {"deg": "dlib 128-D face descriptor (dlib_face_recognition_resnet_model_v1)",
                 "ids": "dlib 128-D face descriptor (dlib_face_recognition_resnet_model_v1)",
                 "lmd": "dlib 68-point landmarks (shape_predictor_68_face_landmarks), pixels",
                 "tlme": "dlib 68-point landmarks (shape_predictor_68_face_landmarks), pixels"}
    arc = metric_backends(["deg", "face_cons", "lpips", "fvd"],
                          EvalOptions(identity_model="/w/arcface_r100.onnx", lpips_backbone="/w/vgg16.pth",
                                      i3d="/w/i3d_torchscript.pt"))
    assert arc == {"deg": "ArcFace embedder arcface_r100.onnx",
                   "face_cons": "ArcFace embedder arcface_r100.onnx",
                   "lpips": "LPIPS v0.1 vgg from vgg16.pth", "fvd": "I3D i3d_torchscript.pt"}


def test_compare_odd_sizes_keeps_audio_and_says_how(faces_dir, tmp_path, capsys):
    """A square clip with audio next to a 2-pixel-odd smaller one of other length (issue 27): every frame
    pair, the first input's audio (cut where the side-by-side ends) and a line on sizes, length, audio."""
    import av
    import cv2

    from bfvr.io import VideoWriter, open_video, probe

    src = faces_dir / "lp_driving_d11.mp4"
    for name, size, n in (("a.mp4", (64, 64), 20), ("b.mp4", (63, 47), 12)):
        with open_video(src) as r, VideoWriter(tmp_path / name, fps=r.info.fps, time_base=r.info.time_base,
                                               audio_from=src if name == "a.mp4" else None,
                                               preset="ultrafast") as w:
            for i, (f, p) in enumerate(r.frames()):
                if i == n:
                    break
                w.write(cv2.resize(f, size, interpolation=cv2.INTER_AREA), [p])
    out = tmp_path / "side.mp4"
    a, b = str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")
    code, cap = _run(["compare", a, b, "-o", str(out), "-q"], capsys)
    assert code == 0
    info = probe(out)
    # both at b's height rounded down to even (46): 46 + 4 + 62 wide, 46 + 28 high; the 12 common frames
    assert (info.width, info.height, info.frame_count) == (46 + 4 + 62, 46 + 28, 12)
    assert info.has_audio and info.duration == pytest.approx(12 / 25, abs=1e-3)
    with av.open(str(out)) as c:
        st = c.streams.audio[0]
        assert float(st.duration * st.time_base) == pytest.approx(12 / 25, abs=0.05)  # cut, not 9 s
    assert "input 64x64 -> 46x46, output 63x47 -> 62x46" in cap.out
    assert "length: 12 frames" in cap.out and "input has 20" in cap.out
    assert "audio: input's" in cap.out and "cut at 0.480 s" in cap.out
    # the whole first video (b first: it is the shorter): no cut, and "none" said for a silent input
    code, cap = _run(["compare", b, a, "-o", str(tmp_path / "s2.mp4"), "-q"], capsys)
    assert code == 0 and probe(tmp_path / "s2.mp4").frame_count == 12
    assert "audio: none (input has none)" in cap.out

"""`bfvr prepare` step (C), the text filter, for real: rapidocr-onnxruntime (PaddleOCR's PP-OCRv4 models as
ONNX in its wheel) on a real talking-head clip with a caption burned in with OpenCV, and on the same clip
without it; and what is recorded when no OCR backend is installed."""

from __future__ import annotations

import importlib.util
import json
import socket
from pathlib import Path

import numpy as np
import pytest

from bfvr.io.synth import burn_caption
from helpers import run_cli

VIDEO = "lp_driving_d18.mp4"  # 480x480 talking head; its face-proportion crop is about [70, 80, 430, 440]




@pytest.fixture(scope="module")
def clips(faces_dir: Path, tmp_path_factory) -> Path:
    """clean.mp4 and caption.mp4: the first 10 frames of a real clip, without and with a burned-in caption."""
    from bfvr.io import VideoWriter, read_frames

    root = tmp_path_factory.mktemp("ocr_in")
    frames = read_frames(faces_dir / VIDEO, max_frames=10)
    for name, fr in (("clean", frames), ("caption", np.stack([burn_caption(f) for f in frames]))):
        with VideoWriter(root / f"{name}.mp4", fps=25, crf=12) as w:
            for f in fr:
                w.write(f)
    return root


def _manifest(out: Path) -> dict[str, dict]:
    return {r["name"]: r for r in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}


def test_rapidocr_drops_the_clip_with_burned_in_text_and_keeps_the_clean_one(
    clips: Path, tmp_path: Path, monkeypatch
) -> None:
    pytest.importorskip("rapidocr_onnxruntime", reason="the ocr extra is not installed (docs/data.md)")

    def no_network(*a, **k):  # the models ship in the wheel: nothing may be fetched
        raise AssertionError(f"network access during bfvr prepare: {a}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    out = tmp_path / "prep"
    assert (
        run_cli(
            "prepare", str(clips), str(out), "--size", "256", "--max-frames", "10", "--no-orientation", "-q"
        )
        == 0
    )
    recs = _manifest(out)
    clean, cap = recs["clean"], recs["caption"]
    assert clean["text_filter"] == cap["text_filter"] == "checked with rapidocr"  # auto picked rapidocr
    assert clean["kept"] and clean["reasons"] == [] and Path(clean["path"]).is_file()
    assert all(s <= 0.95 for _, s in clean["scores"]["text"]["boxes"])
    assert not cap["kept"] and cap["path"] is None
    assert len(cap["reasons"]) == 1 and cap["reasons"][0].startswith("text:")
    boxes = cap["scores"]["text"]["boxes"]
    assert "BREAKINGNEWS" in "".join(t for t, _ in boxes).replace(" ", "").upper(), boxes
    assert max(s for _, s in boxes) > 0.95


def test_without_an_ocr_backend_text_is_not_checked(clips: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """No backend installed (simulated: the import lookup finds none): the caption clip is kept, every record
    says "text: not checked" and the command says so once."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("rapidocr_onnxruntime", "paddleocr", "easyocr") else real(name, *a),
    )
    out = tmp_path / "prep"
    assert (
        run_cli(
            "prepare",
            str(clips / "caption.mp4"),
            str(out),
            "--size",
            "128",
            "--max-frames",
            "4",
            "--no-orientation",
        )
        == 0
    )
    rec = _manifest(out)["caption"]
    assert rec["kept"] and rec["scores"]["text"] == "not checked"
    assert rec["text_filter"].startswith("not checked (no OCR backend installed")
    assert "text: not checked" in capsys.readouterr().err
    # naming a backend that is not installed is one sentence and a non-zero exit, with no output left
    assert (
        run_cli(
            "prepare",
            str(clips / "caption.mp4"),
            str(tmp_path / "p2"),
            "--ocr",
            "rapidocr",
            "--no-orientation",
        )
        != 0
    )
    assert "--no-deps rapidocr-onnxruntime" in capsys.readouterr().err
    assert not (tmp_path / "p2").exists()


def test_ocr_none_says_so(clips: Path, tmp_path: Path) -> None:
    assert (
        run_cli(
            "prepare",
            str(clips / "caption.mp4"),
            str(tmp_path / "p"),
            "--size",
            "128",
            "--max-frames",
            "4",
            "--no-orientation",
            "--ocr",
            "none",
            "-q",
        )
        == 0
    )
    rec = _manifest(tmp_path / "p")["caption"]
    assert (
        rec["kept"]
        and rec["scores"]["text"] == "not checked"
        and rec["text_filter"] == "not checked (--ocr none)"
    )

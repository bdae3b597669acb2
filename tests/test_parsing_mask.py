"""`--paste-mask parsing`: face-parsing masks for the paste-back (bfvr.faces.parsing_mask)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from bfvr.errors import ConfigError
from bfvr.faces import FaceOptions
from bfvr.faces.parsing_mask import FACE_CLASSES, ParsingMasker, parsing_state_dict, require_parsing_weights
from bfvr.faces.paste import soft_mask
from bfvr.faces.pipeline import FacePipeline
from bfvr.models.pgtformer.parsing import BiSeNet
from helpers import run_cli


@pytest.fixture(scope="module")
def bisenet() -> BiSeNet:
    torch.manual_seed(0)
    return BiSeNet(19).eval()


def disc_labels(h: int, w: int, r: float, cls: int = 1) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    lab = np.zeros((h, w), np.int64)
    lab[(yy - h / 2) ** 2 + (xx - w / 2) ** 2 < r**2] = cls
    return lab


def test_weights_from_a_pgtformer_checkpoint_or_a_plain_bisenet(bisenet, tmp_path):
    sd = bisenet.state_dict()
    prefixed = {**{f"conditionnet.{k}": v for k, v in sd.items()}, "convpos.weight": torch.zeros(4, 57, 1, 1)}
    assert parsing_state_dict(prefixed).keys() == sd.keys()
    env = soft_mask((64, 64), "box")
    for name, state in (("pgt.safetensors", prefixed), ("bisenet.safetensors", sd)):
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / name))
        m = ParsingMasker.load(env, tmp_path / name)
        got = m.net.state_dict()
        assert all(torch.equal(got[k], v) for k, v in sd.items())
    save_file({"body.weight": torch.zeros(3, 3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ConfigError, match="no face-parsing BiSeNet"):
        ParsingMasker.load(env, tmp_path / "other.safetensors")


def test_without_weights_one_sentence(tmp_path, monkeypatch, synth_clip):
    monkeypatch.setenv("BFVR_HOME", str(tmp_path / "home"))
    with pytest.raises(ConfigError) as e:
        require_parsing_weights()
    msg = str(e.value)
    assert (
        "needs face-parsing weights" in msg
        and "bfvr models download pgtformer" in msg
        and msg.count(". ") == 0
    )
    out = tmp_path / "out.mp4"
    assert (
        run_cli("restore", str(synth_clip), "-o", str(out), "-m", "identity", "--paste-mask", "parsing", "-q")
        != 0
    )
    assert not out.exists()
    with pytest.raises(ConfigError, match="--paste-mask"):
        FaceOptions(mask_shape="hexagon").validate()


def test_mask_is_the_face_classes_inside_the_feathered_box(bisenet, monkeypatch):
    env = soft_mask((128, 128), "box")
    masker = ParsingMasker(bisenet, env)
    monkeypatch.setattr(masker, "labels", lambda face: disc_labels(128, 128, 30, cls=1))
    m = masker(np.zeros((128, 128, 3), np.uint8))
    assert m.shape == (128, 128) and m.dtype == np.float32
    assert m[64, 64] > 0.95 * env[64, 64]  # inside the skin disc
    assert m[64, 110] == 0 and m[10, 10] == 0  # background
    assert (m <= env + 1e-6).all()  # never beyond the box envelope
    monkeypatch.setattr(masker, "labels", lambda face: disc_labels(128, 128, 30, cls=16))  # cloth: not pasted
    assert masker(np.zeros((128, 128, 3), np.uint8)).max() == 0
    assert 1 in FACE_CLASSES and 17 in FACE_CLASSES and 0 not in FACE_CLASSES and 16 not in FACE_CLASSES
    # the real network runs on a crop and gives a label per pixel
    lab = ParsingMasker(bisenet, env).labels(np.full((128, 128, 3), 128, np.uint8))
    assert lab.shape == (128, 128) and 0 <= lab.min() and lab.max() < 19


class GrayModel:
    """A clip model that carries a parsing net (as PGTFormer does) and returns flat gray crops."""

    name = "gray"
    canvas = (128, 128)
    clip_len, overlap = 4, 0
    device = torch.device("cpu")

    def __init__(self, net):
        self.parsing_net = net

    def restore_clip(self, clip):
        return torch.full_like(clip, 0.5)


def test_pipeline_pastes_only_the_parsed_face(bisenet, faces_dir, monkeypatch):
    from bfvr.io import read_frames

    frames = read_frames(faces_dir / "lp_driving_d18.mp4", max_frames=4)
    monkeypatch.setattr(ParsingMasker, "labels", lambda self, face: disc_labels(128, 128, 25))
    outs = {}
    for shape in ("box", "parsing"):
        pipe = FacePipeline.for_model(GrayModel(bisenet), FaceOptions(mask_shape=shape, min_hits=1))
        outs[shape] = np.stack(list(pipe.process(iter(frames))))
        assert pipe.stats["crops"] == 4
    changed = {k: (np.abs(v.astype(int) - frames).max(-1) > 0).mean() for k, v in outs.items()}
    assert 0 < changed["parsing"] < 0.5 * changed["box"]  # a disc of r=25 on the 128 canvas vs the whole box
    gray = np.abs(outs["parsing"].astype(int) - 128).max(-1) <= 2
    assert gray.any()  # the disc centre got the restored (gray) face

"""PGTFormer training stages (`bfvr train`, tasks pgtformer-stage1..4) with the shipped tiny configs on a real
face video: each lowers its loss, resumes bit-exactly, and keeps the frozen modules frozen; and the losses
defined from their names (focal, gradient L1) against hand-computed values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bfvr.errors import ConfigError
from bfvr.train.config import load_config
from bfvr.train.pgtformer import focal_loss, gradient_l1_loss
from helpers import lowered, resume_equals_straight
from helpers import make_trainer as run

REPO = Path(__file__).resolve().parents[1]
VIDEO = "lp_driving_d18.mp4"


def tiny(stage: int, faces_dir: Path, out: Path, steps: int, *extra: str):
    return load_config(
        REPO / "configs" / "pgtformer" / f"tiny_stage{stage}.yaml",
        overrides=[
            f"out_dir={out}",
            f"max_steps={steps}",
            f"data.paths=[{faces_dir / VIDEO}]",
            "log_every=1",
            f"ckpt_every={max(1, steps // 2)}",
            "keep_ckpts=0",
            "tensorboard=false",
            "data.max_frames=24",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def stage1_run(faces_dir, tmp_path_factory) -> Path:
    """A short stage-I run the later stages start from."""
    out = tmp_path_factory.mktemp("pgt-s1") / "run"
    run(tiny(1, faces_dir, out, 2)).run()
    return out


@pytest.mark.slow
def test_stage1_lowers_its_loss_and_resumes_exactly(faces_dir, tmp_path):
    rec = resume_equals_straight(lambda o, s: tiny(1, faces_dir, o, s, "loss.disc_start=4"), tmp_path, 12)
    assert lowered(rec, "l1") and lowered(rec)
    assert "g_gan" in rec[-1] and "d_loss" in rec[-1] and "codebook" in rec[0]


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3, 4])
def test_later_stages_lower_their_loss_and_resume_exactly(stage, faces_dir, tmp_path, stage1_run):
    def make(out, steps):
        return tiny(
            stage,
            faces_dir,
            out,
            steps,
            f"model.stage1_weights={stage1_run}",
            "model.init_weights=null",
            "loss.disc_start=4",
        )

    rec = resume_equals_straight(make, tmp_path, 12)
    key = {2: "ce", 3: "ce", 4: "focal"}[stage]
    assert lowered(rec, key), [r[key] for r in rec]
    if stage >= 3:
        assert "g_gan" in rec[-1] and ("l1" in rec[0] or "grad_l1" in rec[0])


def test_frozen_modules_stay_frozen_and_targets_come_from_stage1(faces_dir, tmp_path, stage1_run):
    from safetensors.torch import load_file

    from bfvr.train.checkpoint import find_checkpoint

    t = run(
        tiny(
            3, faces_dir, tmp_path / "s3", 2, f"model.stage1_weights={stage1_run}", "model.init_weights=null"
        )
    )
    s1 = load_file(str(find_checkpoint(stage1_run) / "ema.safetensors"))
    frozen = {
        n: p.detach().clone()
        for n, p in t.model.named_parameters()
        if n.startswith(("decoder.", "quantizer.", "conditionnet.", "post_quant_conv."))
    }
    assert frozen and not any(p.requires_grad for n, p in t.model.named_parameters() if n in frozen)
    assert torch.equal(t.model.quantizer.codebooks[0].weight, s1["quantizer.codebooks.0.weight"])
    rec = t.run()
    assert all(np.isfinite(r["loss"]) for r in rec)
    assert all(torch.equal(p, frozen[n]) for n, p in t.model.named_parameters() if n in frozen)
    assert not t.model.conditionnet.training  # BatchNorm statistics untouched in training mode


def test_later_stages_need_stage1_weights(faces_dir, tmp_path):
    with pytest.raises(ConfigError, match="stage1_weights"):
        tiny(2, faces_dir, tmp_path / "x", 2, "model.stage1_weights=null")
    with pytest.raises(ConfigError, match="clip_len"):
        run(tiny(1, faces_dir, tmp_path / "y", 2, "data.clip_len=4"))


def test_focal_and_gradient_l1_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    target = torch.tensor([0, 2])
    p = torch.softmax(logits, -1)
    p0, p1 = p[0, 0].item(), p[1, 2].item()
    hand = (-((1 - p0) ** 2) * np.log(p0) - (1 - p1) ** 2 * np.log(p1)) / 2
    assert focal_loss(logits, target, 2.0).item() == pytest.approx(hand, rel=1e-6)
    assert focal_loss(logits, target, 0.0).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, target).item(), rel=1e-6
    )
    # one clip [1, 1, 2, 2, 2]: y differs from x by +1 at one pixel of frame 1
    x = torch.zeros(1, 1, 2, 2, 2)
    y = x.clone()
    y[0, 0, 1, 0, 0] = 1.0
    # pixel: 1/8; spatial: |dx| has 1 nonzero of 4 (mean 1/4) for each direction -> 1/2;
    # temporal: 1 nonzero of 4 -> 1/4
    assert gradient_l1_loss(y, x, (0.2, 0.05, 0.05)).item() == pytest.approx(0.2 / 8 + 0.05 * 0.5 + 0.05 / 4)


def test_msrl_loss_by_hand():
    """Eq. 7 on a 2-frame 4x4 clip: GT static, the prediction's second frame +P; the residual at full size,
    over 2x2 and over 4x4 block means, written out."""
    from bfvr.train.losses import msrl_loss

    p_pat = torch.tensor([[4.0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 8, 8], [0, 0, 8, 8]]) / 100
    gt = torch.full((1, 3, 2, 4, 4), 0.5)
    pred = gt.clone()
    pred[:, :, 1] += p_pat
    # |residual| means: full size (4 + 4*8)/16 = 2.25; 2x2 block means [[1, 0], [0, 8]] -> 9/4 = 2.25;
    # 4x4 block mean 36/16 = 2.25 (all / 100): 1/3 (2.25 + 2.25 + 2.25) / 100 = 0.0225
    assert msrl_loss(pred, gt).item() == pytest.approx(0.0225, abs=1e-7)
    # a pattern that the 2x2 and 4x4 block means average away: only ↓_1 sees it -> 1/3 of its mean |.|
    cb = torch.where((torch.arange(4)[:, None] + torch.arange(4)) % 2 == 0, 0.1, -0.1)
    pred2 = gt.clone()
    pred2[:, :, 1] += cb
    assert msrl_loss(pred2, gt).item() == pytest.approx(0.1 / 3, abs=1e-7)
    # the residual is symmetric in prediction and GT, a constant offset costs nothing, one frame is 0
    assert msrl_loss(gt, pred).item() == pytest.approx(0.0225, abs=1e-7)
    assert msrl_loss(gt + 0.2, gt).item() == pytest.approx(0.0, abs=1e-7)
    assert msrl_loss(pred[:, :, :1], gt[:, :, :1]).item() == 0.0
    # three frames: the transitions are averaged (t1: +P, t2: back to GT -> -P): the same 0.0225
    pred3 = torch.cat([pred, gt[:, :, :1]], 2)
    assert msrl_loss(pred3, torch.cat([gt, gt[:, :, :1]], 2)).item() == pytest.approx(0.0225, abs=1e-7)
    # and it has a gradient
    x = pred.clone().requires_grad_(True)
    msrl_loss(x, gt).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0

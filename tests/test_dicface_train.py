"""DicFace training (`bfvr train`, task dicface): the closed-form Dirichlet KL against torch.distributions
and a numerical integral, the training inputs of the three tasks on a real clip (inpainting strokes as the
inference side's --mask reads them, grey inputs as its colour model makes them), CodeFormer initialisation,
the official network's size from configs/dicface/official.yaml, and configs/dicface/tiny.yaml on the real
face clips: it trains, lowers its loss and resumes bit-exactly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bfvr.errors import ModelError, WeightsNotFoundError
from bfvr.train.config import load_config
from bfvr.train.dicface import DICFACE_ONLY, dirichlet_kl, is_codeformer_key
from helpers import lowered, resume_equals_straight, run_cli

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "dicface" / "tiny.yaml"
VIDEO = "lp_driving_d18.mp4"


def tiny(faces_dir: Path, out: Path, steps: int, *extra: str):
    return load_config(TINY, overrides=[
        f"out_dir={out}", f"max_steps={steps}", f"data.paths=[{faces_dir / VIDEO}]", "log_every=1",
        f"ckpt_every={max(1, steps // 2)}", "keep_ckpts=0", "tensorboard=false", "data.max_frames=20",
        "data.batch_size=1", *extra])


# ------------------------------------------------------------------------------------------------ the KL

def test_kl_equals_torch_distributions_and_zero_at_the_prior():
    g = torch.Generator().manual_seed(0)
    alpha = torch.nn.functional.softplus(torch.randn(2, 7, 1024, generator=g, dtype=torch.float64) * 2) + 1e-2
    for prior in (0.1, 1.0):
        ref = torch.distributions.kl_divergence(torch.distributions.Dirichlet(alpha),
                                                torch.distributions.Dirichlet(torch.full_like(alpha, prior)))
        ours = dirichlet_kl(alpha, prior)
        assert ours.shape == (2, 7)
        torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-7)
        # fp32, as in training: within the float precision of sums of 1024 log-gammas
        torch.testing.assert_close(dirichlet_kl(alpha.float(), prior).double(), ref, rtol=2e-4, atol=0.05)
    assert dirichlet_kl(torch.full((3, 1024), 0.1, dtype=torch.float64), 0.1).abs().max() < 1e-8
    assert (dirichlet_kl(alpha, 1.0) > 0).all()


def test_kl_equals_a_numerical_integral():
    """K = 2: Dir(a, b) is Beta(a, b) on the first weight; KL = integral of p log(p / q) (midpoint rule)."""

    def log_beta_pdf(x, a, b):
        log_norm = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
        return (a - 1) * np.log(x) + (b - 1) * np.log1p(-x) - log_norm

    n = 2_000_000
    x = (np.arange(n) + 0.5) / n
    for (a, b), prior in (((2.0, 3.0), 0.5), ((0.7, 1.4), 1.0), ((5.0, 0.9), 0.1)):
        lp, lq = log_beta_pdf(x, a, b), log_beta_pdf(x, prior, prior)
        hand = float(np.sum(np.exp(lp) * (lp - lq)) / n)
        ours = float(dirichlet_kl(torch.tensor([a, b], dtype=torch.float64), prior))
        assert ours == pytest.approx(hand, rel=2e-3, abs=2e-4), (a, b, prior)


# ------------------------------------------------------------------------------- the three tasks' inputs

def _items(faces_dir: Path, recipe: str, n: int = 3) -> list[dict[str, torch.Tensor]]:
    from bfvr.train.data import build_dataset

    cfg = tiny(faces_dir, Path("unused"), 2, f"data.recipe={recipe}", "data.size=128", "data.crop=null",
               "model.extra.img_size=128")
    ds = build_dataset(cfg.data, seed=cfg.seed)
    return [ds[i] for i in range(n)]


def test_inpainting_inputs_are_white_brush_strokes_one_mask_per_clip(faces_dir, tmp_path):
    import cv2

    from bfvr.models.dicface.tasks import FrameMask

    items = _items(faces_dir, "inpaint")
    masks = []
    for it in items:
        lq, gt = it["lq"], it["gt"]  # [3, 5, H, W] in [0, 1]
        assert lq.shape == gt.shape and lq.shape[1] == 5
        missing = (lq != gt).any(0).any(0)  # union over channels and frames
        cover = float(missing.float().mean())
        assert 0.005 < cover < 0.7, cover
        # the same pixels are white on every frame; everything else is the clean clip
        assert (lq[:, :, missing] == 1.0).all()
        keep = ~missing
        assert torch.equal(lq[:, :, keep], gt[:, :, keep])
        masks.append(missing)
        # the mask as a PNG, white = missing, read by the inference side (`--mask`), paints the same input
        png = tmp_path / "mask.png"
        cv2.imwrite(str(png), missing.numpy().astype(np.uint8) * 255)
        frame = (gt[:, 0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        painted, _ = next(FrameMask(png).apply([(frame, 0)]))
        ref = (lq[:, 0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        assert np.array_equal(painted, ref)
    assert not torch.equal(masks[0], masks[1])  # a new mask for every clip
    again = _items(faces_dir, "inpaint", 1)[0]  # ... and a pure function of the sample position
    assert torch.equal(again["lq"], items[0]["lq"])


def test_colourisation_inputs_are_the_grey_clip_the_colour_model_sees(faces_dir):
    from bfvr.models.dicface.tasks import to_grey

    for it in _items(faces_dir, "gray", 2):
        lq, gt = it["lq"], it["gt"]
        assert torch.equal(lq[0], lq[1]) and torch.equal(lq[0], lq[2])
        grey = to_grey(gt.transpose(0, 1)).transpose(0, 1)  # the inference side's conversion
        torch.testing.assert_close(lq, grey, atol=0.5 / 255 + 1e-6, rtol=0)  # rounded to 8 bits
        assert (gt[0] - gt[2]).abs().mean() > 0.01  # the target keeps its colour


# ------------------------------------------------------------------------------------ initialisation

def _codeformer_file(faces_dir: Path, tmp_path: Path, **change: tuple[int, ...]) -> tuple[Path, dict]:
    """A codeformer.pth-layout file for the tiny network: CodeFormer's entries only, under params_ema."""
    from bfvr.train.dicface import build_dicface

    torch.manual_seed(123)
    net, _ = build_dicface(tiny(faces_dir, tmp_path / "unused", 2))
    sd = {k: v.clone() for k, v in net.state_dict().items() if is_codeformer_key(k)}
    torch.nn.init.normal_(sd["position_emb"])
    for k, shape in change.items():
        sd[k.replace("__", ".")] = torch.zeros(shape)
    path = tmp_path / "codeformer.pth"
    torch.save({"params_ema": sd}, path)
    return path, sd


def test_initialisation_from_a_codeformer_file(faces_dir, tmp_path):
    from bfvr.train.dicface import DicFaceTask

    path, sd = _codeformer_file(faces_dir, tmp_path)
    assert not any(k.startswith(DICFACE_ONLY) for k in sd) and "multiscale.out.weight" not in sd
    task = DicFaceTask(tiny(faces_dir, tmp_path / "r", 2, f"model.init_weights={path}"), torch.device("cpu"))
    own = task.model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in sd.items())
    assert task.fresh == ["dir_dist_layers.", "multiscale.", "position_emb_temporal"]
    assert task.frozen == ["position_emb"]  # the official recipe: fix_modules [] (position_emb is frozen)

    more = DicFaceTask(tiny(faces_dir, tmp_path / "r2", 2, f"model.init_weights={path}",
                            "model.extra.fix_modules=[encoder., quantize.]"), torch.device("cpu"))
    assert all(not p.requires_grad for n, p in more.model.named_parameters() if n.startswith("encoder."))
    assert any(p.requires_grad for n, p in more.model.named_parameters() if n.startswith("generator."))

    with pytest.raises(WeightsNotFoundError, match="neither a file"):
        DicFaceTask(tiny(faces_dir, tmp_path / "r4", 2, f"model.init_weights={tmp_path / 'nope.pth'}"),
                    torch.device("cpu"))
    bad, _ = _codeformer_file(faces_dir, tmp_path, quantize__embedding__weight=(1024, 256))
    with pytest.raises(ModelError, match=r"quantize\.embedding\.weight has shape \[1024, 256\]"):
        DicFaceTask(tiny(faces_dir, tmp_path / "r3", 2, f"model.init_weights={bad}"), torch.device("cpu"))


def test_init_weights_by_hub_name_fetches_the_file(faces_dir, tmp_path, monkeypatch):
    """`model.init_weights: dicface-codeformer` downloads codeformer.pth into the cache (file:// mirror)."""
    from bfvr.train.dicface import DicFaceTask

    path, sd = _codeformer_file(faces_dir, tmp_path)
    monkeypatch.setenv("BFVR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BFVR_DICFACE_MIRROR", path.parent.as_uri())
    task = DicFaceTask(tiny(faces_dir, tmp_path / "r", 2, "model.init_weights=dicface-codeformer"),
                       torch.device("cpu"))
    assert (tmp_path / "home" / "weights" / "codeformer.pth").is_file()
    assert torch.equal(task.model.state_dict()["quantize.embedding.weight"], sd["quantize.embedding.weight"])


def test_official_config_builds_the_official_network():
    from bfvr.train.dicface import build_dicface

    cfg = load_config(REPO / "configs" / "dicface" / "official.yaml")
    got = (cfg.loss.kl, cfg.loss.kl_prior, cfg.ema_decay, cfg.optim.lr, cfg.data.clip_len)
    assert got == (1.0, 0.1, 0.997, 5e-5, 5)
    with torch.device("meta"):
        net, fix = build_dicface(cfg)
    assert sum(p.numel() for p in net.parameters()) == 116_187_075  # the official count
    assert fix == () and [n for n, p in net.named_parameters() if not p.requires_grad] == ["position_emb"]
    for task in ("inpaint", "color"):
        c = load_config(REPO / "configs" / "dicface" / f"official_{task}.yaml")
        assert c.loss.kl == 0.0 and c.data.recipe == {"inpaint": "inpaint", "color": "gray"}[task]


# -------------------------------------------------------------------------------------------- training

@pytest.mark.slow  # 5 s of CPU, OMP_NUM_THREADS=1 (measured 2026-12-06)
def test_tiny_trains_a_few_steps_and_resumes_exactly(faces_dir, tmp_path):
    """4 real steps (restoration) straight = 2 + resume 2, bit for bit; the KL term falls from step 1."""
    rec = resume_equals_straight(lambda o, s: tiny(faces_dir, o, s), tmp_path, 4)
    assert all(np.isfinite(r["loss"]) for r in rec)
    assert {"l1", "kl", "perceptual", "kl_token", "alpha_sum"} <= set(rec[0])
    kl = [r["kl"] for r in rec]
    assert kl[-1] < kl[0], kl


@pytest.mark.slow
def test_inpainting_and_colourisation_train_with_the_gan(faces_dir, tmp_path):
    for recipe in ("inpaint", "gray"):
        rec = resume_equals_straight(
            lambda o, s, r=recipe: tiny(faces_dir, o, s, f"data.recipe={r}", "loss.kl=0", "loss.gan=1.0",
                                        "loss.disc_start=3", "disc.backbone=conv", "disc.width=16",
                                        "disc.depth=2", "disc.feat_dim=32"),
            tmp_path / recipe, 6)
        assert "g_gan" in rec[-1] and "d_loss" in rec[-1] and "g_gan" not in rec[0]
        assert lowered(rec, "l1", 2), [r["l1"] for r in rec]


@pytest.mark.slow
def test_tiny_config_lowers_its_loss_and_resumes_exactly_through_the_cli(faces_dir, tmp_path):
    """`bfvr train --config configs/dicface/tiny.yaml` as shipped (all 15 clips, 60 steps) vs 30 steps +
    `--resume`: the same logged losses and weights; the loss goes down."""
    from safetensors.torch import load_file

    common = ["--config", str(TINY), "--data", str(faces_dir), "--set", "tensorboard=false",
              "--set", "log_every=1", "--quiet"]
    assert run_cli("train", *common, "--out", str(tmp_path / "a")) == 0
    assert run_cli("train", *common, "--out", str(tmp_path / "b"), "--max-steps", "30") == 0
    assert run_cli("train", *common, "--out", str(tmp_path / "b"), "--resume") == 0

    def records(run: str) -> list[dict]:
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [r for r in map(json.loads, lines) if "loss" in r]

    a, b = records("a"), records("b")
    assert len(a) == 60 and [r["step"] for r in b] == list(range(1, 61))
    keys = ("loss", "l1", "kl", "perceptual")
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]
    for name in ("model", "ema"):
        wa, wb = (load_file(str(tmp_path / r / "checkpoints/step_00000060" / f"{name}.safetensors"))
                  for r in "ab")
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert lowered(a, "loss", 10) and lowered(a, "l1", 10), [round(r["loss"], 3) for r in a]

"""STC as the paper describes it, beside the official code: the MPR forms and codebook-usage logging, the
paper's degradation order (`stc-paper`), the VGG19 perceptual loss, the MLP discriminator heads with the
non-saturating log loss, the "first 24 frames" sampling and the paper configs. Real clips from ../shared."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bfvr.errors import ConfigError
from bfvr.models.stc.quantizer import (
    VectorQuantizerST,
    _sq_distances,
    gaussian_assignment,
    mpr_term,
    usage_stats,
)
from bfvr.train.config import config_from_dict, load_config
from helpers import run_cli

REPO = Path(__file__).resolve().parents[1]
VIDEO = "lp_driving_d18.mp4"  # 480x480 talking head, 216 frames


def tiny(faces_dir: Path, out: Path, **sections) -> dict:
    """A 2-level STC Stage I on 32x32 crops of a real clip, 4-frame clips (as tests/test_train.py)."""
    d = {
        "stage": "stage1",
        "name": "t",
        "out_dir": str(out),
        "seed": 3,
        "max_steps": 3,
        "log_every": 1,
        "ckpt_every": 100,
        "keep_ckpts": 0,
        "threads": 1,
        "device": "cpu",
        "tensorboard": False,
        "model": {"nf": 32, "ch_mult": [1, 2], "res_blocks": 1, "codebook_size": 64, "emb_dim": 32},
        "data": {
            "paths": [str(faces_dir / VIDEO)],
            "clip_len": 4,
            "size": 40,
            "crop": 32,
            "max_frames": 12,
            "batch_size": 2,
            "backend": "builtin",
        },
        "loss": {"disc_start": 2, "gan": 0.4},
        "disc": {"backbone": "conv", "width": 8, "depth": 2, "feat_dim": 16},
        "optim": {"lr": 1e-3},
    }
    for k, v in sections.items():
        if isinstance(v, dict):
            d.setdefault(k, {}).update(v)
        else:
            d[k] = v
    return d


# ----------------------------------------------------------------------------------------------------
# MPR


def _geometry(collapsed: bool, n: int = 256, dim: int = 64, tokens: int = 2048, seed: int = 0):
    """The geometry of a Stage-I run: codes at the official init U(+-1/N), latents ~3.6 from the origin
    (what the tiny run has); `collapsed`: the latents point in nearly one direction (few codes win)."""
    g = torch.Generator().manual_seed(seed)
    codes = (torch.rand(n, dim, generator=g) * 2 - 1) / n
    if collapsed:
        base = torch.randn(1, dim, generator=g)
        z = base + 0.15 * torch.randn(tokens, dim, generator=g)
    else:
        z = torch.randn(tokens, dim, generator=g)
    z = 3.6 * z / z.norm(dim=1, keepdim=True)
    return z, codes


def test_gaussian_mpr_measures_usage_where_the_printed_form_cannot() -> None:
    """With codes near the origin every token is at almost the same distance from every code: the paper's
    inverse-distance marginal is uniform (KL ~1e-7) for collapsed and spread usage alike, while the Gaussian
    form follows log(N / perplexity) of the hard assignment."""
    vals = {}
    for collapsed in (True, False):
        z, codes = _geometry(collapsed)
        d = _sq_distances(z, codes)
        u = usage_stats(d.argmin(1), codes.shape[0])
        target = math.log(codes.shape[0] / float(u["perplexity"]))
        paper = float(mpr_term(d, "paper"))
        gauss = float(mpr_term(d, "gaussian", 0.3))
        vals[collapsed] = (int(u["active"]), target, paper, gauss)
        assert paper < 1e-5
        assert 0.4 * target < gauss < 1.5 * target + 0.05
    (act_c, tgt_c, _, g_c), (act_s, tgt_s, _, g_s) = vals[True], vals[False]
    assert act_c < act_s and tgt_c > tgt_s + 1.0
    assert g_c > g_s + 0.5  # the Gaussian term separates collapsed from spread usage


def test_gaussian_mpr_is_scale_free_and_has_gradient() -> None:
    z, codes = _geometry(True)
    d = _sq_distances(z, codes)
    assert float(mpr_term(_sq_distances(10 * z, 10 * codes), "gaussian", 0.3)) == pytest.approx(
        float(mpr_term(d, "gaussian", 0.3)), rel=1e-4
    )
    q = gaussian_assignment(d, 0.3)
    assert torch.allclose(q.sum(1), torch.ones(len(q)))
    grads = {}
    for form in ("paper", "gaussian"):
        zz = z.clone().requires_grad_(True)
        cc = codes.clone().requires_grad_(True)
        mpr_term(_sq_distances(zz, cc), form, 0.3).backward()
        grads[form] = (zz.grad.norm().item(), cc.grad.norm().item())
    assert grads["gaussian"][0] > 1e3 * grads["paper"][0] and grads["gaussian"][1] > 1e3 * grads["paper"][1]


def test_quantizer_forms_and_errors() -> None:
    z = torch.randn(1, 32, 2, 4, 4)
    vals = {}
    for form in ("paper", "gaussian", "official", "none"):
        q = VectorQuantizerST(64, 32, mpr=form)
        torch.manual_seed(0)
        q.embedding_s.weight.data.uniform_(-1 / 64, 1 / 64)
        vals[form] = float(q(z)[2].detach())
    assert (
        vals["none"] == 0.0 and abs(vals["official"]) < 1e-6 and vals["gaussian"] > 100 * abs(vals["paper"])
    )
    with pytest.raises(ValueError, match="gaussian"):
        VectorQuantizerST(64, 32, mpr="bogus")
    with pytest.raises(ValueError, match="positive"):
        VectorQuantizerST(64, 32, mpr="gaussian", mpr_temperature=0)
    from bfvr.errors import ConfigError

    with pytest.raises(ConfigError, match="model.mpr"):
        config_from_dict({"model": {"mpr": "bogus"}})


def test_codebook_usage_is_logged(faces_dir: Path, tmp_path: Path) -> None:
    """Every record has the batch's active codes and the window's usage; histograms.jsonl has the per-code
    counts of each window (summing to the tokens quantised), TensorBoard a histogram per codebook."""
    from bfvr.train.tracking import read_histograms, read_metrics
    from bfvr.train.trainer import Trainer

    tb = pytest.importorskip("tensorboard") is not None
    cfg = config_from_dict(tiny(faces_dir, tmp_path / "u", tensorboard=tb, model={"mpr": "gaussian"}))
    Trainer(cfg, progress=False).run()
    recs, hists = read_metrics(tmp_path / "u"), read_histograms(tmp_path / "u")
    assert [r["step"] for r in recs] == [h["step"] for h in hists] == [1, 2, 3]
    tokens = 2 * (4 // 2) * (32 // 2) ** 2  # batch x T' x H' x W' of the 2-level model
    for r, h in zip(recs, hists):
        for k in ("s", "t"):
            c = np.array(h[f"codebook_usage_{k}"])
            assert len(c) == 64 and c.sum() == tokens
            assert r[f"usage_active_{k}"] == (c > 0).sum() == r[f"codes_active_{k}"]
            p = c[c > 0] / c.sum()
            assert r[f"usage_perplexity_{k}"] == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-6)
            assert r[f"perplexity_{k}"] == pytest.approx(r[f"usage_perplexity_{k}"], rel=1e-4)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "u" / "tb"), size_guidance={"histograms": 0})  # 0: keep every event
    acc.Reload()
    assert "codebook_usage_s" in acc.Tags()["histograms"]
    ev = acc.Histograms("codebook_usage_s")
    assert [e.step for e in ev] == [1, 2, 3] and ev[0].histogram_value.num == tokens


@pytest.mark.slow
def test_gaussian_mpr_keeps_more_codes_than_no_mpr_on_the_same_run(faces_dir: Path, tmp_path: Path) -> None:
    """The same seeded Stage-I run (2-level VQGAN, 64 codes, 32x32 crops of the 15 real clips, 40 steps, GAN
    off) with MPR off, with the printed paper form (weight 1) and with the Gaussian form at its defaults:
    over the last 20 steps the Gaussian run uses more codes and has a higher perplexity in both codebooks
    (measured: perplexity 51 / 35 against 22 / 12 off), and the printed form stays far below it (24 / 14)."""
    from bfvr.train.trainer import Trainer

    res = {}
    for form, w in (("none", 1.0), ("paper", 10.0), ("gaussian", 1.0)):
        cfg = config_from_dict(
            tiny(
                faces_dir,
                tmp_path / form,
                max_steps=40,
                log_every=20,
                model={"mpr": form},
                loss={"gan": 0.0, "mpr": w},
                data={"paths": [str(faces_dir)], "max_frames": 8},
            )
        )
        Trainer(cfg, progress=False).run()
        last = json.loads((tmp_path / form / "metrics.jsonl").read_text().splitlines()[-1])
        res[form] = {
            k: last[k]
            for k in ("usage_active_s", "usage_perplexity_s", "usage_active_t", "usage_perplexity_t", "l1")
        }
    none, paper, gauss = res["none"], res["paper"], res["gaussian"]
    for k in ("s", "t"):
        assert gauss[f"usage_active_{k}"] > none[f"usage_active_{k}"], res
        assert gauss[f"usage_perplexity_{k}"] > 1.3 * none[f"usage_perplexity_{k}"], res
        assert paper[f"usage_perplexity_{k}"] < 0.6 * gauss[f"usage_perplexity_{k}"], res


# ----------------------------------------------------------------------------------------------------
# degradation order


def _clip(faces_dir: Path, n: int = 12, size: int = 256) -> np.ndarray:
    import cv2

    from bfvr.io import read_frames

    fr = read_frames(faces_dir / VIDEO, max_frames=n)
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in fr])


def test_stc_paper_compresses_at_the_low_resolution_with_the_stc_draws(faces_dir: Path) -> None:
    """stc-paper draws exactly what stc draws for a seed; its output is blur -> down -> noise -> x264 at
    the low size -> bilinear up (checked against those steps run by hand), and it differs from stc."""
    import cv2

    from bfvr.degrade import Degradation, clip_rng, recipe
    from bfvr.degrade.codec import x264_roundtrip

    x = _clip(faces_dir)
    stc, paper = recipe("stc"), recipe("stc-paper")
    ps = stc.draw(clip_rng(5, "c"), 256, 256)
    pp = paper.draw(clip_rng(5, "c"), 256, 256)
    assert [o["op"] for o in ps["ops"]] == ["blur", "downscale", "noise", "upscale", "codec"]
    assert [o["op"] for o in pp["ops"]] == ["blur", "downscale", "noise", "codec", "upscale"]

    def by(p):
        return {o["op"]: o for o in p["ops"]}

    assert by(ps) == by(pp)  # the same blur, scale, noise level and seed, CRF
    a, b = stc.apply(x, ps), paper.apply(x, pp)
    low = Degradation(stc.ops[:3], "bdn").apply(x, {"ops": ps["ops"][:3]})
    crf = by(pp)["codec"]["crf"]
    w, h = by(pp)["downscale"]["size"]
    assert low.shape[1:3] == (h, w)
    up = [
        cv2.resize(f.astype(np.float32), (256, 256), interpolation=cv2.INTER_LINEAR)
        for f in x264_roundtrip(low, crf, fps=25)
    ]
    hand = np.clip(np.rint(np.stack(up)), 0, 255).astype(np.uint8)
    assert b.tobytes() == hand.tobytes()
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 0.5
    again, _ = paper(x, clip_rng(5, "c"))
    assert again.tobytes() == b.tobytes()


def test_cli_degrade_stc_paper_is_seeded_and_records_the_order(faces_dir: Path, tmp_path: Path) -> None:
    from bfvr.io import VideoWriter, read_frames

    src = tmp_path / "clip.mp4"
    with VideoWriter(src, fps=25, crf=12) as w:
        for f in _clip(faces_dir, 8, 128):
            w.write(f)
    outs = []
    for name in ("a", "b"):
        assert (
            run_cli(
                "degrade", str(src), str(tmp_path / f"{name}.mp4"), "--recipe", "stc-paper", "--seed", "3"
            )
            == 0
        )
        outs.append(read_frames(tmp_path / f"{name}.mp4"))
    assert outs[0].tobytes() == outs[1].tobytes()
    side = json.loads((tmp_path / "a.json").read_text())
    assert side["recipe"] == "stc-paper" and [o["op"] for o in side["ops"]][3:] == ["codec", "upscale"]
    assert run_cli("degrade", str(src), str(tmp_path / "c.mp4"), "--recipe", "stc", "--seed", "3") == 0
    assert read_frames(tmp_path / "c.mp4").tobytes() != outs[0].tobytes()


# ----------------------------------------------------------------------------------------------------
# VGG19 perceptual loss, discriminator heads, GAN losses


@pytest.fixture(scope="module")
def vgg19_file(tmp_path_factory) -> Path:
    """A randomly initialised VGG19 in torchvision's layout (no ImageNet weights exist offline)."""
    from safetensors.torch import save_file

    from bfvr.train.losses import vgg19_features

    torch.manual_seed(0)
    sd = {f"features.{k}": v for k, v in vgg19_features().state_dict().items()}
    sd["classifier.0.weight"] = torch.zeros(2, 2)  # the full torchvision dict also holds the classifier
    p = tmp_path_factory.mktemp("vgg") / "vgg19.safetensors"
    save_file(sd, str(p))
    return p


def test_vgg19_perceptual_loss_from_a_local_file(vgg19_file: Path, faces_dir: Path) -> None:
    from bfvr.train.losses import VGG19PerceptualLoss

    loss = VGG19PerceptualLoss(vgg19_file)
    assert [k for k in loss.state_dict() if k.startswith("features.")][
        -1
    ] == "features.34.bias"  # up to relu5_4
    x = torch.from_numpy(_clip(faces_dir, 2, 64)).permute(3, 0, 1, 2)[None].float() / 255
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1).requires_grad_(True)
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-7)
    v = loss(y, x)
    v.backward()
    assert v.item() > 0 and y.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in loss.parameters())
    loss.train()
    assert not loss.training


def test_vgg19_missing_or_wrong_weights_is_one_sentence(tmp_path: Path, faces_dir: Path, capsys) -> None:
    from safetensors.torch import save_file

    from bfvr.errors import WeightsNotFoundError
    from bfvr.metrics.lpips import LPIPSBackbone
    from bfvr.train.losses import VGG19PerceptualLoss

    with pytest.raises(WeightsNotFoundError, match="needs a local VGG19 weights file"):
        VGG19PerceptualLoss(None)
    with pytest.raises(WeightsNotFoundError, match="not found"):
        VGG19PerceptualLoss(tmp_path / "nope.pth")
    save_file(LPIPSBackbone("vgg").state_dict(), str(tmp_path / "vgg16.safetensors"))
    with pytest.raises(WeightsNotFoundError, match="not a torchvision VGG19"):
        VGG19PerceptualLoss(tmp_path / "vgg16.safetensors")
    # through `bfvr train`: one sentence on stderr, a non-zero exit, no run folder left behind
    cfg = tmp_path / "c.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump(tiny(faces_dir, tmp_path / "run", loss={"perceptual_net": "vgg19"})))
    assert run_cli("train", "--config", str(cfg), "--quiet") != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "needs a local VGG19 weights file (loss.vgg19_weights" in err[-1]
    assert "Traceback" not in "".join(err)
    assert not (tmp_path / "run").exists()


def test_mlp_heads_and_log_loss() -> None:
    from bfvr.models.stc.discriminator import ConvDiscriminator
    from bfvr.train.losses import log_d_loss, log_g_loss

    torch.manual_seed(0)
    d = ConvDiscriminator(width=8, depth=2, feat_dim=16, heads="mlp", head_hidden=24)
    keys = set(d.state_dict())
    assert {"disc1.0.weight", "disc1.2.weight", "disc4.2.bias"} <= keys and d.disc4[2].out_features == 4
    assert d.disc2[0].out_features == 24
    x = torch.rand(2, 3, 3, 16, 16)
    assert d(x).shape == (3 * 2 * 3,)
    lin = ConvDiscriminator(width=8, depth=2, feat_dim=16)
    assert {"disc1.weight", "disc2.weight", "disc4.weight"} <= set(lin.state_dict())
    with pytest.raises(ValueError, match="heads"):
        ConvDiscriminator(width=8, depth=2, feat_dim=16, heads="conv")
    zero = torch.zeros(6)
    assert log_d_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert log_g_loss(zero).item() == pytest.approx(math.log(2))
    # non-saturating: a fake the discriminator rejects with confidence still gives the generator a gradient
    fake = torch.full((4,), -12.0, requires_grad=True)
    log_g_loss(fake).backward()
    assert fake.grad[0].item() == pytest.approx(-1 / 4, rel=1e-4)


def test_paper_discriminator_and_loss_train(faces_dir: Path, tmp_path: Path) -> None:
    """A few real steps with the paper's heads and log loss (GAN on from step 2): finite, and the logged
    D loss is the log loss of the logits (2 log 2 ~ 1.386 for an undecided D)."""
    from bfvr.train.trainer import Trainer

    rec = Trainer(
        config_from_dict(tiny(faces_dir, tmp_path / "p", loss={"gan_loss": "log"}, disc={"heads": "mlp"})),
        progress=False,
    ).run()
    assert all(np.isfinite(r["loss"]) for r in rec)
    assert "g_gan" in rec[1] and 0.5 < rec[1]["d_loss"] < 3.0


# ----------------------------------------------------------------------------------------------------
# sampling and configs


@pytest.mark.parametrize("backend", ["builtin", "bfvr"])
def test_first_frames_window(faces_dir: Path, backend: str) -> None:
    """window: first -> every sample of a video is its first clip_len frames; random -> other windows too."""
    from bfvr.train.data import build_dataset

    base = {
        "paths": [str(faces_dir / VIDEO)],
        "clip_len": 4,
        "size": 32,
        "max_frames": 40,
        "backend": backend,
    }
    first = build_dataset(config_from_dict({"data": {**base, "window": "first"}}).data, seed=0)
    rand = build_dataset(config_from_dict({"data": base}).data, seed=0)
    a = [first[p]["gt"] for p in range(4)]
    assert all(torch.equal(a[0], t) for t in a[1:])
    assert any(not torch.equal(a[0], rand[p]["gt"]) for p in range(4))
    if backend == "builtin":
        import cv2

        from bfvr.io import read_frames

        fr = read_frames(faces_dir / VIDEO, max_frames=4)
        want = np.stack([cv2.resize(f, (32, 32), interpolation=cv2.INTER_AREA) for f in fr])
        assert torch.equal(a[0], torch.from_numpy(want).permute(3, 0, 1, 2).float() / 255)
    else:
        for e in range(3):
            first.base.set_epoch(e)
            rand.base.set_epoch(e)
            assert first.base[0]["start"] == 0 and first.base.max_frames == 4
        assert rand.base.max_frames == 40


def test_paper_configs_select_the_paper_choices() -> None:
    off = load_config(REPO / "configs/stc/stage1.yaml")
    pap = load_config(REPO / "configs/stc/paper_stage1.yaml")
    assert (
        off.model.mpr,
        off.loss.mpr,
        off.loss.perceptual_net,
        off.loss.gan_loss,
        off.disc.heads,
        off.data.window,
    ) == ("official", 1.0, "lpips", "hinge", "linear", "random")
    assert (
        pap.model.mpr,
        pap.loss.mpr,
        pap.loss.perceptual_net,
        pap.loss.gan_loss,
        pap.disc.heads,
        pap.data.window,
    ) == ("paper", 10.0, "vgg19", "log", "mlp", "first")
    assert (off.model.commitment, off.loss.perceptual_distance) == ("official", "l1")
    assert (pap.model.commitment, pap.loss.perceptual_distance) == ("paper", "l2sq")
    # apart from those, the paper config is the official one
    a, b = off.to_dict(), pap.to_dict()
    for sec, key in (
        ("model", "mpr"),
        ("model", "commitment"),
        ("loss", "mpr"),
        ("loss", "perceptual_net"),
        ("loss", "perceptual_distance"),
        ("loss", "vgg19_weights"),
        ("loss", "gan_loss"),
        ("disc", "heads"),
        ("data", "window"),
    ):
        a[sec].pop(key), b[sec].pop(key)
    for k in ("name", "out_dir"):
        a.pop(k), b.pop(k)
    assert a == b
    # defaults are the official choices
    d = config_from_dict({})
    assert (d.model.mpr, d.loss.perceptual_net, d.loss.gan_loss, d.disc.heads, d.data.window) == (
        "official",
        "lpips",
        "hinge",
        "linear",
        "random",
    )


@pytest.mark.slow
def test_tiny_paper_config_trains_on_cpu(faces_dir: Path, tmp_path: Path, vgg19_file: Path) -> None:
    """configs/stc/tiny_paper_stage1.yaml as shipped (shortened to 3 steps, GAN from step 2) through
    `bfvr train`, and with the VGG19 loss from a local file."""
    from bfvr.train.tracking import read_metrics

    cfg = str(REPO / "configs/stc/tiny_paper_stage1.yaml")
    assert (
        run_cli(
            "train",
            "--config",
            cfg,
            "--out",
            str(tmp_path / "run"),
            "--max-steps",
            "3",
            "--set",
            "loss.disc_start=2",
            "--set",
            "log_every=1",
            "--quiet",
        )
        == 0
    )
    recs = read_metrics(tmp_path / "run")
    assert [r["step"] for r in recs] == [1, 2, 3] and "d_loss" in recs[-1] and "usage_active_s" in recs[-1]
    assert (
        run_cli(
            "train",
            "--config",
            cfg,
            "--out",
            str(tmp_path / "vgg"),
            "--max-steps",
            "1",
            "--set",
            "loss.perceptual_net=vgg19",
            "--set",
            f"loss.vgg19_weights={vgg19_file}",
            "--quiet",
        )
        == 0
    )
    assert read_metrics(tmp_path / "vgg")[0]["perceptual"] > 0


def test_commitment_side_official_and_as_printed() -> None:
    """Official code loss: ||sg(z_q) - z||^2 + beta ||z_q - sg(z)||^2 (beta on the codebook term); the paper's
    Eq. 7 (model.commitment: paper): ||sg(z) - z_q||^2 + beta ||z - sg(z_q)||^2 (beta on the commitment
    term). Same value when beta = 1; the gradients to the encoder and to the codebooks swap their beta."""
    from bfvr.models.stc.quantizer import VectorQuantizerST

    torch.manual_seed(0)
    sd = VectorQuantizerST(16, 32, beta=0.25, mpr="none", sa_groups=8).state_dict()
    grads = {}
    for side in ("official", "paper"):
        q = VectorQuantizerST(16, 32, beta=0.25, mpr="none", sa_groups=8, commitment=side)
        q.load_state_dict(sd)
        z = torch.randn(1, 32, 2, 3, 3, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
        _, loss, _, _ = q(z)
        loss.backward()
        grads[side] = (loss.item(), z.grad.clone(), q.embedding_s.weight.grad.clone())
    (lo, gz_o, ge_o), (lp, gz_p, ge_p) = grads["official"], grads["paper"]
    assert torch.allclose(gz_p, 0.25 * gz_o, atol=1e-7)          # encoder: 1 -> beta
    assert torch.allclose(ge_p, ge_o / 0.25, atol=1e-6)          # codebook: beta -> 1
    assert lo == pytest.approx(lp, rel=1e-6)  # both terms are the same squared distance: same value
    with pytest.raises(ValueError, match="commitment"):
        VectorQuantizerST(16, 32, commitment="sideways")
    with pytest.raises(ConfigError, match="model.commitment"):
        config_from_dict({"model": {"commitment": "sideways"}})


def test_vgg19_perceptual_distance_squared_l2(vgg19_file: Path) -> None:
    """loss.perceptual_distance l2sq = the mean squared feature difference (the papers' ||.||_2^2), l1 =
    the mean absolute one; both from the same taps."""
    from bfvr.train.losses import VGG19PerceptualLoss

    torch.manual_seed(0)
    a, b = torch.rand(1, 3, 2, 32, 32), torch.rand(1, 3, 2, 32, 32)
    l1 = VGG19PerceptualLoss(vgg19_file, distance="l1")
    l2 = VGG19PerceptualLoss(vgg19_file, distance="l2sq")
    n = ((torch.cat([a, b]).transpose(1, 2).reshape(4, 3, 32, 32)) - l1.mean) / l1.std
    taps = l1._taps(n)
    e1 = sum((t[:2] - t[2:]).abs().mean() for t in taps)
    e2 = sum((t[:2] - t[2:]).pow(2).mean() for t in taps)
    assert l1(a, b).item() == pytest.approx(e1.item(), rel=1e-5)
    assert l2(a, b).item() == pytest.approx(e2.item(), rel=1e-5)
    assert l2(a, a).item() == 0.0

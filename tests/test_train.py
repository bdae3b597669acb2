"""bfvr.train: configs, schedule, losses, discriminators, checkpoints, and short real training runs
(tiny networks, 32x32 crops of a real face video, 4-frame clips, a few steps)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bfvr.errors import ConfigError, OutputError
from bfvr.train.config import TrainConfig, config_from_dict, load_config
from helpers import tiny_dict

REPO = Path(__file__).resolve().parents[1]
VIDEO = "lp_driving_d18.mp4"  # 480x480 talking head, 216 frames


# ----------------------------------------------------------------------------------------------------
# configs


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path: Path) -> None:
    over = ["model.stage1_weights=/x"] if "stage2" in path.name or "deflicker" in path.name else []
    cfg = load_config(path, over)
    assert isinstance(cfg, TrainConfig)
    # the resolved config round-trips through YAML
    assert config_from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()


def test_official_recipe_values() -> None:
    s1 = load_config(REPO / "configs/stc/stage1.yaml")
    assert (s1.optim.lr, s1.optim.eta_min, s1.optim.periods, s1.max_steps) == (7e-5, 6e-5, [250000], 250000)
    assert ((s1.loss.disc_start, s1.loss.gan, s1.ema_decay, s1.data.size, s1.data.clip_len)
            == (2001, 0.4, 0.995, 256, 24))
    s2a = load_config(REPO / "configs/stc/stage2_nonoise.yaml", ["model.stage1_weights=/x"])
    s2b = load_config(REPO / "configs/stc/stage2_all.yaml", ["model.stage1_weights=/x"])
    assert ((s2a.max_steps, s2a.data.recipe, s2a.optim.lr, s2a.optim.milestones)
            == (2000, "stc-nonoise", 2e-5, [20000, 35000]))
    assert (s2b.max_steps, s2b.data.recipe, s2b.loss.feat, s2b.loss.ce) == (50000, "stc", 10.0, 1.0)
    df = load_config(REPO / "configs/stc/deflicker.yaml", ["model.stage1_weights=/x"])
    assert (df.model.n_head, df.model.n_layers, df.optim.lr, df.loss.ce) == (4, 6, 5e-5, 0.5)


def test_config_errors_and_overrides(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        config_from_dict({"optim": {"lrr": 1}})
    with pytest.raises(ConfigError, match="must be a number"):
        config_from_dict({"optim": {"lr": "fast"}})
    with pytest.raises(ConfigError, match="stage1_weights"):
        config_from_dict({"stage": "stage2"})
    cfg = config_from_dict({}, ["optim.lr=1e-3", "data.paths=[a, b]", "bf16=true"])
    assert cfg.optim.lr == 1e-3 and cfg.data.paths == ["a", "b"] and cfg.bf16 is True
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_lr_schedules() -> None:
    from bfvr.train.config import OptimConfig
    from bfvr.train.trainer import lr_at

    o = OptimConfig(scheduler="cosine_restart", periods=[100], eta_min=1e-5)
    assert lr_at(1, 1e-4, o) == pytest.approx(1e-4)
    assert lr_at(51, 1e-4, o) == pytest.approx(5.5e-5)
    assert lr_at(500, 1e-4, o) == pytest.approx(1e-5)
    m = OptimConfig(scheduler="multistep", milestones=[10, 20], gamma=0.5)
    assert [lr_at(s, 1.0, m) for s in (10, 11, 21)] == [1.0, 0.5, 0.25]


# ----------------------------------------------------------------------------------------------------
# losses and discriminators


def test_ssim_matches_skimage() -> None:
    """The SSIM of the offline perceptual substitute (the metrics' `ssim_map`, on [0, 1] tensors)."""
    from skimage.metrics import structural_similarity

    from bfvr.metrics.fullref import ssim_map

    def ssim(x, y):
        return ssim_map(x, y, 1.0).mean()

    rng = np.random.default_rng(0)
    a = rng.random((48, 48)).astype(np.float64)
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                data_range=1.0)
    ours = ssim(torch.tensor(a)[None, None], torch.tensor(b)[None, None]).item()
    assert ours == pytest.approx(ref, abs=2e-3)
    assert ssim(torch.tensor(a)[None, None], torch.tensor(a)[None, None]).item() == pytest.approx(1.0)


def test_hinge_losses() -> None:
    from bfvr.train.losses import hinge_d_loss, hinge_g_loss

    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.25 + 0.5)
    assert hinge_g_loss(fake).item() == pytest.approx(1.0)


def test_conv_discriminator_shape_and_grad() -> None:
    from bfvr.models.stc.discriminator import ConvDiscriminator

    d = ConvDiscriminator(width=8, depth=2, feat_dim=16)
    x = torch.rand(2, 3, 4, 32, 32, requires_grad=True)
    y = d(x)
    assert y.shape == (3 * 2 * 4,)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert {"disc1.weight", "disc2.weight", "disc4.weight"} <= set(d.state_dict())
    assert d.disc2.weight.shape == (2, 16) and d.disc4.weight.shape == (4, 16)


class _StubViT(torch.nn.Module):
    """Stands in for DINOv2 ViT-S/14 (no weights offline): (N,3,224,224) -> (N,384)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Conv2d(3, 384, 14, stride=14)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-2:] == (224, 224)
        return self.proj(x).mean(dim=(2, 3))


def test_dinov2_discriminator_frozen_backbone() -> None:
    from bfvr.models.stc.discriminator import DINOv2Discriminator

    d = DINOv2Discriminator(_StubViT())
    assert all(not p.requires_grad for p in d.backbone.parameters())
    assert all(p.requires_grad for n, p in d.named_parameters() if n.startswith("disc"))
    d.train()
    assert not d.backbone.training
    x = torch.rand(1, 3, 2, 32, 32, requires_grad=True)
    out = d(x)
    assert out.shape == (6,)
    out.sum().backward()
    assert x.grad.abs().sum() > 0  # the generator gets a gradient through the frozen backbone
    x2 = x.detach().clone().requires_grad_(True)
    d_off = DINOv2Discriminator(_StubViT(), official_no_grad=True)
    d_off(x2).sum().backward()
    assert x2.grad is None  # official: the backbone runs under no_grad


def test_dinov2_offline_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from bfvr.errors import BfvrError
    from bfvr.models.stc.discriminator import DINOv2Discriminator

    def no_network(*a, **k):
        raise AssertionError(f"torch.hub.load called with {a} {k}")

    monkeypatch.setattr(torch.hub, "load", no_network)
    with pytest.raises(BfvrError, match="dinov2_weights"):  # no weights file: nothing is fetched
        DINOv2Discriminator.load()
    w = tmp_path / "vits14.pth"
    torch.save({}, w)
    with pytest.raises(BfvrError, match="hubconf.py"):
        DINOv2Discriminator.load(repo=str(tmp_path), weights=str(w))
    real_import = builtins.__import__

    def no_dinov2(name, *a, **k):
        if name.startswith("dinov2"):
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_dinov2)
    with pytest.raises(BfvrError, match="dinov2 package"):  # no repo, no package: one sentence, no hub
        DINOv2Discriminator.load(weights=str(w))


def test_perceptual_fallback_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    from bfvr.train.losses import SSIMGradientLoss, build_perceptual

    with caplog.at_level("WARNING", logger="bfvr.train"):
        p = build_perceptual(None, None, "ssim+grad")
    assert isinstance(p, SSIMGradientLoss)
    assert "substitute" in caplog.text
    x = torch.rand(1, 3, 2, 24, 24)
    assert p(x, x).item() == pytest.approx(0.0, abs=1e-5)
    assert p(x, torch.rand_like(x)).item() > 0.5


def test_lpips_vgg_from_local_weights(tmp_path: Path) -> None:
    """LPIPS-VGG loads a torchvision-layout VGG16 state_dict (random weights here: none ship offline)."""
    from safetensors.torch import save_file

    from bfvr.metrics.lpips import LPIPSBackbone
    from bfvr.train.losses import LPIPSVGG

    torch.manual_seed(0)
    save_file(LPIPSBackbone("vgg").state_dict(), str(tmp_path / "vgg16.safetensors"))
    loss = LPIPSVGG(tmp_path / "vgg16.safetensors")
    x = torch.rand(1, 3, 1, 32, 32)
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(x, torch.rand_like(x)).item() > 0
    assert not any(p.requires_grad for p in loss.parameters())


# ----------------------------------------------------------------------------------------------------
# checkpoints


def test_checkpoint_atomic_layout_and_pruning(tmp_path: Path) -> None:
    from bfvr.train import checkpoint as ck

    sd = {"w": torch.arange(6.0).view(2, 3)}
    for step in (1, 2, 3):
        ck.save_checkpoint(tmp_path, step, {"model": sd, "ema": sd}, {"step": step}, {}, keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["latest", "step_00000002", "step_00000003"]  # no temporary folders left behind
    assert ck.find_checkpoint(tmp_path).name == "step_00000003"
    assert torch.equal(ck.load_weights(tmp_path)["w"], sd["w"])
    # a crash after the folder was written but before `latest` moved: latest still names a complete one
    (tmp_path / "checkpoints" / ".step_00000004.tmp1").mkdir()
    assert ck.find_checkpoint(tmp_path).name == "step_00000003"


def test_resume_removes_the_temp_files_of_a_killed_checkpoint_write(tmp_path: Path, faces_dir: Path,
                                                                  caplog) -> None:
    """A kill during a checkpoint write leaves `checkpoints/.step_N.XXXXXXXX.partial` (earlier versions:
    `.step_N.tmp<pid>`) and a `.latest.XXXXXXXX.partial`; `--resume` removes them, and only them: not in
    a folder without bfvr's marker, not a temp-named folder holding a file of someone else's, no link."""
    import logging

    from bfvr.train import checkpoint as ck
    from bfvr.train.config import config_from_dict
    from bfvr.train.trainer import Trainer

    run = tmp_path / "run"
    Trainer(config_from_dict(tiny_dict(faces_dir, run, max_steps=1, ckpt_every=1)), progress=False).run()
    cdir = run / "checkpoints"
    ours = [".step_00000002.ab3_x9zq.partial", ".step_00000002.tmp4242"]
    for n in ours:
        (cdir / n).mkdir()
        (cdir / n / "model.safetensors").write_bytes(b"half a checkpoint")
    (cdir / ".latest.k2j4_8d0.partial").write_text("step_00000002")
    (cdir / ".step_00000003.tmp77").mkdir()
    (cdir / ".step_00000003.tmp77" / "notes.txt").write_text("mine")  # not a checkpoint file: left alone
    keep = {".step_00000003.tmp77"}

    # without the marker (a folder bfvr cannot tell it made) nothing is removed
    (run / ck.RUN_MARKER).rename(tmp_path / "marker")
    assert ck.remove_temp_checkpoints(run) == []
    (tmp_path / "marker").rename(run / ck.RUN_MARKER)

    with caplog.at_level(logging.INFO, logger="bfvr.train"):
        Trainer(config_from_dict(tiny_dict(faces_dir, run, max_steps=2, ckpt_every=1)), resume=True,
                progress=False).run()
    names = {p.name for p in cdir.iterdir()}
    assert names == {"latest", "step_00000001", "step_00000002"} | keep
    assert (cdir / ".step_00000003.tmp77" / "notes.txt").read_text() == "mine"
    assert "removed 3 unfinished checkpoint" in caplog.text
    # a link with such a name (a run folder holding one is refused by --resume) is never followed nor removed
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "state.pt").write_text("x")
    (cdir / ".step_00000004.tmp5").symlink_to(tmp_path / "elsewhere")
    assert ck.remove_temp_checkpoints(run) == [] and (tmp_path / "elsewhere" / "state.pt").exists()


def test_rng_state_roundtrip() -> None:
    import random

    from bfvr.train import checkpoint as ck

    st = ck.rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    ck.set_rng_state(st)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


# ----------------------------------------------------------------------------------------------------
# real short runs


def test_stage1_resume_is_exact(faces_dir: Path, tmp_path: Path) -> None:
    """Run 4 steps straight; run 2 steps, drop everything, resume from the checkpoint to step 4: the
    logged losses (incl. GAN terms from step 2) and the final weights/EMA are bit-identical."""
    from safetensors.torch import load_file

    from bfvr.train.trainer import Trainer

    cfg_a = config_from_dict(tiny_dict(faces_dir, tmp_path / "a"))
    ta = Trainer(cfg_a, progress=False)
    rec_a = ta.run()
    cfg_b = config_from_dict(tiny_dict(faces_dir, tmp_path / "b"))
    Trainer(cfg_b, progress=False).run(max_steps=2)
    with pytest.raises(OutputError, match="--resume"):
        Trainer(cfg_b, progress=False)
    torch.manual_seed(12345)  # a fresh process would not share the first one's RNG state
    tb = Trainer(cfg_b, resume=True, progress=False)
    assert tb.step == 2
    rec_b = tb.run()
    assert [r["step"] for r in rec_b] == [3, 4]
    for ra, rb in zip(rec_a[2:], rec_b):
        assert ra == rb
    assert "d_loss" in rec_b[0] and "g_gan" in rec_b[0]
    for name in ("model", "ema", "disc"):
        wa = load_file(str(tmp_path / "a/checkpoints/step_00000004" / f"{name}.safetensors"))
        wb = load_file(str(tmp_path / "b/checkpoints/step_00000004" / f"{name}.safetensors"))
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # the logged curve of the resumed run equals the straight one, and the run folder is documented
    from bfvr.train.tracking import read_metrics

    assert read_metrics(tmp_path / "a") == [{**r, "time": m["time"]} for r, m in
                                              zip(read_metrics(tmp_path / "b"), read_metrics(tmp_path / "a"))]
    runs = json.loads((tmp_path / "b/run.json").read_text())
    assert len(runs) == 2 and runs[1]["resume"] and runs[0]["bfvr_version"]
    from bfvr.train.trainer import source_checkout

    assert (len(runs[0].get("git_revision", "")) == 40) is (source_checkout() is not None)
    assert load_config(tmp_path / "b/config.yaml").to_dict() == cfg_b.to_dict()


def test_stage1_accumulation_equals_bigger_batch(faces_dir: Path, tmp_path: Path) -> None:
    """batch 2 x accum 1 and batch 1 x accum 2 see the same clips and give the same step-1 loss."""
    from bfvr.train.trainer import Trainer

    ra = Trainer(config_from_dict(tiny_dict(faces_dir, tmp_path / "a", max_steps=1, model={"mpr": "none"})),
                 progress=False).run()
    rb = Trainer(config_from_dict(tiny_dict(faces_dir, tmp_path / "b", max_steps=1, accum_steps=2,
                                            model={"mpr": "none"}, data={"batch_size": 1})),
                 progress=False).run()
    for k in ("loss", "l1", "codebook", "perceptual"):
        assert rb[0][k] == pytest.approx(ra[0][k], rel=1e-5), k


def test_stage2_trains_from_stage1_run(faces_dir: Path, tmp_path: Path) -> None:
    """Stage II on a Stage-I run folder: frozen codebooks/generator, CE + feature loss, logged accuracy."""
    from bfvr.train.trainer import Trainer

    s1 = tmp_path / "s1"
    Trainer(config_from_dict(tiny_dict(faces_dir, s1, max_steps=1, ckpt_every=1)), progress=False).run()
    d = tiny_dict(faces_dir, tmp_path / "s2", stage="stage2", max_steps=2,
                  model={"stage1_weights": str(s1), "n_head": 2, "n_layers": 1, "dim_mlp": 64,
                         "connect_list": []},
                  data={"recipe": "stc"}, optim={"lr": 1e-3})
    t = Trainer(config_from_dict(d), progress=False)
    frozen = {n: p.detach().clone() for n, p in t.model.named_parameters()
              if n.startswith(("quantize.", "generator."))}
    assert frozen and all(not p.requires_grad for n, p in t.model.named_parameters() if n in frozen)
    rec = t.run()
    assert {"ce_s", "ce_t", "feat", "acc_s", "acc_t"} <= set(rec[0])
    assert all(np.isfinite(r["loss"]) for r in rec)
    assert all(torch.equal(p, frozen[n]) for n, p in t.model.named_parameters() if n in frozen)
    # the teacher's codebook is the Stage-I one
    assert torch.equal(t.task.teacher.quantize.embedding_s.weight, t.model.quantize.embedding_s.weight)


def test_cli_train_errors(tmp_path: Path) -> None:
    from helpers import run_cli

    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {lrr: 1}\n")
    assert run_cli("train", "--config", str(bad)) == 2


def test_project_dataset_backend(faces_dir: Path, tmp_path: Path) -> None:
    """data.backend bfvr: bfvr.data.ClipDataset behind the position interface (deterministic per position,
    per-epoch permutation, random crop of the LQ/GT pair), and one real training step on it."""
    from bfvr.train.data import build_dataset
    from bfvr.train.trainer import Trainer

    d = tiny_dict(faces_dir, tmp_path / "p", max_steps=1,
                  data={"backend": "bfvr", "recipe": "stc-nonoise",
                        "paths": [str(faces_dir / VIDEO), str(faces_dir / "lp_driving_d20.mp4")]})
    cfg = config_from_dict(d)
    ds, ds2 = build_dataset(cfg.data, seed=1), build_dataset(cfg.data, seed=1)
    a, b = ds[3], ds2[3]
    assert a["gt"].shape == a["lq"].shape == (3, 4, 32, 32)
    assert torch.equal(a["gt"], b["gt"]) and torch.equal(a["lq"], b["lq"])
    assert not torch.equal(a["lq"], a["gt"])
    assert sorted(ds._index(p) for p in range(2)) == [0, 1]
    assert sorted(ds._index(p) for p in range(2, 4)) == [0, 1]
    rec = Trainer(cfg, progress=False).run()
    assert np.isfinite(rec[0]["loss"])


def test_tensorboard_events_when_installed(faces_dir: Path, tmp_path: Path) -> None:
    """With the optional `tensorboard` package the scalars also go to TensorBoard event files."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from bfvr.train.trainer import Trainer

    Trainer(config_from_dict(tiny_dict(faces_dir, tmp_path / "tb", max_steps=2, tensorboard=True,
                                       model={"mpr": "none"})), progress=False).run()
    acc = EventAccumulator(str(tmp_path / "tb" / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("l1")] == [1, 2]
    jsonl = [json.loads(x)["l1"] for x in (tmp_path / "tb/metrics.jsonl").read_text().splitlines()]
    assert [e.value for e in acc.Scalars("l1")] == pytest.approx(jsonl)


def test_resume_with_other_model_settings_is_a_clear_error(faces_dir: Path, tmp_path: Path) -> None:
    from bfvr.train.trainer import Trainer

    Trainer(config_from_dict(tiny_dict(faces_dir, tmp_path / "r", max_steps=1, ckpt_every=1)),
            progress=False).run()
    other = config_from_dict(tiny_dict(faces_dir, tmp_path / "r", model={"emb_dim": 16}))
    with pytest.raises(ConfigError, match="does not fit"):
        Trainer(other, resume=True, progress=False)
    with pytest.raises(ConfigError, match="holds no checkpoint"):
        Trainer(config_from_dict(tiny_dict(faces_dir, tmp_path / "empty")), resume=True, progress=False)

"""Typed per-task training configs (issue 25 item 3): every shipped YAML loads into its task's class, the
config stored with the shipped weights still resolves, configs resolved by older bfvr (one flat schema)
load, and a bad key or value is one sentence naming the key and what it allows (`bfvr train`: exit 2).
Also the run provenance (item 7): the bfvr version always, a git revision only for a checkout of bfvr."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from bfvr.errors import ConfigError
from bfvr.train.config import TrainConfig, config_from_dict, load_config
from bfvr.train.tasks import TASKS, task_config
from helpers import REPO, run_cli

CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


def _needs_stage1(path: Path) -> bool:
    raw = yaml.safe_load(path.read_text())
    task = raw.get("task") or f"stc-{raw.get('stage', 'stage1')}"
    return not task.endswith("stage1") and task.split("-")[0] in ("stc", "pgtformer")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_loads_into_its_tasks_class(path: Path) -> None:
    cfg = load_config(path, ["model.stage1_weights=/x"] if _needs_stage1(path) else [])
    assert type(cfg) is task_config(cfg.task_name) and cfg.task_name in TASKS
    # the task's own sections and nothing else: a resolved config names only keys its task reads
    assert set(cfg.to_dict()) == set(type(cfg).model_fields)
    assert config_from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()


def test_the_four_methods_own_different_sections() -> None:
    lite = config_from_dict({"task": "lite"})
    stc = config_from_dict({})
    pgt = config_from_dict({"task": "pgtformer-stage1"})
    dic = config_from_dict({"task": "dicface"})
    assert stc.task_name == "stc-stage1" and stc.name == "stc_stage1" and stc.out_dir == "runs/stc_stage1"
    assert set(type(lite.loss).model_fields) == {"l1", "temporal", "ssim"} and not hasattr(lite, "disc")
    assert "kl_prior" in type(dic.loss).model_fields and "kl_prior" not in type(pgt.loss).model_fields
    assert "nf" in type(stc.model).model_fields and "nf" not in type(lite.model).model_fields
    assert stc.disc.backbone == pgt.disc.backbone == dic.disc.backbone == "dinov2"


def test_shipped_weights_metadata_config_resolves() -> None:
    from safetensors import safe_open

    files = sorted((REPO / "src/bfvr/models").glob("*/weights/*.safetensors"))
    assert files
    for f in files:
        with safe_open(str(f), "pt") as s:
            meta = s.metadata() or {}
        if "resolved_config" not in meta:
            continue
        raw = yaml.safe_load(meta["resolved_config"])
        cfg = config_from_dict(raw)
        assert cfg.task_name == meta["task"] and cfg.name == meta["name"]
        # what the task read is kept exactly; the other tasks' keys of the old flat schema are gone
        assert cfg.model.extra == raw["model"]["extra"] and cfg.optim.lr == raw["optim"]["lr"]
        for key, value in cfg.to_dict()["loss"].items():
            assert raw["loss"][key] == value, key
        assert "nf" not in cfg.to_dict()["model"] and "kl" not in cfg.to_dict()["loss"]


def test_old_flat_dump_loads_but_a_users_foreign_key_is_refused() -> None:
    flat = {"task": "pgtformer-stage1", "stage": "stage1",
            "model": {"nf": 32, "init_grow": False, "parsing_weights": None, "extra": {"tf": 3}},
            "loss": {"kl": 1.0, "temporal": 0.0, "codebook": 0.5}, "disc": {"backbone": "conv"}}
    cfg = config_from_dict(flat)
    assert (cfg.loss.codebook, cfg.disc.backbone, cfg.model.extra) == (0.5, "conv", {"tf": 3})
    with pytest.raises(ConfigError) as e:
        config_from_dict({"task": "pgtformer-stage1", "loss": {"kl": 1.0}})
    assert str(e.value).startswith("unknown key 'loss.kl' in loss of a pgtformer-stage1 config; allowed "
                                   "there: ") and "codebook" in str(e.value)


@pytest.mark.parametrize("override, words", [
    ("optim.lrr=1", "unknown key 'optim.lrr' in optim; allowed there: betas, d_lr, eta_min,"),
    ("optim.lr=fast", "optim.lr must be a number, not 'fast'."),
    ("optim.lr=0", "optim.lr must be a positive finite number, got 0"),
    ("optim.lr=.inf", "optim.lr must be a positive finite number, not inf."),
    ("optim.betas=[0.9]", "optim.betas takes 2 values, got [0.9]."),
    ("optim.scheduler=linear", "optim.scheduler must be 'constant', 'cosine_restart' or 'multistep', "
                               "not 'linear'."),
    ("data.color_jitter=1.5", "data.color_jitter must be in [0, 1), got 1.5"),
    ("data.clip_len=2.5", "data.clip_len must be an integer, not 2.5."),
    ("model.ch_mult=[1, a]", "model.ch_mult[1] must be an integer, not 'a'."),
    ("bf16=3", "bf16 must be true or false, not 3."),
    ("loss=3", "loss must be a mapping, not 3."),
    ("task=nope", "unknown task 'nope'; choose one of: stc-stage1,"),
])
def test_bad_values_are_one_sentence_naming_the_key(override: str, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        config_from_dict({}, [override])
    msg = str(e.value)
    assert msg.startswith(words), msg
    assert "\n" not in msg and "pydantic" not in msg and "errors.pydantic.dev" not in msg


def test_cli_unknown_key_exits_2_with_one_sentence(tmp_path: Path, capsys) -> None:
    code = run_cli("train", "-c", str(REPO / "configs/lite/tiny.yaml"), "--set", "loss.perceptual=1",
                   "--out", str(tmp_path / "run"), "-q")
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("bfvr: error: unknown key 'loss.perceptual' in loss of a lite config; allowed "
                               "there: l1, ssim, temporal."), err
    assert not (tmp_path / "run").exists()


def test_print_config_shows_only_the_tasks_sections(capsys) -> None:
    assert run_cli("train", "-c", str(REPO / "configs/lite/tiny.yaml"), "--print-config",
                   "--set", "loss.ssim=0.25") == 0
    out = yaml.safe_load(capsys.readouterr().out)
    assert out["loss"] == {"l1": 1.0, "temporal": 0.5, "ssim": 0.25} and "disc" not in out
    assert isinstance(load_config(REPO / "configs/lite/tiny.yaml"), TrainConfig)


def test_run_provenance_names_a_git_revision_only_for_a_checkout_of_bfvr(tmp_path: Path) -> None:
    from bfvr import __version__
    from bfvr.train.trainer import run_provenance, source_checkout

    def tree(root: Path, name: str, package: str = "src/bfvr") -> Path:
        (root / package).mkdir(parents=True)
        (root / "pyproject.toml").write_text(f'[project]\nname = "{name}"\n')
        subprocess.run(["git", "init", "-q", str(root)], check=True)
        return root / package

    assert source_checkout(tree(tmp_path / "mine", "bfvr")) == (tmp_path / "mine").resolve()
    assert source_checkout(tree(tmp_path / "other", "someapp")) is None  # another project's repository
    # an installed bfvr inside someone's repository (a virtualenv in their project)
    assert source_checkout(tree(tmp_path / "proj", "bfvr", ".venv/lib/python3/site-packages/bfvr")) is None
    nogit = tmp_path / "nogit" / "src" / "bfvr"
    nogit.mkdir(parents=True)
    (tmp_path / "nogit" / "pyproject.toml").write_text('[project]\nname = "bfvr"\n')
    assert source_checkout(nogit) is None
    prov = run_provenance()
    assert prov["bfvr_version"] == __version__
    if source_checkout() is not None:  # the tests run from a checkout of bfvr
        assert len(prov["git_revision"]) == 40 and isinstance(prov["git_dirty"], bool)

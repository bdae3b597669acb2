"""The method registry (`bfvr.models.registry`): built-in methods found as plugins are, a method registered by
hand seen by every table and command, clashes refused, and capabilities instead of name checks."""

from __future__ import annotations

import pytest

from bfvr.errors import ConfigError, ModelError
from bfvr.models import hub, registry
from bfvr.models import weights as W
from bfvr.models.spec import Method, ModelSpec, PasteMask
from bfvr.models.weights import WeightsEntry
from helpers import run_cli


@pytest.fixture
def extra_method():
    built = []

    def build(device, **options):
        from bfvr.engine.base import IdentityModel

        built.append(options)
        return IdentityModel(device)

    spec = ModelSpec("extra-model", "an extra model", build, capabilities=frozenset({"mask"}))
    m = Method("extra", models=(spec,),
               weights=(WeightsEntry("extra-weights", "extra.safetensors", key=None),),
               tasks={"extra-task": "bfvr_extra.task:Task"})
    registry.register(m)
    yield m, built
    registry.unregister("extra")


def test_builtin_methods_and_their_tables():
    ms = registry.methods()
    assert {"stc", "dicface", "pgtformer", "lite", "core"} <= set(ms)
    assert {"stc-stage1", "stc-stage2", "lite", "dicface", "pgtformer-stage4"} <= set(registry.TASKS)
    assert registry.owner("model", "stc-deflicker") == "stc" and registry.owner("task", "lite") == "lite"
    assert set(W.WEIGHTS) >= {"bfvr-lite", "dicface-codeformer", "pgtformer", "stc"}
    assert "parsing" in registry.PASTE_MASKS
    # the bundled weights are the method's package data
    assert W.cached_path("bfvr-lite").is_file()


def test_a_registered_method_is_seen_everywhere(extra_method, capsys):
    _, built = extra_method
    assert "extra-model" in [s.name for s in hub.available_models()]
    assert W.get_entry("extra-weights").filename == "extra.safetensors"
    assert registry.TASKS["extra-task"] == "bfvr_extra.task:Task"
    assert run_cli("models") == 0 and "extra-model" in capsys.readouterr().out
    model = hub.load_model("extra-model", mask="m.png")
    assert model.name == "identity" and built[-1]["mask"] == "m.png"
    # capabilities, not names: --mask is now also taken by the extra model
    with pytest.raises(ConfigError) as e:
        hub.require("stc", "mask", "--mask")
    assert str(e.value) == ("--mask goes with --model dicface-inpaint or extra-model; model 'stc' does not "
                            "take it.")
    hub.require("extra-model", "mask")


def test_gone_after_unregister(extra_method):
    registry.unregister("extra")
    assert "extra-model" not in registry.MODELS
    with pytest.raises(ModelError, match="unknown model 'extra-model'"):
        hub.get_spec("extra-model")


def test_clashing_names_are_one_sentence():
    registry.register(Method("again", models=(ModelSpec("stc", "a second stc", lambda **kw: None),)))
    try:
        with pytest.raises(ModelError, match="model 'stc' is declared by two bfvr methods"):
            registry.methods()
    finally:
        registry.unregister("again")
    assert registry.owner("model", "stc") == "stc"


def test_paste_masks_come_from_methods(tmp_path, monkeypatch):
    monkeypatch.setenv("BFVR_HOME", str(tmp_path))
    hub.check_paste_mask("pgtformer", "parsing")  # its own network: no weights needed beforehand
    with pytest.raises(ConfigError, match="needs face-parsing weights"):
        hub.check_paste_mask("stc", "parsing")  # offered by PGTFormer's method, whose weights are not here
    with pytest.raises(ConfigError, match="no installed method does"):
        hub.check_paste_mask("stc", "halo")
    seen = []
    registry.register(Method("halo", paste_masks=(PasteMask("halo", lambda env, w=None: seen.append(w) or
                                                            (lambda face: env), lambda w=None: None),)))
    try:
        hub.check_paste_mask("stc", "halo")
        fn = hub.paste_mask_factory("halo", "w.pth")("envelope")
        assert fn(None) == "envelope" and seen == ["w.pth"]
    finally:
        registry.unregister("halo")


def test_a_broken_plugin_is_left_out_with_one_line(monkeypatch, capsys):
    from importlib.metadata import EntryPoint

    eps = [EntryPoint("broken", "bfvr_no_such_package.method:METHOD", registry.GROUP),
           EntryPoint("lite", "bfvr.models.lite.method:METHOD", registry.GROUP)]  # a built-in: loaded once
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: [e for e in eps if e.group == group])
    registry.reload()
    try:
        assert "lite" in registry.methods() and "broken" not in registry.methods()
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "the bfvr method plugin 'broken'" in err and "left out" in err
    finally:
        monkeypatch.undo()
        registry.reload()

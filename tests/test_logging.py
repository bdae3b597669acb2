"""Logging: every package logs to ``logging.getLogger(__name__)``; ``bfvr -v`` shows those messages on
stderr (``-vv`` the debug ones too), without it they stay hidden, and the CLI leaves the logging set-up as
it found it."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from helpers import run_cli

SRC = Path(__file__).resolve().parents[1] / "src" / "bfvr"


def _name_loggers(path: Path) -> tuple[bool, list[str]]:
    """(the module calls logging.getLogger(__name__), the string literals it passes to getLogger)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own, literal = False, []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "getLogger" and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Name) and arg.id == "__name__":
                own = True
            elif isinstance(arg, ast.Constant):
                literal.append(arg.value)
    return own, literal


def test_every_package_logs_under_its_module_name():
    found = {f.relative_to(SRC): _name_loggers(f) for f in SRC.rglob("*.py")}
    packages = sorted(p.name for p in SRC.iterdir() if (p / "__init__.py").is_file() and p.name != "commands")
    assert set(packages) >= {"io", "engine", "faces", "models", "metrics", "degrade", "train"}
    without = [p for p in packages if not any(own for f, (own, _) in found.items() if f.parts[0] == p)]
    assert not without, f"packages without a logging.getLogger(__name__): {without}"
    # a fixed logger name outside the CLI layer would escape `bfvr -v`'s module names
    fixed = {str(f): lits for f, (_, lits) in found.items()
             if lits and f.parts[0] not in ("commands", "cli.py")}
    assert not fixed, fixed


@pytest.mark.parametrize("flags", [(), ("-v",), ("-vv",)])
def test_verbose_flag_shows_the_log(tmp_path, faces_dir, capsys, flags):
    before = (list(logging.getLogger("bfvr").handlers), logging.getLogger("bfvr").level)
    out = tmp_path / "out.mp4"
    assert run_cli(*flags, "restore", str(faces_dir / "tpsmm_driving.mp4"), "-o", str(out), "-m", "identity",
                   "--has-aligned", "--max-frames", "2", "-q") == 0
    err = capsys.readouterr().err
    info = ["bfvr.io.reader INFO: reading", "bfvr.api INFO: model identity on cpu",
            f"bfvr.io.writer INFO: wrote {out} (2 frames)"]
    if flags:
        assert all(line in err for line in info), err
        assert ("bfvr.engine.chunker DEBUG: clip engine for identity" in err) == (flags == ("-vv",)), err
    else:
        assert "INFO" not in err and "DEBUG" not in err, err
    assert (list(logging.getLogger("bfvr").handlers), logging.getLogger("bfvr").level) == before


def test_vv_logs_one_line_per_model_call_that_the_overhead_benchmark_reads(tmp_path, faces_dir, capsys):
    # benchmarks/stc_overhead.py counts the model calls of `bfvr -vv restore` and sums their durations from
    # these lines, and reads the load time from the "ready in" line: its own patterns must match them
    import importlib.util

    from bfvr.engine.chunker import ClipEngine
    from bfvr.models.hub import load_model

    path = SRC.parents[1] / "benchmarks" / "stc_overhead.py"
    spec = importlib.util.spec_from_file_location("stc_overhead", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "out.mp4"
    assert run_cli("-vv", "restore", str(faces_dir / "tpsmm_driving.mp4"), "-o", str(out), "-m", "identity",
                   "--has-aligned", "--max-frames", "20", "--clip-len", "8", "--overlap", "2", "-q") == 0
    lines = capsys.readouterr().err.splitlines()
    calls = [m for m in map(bench.CALL_RE.match, lines) if m]
    ready = [m for m in map(bench.READY_RE.match, lines) if m]
    expected = ClipEngine(load_model("identity"), clip_len=8, overlap=2).clips_for(20)
    assert expected == 3
    assert [int(m[5]) for m in calls] == [1, 2, 3], lines
    assert all(int(m[6]) == 8 and float(m[9]) >= 0 for m in calls), lines
    assert len(ready) == 1 and float(ready[0][5]) >= 0, lines

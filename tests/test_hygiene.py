"""The test suite's own rules: no test edits sys.path, and no test imports another test module or conftest
(shared code lives in tests/helpers.py, importable through pytest's `pythonpath` setting; fixtures live in
conftest.py, which pytest loads itself)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _violations(source: str) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", "") == "sys":
            out.append(f"line {node.lineno}: sys.path")
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if top.startswith("test_") or top in ("conftest", "tests"):
                out.append(f"line {node.lineno}: imports {name}")
    return out


def test_no_sys_path_edits_or_test_module_imports() -> None:
    found = {}
    for p in sorted(TESTS.rglob("*.py")):
        if v := _violations(p.read_text(encoding="utf-8")):
            found[str(p.relative_to(TESTS))] = v
    assert not found, found


def test_the_scan_finds_what_it_forbids() -> None:
    assert len(_violations("import sys\nsys.path.insert(0, 'x')\n")) == 1
    assert len(_violations("from test_io import psnr\nfrom conftest import REPO\nimport tests.x\n")) == 3
    assert _violations("from helpers import run_cli\nfrom bfvr.io import probe\nimport os.path\n") == []

"""Layering of src/bfvr, read from the source (AST), not from what happens to be imported:

* no method names in shared code: outside a method's own modules (its ``models/<m>/`` package and the training
  modules its tasks live in) no module imports ``bfvr.models.<m>`` or holds a string that is one of its model,
  task or method names; `bfvr.models.DEFAULT_MODEL` is the one place that names a model;
* faces/, io/, engine/ and metrics/ import no method (nor the registry that finds them);
* the import graph (every import, also those inside functions) has no circle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

import bfvr
from bfvr.models import registry

SRC = Path(bfvr.__file__).resolve().parent
#: the one place that may name the default model
DEFAULT_PLACE = "bfvr.models"
#: the engine's own pass-through model (`bfvr.models.core`): not a method's name
CORE_NAMES = {"identity"}
#: literals that are the name of something else that happens to equal a method's name, with the reason
HOMONYMS = {
    # the degradation recipe "stc" (BFVR-STC's training degradation, bfvr.degrade.pipeline.RECIPES) is a
    # recipe name, not the model: recipes are data, chosen by configs
    ("bfvr.degrade.pipeline", "stc"), ("bfvr.data.dataset", "stc"), ("bfvr.commands.degrade", "stc"),
}
#: names still held by a shared module, each to be moved into its method: remove an entry as soon as its
#: module is fixed (test_pending_entries_are_still_needed fails when an entry matches nothing).
#: code_eval.py is `bfvr evaluate-codes`, STC Stage II's code accuracy: it checks the run's task by name
PENDING = {
    "bfvr.train.code_eval": {"stc-stage2"},
}
#: import circles allowed for now (none: keep it that way)
PENDING_CIRCLES: list[list[str]] = []
#: packages that must not reach any method
LOW_LAYERS = ("bfvr.faces", "bfvr.io", "bfvr.engine", "bfvr.metrics")


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def imports_of(mod: str, tree: ast.AST) -> set[str]:
    """Every bfvr module `mod` imports (``from pkg import sub`` counts as pkg.sub when sub is a module)."""
    out = set()
    is_pkg = MODULES[mod].name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "bfvr"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative
                pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            if base.split(".")[0] != "bfvr":
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.add(sub if sub in MODULES else base)
    return {m for m in out if m in MODULES or any(k.startswith(m + ".") for k in MODULES)}


TREES = {m: ast.parse(p.read_text(), str(p)) for m, p in MODULES.items()}
GRAPH = {m: imports_of(m, t) - {m} for m, t in TREES.items()}


def method_packages() -> dict[str, str]:
    """method name -> its package (where its `Method` is defined, e.g. bfvr.models.stc)."""
    out = {}
    for name, method in registry.methods().items():
        spec = method.models[0] if method.models else None
        module = getattr(getattr(spec, "builder", None), "__module__", None) if spec else None
        if module and module.startswith("bfvr.models.") and module != "bfvr.models.core":
            out[name] = module.rsplit(".", 1)[0]
    return out


def owned_modules(method: str, package: str) -> set[str]:
    m = registry.methods()[method]
    own = {k for k in MODULES if k == package or k.startswith(package + ".")}
    for target in m.tasks.values():  # its training modules
        own.add(target.partition(":")[0] if isinstance(target, str) else target.__module__)
    return own


def names_of(method: str) -> set[str]:
    m = registry.methods()[method]
    return ({method} | {s.name for s in m.models} | set(m.tasks)) - CORE_NAMES


def test_no_method_names_or_imports_in_shared_code():
    packages = method_packages()
    assert set(packages) >= {"stc", "lite", "dicface", "pgtformer"}, packages  # the scan sees the built-ins
    problems = []
    for method, package in packages.items():
        own, names = owned_modules(method, package), names_of(method)
        for mod, tree in TREES.items():
            if mod in own:
                continue
            for imp in sorted(GRAPH[mod]):
                if imp == package or imp.startswith(package + "."):
                    problems.append(f"{mod} imports {imp}")
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                    if mod == DEFAULT_PLACE or (mod, node.value) in HOMONYMS \
                            or node.value in PENDING.get(mod, ()):
                        continue
                    problems.append(f"{mod}:{node.lineno} names {node.value!r} ({method})")
    assert not problems, "method names in shared code:\n" + "\n".join(problems)


def test_pending_entries_are_still_needed():
    """An entry of PENDING that no longer matches anything must go (so the scan covers that module again)."""
    stale = []
    for mod, names in PENDING.items():
        if mod not in TREES:
            stale.append(mod)
            continue
        found = {n.value for n in ast.walk(TREES[mod])
                 if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        stale += [f"{mod}: {n}" for n in names - found]
    assert not stale, f"remove from PENDING: {stale}"


def test_the_scan_catches_a_violation():
    """The scan itself works: a shared module naming a model or importing a method is found."""
    packages = method_packages()
    tree = ast.parse("from bfvr.models.stc.clip import STCClipModel\nMODEL = 'stc-deflicker'\n")
    assert "bfvr.models.stc.clip" in imports_of("bfvr.faces.pipeline", tree)
    assert "stc-deflicker" in names_of("stc") and packages["stc"] == "bfvr.models.stc"
    assert "bfvr.train.stages" in owned_modules("stc", packages["stc"]) or \
        any(m.startswith("bfvr.train.") for m in owned_modules("stc", packages["stc"]))


@pytest.mark.parametrize("layer", LOW_LAYERS)
def test_low_layers_import_no_method(layer):
    packages = set(method_packages().values())
    bad = sorted(f"{mod} -> {imp}" for mod, imps in GRAPH.items()
                 if mod == layer or mod.startswith(layer + ".") for imp in imps
                 if imp in ("bfvr.models.registry", "bfvr.models.hub")
                 or any(imp == p or imp.startswith(p + ".") for p in packages))
    assert not bad, bad


def test_metrics_do_not_reach_into_the_degradations():
    bad = sorted(f"{mod} -> {imp}" for mod, imps in GRAPH.items() if mod.startswith("bfvr.metrics")
                 for imp in imps if imp.startswith("bfvr.degrade"))
    assert not bad, bad


def test_import_graph_has_no_circle():
    # strongly connected components (Tarjan), over every import, function-level ones included
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    comps: list[list[str]] = []
    counter = [0]
    graph = defaultdict(set, {m: {i for i in imps if i in MODULES} for m, imps in GRAPH.items()})

    def visit(v: str) -> None:
        work = [(v, iter(sorted(graph[v])))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        while work:
            node, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == node:
                            break
                    if len(comp) > 1:
                        comps.append(sorted(comp))

    for v in sorted(MODULES):
        if v not in index:
            visit(v)
    # a package's __init__ importing its own submodules is no circle of two modules depending on each other
    circles = [c for c in comps if not all(m.startswith(min(c, key=len) + ".") or m == min(c, key=len)
                                           for m in c)]
    assert [c for c in circles if c not in PENDING_CIRCLES] == [], f"import circles: {circles}"
    assert [c for c in PENDING_CIRCLES if c not in circles] == [], "remove it from PENDING_CIRCLES"

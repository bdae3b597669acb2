"""The methods bfvr knows: the built-in ones and every installed plugin, found one way.

A method is an entry point of the group ``bfvr.methods`` whose object is a `bfvr.models.spec.Method` (or a
function returning one)::

    [project.entry-points."bfvr.methods"]
    toy = "bfvr_toy.method:METHOD"

The built-in methods are declared the same way in bfvr's own pyproject.toml; an installation whose metadata
predates that (an editable install made before the group existed) still finds them, by the ``method`` module
of each package under `bfvr.models`. `register` adds a method by hand (tests, notebooks).

Nothing here names a method: `models()`, `weights()`, `tasks()` and `paste_masks()` are the tables every
front end reads (`bfvr models`, `restore -m`, `train`, `export`, `models verify`, the UI, batch and Ray).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import threading
from collections.abc import Iterator, MutableMapping
from importlib import metadata
from typing import Any

from bfvr.errors import ModelError
from bfvr.models.spec import Method, ModelSpec, PasteMask

GROUP = "bfvr.methods"

_lock = threading.RLock()
_methods: dict[str, Method] | None = None
_registered: list[Method] = []


def _as_method(obj: Any, where: str) -> Method:
    if not isinstance(obj, Method) and callable(obj):
        obj = obj()
    if not isinstance(obj, Method):
        raise ModelError(f"the bfvr method {where} is a {type(obj).__name__}, not a bfvr.models.spec.Method.")
    return obj


def _builtin_modules() -> list[str]:
    """The engine's own models (`bfvr.models.core`), then the ``method`` modules of the packages under
    `bfvr.models` (built-in methods), sorted."""
    import bfvr.models as pkg

    out = [f"{pkg.__name__}.core"]
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.ispkg and importlib.util.find_spec(f"{pkg.__name__}.{info.name}.method") is not None:
            out.append(f"{pkg.__name__}.{info.name}.method")
    return out


def _discover() -> dict[str, Method]:
    found: dict[str, Method] = {}
    sources: dict[str, str] = {}

    def add(method: Method, where: str) -> None:
        old = found.get(method.name)
        if old is method:
            return
        if old is not None:
            raise ModelError(f"two bfvr methods are named '{method.name}' ({sources[method.name]} and "
                             f"{where}); "
                             "uninstall one of them.")
        found[method.name], sources[method.name] = method, where

    builtin = {m: None for m in _builtin_modules()}
    plugins = []
    for ep in sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name):
        module = ep.value.partition(":")[0].strip()
        if module in builtin:
            continue  # loaded below, in a stable order
        plugins.append(ep)
    for module in builtin:
        add(_as_method(importlib.import_module(module).METHOD, module), module)
    for ep in plugins:
        try:
            method = _as_method(ep.load(), f"'{ep.name}' ({ep.value})")
        except ModelError:
            raise
        except Exception as e:  # a broken plugin must not take bfvr down with it: say so once and go on
            print(f"warning: the bfvr method plugin '{ep.name}' ({ep.value}) cannot be loaded "
                  f"({type(e).__name__}: {' '.join(str(e).split())[:160]}); it is left out.", file=sys.stderr)
            continue
        add(method, f"entry point '{ep.name}' ({ep.value})")
    for method in _registered:
        add(method, "bfvr.models.registry.register")
    names: dict[str, str] = {}
    for method in found.values():  # a model or task name belongs to one method
        for kind, keys in (("model", [s.name for s in method.models]), ("task", list(method.tasks)),
                           ("weights entry", [e.name for e in method.weights])):
            for k in keys:
                owner = names.setdefault(f"{kind}:{k}", method.name)
                if owner != method.name:
                    raise ModelError(f"the {kind} '{k}' is declared by two bfvr methods ({owner} and "
                                     f"{method.name}); uninstall one of them.")
    return found


def methods() -> dict[str, Method]:
    """Every method, by name (built-in ones first, in name order, then plugins)."""
    global _methods
    with _lock:
        if _methods is None:
            _methods = _discover()
        return _methods


def reload() -> None:
    """Forget what was found (the next lookup reads the entry points again, e.g. after installing a
    plugin)."""
    global _methods
    with _lock:
        _methods = None
        _tables.clear()


def register(method: Method) -> None:
    """Add `method` by hand (as an entry point would); `unregister(method.name)` takes it away again."""
    with _lock:
        _registered.append(method)
        reload()


def unregister(name: str) -> None:
    with _lock:
        _registered[:] = [m for m in _registered if m.name != name]
        reload()


# ------------------------------------------------------------------------------------------- tables

_tables: dict[str, dict[str, Any]] = {}


def _table(kind: str) -> dict[str, Any]:
    with _lock:
        if kind not in _tables:
            ms = list(methods().values())
            if kind == "models":
                _tables[kind] = {s.name: s for m in ms for s in m.models}
            elif kind == "weights":
                _tables[kind] = {e.name: e for m in ms for e in m.weights}
            elif kind == "tasks":
                _tables[kind] = {t: target for m in ms for t, target in m.tasks.items()}
            elif kind == "stage_aliases":
                _tables[kind] = {k: t for m in ms for k, t in m.stage_aliases.items()}
            elif kind == "paste_masks":
                _tables[kind] = {}
                for m in ms:
                    for p in m.paste_masks:
                        _tables[kind].setdefault(p.name, p)
            elif kind == "owners":
                _tables[kind] = {**{f"model:{s.name}": m.name for m in ms for s in m.models},
                                 **{f"task:{t}": m.name for m in ms for t in m.tasks}}
        return _tables[kind]


class Table(MutableMapping):
    """A live view of one registry table (models, weights, tasks, ...) that tests may patch: an item set here
    overrides (or adds to) what the methods declare until it is deleted or the registry is reloaded."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def _data(self) -> dict[str, Any]:
        return _table(self.kind)

    def __getitem__(self, key: str) -> Any:
        return self._data()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data()))

    def __len__(self) -> int:
        return len(self._data())

    def __repr__(self) -> str:
        return f"<bfvr {self.kind}: {', '.join(self._data())}>"


#: model name -> `ModelSpec`; weights entry name -> `WeightsEntry`; task name -> "module:Class" or class
MODELS: MutableMapping[str, ModelSpec] = Table("models")
WEIGHTS: MutableMapping[str, Any] = Table("weights")
TASKS: MutableMapping[str, Any] = Table("tasks")
PASTE_MASKS: MutableMapping[str, PasteMask] = Table("paste_masks")
STAGE_ALIASES: MutableMapping[str, str] = Table("stage_aliases")


def owner(kind: str, name: str) -> str | None:
    """The method that declares model (`kind` "model") or task ("task") `name`, or None."""
    return _table("owners").get(f"{kind}:{name}")

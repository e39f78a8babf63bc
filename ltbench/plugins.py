"""Plugin discovery: importing the datasets, models and methods so that they register themselves.

:mod:`ltbench.registry` only holds the registries; this module fills them. Methods come from three
places: the top-level ``methods`` package, folders given by ``--methods-dir`` / ``$LTBENCH_METHODS``,
and the ``ltbench.methods`` entry-point group. A plugin that fails to import is recorded in
:data:`PLUGIN_ERRORS` (``ltbench list methods`` shows it) and does not take the others down.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import sys
import warnings
from pathlib import Path
from typing import Callable

from ltbench.errors import LtbenchError
from ltbench.registry import METHODS, REGISTRIES, Registry, source_file

# Plugins that failed to import: name → one-line reason. Reported by `ltbench list methods`.
PLUGIN_ERRORS: dict[str, str] = {}
_loaded_dirs: set[str] = set()
_builtin_loaded = False


def _import_module_safely(label: str, importer: Callable[[], object]) -> None:
    """Import one plugin; if it fails, record why and forget whatever it registered before failing."""
    before = [r.snapshot() for r in REGISTRIES]
    try:
        importer()
    except Exception as exc:  # a broken plugin must not take the other methods down
        for registry, items in zip(REGISTRIES, before):
            registry.restore(items)
        PLUGIN_ERRORS[label] = f"{type(exc).__name__}: {exc}"
        warnings.warn(f"method plugin {label} failed to import: {type(exc).__name__}: {exc}", stacklevel=2)


def _load_dir(folder: Path) -> None:
    key = str(folder.resolve())
    if key in _loaded_dirs:
        return
    if not folder.is_dir():
        raise LtbenchError(f"methods directory {folder} does not exist")
    _loaded_dirs.add(key)
    for file in sorted(folder.glob("*.py")):
        if file.name.startswith("_"):
            continue
        mod_name = f"ltbench_plugin_{abs(hash(key)) % 10**8}_{file.stem}"

        def importer(file=file, mod_name=mod_name):
            spec = importlib.util.spec_from_file_location(mod_name, file)
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            spec.loader.exec_module(module)

        _import_module_safely(str(file), importer)


def load_methods(extra_dirs: list[str | Path] | None = None) -> Registry:
    """Import every method: built-ins, extra folders, ``$LTBENCH_METHODS`` and entry points."""
    global _builtin_loaded
    if not _builtin_loaded:
        _builtin_loaded = True
        import methods as builtin

        for info in pkgutil.iter_modules(builtin.__path__):
            if not info.name.startswith("_"):
                _import_module_safely(f"methods.{info.name}",
                                      lambda n=info.name: importlib.import_module(f"methods.{n}"))
        from importlib.metadata import entry_points

        for ep in entry_points(group="ltbench.methods"):
            _import_module_safely(f"entry point {ep.name} ({ep.value})", ep.load)
    dirs = [Path(d) for d in (extra_dirs or [])]
    env = os.environ.get("LTBENCH_METHODS")
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    for d in dirs:
        _load_dir(d)
    return METHODS


def load_all(extra_dirs: list[str | Path] | None = None) -> None:
    """Import every registry's members (datasets, models and methods)."""
    import ltbench.data  # noqa: F401  (registers datasets)
    import ltbench.models  # noqa: F401  (registers models)

    load_methods(extra_dirs)


def plugin_files(classes) -> dict[str, str]:
    """Registered name → defining file of each of ``classes`` that is a plugin (not one of ltbench's
    own ``methods`` or ``ltbench`` modules): what ``result.json`` records as ``plugin_files``."""
    own = ("methods.", "ltbench.")
    return {getattr(c, "registered_name", c.__name__): source_file(c) for c in classes
            if not str(getattr(c, "__module__", "")).startswith(own)}

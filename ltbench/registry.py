"""Name → object registries for methods, datasets and models.

Every pluggable piece registers itself with a decorator::

    @register_method("pgd-at")
    class PGDAT(Method): ...

Looking up an unknown name raises :class:`LtbenchError` listing the known ones. Methods are
discovered from three places (see :func:`load_methods`): the top-level ``methods`` package, folders
given by ``--methods-dir`` / ``$LTBENCH_METHODS``, and the ``ltbench.methods`` entry-point group.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import re
import sys
import warnings
from pathlib import Path
from typing import Callable, Generic, Iterator, TypeVar

from ltbench.errors import LtbenchError

T = TypeVar("T")

# A registered name becomes part of job folder names and command lines: a letter or digit, then
# letters, digits, '.', '_' or '-' (no '/', no '+', which joins ablation flags, no spaces), ≤ 64.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
RESERVED = ("all",)  # `--methods all` means every registered method


def check_name(kind: str, name: object) -> str:
    """``name`` if it may be registered; else a one-line LtbenchError saying why not."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise LtbenchError(f"cannot register {kind} {name!r}: a name is 1–64 letters, digits, '.', '_' "
                           f"or '-', starting with a letter or digit")
    if name in RESERVED:
        raise LtbenchError(f"cannot register {kind} {name!r}: the name is reserved")
    return name


class Registry(Generic[T]):
    """A dictionary of named objects with a one-line description each."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        check_name(self.kind, name)

        def decorator(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                existing = self._items[name]
                if getattr(existing, "__qualname__", None) != getattr(obj, "__qualname__", None):
                    raise LtbenchError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            try:
                obj.registered_name = name  # type: ignore[attr-defined]
            except AttributeError:
                pass
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise LtbenchError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def describe(self, name: str) -> str:
        """First line of the object's docstring."""
        obj = self._items[name]
        doc = (getattr(obj, "description", None) or getattr(obj, "__doc__", None) or "").strip()
        return doc.splitlines()[0] if doc else ""


METHODS: Registry = Registry("method")
MODIFIERS: Registry = Registry("modifier")  # ltbench.modifier.Modifier subclasses: `--methods 'reat +awp'`
DATASETS: Registry = Registry("dataset")
MODELS: Registry = Registry("model")

register_method = METHODS.register
register_modifier = MODIFIERS.register
register_dataset = DATASETS.register
register_model = MODELS.register

# Plugins that failed to import: name → one-line reason. Reported by `ltbench list methods`.
PLUGIN_ERRORS: dict[str, str] = {}
_loaded_dirs: set[str] = set()
_builtin_loaded = False


def _import_module_safely(label: str, importer: Callable[[], object]) -> None:
    try:
        importer()
    except Exception as exc:  # a broken plugin must not take the other methods down
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

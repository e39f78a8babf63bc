"""Name → object registries for methods, modifiers, datasets, models and attacks.

Every pluggable piece registers itself with a decorator::

    @register_method("pgd-at")
    class PGDAT(Method): ...

Looking up an unknown name raises :class:`LtbenchError` listing the known ones. This module
imports no plugin, dataset or model: :mod:`ltbench.plugins` discovers and imports them, called by
the entry points that need them (the CLI, the runner, the engine's job loader).
"""
from __future__ import annotations

import re
import sys
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

    def __init__(self, kind: str, hint: str = ""):
        self.kind = kind
        self.hint = hint  # appended to the error for an unknown name: where else such an entry comes from
        self._items: dict[str, T] = {}
        # name → why it cannot be used: two files registered it (neither wins; get() says so)
        self._conflicts: dict[str, str] = {}

    def register(self, name: str) -> Callable[[T], T]:
        check_name(self.kind, name)

        def decorator(obj: T) -> T:
            if name in self._conflicts:
                raise LtbenchError(f"{self._conflicts[name]}, and again in {source_file(obj)}")
            existing = self._items.get(name)
            if existing is not None and existing is not obj and (
                    source_file(existing) != source_file(obj)
                    or getattr(existing, "__qualname__", None) != getattr(obj, "__qualname__", None)):
                # Neither wins: which one a run gets must not depend on the order files are loaded in.
                self._conflicts[name] = (f"{self.kind} {name!r} is registered twice: in {source_file(existing)} "
                                         f"and in {source_file(obj)}")
                del self._items[name]
                raise LtbenchError(self._conflicts[name])
            self._items[name] = obj
            try:
                obj.registered_name = name  # type: ignore[attr-defined]
            except AttributeError:
                pass
            return obj

        return decorator

    def get(self, name: str) -> T:
        if name in self._conflicts:
            raise LtbenchError(self._conflicts[name])
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise LtbenchError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}{self.hint}") from None

    def snapshot(self) -> dict[str, T]:
        """The registered names now, for :meth:`restore`."""
        return dict(self._items)

    def restore(self, items: dict[str, T]) -> None:
        """Back to a :meth:`snapshot` (what a plugin file that failed to load registered is forgotten);
        a name registered twice stays unusable."""
        self._items.clear()
        self._items.update({k: v for k, v in items.items() if k not in self._conflicts})

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


def source_file(obj) -> str:
    """The file that defines ``obj`` (its module's ``__file__``), else its module's name."""
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    return str(getattr(module, "__file__", None) or getattr(obj, "__module__", "?"))


PLUGIN_HINT = ("; a method or modifier of your own loads from its folder: --methods-dir DIR, methods_dir "
               "(a config file's key, or an argument of ltbench.load_model), or $LTBENCH_METHODS")
METHODS: Registry = Registry("method", PLUGIN_HINT)
MODIFIERS: Registry = Registry("modifier", PLUGIN_HINT)  # ltbench.modifier.Modifier subclasses: `--methods 'reat +awp'`
DATASETS: Registry = Registry("dataset")
MODELS: Registry = Registry("model")
# ltbench.attacks.base.Attack subclasses, by the stem of their names: "pgd" for pgd20 (ltbench/attacks/factory.py)
ATTACKS: Registry = Registry("attack")

register_method = METHODS.register
register_modifier = MODIFIERS.register
register_dataset = DATASETS.register
register_model = MODELS.register

ATTACK_STEM = re.compile(r"^[a-z]+$")


def register_attack(stem: str) -> Callable[[T], T]:
    """``@register_attack("pgd")``: the attack class named ``pgd`` in ``pgd20`` (its ``name`` becomes
    the stem). A stem is lower-case letters only: the name grammar appends the step count and
    ``@EPS`` (ltbench/attacks/factory.py)."""
    if not isinstance(stem, str) or not ATTACK_STEM.match(stem):
        raise LtbenchError(f"cannot register attack {stem!r}: an attack's name stem is lower-case letters "
                           f"(the step count and @EPS are appended: pgd20@0.05)")
    register = ATTACKS.register(stem)

    def decorator(cls: T) -> T:
        cls.name = stem  # type: ignore[attr-defined]
        return register(cls)

    return decorator


REGISTRIES = (METHODS, MODIFIERS, DATASETS, MODELS, ATTACKS)

"""Settings a job cannot use: stored configurations that differ only there describe the same run.

A job's ``config.json`` records every field, also those that cannot change what it computes: where
the best epoch would be selected (``select_on``, ``select_n_per_class``) when none is selected (no
``select_best``), and ``scale_schedules`` for a method and modifiers without an epoch-valued
hyper-parameter (:func:`ltbench.method.epoch_field`). ``--redo``'s guard (``Study.check_compatible``),
the check that seeds of one label share their settings and the report's variants compare
configurations without them. (For a while ltbench wrote every new job's configuration with
``scale_schedules`` false and ``select_on`` test, the meaning given to configurations older than
those fields; such a job of a method without schedules is the same job as today's.)
"""
from __future__ import annotations

import dataclasses

from ltbench.errors import LtbenchError
from ltbench.registry import METHODS, MODIFIERS


def has_epoch_schedules(cfg: dict) -> bool:
    """Whether the job's method or one of its modifiers has an epoch-valued hyper-parameter, the
    only thing ``scale_schedules`` changes. True when one of them is not registered (a plugin that
    is not found): then nothing is assumed."""
    from ltbench.plugins import load_methods

    names = [(METHODS, cfg.get("method"))] + [(MODIFIERS, m) for m in (cfg.get("modifiers") or {})]
    if not all(name in registry for registry, name in names):
        load_methods()  # the built-in methods and modifiers register when imported
    try:
        owners = [registry.get(name) for registry, name in names]
    except LtbenchError:
        return True
    configs = [getattr(o, "Config", None) for o in owners]
    return any(f.metadata.get("paper_epochs") is not None
               for c in configs if dataclasses.is_dataclass(c) for f in dataclasses.fields(c))


def without_inert(cfg: dict) -> dict:
    """The stored job configuration ``cfg`` without the settings it cannot use."""
    drop = set()
    if not cfg.get("select_best"):
        drop |= {"select_on", "select_n_per_class"}
    if not has_epoch_schedules(cfg):
        drop.add("scale_schedules")
    return {k: v for k, v in cfg.items() if k not in drop}

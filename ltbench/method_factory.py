"""Building a job's method: plugin discovery, the registered class with its Config, then the
registered modifiers wrapped around it in order (DESIGN.md "The method API").

The engine, ``ltbench bench`` and the tests build every method through :func:`build_method`; it
sits above the method API (:mod:`ltbench.method`), the modifiers (:mod:`ltbench.modifier`) and
plugin discovery (:mod:`ltbench.plugins`), so that none of them imports back.
"""
from __future__ import annotations

from typing import Any, Optional

import torch

from ltbench.method import Method, instantiate, parse_overrides
from ltbench.plugins import load_methods
from ltbench.registry import MODIFIERS


def build_method(name: str, overrides: dict[str, Any], num_classes: int, class_counts: torch.Tensor,
                 modifiers: Optional[dict[str, dict]] = None) -> Method:
    """Instantiate a registered method with its Config built from ``overrides``, wrapped by the
    registered ``modifiers`` (name → overrides, in order; :mod:`ltbench.modifier`)."""
    load_methods()
    method = instantiate(name, overrides, num_classes, class_counts)
    if modifiers:
        method = wrap_modifiers(method, modifiers)
    return method


def wrap_modifiers(method: Method, modifiers: dict[str, dict]) -> Method:
    """``method`` wrapped by each registered modifier of ``modifiers`` (name → overrides), in order.

    A method may carry its authors' settings for a modifier in ``modifier_defaults`` (TRADES:
    ``{"awp": {"gamma": 0.005, "warmup": 9}}``, as TRADES-AWP was run); overrides win over them."""
    load_methods()
    defaults = getattr(method, "modifier_defaults", {})
    for name, overrides in (modifiers or {}).items():
        cls = MODIFIERS.get(name)
        params = {**defaults.get(name, {}), **(overrides or {})}
        method = cls(parse_overrides(name, cls.Config, params), method)
    return method

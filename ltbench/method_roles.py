"""The roles methods play in the report, read from the registered method classes (no method is
named here): the baselines every method is paired with (``Method.baseline_rank``; the first is also the one
the training cost is measured against) and the pairs
shown side by side (``Method.side_by_side``).

The methods are discovered as a run discovers them (:func:`ltbench.plugins.load_methods`: the
built-ins, ``$LTBENCH_METHODS`` and the entry points); a method a study names that is not
registered in this process plays no role.
"""
from __future__ import annotations

from functools import lru_cache


def _registered() -> dict:
    from ltbench.plugins import load_methods
    from ltbench.registry import METHODS

    load_methods()
    return {name: METHODS.get(name) for name in METHODS.names()}


@lru_cache(maxsize=1)
def baselines() -> tuple[str, ...]:
    """The registered baselines, by their rank (lowest first)."""
    ranked = [(cls.baseline_rank, name) for name, cls in _registered().items() if cls.baseline_rank is not None]
    return tuple(name for _, name in sorted(ranked))


def cost_factor(method: str) -> float:
    """``method``'s step time relative to PGD-AT's; 1 for a method not registered in this process."""
    cls = _registered().get(method)
    return float(cls.cost_factor) if cls is not None else 1.0


def cost_baseline() -> str | None:
    """The method the training-cost table divides by: the first baseline (None without one)."""
    ranked = baselines()
    return ranked[0] if ranked else None


@lru_cache(maxsize=1)
def side_by_side() -> tuple[tuple[str, str], ...]:
    """Pairs of registered methods shown side by side when both are present, (method, partner)."""
    return tuple((name, cls.side_by_side) for name, cls in _registered().items() if cls.side_by_side)

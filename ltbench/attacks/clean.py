"""No attack: the clean test images, so that clean accuracy is one more attack by name (``clean``).

The identity is the trivial point of the ε-ball: every contract of an attack holds for it
(ltbench/attacks/base.py), which the attack tests check like any other's.
"""
from __future__ import annotations

from ltbench.attacks.base import Attack
from ltbench.registry import register_attack


@register_attack("clean")
class Clean(Attack):
    """No attack: the clean images, unchanged (clean accuracy)."""

    label = "clean"
    takes_budget = False  # `clean@0.1` would read as an attack

    def __init__(self, eps: float = 0.0):
        super().__init__(0.0)

    def perturb(self, model, x, y):
        return x

    def describe(self):
        return {"name": self.name}

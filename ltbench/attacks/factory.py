"""Attacks by name, as ``--attacks`` and ``JobConfig.eval_attacks`` spell them.

Every attack class registers itself with ``@register_attack("stem")`` (ltbench/registry.py) and
says its own name grammar (:class:`ltbench.attacks.base.Attack`): the stem, then a step count K when
the attack takes one, then optionally ``@EPS`` to override the budget for that one attack
(``pgd20@0.05``, ``pgd20@4/255``); the step size then scales with the budget (``step · EPS / ε``)
so the attack keeps its shape. The registered attacks today (``ltbench list attacks``):

==========  ==========================================================  =====================
name        attack                                                      paper
==========  ==========================================================  =====================
clean       no attack                                                   —
fgsm        one signed-gradient step of size ε                          Goodfellow et al. 2015
pgdK        K-step L∞ PGD on cross-entropy, random start                Madry et al. 2018
cwK         K-step L∞ PGD on the CW margin (CW∞)                        Carlini & Wagner 2017
lsK         K-step L∞ PGD on CE(10 · logits), the logit-scaled attack   Yue et al. CVPR 2024
aa          AutoAttack, standard version (APGD-CE, APGD-T, FAB-T,       Croce & Hein 2020
            Square), via ``pyautoattack``
==========  ==========================================================  =====================

A K-step attack by name whose K steps cannot reach the boundary of the ε-ball (K · step < ε) gets
the step 2.5 · ε / K instead (:func:`ltbench.attacks.pgd.reaching_step`).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

from ltbench.attacks.base import Attack
from ltbench.errors import LtbenchError
from ltbench.registry import ATTACKS

# A stem of lower-case letters, digits (the step count), then @EPS: the split is unique.
_NAME = re.compile(r"^(?P<kind>[a-z]+?)(?P<steps>\d*)(?:@(?P<eps>[0-9.eE+-]+(?:/[0-9.]+)?))?$")


def known() -> str:
    """The registered names, for error messages: ``aa, clean, cwK, … (K = steps, e.g. pgd20), …``."""
    return (", ".join(ATTACKS.get(n).grammar() for n in ATTACKS.names())
            + " (K = steps, e.g. pgd20), each optionally @EPS (e.g. pgd20@0.05)")


@dataclass(frozen=True)
class AttackSpec:
    """A parsed attack name: kind (the registered stem, ``pgd``…), step count, budget override."""

    name: str
    kind: str
    steps: Optional[int] = None
    eps: Optional[float] = None

    @property
    def attack_class(self) -> type:
        return ATTACKS.get(self.kind)

    @property
    def iterative(self) -> bool:
        return self.attack_class.takes_steps


def parse_attack_name(name: str) -> AttackSpec:
    """Parse ``name`` (see the module docstring); a clear LtbenchError if it is not an attack."""
    m = _NAME.match(name.strip())
    if not m or m.group("kind") not in ATTACKS:
        raise LtbenchError(f"unknown attack {name!r}; known: {known()}")
    kind, steps, eps = m.group("kind"), m.group("steps"), m.group("eps")
    cls = ATTACKS.get(kind)
    if cls.takes_steps:
        if not steps or int(steps) < 1:
            raise LtbenchError(f"attack {name!r} needs a step count ≥ 1, e.g. {kind}20")
    elif steps:
        raise LtbenchError(f"unknown attack {name!r}; known: {known()}")
    if not cls.takes_budget and eps is not None:
        raise LtbenchError(f"{kind!r} takes no budget")
    budget = None
    if eps is not None:
        try:
            budget = float(Fraction(eps)) if "/" in eps else float(eps)
        except (ValueError, ZeroDivisionError):
            raise LtbenchError(f"attack {name!r}: cannot read the budget {eps!r}") from None
        if not (budget >= 0 and math.isfinite(budget)):
            raise LtbenchError(f"attack {name!r}: the budget must be a finite number ≥ 0")
    return AttackSpec(name, kind, int(steps) if steps else None, budget)


def build_attack(name: str, eps: float, step: float, *, seed: int = 0, batch_size: int = 250) -> Attack:
    """The attack called ``name`` at budget ``eps`` and PGD step ``step`` (``clean`` is the identity).

    ``seed`` and ``batch_size`` matter only to AutoAttack (its internal seed and batch).
    """
    spec = parse_attack_name(name)
    if spec.eps is not None:
        step = step * spec.eps / eps if eps > 0 else step
        eps = spec.eps
    return spec.attack_class.from_name(spec.steps, eps, step, seed=seed, batch_size=batch_size)

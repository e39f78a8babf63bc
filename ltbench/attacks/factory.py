"""Attacks by name, as ``--attacks`` and ``JobConfig.eval_attacks`` spell them.

Grammar: ``clean`` | ``fgsm`` | ``pgdK`` | ``cwK`` | ``lsK`` | ``aa``, optionally followed by
``@EPS`` to override the budget for that one attack (``pgd20@0.05``, ``pgd20@4/255``); the step
size then scales with the budget (``step · EPS / ε``) so the attack keeps its shape.

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
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

from ltbench.attacks.autoattack import AutoAttack
from ltbench.attacks.base import Attack
from ltbench.attacks.cw import CW
from ltbench.attacks.fgsm import FGSM
from ltbench.attacks.logit_scaled import LogitScaledPGD
from ltbench.attacks.pgd import PGD
from ltbench.errors import LtbenchError

_NAME = re.compile(r"^(?P<kind>clean|fgsm|aa|pgd|cw|ls)(?P<steps>\d*)(?:@(?P<eps>[0-9.eE+-]+(?:/[0-9.]+)?))?$")
KNOWN = "clean, fgsm, pgdK, cwK, lsK, aa (K = steps, e.g. pgd20), each optionally @EPS (e.g. pgd20@0.05)"


@dataclass(frozen=True)
class AttackSpec:
    """A parsed attack name: kind (``pgd``…), step count (iterative kinds), budget override."""

    name: str
    kind: str
    steps: Optional[int] = None
    eps: Optional[float] = None

    @property
    def iterative(self) -> bool:
        return self.kind in ("pgd", "cw", "ls")


def parse_attack_name(name: str) -> AttackSpec:
    """Parse ``name`` (see the module docstring); a clear LtbenchError if it is not an attack."""
    m = _NAME.match(name.strip())
    if not m:
        raise LtbenchError(f"unknown attack {name!r}; known: {KNOWN}")
    kind, steps, eps = m.group("kind"), m.group("steps"), m.group("eps")
    if kind in ("pgd", "cw", "ls"):
        if not steps or int(steps) < 1:
            raise LtbenchError(f"attack {name!r} needs a step count ≥ 1, e.g. {kind}20")
    elif steps:
        raise LtbenchError(f"unknown attack {name!r}; known: {KNOWN}")
    if kind == "clean" and eps is not None:
        raise LtbenchError("'clean' takes no budget")
    budget = None
    if eps is not None:
        try:
            budget = float(Fraction(eps)) if "/" in eps else float(eps)
        except (ValueError, ZeroDivisionError):
            raise LtbenchError(f"attack {name!r}: cannot read the budget {eps!r}") from None
        if not (budget >= 0 and math.isfinite(budget)):
            raise LtbenchError(f"attack {name!r}: the budget must be a finite number ≥ 0")
    return AttackSpec(name, kind, int(steps) if steps else None, budget)


def build_attack(name: str, eps: float, step: float, *, seed: int = 0, batch_size: int = 250) -> Optional[Attack]:
    """The attack called ``name`` at budget ``eps`` and PGD step ``step``; ``None`` for ``clean``.

    ``seed`` and ``batch_size`` matter only to AutoAttack (its internal seed and batch).
    """
    spec = parse_attack_name(name)
    if spec.eps is not None:
        step = step * spec.eps / eps if eps > 0 else step
        eps = spec.eps
    if spec.kind == "clean":
        return None
    if spec.kind == "fgsm":
        return FGSM(eps)
    if spec.kind == "pgd":
        return PGD(eps, step, steps=spec.steps)
    if spec.kind == "cw":
        return CW(eps, step, steps=spec.steps)
    if spec.kind == "ls":
        return LogitScaledPGD(eps, step, steps=spec.steps)
    return AutoAttack(eps, seed=seed, batch_size=batch_size)

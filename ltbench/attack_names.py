"""Display names and order of attack keys (``pgd20`` → ``PGD-20``), in plain Python: the report and
the run's end-of-study table use them without importing torch (:mod:`ltbench.attacks.factory` owns
the grammar of the names)."""
from __future__ import annotations

import re
from typing import Iterable, Optional


def attack_label(name: str) -> str:
    """Display name of an attack key: ``pgd20`` → ``PGD-20``, ``cw20`` → ``CW-20``, ``aa`` → ``AutoAttack``."""
    if name == "clean":
        return "Clean"
    if name in ("aa", "autoattack"):
        return "AutoAttack"
    m = re.fullmatch(r"([a-z]+?)(\d+)", name)
    if m:
        return f"{m.group(1).upper()}-{m.group(2)}"
    return name.upper() if name.isalpha() and len(name) <= 6 else name


def attack_order(attacks: Iterable[str]) -> list[str]:
    """Clean, then PGD, CW, AutoAttack (each by step count: PGD-20 before PGD-100), then the rest."""
    family = {"clean": 0, "pgd": 1, "cw": 2, "aa": 3, "autoattack": 3}

    def key(name: str):
        m = re.fullmatch(r"([a-z]+?)(\d*)", name)
        stem, steps = (m.group(1), int(m.group(2) or 0)) if m else (name, 0)
        return family.get(stem if stem in family else name, 4), steps, name

    return sorted(set(attacks), key=key)


def robust_attack(attacks: Iterable[str]) -> Optional[str]:
    """The strongest robust attack present: AutoAttack, else PGD-20, else CW-20, else any other."""
    attacks = list(attacks)
    for a in ("aa", "autoattack", "pgd20", "cw20"):
        if a in attacks:
            return a
    others = [a for a in attack_order(attacks) if a != "clean"]
    return others[0] if others else None

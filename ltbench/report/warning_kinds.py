"""The kinds of evaluation warning a job's ``result.json`` can carry, what each means and what to do,
so that the report shows one line per kind (count and jobs) instead of every job's text.

Two sources write warnings: ltbench's own gradient-masking checks
(:func:`ltbench.metrics.masking_warnings`) and the AutoAttack package's flags, passed on by
:class:`ltbench.attacks.autoattack.AutoAttack` (prefixed ``AutoAttack:``). A text no rule knows is
its own kind.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class WarningKind:
    key: str
    title: str
    meaning: str
    link: str = ""  # where the kind is documented outside this page, if anywhere


AUTOATTACK_FLAGS = "https://github.com/fra31/auto-attack/blob/master/flags_doc.md"

KINDS = (
    (re.compile(r"^AutoAttack: Square Attack has decreased"), WarningKind(
        "aa-square", "AutoAttack's Square flag",
        "Square, AutoAttack's gradient-free attack, lowered the robust accuracy left by its gradient attacks "
        "(by more than 0.2 points of the attacked subset). The AutoAttack authors read this as a sign that "
        "gradients may be unreliable. On a 500-image subset 0.2 points is one image, so a single flag is weak "
        "evidence; the number AutoAttack reports already includes Square's success.", AUTOATTACK_FLAGS)),
    (re.compile(r"^AutoAttack: there are \d+ points with zero gradient"), WarningKind(
        "aa-zero-gradient", "AutoAttack's zero-gradient flag",
        "Some inputs had an exactly zero input gradient, so gradient attacks cannot move them; their robust "
        "accuracy may be overstated.", AUTOATTACK_FLAGS)),
    (re.compile(r"^gradient masking suspected: AutoAttack .* is far below"), WarningKind(
        "masking-aa-gap", "AutoAttack far below PGD / CW",
        "On the same images AutoAttack is more than 5 points below the strongest PGD / CW attack of the "
        "evaluation: the PGD-based columns overstate this model's robustness. Re-attack with more steps "
        "(ltbench eval JOB --attacks pgd100 cw100 aa) to see how much of the gap closes.")),
    (re.compile(r"^gradient masking suspected: .* is weaker than FGSM"), WarningKind(
        "masking-fgsm", "PGD weaker than FGSM",
        "The iterative attack found fewer adversarial examples than the one-step attack: a symptom of "
        "masked or obfuscated gradients (Athalye et al., ICML 2018).")),
    (re.compile(r"^gradient masking suspected: .* is much stronger than"), WarningKind(
        "masking-logit-scale", "Logit-scaled PGD much stronger than PGD",
        "Scaling the logits before the attack's loss helped it a lot: the cross-entropy gradients are "
        "saturated. Report the logit-scaled attack.")),
    (re.compile(r"^gradient masking suspected: robust accuracy does not fall as ε grows"), WarningKind(
        "masking-eps", "Robust accuracy does not fall as ε grows",
        "A larger budget did not lower the accuracy: the attack is not finding what is there to find.")),
)

PAGE_ANCHOR = "warning-kinds"


def kind_of(text: str) -> WarningKind:
    """The kind of a warning's text; an unknown text is its own kind (its first 80 characters)."""
    for pattern, kind in KINDS:
        if pattern.search(text):
            return kind
    return WarningKind("other:" + text[:80], text[:80] + ("…" if len(text) > 80 else ""),
                       "A warning of a kind this report does not know; the full text is listed below.")


def group_warnings(rows: list[dict]) -> list[dict]:
    """``rows`` (study, job, method, text) grouped by kind, in order of first appearance: per kind its
    :class:`WarningKind`, the number of jobs, the jobs (``study/job`` when several studies) and the
    rows themselves."""
    groups: dict[str, dict] = {}
    for r in rows:
        kind = kind_of(r["text"])
        g = groups.setdefault(kind.key, {"kind": kind, "jobs": [], "rows": []})
        if r["job"] not in g["jobs"]:
            g["jobs"].append(r["job"])
        g["rows"].append(r)
    return [{**g, "count": len(g["jobs"])} for g in groups.values()]

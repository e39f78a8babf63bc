"""Per-class accuracy summaries (overall, head / medium / tail, worst class, spread, confusion
counts) and the gradient-masking flags computed from them.

Groups follow DESIGN.md: classes sorted by training count (most first); head = first ⌊C/3⌋,
tail = last ⌊C/3⌋, medium = the rest (C = 10: 3 / 4 / 3).
"""
from __future__ import annotations

from typing import Optional

import torch

from ltbench.groups import class_groups


def summarize(correct: torch.Tensor, y: torch.Tensor, class_counts: list[int]) -> dict:
    """Summarise a boolean per-sample ``correct`` vector into the standard accuracy record."""
    num_classes = len(class_counts)
    correct = correct.detach().to("cpu", torch.float64)
    y = y.detach().cpu()
    n = torch.bincount(y, minlength=num_classes).double()
    hits = torch.bincount(y, weights=correct, minlength=num_classes)
    per_class = [(h / c).item() if c > 0 else float("nan") for h, c in zip(hits, n)]
    groups = class_groups(class_counts)
    present = [a for a in per_class if a == a]

    def mean(idx):
        vals = [per_class[i] for i in idx if per_class[i] == per_class[i]]
        return sum(vals) / len(vals) if vals else float("nan")

    std = torch.tensor(present, dtype=torch.float64).std(unbiased=False).item() if present else float("nan")
    return {
        "overall": correct.mean().item() if len(correct) else float("nan"),
        "per_class": per_class,
        "head": mean(groups["head"]),
        "medium": mean(groups["medium"]),
        "tail": mean(groups["tail"]),
        "worst": min(present) if present else float("nan"),
        "per_class_std": std,
        "n": int(len(correct)),
    }


def confusion_counts(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> list[list[int]]:
    """C×C counts: row = true class, column = predicted class."""
    idx = y.cpu() * num_classes + pred.cpu()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes).tolist()


# --- gradient-masking flags ------------------------------------------------------------------
# Thresholds in accuracy points (fractions). A flag is a prompt to look closer, not a verdict.
FGSM_TOLERANCE = 0.01  # multi-step PGD may not be weaker than one FGSM step by more than this
LOGIT_SCALE_GAP = 0.05  # logit-scaled PGD (α = 10) this far below PGD: CE gradients are saturated
AUTOATTACK_GAP = 0.05  # AutoAttack this far below PGD / CW: the gradient attacks are being fooled


def _comparable_tables(metrics: dict, checks: Optional[dict]) -> list[tuple[str, dict[str, float]]]:
    """Groups of accuracies measured on the same samples, each with a label saying which samples."""
    tables = []
    if checks and checks.get("accuracy"):
        tables.append((f"on the {checks.get('n', '?')}-sample check subset", dict(checks["accuracy"])))
    full = {name: rec["overall"] for name, rec in metrics.items() if not rec.get("subset")}
    if full:
        tables.append(("on the test set", full))
    for name, rec in metrics.items():
        if rec.get("subset"):
            tables.append((f"on {name}'s {rec.get('n', '?')}-sample subset",
                           {**rec.get("same_subset", {}), name: rec["overall"]}))
    return tables


def _label(name: str) -> str:
    from ltbench.attacks.factory import parse_attack_name

    spec = parse_attack_name(name)
    base = spec.attack_class.label
    if spec.steps:
        base += f"-{spec.steps}"
    return base + (f" at ε={spec.eps:g}" if spec.eps is not None else "")


def masking_warnings(metrics: dict, checks: Optional[dict] = None) -> list[str]:
    """Warnings that the evaluation may be fooled by gradient masking (Athalye et al., ICML 2018;
    Carlini et al. 2019, "On Evaluating Adversarial Robustness", §5 and its checklist).

    ``metrics`` is ``result["metrics"]`` (name → accuracy record; a record with ``"subset"`` was
    measured on a subset and carries ``"same_subset"``, the other attacks' accuracies on it);
    ``checks`` is ``result["checks"]`` (``{"eps", "n", "accuracy": {name: overall}}``, all on one
    subset). Only accuracies measured on the same samples are compared. Flags:

    1. PGD weaker than FGSM (by more than :data:`FGSM_TOLERANCE`);
    2. logit-scaled PGD much stronger than PGD (by more than :data:`LOGIT_SCALE_GAP`);
    3. robust accuracy not falling as ε grows (clean → PGD at a smaller ε → PGD at ε);
    4. AutoAttack far below PGD / CW (by more than :data:`AUTOATTACK_GAP`).
    """
    from ltbench.attacks.factory import parse_attack_name

    warnings: list[str] = []
    eps = checks.get("eps") if checks else None
    if eps is None:
        eps = next((rec["attack"]["eps"] for rec in metrics.values()
                    if isinstance(rec.get("attack"), dict) and "eps" in rec["attack"]), None)

    def add(msg: str) -> None:
        if msg not in warnings:
            warnings.append(msg)

    for where, acc in _comparable_tables(metrics, checks):
        specs = {name: parse_attack_name(name) for name in acc}
        at_eps = {n: s for n, s in specs.items() if s.eps is None}
        pgds = [n for n, s in at_eps.items() if s.kind == "pgd"]
        for p in pgds:
            if "fgsm" in acc and acc[p] > acc["fgsm"] + FGSM_TOLERANCE:
                add(f"gradient masking suspected: {_label(p)} ({acc[p]:.1%}) is weaker than FGSM "
                    f"({acc['fgsm']:.1%}) {where}")
            for ls in (n for n, s in at_eps.items() if s.kind == "ls"):
                if acc[ls] < acc[p] - LOGIT_SCALE_GAP:
                    add(f"gradient masking suspected: {_label(ls)} ({acc[ls]:.1%}) is much stronger than "
                        f"{_label(p)} ({acc[p]:.1%}) {where}; the cross-entropy gradients are likely saturated "
                        f"by the logit scale — report the logit-scaled attack")
            for small in (n for n, s in specs.items() if s.kind == "pgd" and s.eps is not None
                          and (eps is None or s.eps < eps)):
                chain = [("clean", acc.get("clean")), (small, acc[small]), (p, acc[p])]
                chain = [(n, a) for n, a in chain if a is not None]
                for (lo, a_lo), (hi, a_hi) in zip(chain, chain[1:]):
                    if a_lo > 0 and a_hi >= a_lo:
                        add(f"gradient masking suspected: robust accuracy does not fall as ε grows — "
                            f"{_label(lo)} {a_lo:.1%}, {_label(hi)} {a_hi:.1%} {where}")
        if "aa" in acc:
            grads = [n for n, s in at_eps.items() if s.kind in ("pgd", "cw")]
            if grads:
                best = min(grads, key=lambda n: acc[n])
                if acc["aa"] < acc[best] - AUTOATTACK_GAP:
                    add(f"gradient masking suspected: AutoAttack ({acc['aa']:.1%}) is far below "
                        f"{_label(best)} ({acc[best]:.1%}) {where}; PGD-based numbers overstate robustness")
    return warnings

"""The answer first: which method is most robust on the tail, the worst class and overall, by how
much, against seed noise.

For each panel (study × dataset × imbalance ratio) and each of the study's main attacks (PGD-20,
which runs on every test image, and AutoAttack), :func:`verdicts` ranks the methods by their mean
tail accuracy and gives, per method, the tail, worst-class and overall means with each one's paired
difference to the baseline (method − baseline per seed: mean ± std, 95 % Student t interval with
n − 1 degrees of freedom, seeds ahead; :mod:`ltbench.report.paired`). :func:`sentence` says in one
line, per attack, who leads each of the three columns and whether the lead over the runner-up is
resolved (its paired interval excludes 0) or not with that many seeds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import pandas as pd

from ltbench.attack_names import attack_label
from ltbench.report.aggregate import fmt_cell
from ltbench import method_roles as roles
from ltbench.report.paired import diff_stats, fmt_interval, fmt_stats, resolved_sign, seed_diffs

MAIN_ATTACKS = ("pgd20", "aa")
COLUMNS = ("tail", "worst", "overall")
COLUMN_WORDS = {"tail": "tail", "worst": "worst class", "overall": "overall"}


@dataclass
class Verdict:
    """One panel × attack: methods ranked by tail accuracy, each with its paired differences."""

    study: str
    dataset: str
    ratio: float
    attack: str
    baseline: Optional[str]
    images: str
    rows: list = field(default_factory=list)     # (method, seeds, {group: (mean text, Δ text, sign)})
    leads: dict = field(default_factory=dict)    # group → (leader, mean, runner-up, diff_stats or None)

    @property
    def label(self) -> str:
        return attack_label(self.attack)


def _baseline(methods: list[str]) -> Optional[str]:
    return next((b for b in roles.baselines() if b in methods), None)


def verdicts(jobs: pd.DataFrame, images: dict, attacks=MAIN_ATTACKS) -> list[Verdict]:
    """Per study × dataset × ratio × main attack present: the ranking and the leads (see the module
    docstring). ``images`` maps attack → the number of test images it ran on (for the sentence)."""
    out: list[Verdict] = []
    if jobs.empty:
        return out
    for (study, dataset, ratio), panel in jobs.groupby(["study", "dataset", "ratio"], sort=False):
        for attack in attacks:
            sub = panel[panel["attack"] == attack]
            if sub.empty:
                continue
            by_method = {m: g.set_index("seed") for m, g in sub.groupby("method", sort=False)}
            base = _baseline(list(by_method))
            means = {m: {g: float(v[g].mean()) for g in COLUMNS} for m, v in by_method.items()}
            stds = {m: {g: float(v[g].std(ddof=1)) if len(v) > 1 else math.nan for g in COLUMNS}
                    for m, v in by_method.items()}
            order = sorted(by_method, key=lambda m: -means[m]["tail"] if math.isfinite(means[m]["tail"]) else math.inf)
            v = Verdict(str(study), str(dataset), float(ratio), attack, base, str(images.get(attack, "")))
            for m in order:
                cells = {}
                for g in COLUMNS:
                    mean = fmt_cell(means[m][g], stds[m][g])
                    if base is None or m == base:
                        cells[g] = (mean, "baseline" if m == base else "–", 0)
                        continue
                    d = seed_diffs(by_method[m], by_method[base], g)
                    st = diff_stats(d) if d else None
                    cells[g] = (mean, fmt_stats(st) if st else "–", resolved_sign(st) if st else 0)
                v.rows.append((m, len(by_method[m]), cells))
            for g in COLUMNS:
                ranked = sorted((m for m in by_method if math.isfinite(means[m][g])), key=lambda m: -means[m][g])
                if not ranked:
                    continue
                lead = ranked[0]
                second = ranked[1] if len(ranked) > 1 else None
                d = seed_diffs(by_method[lead], by_method[second], g) if second else []
                v.leads[g] = (lead, means[lead][g], second, diff_stats(d) if d else None)
            out.append(v)
    return out


def _lead_words(group: str, lead: tuple) -> str:
    leader, mean, second, st = lead
    head = f"the best {COLUMN_WORDS[group]} is {leader}'s ({100 * mean:.1f} %)"
    if second is None:
        return head
    if st is None:
        return f"{head}; no seed in common with the runner-up, {second}"
    interval = fmt_interval(st["ci_low"], st["ci_high"])
    diff = f"{100 * st['diff_mean']:+.1f}" + (f" {interval}" if interval else "")
    n = st["seeds"]
    if st["resolved"]:
        return f"{head}, ahead of {second}'s by {diff} points, resolved with {n} seeds"
    return f"{head}, level with {second}'s ({diff} points: not resolved with {n} seed{'s' * (n != 1)})"


def sentence(v: Verdict) -> str:
    """One quotable line per attack: the leader of tail, worst class and overall, and whether each
    lead over the runner-up is resolved by the paired 95 % interval."""
    where = f"{v.label}" + (f" on {v.images} test images" if v.images else "")
    parts = [_lead_words(g, v.leads[g]) for g in COLUMNS if g in v.leads]
    return f"Under {where} ({v.dataset}, ratio {v.ratio:g}): " + "; ".join(parts) + "."

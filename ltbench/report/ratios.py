"""Across imbalance ratios: does a verdict hold when the data is more or less long-tailed?

Given the tables of one or more studies that together cover a dataset at two or more imbalance
ratios (``ltbench report results/fmnist-lt results/fmnist-lt-ratios``, or one study with several
ratios), this module lines the ratios up, per dataset:

* :func:`pooled` — one summary row per dataset × ratio × method × attack, whichever study holds it
  (the first one given, where two studies hold the same method at the same ratio);
* :func:`verdicts` — the paired differences of :mod:`ltbench.report.paired` (method − baseline,
  per seed; mean, 95 % Student t interval, seeds ahead) for one attack and group, one row per
  method × baseline and one column per ratio, so that a verdict can be read along the row;
* :func:`rankings` — the methods ranked by one group's mean accuracy at each ratio (1 = best),
  Kendall's τ-b between the rankings of every two ratios (1: the same order, −1: reversed; over the
  methods present at both), and the pairs of methods whose order flips between neighbouring ratios.
  Given the per-seed jobs table, a flip is *confirmed* only where the two methods' per-seed paired
  difference is resolved at both ratios (95 % Student t interval, or the sign test for identical
  differences; :func:`ltbench.report.paired.diff_stats`) with opposite signs: an order that means
  alone change can be seed noise.

Ratios are sorted from the most imbalanced (smallest) up. The figure is
:func:`ltbench.report.plots.across_ratios`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from typing import NamedTuple, Optional

import pandas as pd

from ltbench.attack_names import attack_label
from ltbench.report.paired import diff_stats, fmt_diff, fmt_interval, fmt_record, resolved_sign, seed_diffs

VERDICT_GROUPS = ("tail", "worst", "head", "overall")


def pooled(summary: pd.DataFrame) -> pd.DataFrame:
    """Summary rows pooled over studies: one per dataset × ratio × method × attack (the first study's
    row where several studies hold the same one)."""
    if summary.empty:
        return summary
    return summary.drop_duplicates(["dataset", "ratio", "method", "attack"], keep="first").reset_index(drop=True)


def sweep_datasets(summary: pd.DataFrame) -> list[str]:
    """The datasets measured at two or more imbalance ratios (in the order they appear)."""
    if summary.empty:
        return []
    n = summary.groupby("dataset", sort=False)["ratio"].nunique()
    return [str(d) for d, k in n.items() if k > 1]


def ratios_of(summary: pd.DataFrame, dataset: str) -> list[float]:
    """The dataset's ratios, most imbalanced first."""
    return sorted({float(r) for r in summary.loc[summary["dataset"] == dataset, "ratio"]})


def sweep_attacks(summary: pd.DataFrame, dataset: str) -> list[str]:
    """The robust attacks (not ``clean``) measured at two or more of ``dataset``'s ratios, PGD-20 first
    (it runs on every test image), then in the standard order."""
    from ltbench.attack_names import attack_order

    sub = summary[summary["dataset"] == dataset]
    n = sub.groupby("attack")["ratio"].nunique()
    present = [a for a in attack_order(list(n.index)) if a != "clean" and n[a] > 1]
    return sorted(present, key=lambda a: a != "pgd20")


def ratio_text(ratio: float) -> str:
    """``0.01 (IR 100)``."""
    return f"{ratio:g} (IR {1 / ratio:g})" if 0 < ratio < 1 else f"{ratio:g}"


def verdicts(paired: pd.DataFrame, dataset: str, attack: str, group: str) -> pd.DataFrame:
    """One row per method × baseline that is paired at some ratio of ``dataset``: the method, its
    baseline, and per ratio the paired-table row's numbers (``<ratio>`` → the row, or None). Pooled
    over studies as :func:`pooled` does. Columns: method, baseline, then one per ratio (float)."""
    if paired.empty:
        return pd.DataFrame(columns=["method", "baseline"])
    sub = paired[(paired["dataset"] == dataset) & (paired["attack"] == attack) & (paired["group"] == group)]
    sub = sub.drop_duplicates(["ratio", "baseline", "method"], keep="first")
    ratios = sorted({float(r) for r in sub["ratio"]})
    rows = []
    for (method, base), grp in sub.groupby(["method", "baseline"], sort=False):
        by_ratio = {float(r["ratio"]): r for _, r in grp.iterrows()}
        rows.append({"method": method, "baseline": base, **{r: by_ratio.get(r) for r in ratios}})
    return pd.DataFrame(rows, columns=["method", "baseline", *ratios])


def verdict_cell(row) -> tuple[str, int]:
    """A paired row as ``+2.1 [+0.3, +4.1] (3/3)`` and its sign when resolved (else 0); ``–`` if absent."""
    if row is None or (isinstance(row, float) and math.isnan(row)):
        return "–", 0
    interval = fmt_interval(row["ci_low"], row["ci_high"])
    text = fmt_diff(row["diff_mean"], math.nan) + (f" {interval}" if interval else "") + \
        f" ({fmt_record(int(row['ahead']), int(row['tied']), int(row['seeds']))})"
    return text, resolved_sign(row)


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's τ-b of two paired lists of scores (NaN for fewer than two, or no order in one)."""
    if len(a) < 2:
        return math.nan
    from scipy.stats import kendalltau

    tau = kendalltau(a, b).statistic
    return float(tau) if tau is not None and math.isfinite(tau) else math.nan


class Flip(NamedTuple):
    """Two methods whose order changes between neighbouring ratios ``a`` and ``b``."""

    a: float
    b: float
    ahead_at_a: str
    ahead_at_b: str
    confirmed: Optional[bool] = None  # resolved at both ratios, opposite signs; None: no per-seed data


@dataclass
class Ranking:
    """Methods ranked on one group at each ratio of one dataset."""

    dataset: str
    attack: str
    group: str
    ratios: list
    ranks: pd.DataFrame                          # index method, columns ratio → rank (1 = best); NaN where absent
    means: pd.DataFrame                          # the same shape: the mean accuracy ranked on
    taus: list = field(default_factory=list)     # (ratio a, ratio b, τ, methods compared)
    flips: list = field(default_factory=list)    # :class:`Flip` per pair of methods that change order
    seeds: dict = field(default_factory=dict)    # ratio → (fewest, most) seeds behind a ranked mean


def pair_sign(jobs: pd.DataFrame, dataset: str, ratio: float, attack: str, group: str, m1: str, m2: str) -> int:
    """+1 / −1 where ``m1 − m2`` on ``group``, paired per seed at this ratio, is resolved
    (:func:`ltbench.report.paired.resolved_sign`); 0 otherwise. Pooled as :func:`pooled`: the first
    study's jobs where several hold the same method."""
    sub = jobs[(jobs["dataset"] == dataset) & (jobs["ratio"] == ratio) & (jobs["attack"] == attack)
               & jobs["method"].isin([m1, m2])].drop_duplicates(["method", "seed"], keep="first")
    a, b = (sub[sub["method"] == m].set_index("seed") for m in (m1, m2))
    d = seed_diffs(a, b, group)
    return resolved_sign(diff_stats(d)) if d else 0


def rankings(summary: pd.DataFrame, dataset: str, attack: str, group: str = "tail",
             jobs: pd.DataFrame | None = None) -> Ranking:
    """Rank the methods by ``group``'s mean accuracy under ``attack`` at every ratio of ``dataset``
    (ties share the better rank); τ-b between every two ratios over the methods present at both; and
    the order flips between neighbouring ratios (a above b at one, below at the next), each
    ``confirmed`` from the per-seed ``jobs`` table when it is given (:func:`pair_sign` at both ratios)."""
    sub = pooled(summary)
    sub = sub[(sub["dataset"] == dataset) & (sub["attack"] == attack)]
    ratios = ratios_of(sub, dataset) if not sub.empty else []
    means = sub.pivot_table(index="method", columns="ratio", values=f"{group}_mean", sort=False) if not sub.empty \
        else pd.DataFrame()
    if means.empty:
        return Ranking(dataset, attack, group, ratios, means, means)
    order = list(dict.fromkeys(sub["method"]))
    means = means.reindex(index=order, columns=ratios)
    ranks = means.rank(ascending=False, method="min")
    out = Ranking(dataset, attack, group, ratios, ranks, means,
                  seeds={float(r): (int(g["seeds"].min()), int(g["seeds"].max())) for r, g in sub.groupby("ratio")})
    for ra, rb in combinations(ratios, 2):
        both = means[[ra, rb]].dropna()
        out.taus.append((ra, rb, kendall_tau(list(both[ra]), list(both[rb])), len(both)))
    for ra, rb in zip(ratios, ratios[1:]):
        both = means[[ra, rb]].dropna()
        for m1, m2 in combinations(both.index, 2):
            da, db = both.at[m1, ra] - both.at[m2, ra], both.at[m1, rb] - both.at[m2, rb]
            if da * db < 0:
                confirmed = None if jobs is None else \
                    pair_sign(jobs, dataset, ra, attack, group, m1, m2) * pair_sign(jobs, dataset, rb, attack, group, m1, m2) < 0
                out.flips.append(Flip(ra, rb, m1 if da > 0 else m2, m1 if db > 0 else m2, confirmed))
    return out


def flip_text(f: Flip) -> str:
    """``0.02 (IR 50) → 0.1 (IR 10): taet → pgd-at`` and, when known, whether seeds confirm it."""
    mark = "" if f.confirmed is None else " (confirmed)" if f.confirmed else " (not resolved)"
    return f"{ratio_text(f.a)} → {ratio_text(f.b)}: {f.ahead_at_a} → {f.ahead_at_b}{mark}"


def ranking_sentence(r: Ranking) -> str:
    """One line a reader can quote: τ per ratio pair and how many order flips there are."""
    if not r.taus:
        return f"{attack_label(r.attack)}, {r.group}: fewer than two ratios."
    taus = "; ".join(f"{ratio_text(a)} vs {ratio_text(b)}: τ = {t:+.2f} over {n} methods" if math.isfinite(t)
                     else f"{ratio_text(a)} vs {ratio_text(b)}: τ undefined ({n} methods)" for a, b, t, n in r.taus)
    flips = f"{len(r.flips)} pair{'s' * (len(r.flips) != 1)} of methods change order between neighbouring ratios"
    known = [f for f in r.flips if f.confirmed is not None]
    if known:
        flips += (f"; {sum(f.confirmed for f in known)} of them confirmed (the pair's per-seed difference resolved "
                  f"at both ratios, opposite signs)")
    seeds = ", ".join(f"{lo}" if lo == hi else f"{lo}–{hi}" for lo, hi in (r.seeds.get(x, (0, 0)) for x in r.ratios))
    return (f"Ranking on {r.group} {attack_label(r.attack)} accuracy (Kendall τ-b): {taus}. {flips}. "
            f"The means ranked hold {seeds} seeds per method at the {len(r.ratios)} ratios.")


def ratios_markdown(paired: pd.DataFrame, summary: pd.DataFrame, jobs: pd.DataFrame | None = None) -> str:
    """``ratios.md``: per dataset measured at several ratios, per robust attack (:func:`sweep_attacks`),
    the ranking on the tail (ranks, τ, flips, confirmed from ``jobs`` when given) and the verdict
    tables (tail, worst, head, overall)."""
    out = ["# Across imbalance ratios", "",
           "Cells of the verdict tables: mean paired difference method − baseline over seeds (percentage points),",
           "95 % confidence interval (Student t on the per-seed paired differences, n − 1 degrees of freedom),",
           "seeds ahead. **Bold**: the interval excludes 0 (a finding); otherwise not resolved with that many seeds.",
           "IR = imbalance ratio n_max / n_min = 1 / ratio.", ""]
    for dataset in sweep_datasets(summary):
        for attack in sweep_attacks(summary, dataset):
            r = rankings(summary, dataset, attack, "tail", jobs)
            if r.ranks.empty:
                continue
            cols = [ratio_text(x) for x in r.ratios]
            out += [f"## {dataset}, {attack_label(attack)}", "", "### Tail ranking", "", ranking_sentence(r), "",
                    "| Method | " + " | ".join(cols) + " |", "|:--|" + "--:|" * len(cols)]
            for m in r.ranks.index:
                cells = ["–" if math.isnan(r.ranks.at[m, x]) else
                         f"{int(r.ranks.at[m, x])} ({100 * r.means.at[m, x]:.1f})" for x in r.ratios]
                out.append(f"| {m} | " + " | ".join(cells) + " |")
            out.append("")
            if r.flips:
                out += ["Order flips between neighbouring ratios (ahead at the first → ahead at the second): "
                        + "; ".join(flip_text(f) for f in r.flips), ""]
            for group in VERDICT_GROUPS:
                v = verdicts(paired, dataset, attack, group)
                ratios = [c for c in v.columns if c not in ("method", "baseline")]
                if v.empty or len(ratios) < 2:
                    continue
                out += [f"### Paired, {group}", "", "| Method | vs | " + " | ".join(ratio_text(x) for x in ratios) + " |",
                        "|:--|:--|" + "--:|" * len(ratios)]
                for _, row in v.iterrows():
                    cells = []
                    for x in ratios:
                        text, sign = verdict_cell(row[x])
                        cells.append(f"**{text.split(' ', 1)[0]}** {text.split(' ', 1)[1]}" if sign else text)
                    out.append(f"| {row['method']} | {row['baseline']} | " + " | ".join(cells) + " |")
                out.append("")
    return "\n".join(out)

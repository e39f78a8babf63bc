"""Paired comparisons between methods, and each method's training cost relative to a baseline.

Two jobs of one study with the same dataset, ratio and seed share the long-tailed split and the
model's initialisation (both are drawn from the seed), so the per-seed difference
``method − baseline`` removes that shared variance. :func:`paired_table` gives, per attack and
head / medium / tail / worst group, the mean of those differences, their sample std (ddof 1), and
on how many seeds the method was ahead or behind. A difference is called *consistent* when every
seed has the same sign and there are at least two seeds.

:func:`cost_table` compares training time the same way: per seed, the method's mean epoch time
over the baseline's (``metrics.jsonl`` ``time_s``), then the mean and std of those ratios.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import pandas as pd

from ltbench.attack_names import attack_label, attack_order
from ltbench.report.aggregate import GROUP_LABELS, GROUPS

# Baselines every other method is compared with, when the study has them.
BASELINES = ("pgd-at", "at-bsl")
PAIR_KEYS = ["study", "dataset", "ratio", "seed"]


def paired_table(jobs: pd.DataFrame, baselines: Iterable[str] = BASELINES,
                 methods: list[str] | None = None) -> pd.DataFrame:
    """Per-seed differences ``method − baseline`` summarised: one row per study × dataset × ratio ×
    attack × baseline × method × group, with ``seeds`` (paired seeds), ``diff_mean``,
    ``diff_std`` (NaN for one seed), ``ahead`` / ``behind`` (seeds with a positive / negative
    difference) and ``diffs`` (the per-seed differences, in seed order)."""
    columns = ["study", "dataset", "ratio", "attack", "baseline", "method", "group", "seeds",
               "diff_mean", "diff_std", "ahead", "behind", "diffs"]
    if jobs.empty:
        return pd.DataFrame(columns=columns)
    order = methods or list(dict.fromkeys(jobs["method"]))
    rows = []
    for (study, dataset, ratio, attack), grp in jobs.groupby(["study", "dataset", "ratio", "attack"], sort=False):
        by_method = {m: g.set_index("seed") for m, g in grp.groupby("method", sort=False)}
        for base in baselines:
            if base not in by_method:
                continue
            b = by_method[base]
            for m in order:
                if m == base or m not in by_method:
                    continue
                seeds = sorted(set(b.index) & set(by_method[m].index))
                if not seeds:
                    continue
                for g in GROUPS:
                    d = [float(by_method[m].at[s, g]) - float(b.at[s, g]) for s in seeds]
                    d = [x for x in d if math.isfinite(x)]
                    if not d:
                        continue
                    s = pd.Series(d)
                    rows.append({"study": study, "dataset": dataset, "ratio": ratio, "attack": attack,
                                 "baseline": base, "method": m, "group": g, "seeds": len(d),
                                 "diff_mean": float(s.mean()),
                                 "diff_std": float(s.std(ddof=1)) if len(d) > 1 else math.nan,
                                 "ahead": sum(x > 0 for x in d), "behind": sum(x < 0 for x in d),
                                 "diffs": " ".join(f"{100 * x:+.1f}" for x in d)})
    return pd.DataFrame(rows, columns=columns)


def epoch_times(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean epoch time (s) per job, from the training curves (``time_s`` of each logged epoch)."""
    if curves.empty:
        return pd.DataFrame(columns=["study", "method", "dataset", "ratio", "seed", "epoch_s", "epochs"])
    g = curves.groupby(["study", "method", "dataset", "ratio", "seed"], sort=False)["time_s"]
    return g.agg(epoch_s="mean", epochs="count").reset_index()


def cost_table(curves: pd.DataFrame, baseline: str = "pgd-at", done_jobs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per study × dataset × ratio × method: the mean epoch time, and the per-seed ratio to
    ``baseline``'s epoch time (mean, std, seeds). Only finished jobs count when ``done_jobs`` (the
    job table) is given."""
    columns = ["study", "dataset", "ratio", "method", "epoch_s", "seeds", "cost_mean", "cost_std"]
    times = epoch_times(curves)
    if done_jobs is not None and not times.empty:
        done = set(zip(done_jobs["study"], done_jobs["method"], done_jobs["dataset"], done_jobs["ratio"],
                       done_jobs["seed"]))
        times = times[[k in done for k in zip(times["study"], times["method"], times["dataset"], times["ratio"],
                                              times["seed"])]]
    if times.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for (study, dataset, ratio), grp in times.groupby(["study", "dataset", "ratio"], sort=False):
        base = grp[grp["method"] == baseline].set_index("seed")["epoch_s"]
        for m, g in grp.groupby("method", sort=False):
            g = g.set_index("seed")["epoch_s"]
            ratios = pd.Series([g[s] / base[s] for s in sorted(set(g.index) & set(base.index)) if base[s] > 0],
                               dtype=float)
            rows.append({"study": study, "dataset": dataset, "ratio": ratio, "method": m,
                         "epoch_s": float(g.mean()), "seeds": len(ratios),
                         "cost_mean": float(ratios.mean()) if len(ratios) else math.nan,
                         "cost_std": float(ratios.std(ddof=1)) if len(ratios) > 1 else math.nan})
    return pd.DataFrame(rows, columns=columns)


# ------------------------------------------------------------------------------------------------
# Display


def fmt_diff(mean: float, std: float) -> str:
    """``+2.1 ± 0.8`` in percentage points (no ± part for one seed)."""
    if not math.isfinite(mean):
        return "–"
    text = f"{100 * mean:+.1f}"
    return f"{text} ± {100 * std:.1f}" if math.isfinite(std) else text


@dataclass
class PairedCell:
    text: str          # "+2.1 ± 0.8"
    record: str        # "3/3" seeds ahead
    sign: int          # +1 / −1 when consistent over ≥ 2 seeds (every seed the same sign), else 0


@dataclass
class PairedDisplay:
    """One baseline × attack × dataset × ratio: a row per method, a cell per group."""

    study: str
    dataset: str
    ratio: float
    attack: str
    label: str
    baseline: str
    groups: list
    rows: list  # (method, seeds, [PairedCell per group])


def paired_display(paired: pd.DataFrame, groups: tuple = ("overall", "head", "tail", "worst")) -> list[PairedDisplay]:
    """The paired table grouped for display: one :class:`PairedDisplay` per study × dataset × ratio ×
    baseline × attack (attacks in the standard order)."""
    out: list[PairedDisplay] = []
    if paired.empty:
        return out
    for (study, dataset, ratio, base), grp in paired.groupby(["study", "dataset", "ratio", "baseline"], sort=False):
        for attack in attack_order(grp["attack"].unique()):
            sub = grp[grp["attack"] == attack]
            rows = []
            for m, mg in sub.groupby("method", sort=False):
                cells, seeds = [], 0
                for g in groups:
                    r = mg[mg["group"] == g]
                    if r.empty:
                        cells.append(PairedCell("–", "", 0))
                        continue
                    r = r.iloc[0]
                    seeds = max(seeds, int(r["seeds"]))
                    n = int(r["seeds"])
                    sign = 1 if n > 1 and r["ahead"] == n else -1 if n > 1 and r["behind"] == n else 0
                    cells.append(PairedCell(fmt_diff(r["diff_mean"], r["diff_std"]), f"{int(r['ahead'])}/{n}", sign))
                rows.append((m, seeds, cells))
            out.append(PairedDisplay(study, dataset, float(ratio), attack, attack_label(attack), base,
                                     [GROUP_LABELS[g] for g in groups], rows))
    return out


def paired_markdown(tables: list[PairedDisplay], cost: pd.DataFrame) -> str:
    """Markdown: one table per baseline × attack (differences in points, mean ± std over seeds,
    seeds ahead), then the cost table."""
    out = ["# Paired comparisons (accuracy difference method − baseline, percentage points)", "",
           "Same seed = same long-tailed split and initialisation. Cell: mean ± std of the per-seed",
           "differences; in brackets, the seeds on which the method is ahead. **Bold**: the same sign on",
           "every seed (at least two).", ""]
    for t in tables:
        out += [f"## {t.label}: vs {t.baseline} ({t.dataset}, ratio {t.ratio:g}, {t.study})", "",
                "| Method | " + " | ".join(t.groups) + " | Seeds |",
                "|:--|" + "--:|" * (len(t.groups) + 1)]
        for m, seeds, cells in t.rows:
            vals = [f"**{c.text}** ({c.record})" if c.sign else f"{c.text} ({c.record})" if c.record else c.text
                    for c in cells]
            out.append(f"| {m} | " + " | ".join(vals) + f" | {seeds} |")
        out.append("")
    if not cost.empty:
        out += ["## Training cost (epoch time relative to pgd-at, per seed)", "",
                "| Method | Dataset | Ratio | Epoch (s) | × pgd-at | Seeds |", "|:--|:--|--:|--:|--:|--:|"]
        for _, r in cost.iterrows():
            rel = "–" if not math.isfinite(r["cost_mean"]) else (
                f"{r['cost_mean']:.2f}" + (f" ± {r['cost_std']:.2f}" if math.isfinite(r["cost_std"]) else ""))
            out.append(f"| {r['method']} | {r['dataset']} | {r['ratio']:g} | {r['epoch_s']:.1f} | {rel} | {r['seeds']} |")
        out.append("")
    return "\n".join(out)

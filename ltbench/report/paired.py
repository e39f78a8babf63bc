"""Paired comparisons between methods, and each method's training cost relative to a baseline.

Two jobs of one study with the same dataset, ratio and seed share the long-tailed split and the
model's initialisation (both are drawn from the seed), so the per-seed difference
``method − baseline`` removes that shared variance. :func:`paired_table` gives, per attack and
head / medium / tail / worst group, the mean of those differences, their sample std (ddof 1), a 95 %
confidence interval for the mean difference (Student t with n − 1 degrees of freedom on the n
per-seed differences: mean ± t₀.₉₇₅,ₙ₋₁ · std / √n), on how many seeds the method was ahead, behind
or tied, and — where the interval still holds 0 — how many seeds the observed spread would need
for it not to (:func:`seeds_to_resolve`). A difference is a *finding* (``resolved``) only where the
interval excludes 0; otherwise it is "not resolved with n seeds".

Identical per-seed differences (spread 0, e.g. a worst class that moves by one image on every seed)
have no t interval: its width would be 0 only because the metric is coarse. They are judged by the
exact two-sided sign test instead (all n on one side: p = 2 · 2⁻ⁿ), which needs
:func:`sign_test_seeds` (6) seeds at the 95 % level; the interval is left empty and the note says why.

Baselines: the registered baselines for every method (:func:`ltbench.method_roles.baselines`, each
method class's ``baseline_rank``: PGD-AT, then AT-BSL), and for a label built on another one — an
ablation ``reat+no-tail`` or a modifier ``at-bsl+awp`` — that base label (``reat``, ``at-bsl``).

:func:`cost_table` compares training time the same way: per seed, the method's mean epoch time
over the baseline's (``metrics.jsonl`` ``time_s``), then the mean and std of those ratios.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import pandas as pd

from ltbench.attack_names import attack_label, attack_order
from ltbench.groups import GROUP_LABELS, GROUPS
from ltbench import method_roles as roles

PAIR_KEYS = ["study", "dataset", "ratio", "seed"]
LEVEL = 0.95        # of the confidence intervals
MAX_SEEDS = 1000    # seeds_to_resolve gives up beyond this
ZERO_SPREAD = 1e-9  # per-seed differences (accuracy fractions) closer than this are identical


def t_quantile(n: int, level: float = LEVEL) -> float:
    """The two-sided Student t quantile t_{(1+level)/2, n−1} for n paired seeds (NaN for n < 2)."""
    if n < 2:
        return math.nan
    from scipy.stats import t

    return float(t.ppf((1 + level) / 2, n - 1))


def t_interval(diffs: list[float], level: float = LEVEL) -> tuple[float, float]:
    """The ``level`` confidence interval of the mean of ``diffs`` (Student t, n − 1 degrees of
    freedom): mean ± t · std / √n; (NaN, NaN) for fewer than two values."""
    n = len(diffs)
    if n < 2:
        return math.nan, math.nan
    mean = sum(diffs) / n
    std = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = half_width(std, n, level)
    return mean - half, mean + half


def half_width(std: float, n: int, level: float = LEVEL) -> float:
    """The interval's half-width for n seeds of this std: t_{(1+level)/2, n−1} · std / √n."""
    return t_quantile(n, level) * std / math.sqrt(n)


def sign_test_seeds(level: float = LEVEL) -> int:
    """The fewest seeds, all on one side, for which the exact two-sided sign test rejects "no
    difference" at ``level``: 2 · 2⁻ⁿ < 1 − level (6 at 95 %)."""
    return next(n for n in range(2, 64) if 2.0 ** (1 - n) < 1 - level)


def zero_spread(std: float) -> bool:
    """Whether per-seed differences of this std are all identical (no t interval; the sign test judges)."""
    return math.isfinite(std) and std <= ZERO_SPREAD


def seeds_to_resolve(mean: float, std: float, level: float = LEVEL, max_seeds: int = MAX_SEEDS) -> float:
    """The fewest seeds n ≥ 2 whose interval would exclude 0 if the per-seed differences kept this
    mean and std: t_{n−1} · std / √n < |mean|. For identical differences (:func:`zero_spread`), the
    seeds the sign test needs (:func:`sign_test_seeds`). NaN when no number would (mean 0, unknown std
    or more than ``max_seeds``). A planning figure from the observed spread, not a promise."""
    if not (math.isfinite(mean) and math.isfinite(std)) or mean == 0:
        return math.nan
    if zero_spread(std):
        return float(sign_test_seeds(level))
    for n in range(2, max_seeds + 1):
        if half_width(std, n, level) < abs(mean):
            return float(n)
    return math.nan


def baselines_of(method: str, present, baselines: Iterable[str] | None = None) -> list[str]:
    """The baselines ``method`` is paired with among the ``present`` methods: ``baselines``, then the
    label it is built on (``at-bsl+awp`` → ``at-bsl``; ``reat+no-tail`` → ``reat``), never itself.
    ``baselines`` default: the registered ones (:func:`ltbench.method_roles.baselines`)."""
    out = [b for b in (roles.baselines() if baselines is None else baselines) if b in present]
    base = method.split("+", 1)[0]
    if base != method and base in present and base not in out:
        out.append(base)
    return [b for b in out if b != method]


def diff_stats(d: list[float]) -> dict:
    """The summary of per-seed differences ``d`` the paired tables use: ``seeds``, ``diff_mean``,
    ``diff_std`` (NaN for one), ``ci_low`` / ``ci_high`` (:func:`t_interval`), ``resolved``,
    ``seeds_needed``, ``ahead`` / ``behind`` / ``tied`` and ``diffs_pp`` (the per-seed values in percentage points, in order).
    Identical differences (:func:`zero_spread`): std 0, no interval (NaN), resolved by the sign test."""
    s = pd.Series(d, dtype=float)
    mean, std = float(s.mean()), float(s.std(ddof=1)) if len(d) > 1 else math.nan
    if zero_spread(std):
        std, low, high = 0.0, math.nan, math.nan
        resolved = mean != 0 and len(d) >= sign_test_seeds()
    else:
        low, high = t_interval(list(d))
        resolved = bool(low > 0 or high < 0)
    return {"seeds": len(d), "diff_mean": mean, "diff_std": std, "ci_low": low, "ci_high": high,
            "resolved": resolved, "seeds_needed": math.nan if resolved else seeds_to_resolve(mean, std),
            "ahead": sum(x > 0 for x in d), "behind": sum(x < 0 for x in d), "tied": sum(x == 0 for x in d),
            "diffs_pp": " ".join(f"{100 * x:+.1f}" for x in d)}


def seed_diffs(a: pd.DataFrame, b: pd.DataFrame, group: str) -> list[float]:
    """``a − b`` on ``group`` for every seed both have (frames indexed by seed), finite ones only."""
    d = [float(a.at[s, group]) - float(b.at[s, group]) for s in sorted(set(a.index) & set(b.index))]
    return [x for x in d if math.isfinite(x)]


def resolved_sign(st) -> int:
    """+1 / −1 for a difference whose interval excludes 0 (a finding), by its sign; 0 otherwise.
    ``st`` is a :func:`diff_stats` record or a paired-table row."""
    return (1 if st["diff_mean"] > 0 else -1) if st["resolved"] else 0


def fmt_stats(st: dict) -> str:
    """``+8.4 ± 2.0 [+3.5, +13.4] (3/3)``: mean ± std, interval, seeds ahead (``–`` for no seed)."""
    if not st or not st["seeds"]:
        return "–"
    interval = fmt_interval(st["ci_low"], st["ci_high"])
    return f"{fmt_diff(st['diff_mean'], st['diff_std'])}{' ' + interval if interval else ''} " \
           f"({fmt_record(st['ahead'], st['tied'], st['seeds'])})"


def paired_table(jobs: pd.DataFrame, baselines: Iterable[str] | None = None,
                 methods: list[str] | None = None) -> pd.DataFrame:
    """Per-seed differences ``method − baseline`` summarised: one row per study × dataset × ratio ×
    attack × baseline × method × group (baselines: :func:`baselines_of`), with ``seeds`` (paired
    seeds), ``diff_mean``, ``diff_std`` (NaN for one seed), ``ci_low`` / ``ci_high`` (the 95 %
    Student t interval of the mean, NaN for one seed), ``resolved`` (the interval excludes 0),
    ``seeds_needed`` (:func:`seeds_to_resolve`, for a difference not resolved yet), ``ahead`` /
    ``behind`` / ``tied`` (seeds with a positive / negative / zero difference) and ``diffs_pp`` (the
    per-seed differences in percentage points, in seed order). Accuracies and differences are
    fractions, as in every other table of :mod:`ltbench.report`."""
    columns = ["study", "dataset", "ratio", "attack", "baseline", "method", "group", "seeds",
               "diff_mean", "diff_std", "ci_low", "ci_high", "resolved", "seeds_needed", "ahead", "behind", "tied",
               "diffs_pp"]
    if jobs.empty:
        return pd.DataFrame(columns=columns)
    baselines = roles.baselines() if baselines is None else tuple(baselines)
    order = methods or list(dict.fromkeys(jobs["method"]))
    rows = []
    for (study, dataset, ratio, attack), grp in jobs.groupby(["study", "dataset", "ratio", "attack"], sort=False):
        by_method = {m: g.set_index("seed") for m, g in grp.groupby("method", sort=False)}
        for m in order:
            if m not in by_method:
                continue
            for base in baselines_of(m, by_method, baselines):
                b = by_method[base]
                for g in GROUPS:
                    d = seed_diffs(by_method[m], b, g)
                    if d:
                        rows.append({"study": study, "dataset": dataset, "ratio": ratio, "attack": attack,
                                     "baseline": base, "method": m, "group": g, **diff_stats(d)})
    out = pd.DataFrame(rows, columns=columns)
    # Rows by baseline in ``baselines`` order (then the base labels), methods in grid order within each.
    rank = {b: i for i, b in enumerate(baselines)}
    panels = list(zip(out["study"], out["dataset"], out["ratio"], out["attack"]))
    first = {k: i for i, k in enumerate(dict.fromkeys(panels))}
    out["_k"] = [first[k] for k in panels]
    out["_b"] = out["baseline"].map(lambda b: rank.get(b, len(rank)))
    return out.sort_values(["_k", "_b"], kind="stable").drop(columns=["_k", "_b"]).reset_index(drop=True)


def epoch_times(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean epoch time (s) per job, from the training curves (``time_s`` of each logged epoch)."""
    if curves.empty:
        return pd.DataFrame(columns=["study", "method", "dataset", "ratio", "seed", "epoch_s", "epochs"])
    g = curves.groupby(["study", "method", "dataset", "ratio", "seed"], sort=False)["time_s"]
    return g.agg(epoch_s="mean", epochs="count").reset_index()


def cost_table(curves: pd.DataFrame, baseline: str | None = None, done_jobs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per study × dataset × ratio × method: the mean epoch time, and the per-seed ratio to
    ``baseline``'s epoch time (mean, std, seeds; default :func:`ltbench.method_roles.cost_baseline`).
    Only finished jobs count when ``done_jobs`` (the job table) is given."""
    baseline = roles.cost_baseline() if baseline is None else baseline
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


def fmt_interval(low: float, high: float) -> str:
    """``[+0.3, +4.1]`` in percentage points; empty for one seed."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return ""
    return f"[{100 * low:+.1f}, {100 * high:+.1f}]"


def fmt_record(ahead: int, tied: int, n: int) -> str:
    """Seeds ahead out of n (``2/3``), with ties said as ties (``0/3, 3 tied``)."""
    return f"{ahead}/{n}" + (f", {tied} tied" if tied else "")


def fmt_needed(row) -> str:
    """For a difference not resolved: ``not resolved with n seeds`` and, from the observed spread,
    ``(~k needed)`` where k seeds would resolve it."""
    if row["resolved"]:
        return ""
    n = int(row["seeds"])
    need = row.get("seeds_needed", math.nan)
    same = n > 1 and zero_spread(row["diff_std"]) and row["diff_mean"] != 0
    tail = f"; identical on every seed, a sign test needs {int(need)}" if same and math.isfinite(need) else \
        f"; ~{int(need)} needed" if isinstance(need, (int, float)) and math.isfinite(need) else \
        "; no seed count would" if n > 1 and math.isfinite(row["diff_std"]) else ""
    return f"not resolved with {n} seed{'s' * (n != 1)}{tail}"


@dataclass
class PairedCell:
    text: str          # "+2.1 ± 0.8"
    record: str        # "3/3" seeds ahead
    sign: int          # +1 / −1 when the 95 % interval excludes 0 (a finding), else 0
    interval: str = ""  # "[+0.3, +4.1]"
    note: str = ""     # "not resolved with 3 seeds; ~7 needed"


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


def paired_cell(r) -> PairedCell:
    """A paired-table row as a displayed cell."""
    n = int(r["seeds"])
    return PairedCell(fmt_diff(r["diff_mean"], r["diff_std"]), fmt_record(int(r["ahead"]), int(r["tied"]), n),
                      resolved_sign(r),
                      fmt_interval(r["ci_low"], r["ci_high"]), fmt_needed(r))


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
                    cells.append(paired_cell(r))
                rows.append((m, seeds, cells))
            out.append(PairedDisplay(study, dataset, float(ratio), attack, attack_label(attack), base,
                                     [GROUP_LABELS[g] for g in groups], rows))
    return out


INTERVAL_WORDS = ("95 % confidence interval of the mean difference: Student t on the per-seed paired "
                  "differences, n − 1 degrees of freedom")


def paired_markdown(tables: list[PairedDisplay], cost: pd.DataFrame) -> str:
    """Markdown: one table per baseline × attack (differences in points, mean ± std over seeds,
    seeds ahead), then the cost table."""
    out = ["# Paired comparisons (accuracy difference method − baseline, percentage points)", "",
           "Same seed = same long-tailed split and initialisation. Cell: mean ± std of the per-seed",
           f"differences, then in square brackets the {INTERVAL_WORDS}; in round",
           "brackets, the seeds on which the method is ahead. **Bold**: the interval excludes 0 (a finding);",
           "otherwise the difference is not resolved with this many seeds. Identical differences on every seed",
           f"have no interval; the sign test judges them ({sign_test_seeds()} seeds, all on one side).", ""]
    for t in tables:
        out += [f"## {t.label}: vs {t.baseline} ({t.dataset}, ratio {t.ratio:g}, {t.study})", "",
                "| Method | " + " | ".join(t.groups) + " | Seeds |",
                "|:--|" + "--:|" * (len(t.groups) + 1)]
        for m, seeds, cells in t.rows:
            vals = [(f"**{c.text}**" if c.sign else c.text) + (f" {c.interval}" if c.interval else "")
                    + (f" ({c.record})" if c.record else "") for c in cells]
            out.append(f"| {m} | " + " | ".join(vals) + f" | {seeds} |")
        out.append("")
    if not cost.empty:
        base = roles.cost_baseline()
        out += [f"## Training cost (epoch time relative to {base}, per seed)", "",
                f"| Method | Dataset | Ratio | Epoch (s) | × {base} | Seeds |", "|:--|:--|--:|--:|--:|--:|"]
        for _, r in cost.iterrows():
            rel = "–" if not math.isfinite(r["cost_mean"]) else (
                f"{r['cost_mean']:.2f}" + (f" ± {r['cost_std']:.2f}" if math.isfinite(r["cost_std"]) else ""))
            out.append(f"| {r['method']} | {r['dataset']} | {r['ratio']:g} | {r['epoch_s']:.1f} | {rel} | {r['seeds']} |")
        out.append("")
    return "\n".join(out)

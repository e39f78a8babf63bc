"""Paired comparisons (method − baseline per seed) and training cost, against hand computations."""
import functools
import math

import pandas as pd
import pytest

from ltbench.groups import GROUPS
from ltbench.report.paired import cost_table, paired_display, paired_markdown, paired_table


def _jobs(values: dict) -> pd.DataFrame:
    """values: (method, seed) → tail accuracy; the other groups get tail + 0.1."""
    rows = []
    for (m, s), tail in values.items():
        rows.append({"study": "st", "job": f"{m}__s{s}", "method": m, "dataset": "fmnist", "ratio": 0.01, "seed": s,
                     "attack": "pgd20", **{g: tail + 0.1 for g in GROUPS}, "tail": tail, "per_class_std": 0.0,
                     "n": 100})
    return pd.DataFrame(rows)


def test_paired_differences_match_a_hand_computation():
    jobs = _jobs({("pgd-at", 0): 0.10, ("pgd-at", 1): 0.20, ("pgd-at", 2): 0.30,
                  ("reat", 0): 0.15, ("reat", 1): 0.22, ("reat", 2): 0.29,
                  ("mart", 1): 0.40})  # mart has one seed: paired on that seed only
    t = paired_table(jobs, baselines=("pgd-at",))
    tail = t[(t["method"] == "reat") & (t["group"] == "tail")].iloc[0]
    diffs = [0.05, 0.02, -0.01]
    mean = sum(diffs) / 3
    std = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    assert tail["seeds"] == 3 and tail["ahead"] == 2 and tail["behind"] == 1
    assert tail["diff_mean"] == pytest.approx(mean) and tail["diff_std"] == pytest.approx(std)
    assert tail["diffs_pp"] == "+5.0 +2.0 -1.0"  # the one column in percentage points, and named so
    half = 4.302653 * std / math.sqrt(3)  # t_{0.975, 2}
    assert tail["ci_low"] == pytest.approx(mean - half) and tail["ci_high"] == pytest.approx(mean + half)
    assert not tail["resolved"] and tail["seeds_needed"] >= 4 and tail["tied"] == 0
    mart = t[(t["method"] == "mart") & (t["group"] == "tail")].iloc[0]
    assert mart["seeds"] == 1 and mart["diff_mean"] == pytest.approx(0.20) and math.isnan(mart["diff_std"])
    assert set(t["baseline"]) == {"pgd-at"} and "pgd-at" not in set(t["method"])


def test_paired_needs_the_baseline_and_marks_only_resolved_differences():
    assert paired_table(_jobs({("reat", 0): 0.1}), baselines=("pgd-at",)).empty
    jobs = _jobs({("pgd-at", 0): 0.1, ("pgd-at", 1): 0.2, ("reat", 0): 0.2, ("reat", 1): 0.31,
                  ("trades", 0): 0.2, ("trades", 1): 0.1, ("mart", 0): 0.2, ("mart", 1): 0.3})
    tables = paired_display(paired_table(jobs, baselines=("pgd-at",)), groups=("tail",))
    (t,) = tables
    cells = {m: cells[0] for m, _, cells in t.rows}
    assert cells["reat"].sign == 1 and cells["reat"].record == "2/2"
    assert cells["trades"].sign == 0 and cells["trades"].text == "+0.0 ± 14.1"
    assert cells["mart"].sign == 0 and cells["mart"].interval == ""  # +10 on both seeds: no spread, no finding
    md = paired_markdown(tables, pd.DataFrame())
    assert "**+10.5 ± 0.7** [+4.1, +16.9] (2/2)" in md and "| mart | +10.0 ± 0.0 (2/2) |" in md and "| trades | +0.0 ± 14.1 [-127.1, +127.1] (1/2) |" in md
    assert "Student t" in md and "n − 1 degrees of freedom" in md
    # Ahead on every seed, but two seeds this far apart do not resolve it: no bold, and a count.
    jobs = _jobs({("pgd-at", 0): 0.1, ("pgd-at", 1): 0.2, ("reat", 0): 0.11, ("reat", 1): 0.3})
    (t,) = paired_display(paired_table(jobs, baselines=("pgd-at",)), groups=("tail",))
    cell = t.rows[0][2][0]
    assert cell.record == "2/2" and cell.sign == 0 and cell.note.startswith("not resolved with 2 seeds; ~")


@functools.lru_cache(maxsize=None)
def _t_quantile_by_integration(p: float, dof: int) -> float:
    """The Student t quantile from its density (Simpson's rule on [0, x], bisection): slow and plain."""
    c = math.gamma((dof + 1) / 2) / (math.sqrt(dof * math.pi) * math.gamma(dof / 2))

    def cdf(x, steps=2000):
        h = x / steps
        f = [c * (1 + (i * h) ** 2 / dof) ** (-(dof + 1) / 2) for i in range(steps + 1)]
        return 0.5 + h / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2]))

    lo, hi = 0.0, 100.0
    for _ in range(45):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_interval_is_the_student_t_interval_with_n_minus_1_dof(n):
    from ltbench.report.paired import t_interval, t_quantile

    t = _t_quantile_by_integration(0.975, n - 1)
    assert t_quantile(n) == pytest.approx(t, rel=1e-6)
    assert t_quantile(3) == pytest.approx(4.303, abs=1e-3)  # the printed tables' t_{0.975, 2}
    diffs = [0.01 * (i * i - 3 * i + 1) for i in range(n)]
    mean = sum(diffs) / n
    std = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    low, high = t_interval(diffs)
    assert low == pytest.approx(mean - t * std / math.sqrt(n)) and high == pytest.approx(mean + t * std / math.sqrt(n))
    assert all(math.isnan(v) for v in t_interval([0.5]))


def test_interval_covers_the_true_mean_95_percent_of_the_time_with_three_seeds():
    """With 3 seeds a normal-quantile interval would cover about 80 %; the t interval 95 %."""
    import numpy as np

    from ltbench.report.paired import t_interval

    rng = np.random.default_rng(0)
    draws = rng.normal(0.02, 0.05, size=(4000, 3))
    covered = sum(low <= 0.02 <= high for low, high in (t_interval(list(d)) for d in draws))
    assert 0.935 <= covered / len(draws) <= 0.965


def test_seeds_to_resolve_is_the_fewest_seeds_whose_interval_excludes_zero():
    from ltbench.report.paired import seeds_to_resolve

    # mean = std: t_{n−1}/√n < 1 first at n = 7 (t_5 / √6 = 1.050, t_6 / √7 = 0.925).
    assert seeds_to_resolve(0.02, 0.02) == 7 and seeds_to_resolve(-0.02, 0.02) == 7
    ref = next(n for n in range(2, 100) if _t_quantile_by_integration(0.975, n - 1) * 0.03 / math.sqrt(n) < 0.01)
    assert seeds_to_resolve(0.01, 0.03) == ref
    assert math.isnan(seeds_to_resolve(0.0, 0.01)) and math.isnan(seeds_to_resolve(0.01, math.nan))
    assert seeds_to_resolve(0.01, 0.0) == 6  # identical differences: the sign test's count


def test_identical_differences_have_no_interval_and_are_judged_by_the_sign_test():
    """A coarse metric (one image of a worst class) can move by the same amount on every seed: the t
    interval would have width 0 and call 2 seeds a finding. The exact sign test decides instead."""
    from scipy.stats import binomtest

    from ltbench.report.paired import diff_stats, fmt_needed, sign_test_seeds

    assert sign_test_seeds() == next(n for n in range(2, 20) if binomtest(n, n, 0.5).pvalue < 0.05) == 6
    same = [0.3 - 0.1 - 0.197, 0.103 - 0.1, 0.003]  # 0.003 up to float noise
    st = diff_stats(same)
    assert st["diff_std"] == 0.0 and math.isnan(st["ci_low"]) and math.isnan(st["ci_high"])
    assert not st["resolved"] and st["seeds_needed"] == 6
    assert fmt_needed(st) == "not resolved with 3 seeds; identical on every seed, a sign test needs 6"
    assert diff_stats([-0.02] * 6)["resolved"] and not diff_stats([-0.02] * 5)["resolved"]
    tied = diff_stats([0.0, 0.0, 0.0])
    assert not tied["resolved"] and math.isnan(tied["seeds_needed"]) and tied["tied"] == 3
    spread = diff_stats([0.003, 0.004, 0.003])  # a real spread: the t interval as before
    assert spread["resolved"] and spread["ci_low"] > 0


def test_labels_built_on_another_label_are_paired_with_it():
    jobs = _jobs({("pgd-at", 0): 0.1, ("at-bsl", 0): 0.3, ("at-bsl+awp", 0): 0.35, ("reat", 0): 0.2,
                  ("reat+no-tail", 0): 0.25})
    t = paired_table(jobs)
    pairs = set(zip(t["method"], t["baseline"]))
    assert {("at-bsl+awp", "at-bsl"), ("at-bsl+awp", "pgd-at"), ("reat+no-tail", "reat"), ("reat+no-tail", "pgd-at"),
            ("reat+no-tail", "at-bsl"), ("at-bsl", "pgd-at"), ("pgd-at", "at-bsl")} == pairs - {("reat", "pgd-at"), ("reat", "at-bsl")}
    assert list(dict.fromkeys(t["baseline"])) == ["pgd-at", "at-bsl", "reat"]


def test_cost_is_the_per_seed_ratio_of_mean_epoch_times():
    rows = []
    for m, seed, times in (("pgd-at", 0, [10, 12]), ("pgd-at", 1, [20, 20]), ("reat", 0, [11, 11]),
                           ("reat", 1, [30, 30]), ("mart", 0, [5, 5])):
        for e, t in enumerate(times):
            rows.append({"study": "st", "job": "j", "status": "done", "method": m, "dataset": "fmnist", "ratio": 0.01,
                         "seed": seed, "epoch": e, "loss": 1.0, "train_adv_acc": 0.5, "lr": 0.1, "time_s": t,
                         "images_per_s": 1.0})
    cost = cost_table(pd.DataFrame(rows)).set_index("method")
    assert cost.at["pgd-at", "cost_mean"] == pytest.approx(1.0)
    assert cost.at["reat", "cost_mean"] == pytest.approx((1.0 + 1.5) / 2)
    assert cost.at["reat", "cost_std"] == pytest.approx(math.sqrt(0.125))
    assert cost.at["mart", "cost_mean"] == pytest.approx(5 / 11) and cost.at["mart", "seeds"] == 1
    done = pd.DataFrame([{"study": "st", "method": "pgd-at", "dataset": "fmnist", "ratio": 0.01, "seed": 0}])
    assert list(cost_table(pd.DataFrame(rows), done_jobs=done)["method"]) == ["pgd-at"]


def test_side_by_side_section_is_paired_with_an_interval(tmp_path):
    """The REAT-as-written vs as-coded section follows the paired tables' rule: mean ± std, t interval, seeds ahead."""
    from test_report import make_study

    from ltbench.report.aggregate import build_tables, load_study
    from ltbench.report.html import paired_delta
    from ltbench.report.paired import t_interval

    study = load_study(make_study(tmp_path))
    jobs = build_tables([study]).jobs
    text = paired_delta(jobs, study.label, "fmnist", 0.1, "pgd20", "reat", "reat-official", "tail")
    sel = jobs[jobs["attack"] == "pgd20"]
    d = [float(sel[(sel["method"] == "reat") & (sel["seed"] == s)]["tail"].iloc[0]
               - sel[(sel["method"] == "reat-official") & (sel["seed"] == s)]["tail"].iloc[0]) for s in (0, 1)]
    low, high = t_interval(d)
    assert text.startswith(f"{100 * sum(d) / 2:+.1f} ± ") and f"[{100 * low:+.1f}, {100 * high:+.1f}]" in text
    assert text.endswith(f"({sum(x > 0 for x in d)}/2)")
    assert paired_delta(jobs, study.label, "fmnist", 0.1, "pgd20", "reat", "trades", "tail") == "–"

"""Paired comparisons (method − baseline per seed) and training cost, against hand computations."""
import math

import pandas as pd
import pytest

from ltbench.report.aggregate import GROUPS
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
    assert tail["diffs"] == "+5.0 +2.0 -1.0"
    mart = t[(t["method"] == "mart") & (t["group"] == "tail")].iloc[0]
    assert mart["seeds"] == 1 and mart["diff_mean"] == pytest.approx(0.20) and math.isnan(mart["diff_std"])
    assert set(t["baseline"]) == {"pgd-at"} and "pgd-at" not in set(t["method"])


def test_paired_needs_the_baseline_and_marks_only_consistent_signs():
    assert paired_table(_jobs({("reat", 0): 0.1}), baselines=("pgd-at",)).empty
    jobs = _jobs({("pgd-at", 0): 0.1, ("pgd-at", 1): 0.2, ("reat", 0): 0.2, ("reat", 1): 0.3,
                  ("trades", 0): 0.2, ("trades", 1): 0.1})
    tables = paired_display(paired_table(jobs, baselines=("pgd-at",)), groups=("tail",))
    (t,) = tables
    cells = {m: cells[0] for m, _, cells in t.rows}
    assert cells["reat"].sign == 1 and cells["reat"].record == "2/2"
    assert cells["trades"].sign == 0 and cells["trades"].text == "+0.0 ± 14.1"
    md = paired_markdown(tables, pd.DataFrame())
    assert "**+10.0 ± 0.0** (2/2)" in md


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

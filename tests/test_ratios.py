"""Across imbalance ratios (ltbench.report.ratios): rankings, Kendall's τ, order flips, verdicts
along the ratios, and ``ltbench report`` of a study pair that covers several ratios."""
from __future__ import annotations

import math
from itertools import combinations

import pandas as pd
import pytest

from ltbench.report import ratios as R
from ltbench.groups import GROUPS
from ltbench.report.paired import paired_table


def _summary(means: dict) -> pd.DataFrame:
    """means: (method, ratio) → tail mean; the other groups get 0.5; one study, pgd20."""
    rows = []
    for (m, r), tail in means.items():
        row = {"study": "st", "method": m, "dataset": "fmnist", "ratio": r, "attack": "pgd20", "seeds": 3,
               "images": "10000"}
        for g in GROUPS:
            row[f"{g}_mean"], row[f"{g}_std"] = 0.5, 0.01
        row["tail_mean"] = tail
        rows.append(row)
    return pd.DataFrame(rows)


def _tau_by_counting(a, b) -> float:
    """Kendall's τ (no ties): (concordant − discordant) / pairs, counted pair by pair."""
    pairs = list(combinations(range(len(a)), 2))
    s = sum(1 if (a[i] - a[j]) * (b[i] - b[j]) > 0 else -1 for i, j in pairs)
    return s / len(pairs)


def test_rankings_taus_and_flips_follow_their_definitions():
    means = {("pgd-at", 0.01): 0.05, ("at-bsl", 0.01): 0.40, ("reat", 0.01): 0.30, ("cb-at", 0.01): 0.45,
             ("pgd-at", 0.1): 0.30, ("at-bsl", 0.1): 0.42, ("reat", 0.1): 0.44, ("cb-at", 0.1): 0.41,
             ("pgd-at", 0.02): 0.10, ("at-bsl", 0.02): 0.41, ("reat", 0.02): 0.35, ("cb-at", 0.02): 0.43}
    r = R.rankings(_summary(means), "fmnist", "pgd20", "tail")
    assert r.ratios == [0.01, 0.02, 0.1]  # most imbalanced first
    assert r.ranks[0.01].to_dict() == {"pgd-at": 4, "at-bsl": 2, "reat": 3, "cb-at": 1}
    assert r.ranks[0.1].to_dict() == {"pgd-at": 4, "at-bsl": 2, "reat": 1, "cb-at": 3}
    methods = ["pgd-at", "at-bsl", "reat", "cb-at"]
    for ra, rb, tau, n in r.taus:
        assert n == 4
        assert tau == pytest.approx(_tau_by_counting([means[m, ra] for m in methods], [means[m, rb] for m in methods]))
    assert [t for _, _, t, _ in r.taus][0] == 1.0  # 0.01 and 0.02 share the order
    # Between 0.02 and 0.1 reat passes at-bsl and cb-at, and at-bsl passes cb-at.
    assert sorted((f.ahead_at_a, f.ahead_at_b) for f in r.flips) == [("at-bsl", "reat"), ("cb-at", "at-bsl"),
                                                                      ("cb-at", "reat")]
    assert all((f.a, f.b, f.confirmed) == (0.02, 0.1, None) for f in r.flips)  # no per-seed table given
    assert "τ = +1.00 over 4 methods" in R.ranking_sentence(r) and "3 pairs of methods change order" in R.ranking_sentence(r)
    assert R.ranking_sentence(r).endswith("hold 3, 3, 3 seeds per method at the 3 ratios.")


def test_a_method_missing_at_one_ratio_is_left_out_of_that_tau_only():
    means = {("pgd-at", 0.01): 0.1, ("at-bsl", 0.01): 0.4, ("reat", 0.01): 0.3,
             ("pgd-at", 0.1): 0.2, ("at-bsl", 0.1): 0.5}
    r = R.rankings(_summary(means), "fmnist", "pgd20", "tail")
    assert math.isnan(r.ranks.at["reat", 0.1]) and r.taus == [(0.01, 0.1, 1.0, 2)]


def _jobs(values: dict) -> pd.DataFrame:
    """(method, ratio, seed) → tail accuracy (other groups tail + 0.1)."""
    rows = []
    for (m, r, s), tail in values.items():
        rows.append({"study": f"st{r}", "job": f"{m}__r{r}__s{s}", "method": m, "dataset": "fmnist", "ratio": r,
                     "seed": s, "attack": "pgd20", **{g: tail + 0.1 for g in GROUPS}, "tail": tail,
                     "per_class_std": 0.0, "n": 100})
    return pd.DataFrame(rows)


def test_verdicts_line_up_the_paired_rows_of_each_ratio():
    values = {}
    for s, (b1, b2) in enumerate([(0.10, 0.30), (0.12, 0.31), (0.11, 0.29)]):
        values["pgd-at", 0.01, s], values["pgd-at", 0.1, s] = b1, b2
        values["reat", 0.01, s] = b1 + 0.10 + 0.01 * s   # ahead at 0.01, resolved
        values["reat", 0.1, s] = b2 + (0.02, -0.03, 0.01)[s]  # mixed at 0.1: not resolved
    v = R.verdicts(paired_table(_jobs(values), baselines=("pgd-at",)), "fmnist", "pgd20", "tail")
    assert list(v["method"]) == ["reat"] and list(v.columns) == ["method", "baseline", 0.01, 0.1]
    text, sign = R.verdict_cell(v.iloc[0][0.01])
    assert sign == 1 and text.startswith("+11.0 [") and text.endswith("(3/3)")
    text, sign = R.verdict_cell(v.iloc[0][0.1])
    assert sign == 0 and text.startswith("+0.0 [") and text.endswith("(2/3)")
    assert R.verdict_cell(None) == ("–", 0)


def test_a_flip_is_confirmed_only_where_the_seeds_resolve_the_pair_at_both_ratios():
    """reat passes at-bsl on every seed (resolved at both ratios, opposite signs): confirmed. cb-at's
    means cross at-bsl's too, but its per-seed differences at 0.1 go both ways: not confirmed."""
    from ltbench.report.aggregate import summary_table

    values = {}
    for s in range(3):
        values["at-bsl", 0.01, s], values["at-bsl", 0.1, s] = 0.40 + 0.01 * s, 0.50 + 0.01 * s
        values["reat", 0.01, s] = values["at-bsl", 0.01, s] - (0.05, 0.06, 0.04)[s]
        values["reat", 0.1, s] = values["at-bsl", 0.1, s] + (0.03, 0.04, 0.03)[s]
        values["cb-at", 0.01, s] = values["at-bsl", 0.01, s] + (0.02, 0.03, 0.025)[s]
        values["cb-at", 0.1, s] = values["at-bsl", 0.1, s] + (0.04, -0.06, -0.01)[s]
    jobs = _jobs(values)
    summary = summary_table(jobs)
    r = R.rankings(summary, "fmnist", "pgd20", "tail", jobs)
    flips = {(f.ahead_at_a, f.ahead_at_b): f.confirmed for f in r.flips}
    # by hand: reat − at-bsl is −5.0 ± 1.0 at 0.01 and +3.3 ± 0.6 at 0.1, both t intervals clear of 0
    assert flips == {("at-bsl", "reat"): True, ("cb-at", "at-bsl"): False, ("cb-at", "reat"): False}
    assert "3 pairs of methods change order" in R.ranking_sentence(r) and "; 1 of them confirmed" in R.ranking_sentence(r)
    part = R.rankings(summary_table(jobs[(jobs["ratio"] == 0.01) | (jobs["seed"] == 0)]), "fmnist", "pgd20", "tail")
    assert "hold 3, 1 seeds per method" in R.ranking_sentence(part)
    texts = {R.flip_text(f) for f in r.flips}
    assert "0.01 (IR 100) → 0.1 (IR 10): at-bsl → reat (confirmed)" in texts
    assert "0.01 (IR 100) → 0.1 (IR 10): cb-at → at-bsl (not resolved)" in texts
    # a pair identical on every seed (no spread) is not a confirmation with 3 seeds
    assert R.pair_sign(_jobs({**values, **{("reat", 0.1, s): values["at-bsl", 0.1, s] + 0.02 for s in range(3)}}),
                       "fmnist", 0.1, "pgd20", "tail", "reat", "at-bsl") == 0


def test_report_of_two_studies_covering_three_ratios(tmp_path):
    from test_report import write_job

    from ltbench.cli import main as cli_main

    ref, sweep = tmp_path / "ref", tmp_path / "sweep"
    for m in ("pgd-at", "at-bsl", "reat"):
        for s in (0, 1):
            write_job(ref, m, s, ratio=0.01)
            for r in (0.02, 0.1):
                write_job(sweep, m, s, ratio=r)
    page = tmp_path / "page.html"
    assert cli_main(["report", str(ref), str(sweep), "--html", str(page), "--quiet"]) == 0
    html = page.read_text()
    assert 'id="ratios"' in html and 'data-key="across_ratios__fmnist__pgd20"' in html
    assert html.index('id="ratios"') < html.index('id="answer"') < html.index('id="status"')  # the sweep's answer first
    assert "0.01 (IR 100)" in html and "Kendall τ-b" in html and "Student t" in html
    md = (tmp_path / "ratios.md").read_text()
    assert "| reat | pgd-at | " in md and "0.02 (IR 50)" in md and "### Paired, worst" in md
    # One study at one ratio: no such section.
    single = tmp_path / "single.html"
    assert cli_main(["report", str(ref), "--html", str(single), "--tables-dir", str(tmp_path / "t"), "--quiet"]) == 0
    assert 'id="ratios"' not in single.read_text() and not (tmp_path / "t" / "ratios.md").exists()

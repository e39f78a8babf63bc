"""The report's first section (ltbench.report.verdict) and the grouped warnings (warning_kinds)."""
from __future__ import annotations

import pandas as pd

from ltbench.groups import GROUPS
from ltbench.report.verdict import sentence, verdicts
from ltbench.report.warning_kinds import group_warnings, kind_of


def _jobs(values: dict) -> pd.DataFrame:
    """(method, seed) → (tail, worst, overall) under pgd20; head and medium 0.5."""
    rows = []
    for (m, s), (tail, worst, overall) in values.items():
        rows.append({"study": "st", "job": f"{m}__s{s}", "method": m, "dataset": "fmnist", "ratio": 0.01, "seed": s,
                     "attack": "pgd20", **{g: 0.5 for g in GROUPS}, "tail": tail, "worst": worst, "overall": overall,
                     "per_class_std": 0.0, "n": 10000})
    return pd.DataFrame(rows)


def test_ranking_by_tail_with_paired_deltas_and_a_quotable_sentence():
    jobs = _jobs({("pgd-at", 0): (0.20, 0.00, 0.40), ("pgd-at", 1): (0.22, 0.00, 0.41), ("pgd-at", 2): (0.24, 0.00, 0.42),
                  ("at-bsl", 0): (0.60, 0.03, 0.50), ("at-bsl", 1): (0.62, 0.02, 0.52), ("at-bsl", 2): (0.61, 0.04, 0.51),
                  ("cb-at", 0): (0.70, 0.01, 0.50), ("cb-at", 1): (0.71, 0.03, 0.53), ("cb-at", 2): (0.69, 0.02, 0.49)})
    (v,) = verdicts(jobs, {"pgd20": "10000"})
    assert [m for m, _, _ in v.rows] == ["cb-at", "at-bsl", "pgd-at"] and v.baseline == "pgd-at"
    cells = dict((m, c) for m, _, c in v.rows)
    assert cells["cb-at"]["tail"][0] == "70.0 ± 1.0" and cells["cb-at"]["tail"][1] == "+48.0 ± 2.6 [+41.4, +54.6] (3/3)"
    assert cells["cb-at"]["tail"][2] == 1 and cells["pgd-at"]["tail"][1] == "baseline"
    text = sentence(v)
    # cb-at leads the tail by +9.0 on every seed with a small spread: resolved; overall it is level with at-bsl.
    assert "the best tail is cb-at's (70.0 %), ahead of at-bsl's by +9.0 [" in text and "resolved with 3 seeds" in text
    assert "the best worst class is at-bsl's (3.0 %), level with cb-at's (+1.0 [" in text
    assert "not resolved with 3 seeds" in text and text.startswith("Under PGD-20 on 10000 test images (fmnist, ratio 0.01)")


def test_no_baseline_in_the_study_leaves_the_deltas_empty():
    (v,) = verdicts(_jobs({("reat", 0): (0.5, 0.1, 0.6), ("trades", 0): (0.4, 0.1, 0.5)}), {})
    assert v.baseline is None and {c["tail"][1] for _, _, c in v.rows} == {"–"}
    assert "best tail is reat's (50.0 %), level with trades's (+10.0 points: not resolved with 1 seed)" in sentence(v)


def test_warnings_are_grouped_by_kind_counting_jobs():
    rows = [{"study": "s", "job": "a", "method": "m", "text": "AutoAttack: Square Attack has decreased the robust "
             "accuracy of 0.40%. See flags_doc.md for details."},
            {"study": "s", "job": "b", "method": "m", "text": "AutoAttack: Square Attack has decreased the robust "
             "accuracy of 1.20%. See flags_doc.md for details. (2 times)"},
            {"study": "s", "job": "b", "method": "m", "text": "gradient masking suspected: AutoAttack (44.4%) is far "
             "below CW-20 (49.6%) on aa's 500-sample subset; PGD-based numbers overstate robustness"},
            {"study": "s", "job": "c", "method": "m", "text": "something new"}]
    groups = group_warnings(rows)
    assert [(g["kind"].key, g["count"], g["jobs"]) for g in groups] == [
        ("aa-square", 2, ["a", "b"]), ("masking-aa-gap", 1, ["b"]), ("other:something new", 1, ["c"])]
    assert kind_of(rows[0]["text"]).link.startswith("https://") and "fooled" not in kind_of("x").meaning

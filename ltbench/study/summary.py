"""The table printed at the end of ``ltbench run``: per attack, mean ± std over seeds of the
overall, tail and worst-class accuracy of each method (× dataset × ratio), with the seed count
and the number of test images, then the command that writes the full report.

Plain Python on the ``result.json`` dicts (no pandas), so the end of a run stays quick.
"""
from __future__ import annotations

import math
from pathlib import Path
from statistics import mean, stdev

from ltbench.study_folder import REPORT_PAGE

METRICS = ("overall", "tail", "worst")


def _attack_label(name: str) -> str:
    from ltbench.attack_names import attack_label

    return attack_label(name)


def _cell(values: list[float]) -> str:
    values = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not values:
        return "–"
    m = 100 * mean(values)
    return f"{m:.1f} ± {100 * stdev(values):.1f}" if len(values) > 1 else f"{m:.1f}"


def summary_rows(results: dict[str, dict]) -> dict[str, list[dict]]:
    """attack → rows ``{method, dataset, ratio, seeds, n, overall, tail, worst}`` (cells as text),
    the groups in the order the jobs come; ``jobs_with`` / ``jobs`` say how many jobs have the attack."""
    from ltbench.attack_names import attack_order

    groups: dict[tuple, list[dict]] = {}
    for r in results.values():
        cfg = r.get("config") or {}
        key = (str(cfg.get("label") or cfg.get("method", "?")), str(cfg.get("dataset", "?")), cfg.get("ratio"))
        groups.setdefault(key, []).append(r)
    attacks = attack_order({a for r in results.values() for a in (r.get("metrics") or {})})
    out: dict[str, list[dict]] = {}
    for attack in attacks:
        rows = []
        for (method, dataset, ratio), rs in groups.items():
            recs = [r["metrics"][attack] for r in rs if isinstance((r.get("metrics") or {}).get(attack), dict)]
            if not recs:
                continue
            ns = sorted({int(m["n"]) for m in recs if isinstance(m.get("n"), (int, float))})
            rows.append({"method": method, "dataset": dataset, "ratio": ratio, "seeds": len(recs),
                         "n": "/".join(map(str, ns)) or "?",
                         **{k: _cell([m.get(k) for m in recs]) for k in METRICS}})
        out[attack] = rows
    return out


def format_summary(results: dict[str, dict]) -> str:
    """The end-of-run table (see the module docstring) as text."""
    if not results:
        return ""
    by_attack = summary_rows(results)
    keys = {(row["dataset"], row["ratio"]) for rows in by_attack.values() for row in rows}
    with_panel = len(keys) > 1
    lines = []
    for attack, rows in by_attack.items():
        have = sum(1 for r in results.values() if attack in (r.get("metrics") or {}))
        partial = f", {have} of {len(results)} finished jobs" if have < len(results) else ""
        lines.append(f"\n{_attack_label(attack)} accuracy (%), mean ± std over seeds{partial}")
        head = ["method"] + (["dataset", "ratio"] if with_panel else []) + ["overall", "tail", "worst", "seeds",
                                                                            "images"]
        table = [head] + [[row["method"]] + ([row["dataset"], f"{row['ratio']:g}"] if with_panel else [])
                          + [row[k] for k in METRICS] + [str(row["seeds"]), row["n"]] for row in rows]
        widths = [max(len(r[i]) for r in table) for i in range(len(head))]
        n_left = 3 if with_panel else 1
        for i, r in enumerate(table):
            lines.append("  ".join(c.ljust(w) if j < n_left else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def next_command(root: Path) -> str:
    """What to run next: the report of this study (written beside it)."""
    return f"next: ltbench report {root}   (writes {Path(root) / REPORT_PAGE})"

"""Print the results table of docs/results.md for a study: per method and attack (clean, PGD-20, AutoAttack),
overall / head / medium / tail / worst-class accuracy (%), mean ± std over the finished seeds.

Usage: .venv/bin/python scripts/results_table.py results/fmnist-lt
"""
import math
import sys

import ltbench
from ltbench.attack_names import attack_label

GROUPS = ("overall", "head", "medium", "tail", "worst")
ATTACKS = ("clean", "pgd20", "aa")


def cell(mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if math.isfinite(std) else "")


def main(path: str) -> None:
    study = ltbench.load_study(path)
    s = study.summary
    print("| Method | Attack | " + " | ".join(g.capitalize() for g in GROUPS) + " | Seeds | Images |")
    print("|:--|:--|" + "--:|" * (len(GROUPS) + 2))
    for m in study.methods:
        rows = s[s["method"] == m].set_index("attack")
        for a in ATTACKS:
            if a not in rows.index:
                continue
            r = rows.loc[a]
            cells = [cell(r[f"{g}_mean"], r[f"{g}_std"]) for g in GROUPS]
            images = int(r["images"]) if "images" in r and r["images"] == r["images"] else "–"
            print(f"| {m if a == ATTACKS[0] else ''} | {attack_label(a)} | " + " | ".join(cells)
                  + f" | {int(r['seeds'])} | {images} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/fmnist-lt")

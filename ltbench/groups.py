"""Head / medium / tail classes (DESIGN.md "Evaluation"), in plain Python so that the engine's
metrics and the report (which does not import torch) use the one rule; and the names of the groups
every table reports (:data:`GROUPS`, :data:`GROUP_LABELS`).

Classes are sorted by training count, most first, ties by class index; head = the first ⌊C/3⌋,
tail = the last ⌊C/3⌋, medium = the rest (C = 10: 3 / 4 / 3).
"""
from __future__ import annotations

# The groups every table reports, in their order: all classes, the three class groups and the worst class.
GROUPS = ("overall", "head", "medium", "tail", "worst")
GROUP_LABELS = {"overall": "Overall", "head": "Head", "medium": "Medium", "tail": "Tail", "worst": "Worst"}


def head_to_tail(class_counts: list[int]) -> list[int]:
    """Class indices ordered by training count, most first (ties by index)."""
    return sorted(range(len(class_counts)), key=lambda c: (-class_counts[c], c))


def class_groups(class_counts: list[int]) -> dict[str, list[int]]:
    """``{"head": [...], "medium": [...], "tail": [...]}``: class indices of each group."""
    order = head_to_tail(class_counts)
    k = len(order) // 3
    return {"head": order[:k], "medium": order[k:len(order) - k], "tail": order[len(order) - k:]}

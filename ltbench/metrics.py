"""Per-class accuracy summaries: overall, head / medium / tail, worst class, spread.

Groups follow DESIGN.md: classes sorted by training count (most first); head = first ⌊C/3⌋,
tail = last ⌊C/3⌋, medium = the rest (C = 10: 3 / 4 / 3).
"""
from __future__ import annotations

import torch


def class_groups(class_counts: list[int]) -> dict[str, list[int]]:
    """Head / medium / tail class indices, by training count (stable for ties)."""
    order = sorted(range(len(class_counts)), key=lambda c: (-class_counts[c], c))
    k = len(order) // 3
    return {"head": order[:k], "medium": order[k:len(order) - k], "tail": order[len(order) - k:]}


def summarize(correct: torch.Tensor, y: torch.Tensor, class_counts: list[int]) -> dict:
    """Summarise a boolean per-sample ``correct`` vector into the standard accuracy record."""
    num_classes = len(class_counts)
    correct = correct.detach().to("cpu", torch.float64)
    y = y.detach().cpu()
    n = torch.bincount(y, minlength=num_classes).double()
    hits = torch.bincount(y, weights=correct, minlength=num_classes)
    per_class = [(h / c).item() if c > 0 else float("nan") for h, c in zip(hits, n)]
    groups = class_groups(class_counts)
    present = [a for a in per_class if a == a]

    def mean(idx):
        vals = [per_class[i] for i in idx if per_class[i] == per_class[i]]
        return sum(vals) / len(vals) if vals else float("nan")

    std = torch.tensor(present, dtype=torch.float64).std(unbiased=False).item() if present else float("nan")
    return {
        "overall": correct.mean().item() if len(correct) else float("nan"),
        "per_class": per_class,
        "head": mean(groups["head"]),
        "medium": mean(groups["medium"]),
        "tail": mean(groups["tail"]),
        "worst": min(present) if present else float("nan"),
        "per_class_std": std,
        "n": int(len(correct)),
    }


def confusion_counts(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> list[list[int]]:
    """C×C counts: row = true class, column = predicted class."""
    idx = y.cpu() * num_classes + pred.cpu()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes).tolist()

"""The validation split: n images per class held out of the long-tailed training set.

Methods that adapt per-class weights, budgets or margins from per-class measurements (CFA, WAT,
FRL) measure on images the model does not train on. ``hold_out`` picks them, seeded, from the
long-tailed training set itself (not from the images the long-tailed split left out: the held-out
images then follow the training distribution's classes, and the training set shrinks by them).

A class keeps most of its images for training: it gives at most ⌊MAX_FRACTION · n_c⌋ of its n_c
images (at least one when n_c ≥ 2, none when n_c = 1), so a tail class of 60 images gives 12, not
50. Such classes are *capped*; the split file (``lt_indices.json``), the log and ``result.json``
say which.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ltbench.errors import LtbenchError

MAX_FRACTION = 0.2  # the largest share of a class's long-tailed images held out for validation
SEED_OFFSET = 1_000_003  # the hold-out draws from its own generator, seeded apart from the split's


@dataclass
class HoldOut:
    """Positions (into the long-tailed training set, sorted) of the validation images, the others."""

    val_pos: torch.Tensor
    train_pos: torch.Tensor
    val_counts: list[int]
    capped: list[int]  # classes that gave fewer than the n asked for


def class_cap(n_c: int) -> int:
    """How many of a class's ``n_c`` images may be held out: ⌊MAX_FRACTION·n_c⌋, at least 1 when n_c ≥ 2."""
    if n_c < 2:
        return 0
    return max(1, int(MAX_FRACTION * n_c))


def hold_out(y: torch.Tensor, n_per_class: int, seed: int, num_classes: int) -> HoldOut:
    """Choose ``n_per_class`` images of each class (capped by :func:`class_cap`) from labels ``y``
    with a generator seeded by ``seed`` (offset by :data:`SEED_OFFSET`); deterministic."""
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, int) or n_per_class < 1:
        raise LtbenchError(f"validation images per class must be a positive integer, got {n_per_class!r}")
    y = torch.as_tensor(y).to("cpu", torch.int64).reshape(-1)
    gen = torch.Generator().manual_seed(int(seed) + SEED_OFFSET)
    picked, counts, capped = [], [], []
    for c in range(num_classes):
        members = torch.nonzero(y == c).flatten()
        k = min(n_per_class, class_cap(len(members)))
        if k < n_per_class:
            capped.append(c)
        picked.append(members[torch.randperm(len(members), generator=gen)[:k]])
        counts.append(k)
    val_pos = torch.sort(torch.cat(picked)).values
    keep = torch.ones(len(y), dtype=torch.bool)
    keep[val_pos] = False
    return HoldOut(val_pos, torch.nonzero(keep).flatten(), counts, capped)

"""Long-tailed training splits: how many images each class keeps, and which ones.

Class ``i`` keeps ``n_i`` images; class 0 is the head. Profiles:

* ``"exp"`` (Cui et al. 2019, Cao et al. 2019): ``n_i = int(n_max * ratio ** (i / (C - 1)))``,
  so the last class keeps ``ratio · n_max`` (ratio 0.01 = imbalance ratio 100).
* ``"step"``: the first ``ceil(C / 2)`` classes keep ``n_max``, the others ``int(n_max * ratio)``.

Every class keeps at least one image. The images are chosen with a seeded ``torch.Generator``,
and the split (indices, counts, ratio, profile, seed) is saved as JSON with every run.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from ltbench.errors import LtbenchError

PROFILES = ("exp", "step")


def _check_ratio(ratio: float) -> float:
    try:
        r = float(ratio)
    except (TypeError, ValueError):
        raise LtbenchError(f"imbalance ratio must be a number in (0, 1], got {ratio!r}") from None
    if not 0.0 < r <= 1.0:  # also rejects NaN
        raise LtbenchError(f"imbalance ratio must be in (0, 1] (0.01 = imbalance 100), got {ratio!r}")
    return r


def _check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise LtbenchError(f"unknown long-tail profile {profile!r}; known: {', '.join(PROFILES)}")
    return profile


def long_tail_counts(n_max: int, num_classes: int, ratio: float, profile: str = "exp") -> list[int]:
    """Per-class image counts of a long-tailed split, head (class 0) first.

    >>> long_tail_counts(5000, 10, 0.02)
    [5000, 3237, 2096, 1357, 878, 568, 368, 238, 154, 100]
    """
    r = _check_ratio(ratio)
    _check_profile(profile)
    if num_classes < 1:
        raise LtbenchError(f"num_classes must be at least 1, got {num_classes}")
    if n_max < 1:
        raise LtbenchError(f"n_max must be at least 1, got {n_max}")
    C = num_classes
    if C == 1:
        return [n_max]
    if profile == "exp":
        counts = [int(n_max * r ** (i / (C - 1))) for i in range(C)]
    else:
        head = C - C // 2
        counts = [n_max] * head + [int(n_max * r)] * (C - head)
    return [max(1, n) for n in counts]


@dataclass
class LongTailSplit:
    """Which training images a long-tailed run uses.

    ``indices`` index the full (balanced) training set, sorted ascending; ``counts[i]`` is how
    many of them belong to class ``i``. ``dataset`` is informative (set by ``load_split``).
    """

    indices: torch.Tensor
    counts: list[int]
    ratio: float
    profile: str
    seed: int
    dataset: Optional[str] = field(default=None)
    # Where ``seed`` came from: "run seed" (each run seed its own split) or "split_seed" (one split
    # shared by all run seeds of a study); None when not known (a split made outside a job).
    seed_source: Optional[str] = field(default=None)
    # The validation split (ltbench/data/validation.py), when the job holds one out: n_per_class,
    # max_fraction, indices (into the full training set, a sorted subset of ``indices``), counts
    # and the capped classes. ``indices``/``counts`` above stay the whole long-tailed split.
    validation: Optional[dict] = field(default=None)

    def __post_init__(self) -> None:
        self.indices = torch.as_tensor(self.indices, dtype=torch.int64).reshape(-1)
        self.counts = [int(c) for c in self.counts]
        if len(self.indices) != sum(self.counts):
            raise LtbenchError(f"long-tail split has {len(self.indices)} indices but its counts "
                               f"sum to {sum(self.counts)}")

    @property
    def num_classes(self) -> int:
        return len(self.counts)

    @property
    def train_counts(self) -> list[int]:
        """Per-class images trained on: ``counts`` less the validation split's, if there is one."""
        if self.validation is None:
            return list(self.counts)
        return [n - k for n, k in zip(self.counts, self.validation["counts"])]

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "ratio": self.ratio, "profile": self.profile,
                "seed": self.seed, "seed_source": self.seed_source, "counts": self.counts, "num_images": sum(self.counts),
                "indices": self.indices.tolist(),
                **({"validation": self.validation} if self.validation is not None else {})}

    def save(self, path: str | Path) -> Path:
        """Write the split as JSON, atomically."""
        from ltbench.io import write_json

        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "LongTailSplit":
        """Read a split written by :meth:`save`."""
        path = Path(path)
        try:
            d = json.loads(path.read_text())
            split = cls(indices=torch.tensor(d["indices"], dtype=torch.int64), counts=d["counts"],
                        ratio=float(d["ratio"]), profile=str(d["profile"]), seed=int(d["seed"]),
                        dataset=d.get("dataset"), seed_source=d.get("seed_source"), validation=d.get("validation"))
        except LtbenchError as exc:
            raise LtbenchError(f"malformed split file {path}: {exc}") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LtbenchError(f"cannot read split file {path}: {type(exc).__name__}: {exc}") from None
        return split

    def check(self, y_train: torch.Tensor) -> None:
        """Raise :class:`LtbenchError` unless this split fits the training labels ``y_train``."""
        n = y_train.shape[0]
        idx = self.indices
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise LtbenchError(f"long-tail split indexes outside the {n} training images")
        if idx.numel() > 1 and not bool((idx[1:] > idx[:-1]).all()):
            raise LtbenchError("long-tail split indices must be sorted and distinct")
        got = torch.bincount(y_train[idx], minlength=self.num_classes).tolist()
        if got != self.counts:
            raise LtbenchError(f"long-tail split counts {self.counts} do not match the labels "
                               f"they select ({got})")

    def apply(self, x_train: torch.Tensor, y_train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The long-tailed training images and labels."""
        return x_train[self.indices], y_train[self.indices]


def long_tail_indices(y_train: torch.Tensor, ratio: float, profile: str = "exp", seed: int = 0,
                      num_classes: Optional[int] = None, n_max: Optional[int] = None) -> LongTailSplit:
    """Choose a long-tailed subset of a (balanced) training set.

    ``n_max`` (the head class's count) defaults to the largest per-class count in ``y_train``
    (a smaller one makes a small split of the same shape, for smoke runs); class ``i`` keeps
    ``min(long_tail_counts(...)[i], available_i)`` images, drawn without replacement with a
    ``torch.Generator`` seeded with ``seed``. ``num_classes`` defaults to ``max(y) + 1``.
    """
    y = torch.as_tensor(y_train).to("cpu", torch.int64).reshape(-1)
    if y.numel() == 0:
        raise LtbenchError("cannot make a long-tailed split of an empty training set")
    C = int(num_classes) if num_classes is not None else int(y.max()) + 1
    available = torch.bincount(y, minlength=C)
    if available.numel() > C:
        raise LtbenchError(f"training labels reach {int(y.max())}, outside [0, {C})")
    empty = [i for i, a in enumerate(available.tolist()) if a == 0]
    if empty:
        raise LtbenchError(f"classes {empty} have no training images")
    target = long_tail_counts(int(available.max()) if n_max is None else int(n_max), C, ratio, profile)
    counts = [min(t, int(a)) for t, a in zip(target, available.tolist())]

    gen = torch.Generator().manual_seed(int(seed))
    order = torch.argsort(y, stable=True)  # indices grouped by class, ascending within a class
    chosen, start = [], 0
    for cls in range(C):
        members = order[start:start + int(available[cls])]
        start += int(available[cls])
        pick = torch.randperm(len(members), generator=gen)[:counts[cls]]
        chosen.append(members[pick])
    indices = torch.sort(torch.cat(chosen)).values
    return LongTailSplit(indices=indices, counts=counts, ratio=float(ratio), profile=profile,
                         seed=int(seed))

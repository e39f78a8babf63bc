"""The data layer: dataset loaders (registered by name), long-tailed splits, augmentation.

Typical use::

    info = get_dataset("cifar10")
    raw, split = load_split(info, ratio=0.02, profile="exp", seed=0)
    split.save(run_dir / "split.json")

Importing this package registers ``fmnist``, ``cifar10``, ``cifar100`` and ``tinyimagenet``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ltbench.data.augment import DeviceAugment, PolicyAugment
from ltbench.data.base import DatasetInfo, RawData
from ltbench.data.common import check_images, check_pair, data_root, validate_labels
from ltbench.data.longtail import LongTailSplit, long_tail_counts, long_tail_indices
from ltbench.errors import LtbenchError
from ltbench.registry import DATASETS

# Registration side effects.
from ltbench.data import cifar as _cifar  # noqa: F401,E402
from ltbench.data import fmnist as _fmnist  # noqa: F401,E402
from ltbench.data import tinyimagenet as _tinyimagenet  # noqa: F401,E402

__all__ = [
    "RawData", "DatasetInfo", "get_dataset", "load_raw", "load_split", "validate_labels",
    "long_tail_counts", "long_tail_indices", "LongTailSplit", "DeviceAugment", "PolicyAugment",
    "data_root",
]


def get_dataset(name: str) -> DatasetInfo:
    """The registered :class:`DatasetInfo` called ``name`` (LtbenchError listing known ones)."""
    return DATASETS.get(name)


def load_raw(info: DatasetInfo, root: Optional[str | Path] = None) -> RawData:
    """Load a dataset and check it against its :class:`DatasetInfo` (shapes, dtypes, labels)."""
    raw = info.load(Path(root) if root is not None else None)
    for part, x, y in (("train", raw.x_train, raw.y_train), ("test", raw.x_test, raw.y_test)):
        where = f"{info.name} {part} set"
        check_images(x, info.image_shape, where)
        validate_labels(y, info.num_classes, where)
        check_pair(x, y, where)
    return raw


def load_split(info: DatasetInfo, ratio: float, profile: str = "exp", seed: int = 0,
               root: Optional[str | Path] = None, split: Optional[LongTailSplit] = None,
               n_max: Optional[int] = None) -> tuple[RawData, LongTailSplit]:
    """Load ``info``'s data and make (or re-apply) its long-tailed training split.

    Returns ``(raw, split)`` where ``raw`` is already long-tailed: ``raw.x_train`` /
    ``raw.y_train`` hold only the chosen images (``split.indices`` of the full training set, in
    that order); the test set stays balanced and whole. Pass a saved ``split`` to reuse its
    indices (a resumed run); it is checked against the labels and the requested settings.
    ``n_max``: the head class's count (default: the dataset's; a job's ``train_per_class``).
    """
    full = load_raw(info, root)
    if split is None:
        split = long_tail_indices(full.y_train, ratio, profile, seed, num_classes=info.num_classes, n_max=n_max)
        split.dataset = info.name
    else:
        if (split.profile, split.seed) != (profile, int(seed)) or abs(split.ratio - float(ratio)) > 1e-12:
            raise LtbenchError(
                f"saved split (ratio {split.ratio}, profile {split.profile}, seed {split.seed}) "
                f"does not match the requested ratio {ratio}, profile {profile}, seed {seed}")
        if n_max is not None and max(split.counts) > int(n_max):
            raise LtbenchError(f"saved split (head class {max(split.counts)} images) does not match the "
                               f"requested train_per_class {n_max}")
        split.check(full.y_train)
    x_train, y_train = split.apply(full.x_train, full.y_train)
    raw = RawData(x_train, y_train, full.x_test, full.y_test, full.class_names)
    return raw, split

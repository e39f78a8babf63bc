"""What a dataset is to ltbench: raw uint8 tensors plus the facts the engine needs."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch


@dataclass
class RawData:
    """A whole dataset in memory. Images are uint8 N×C×H×W, labels int64 in [0, C)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: list[str]


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset: how to load it and how to attack/augment it.

    ``flip`` is False where a horizontal flip changes the meaning of an image. ``eps``/``step``
    are the default L∞ budget and PGD step size for this dataset (recorded in every result).
    """

    name: str
    description: str
    num_classes: int
    image_shape: tuple[int, int, int]  # C, H, W
    load: Callable[[Optional[Path]], RawData]
    flip: bool = True
    crop_padding: int = 4
    eps: float = 8 / 255
    step: float = 2 / 255
    mean: tuple[float, ...] = field(default=(0.5,))
    std: tuple[float, ...] = field(default=(0.5,))

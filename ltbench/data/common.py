"""Helpers shared by the dataset loaders: where the data lives, and label checks."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch

from ltbench.errors import LtbenchError

DATA_ENV = "LTBENCH_DATA"


def data_root(root: Optional[str | Path]) -> Optional[Path]:
    """The folder that holds the datasets: ``root`` if given, else ``$LTBENCH_DATA``, else None."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else None


def require_data_root(root: Optional[str | Path], dataset: str, expected: str) -> Path:
    """Like :func:`data_root`, but a missing root is an error that says what to put where."""
    folder = data_root(root)
    if folder is None:
        raise LtbenchError(
            f"{dataset}: ${DATA_ENV} is not set; set it to the folder that holds {expected}")
    return folder


def validate_labels(y: torch.Tensor, num_classes: int, where: str) -> torch.Tensor:
    """Check that ``y`` is a 1-d integer tensor with every value in ``[0, num_classes)``.

    Returns ``y`` as int64. ``where`` names the file (or split) the labels came from, so the
    error tells the user which file is broken.
    """
    if y.dim() != 1:
        raise LtbenchError(f"labels in {where} should be 1-d, got shape {tuple(y.shape)}")
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise LtbenchError(f"labels in {where} should be integers, got {y.dtype}")
    y = y.to(torch.int64)
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise LtbenchError(
            f"labels outside [0, {num_classes}) in {where}: found min {int(y.min())}, "
            f"max {int(y.max())}")
    return y


def check_images(x: torch.Tensor, shape: tuple[int, int, int], where: str) -> None:
    """Check that ``x`` is a uint8 N×C×H×W tensor with C×H×W equal to ``shape``."""
    if x.dtype != torch.uint8 or x.dim() != 4 or tuple(x.shape[1:]) != tuple(shape):
        raise LtbenchError(
            f"images in {where} should be uint8 N×{'×'.join(map(str, shape))}, "
            f"got {x.dtype} {tuple(x.shape)}")


def check_pair(x: torch.Tensor, y: torch.Tensor, where: str) -> None:
    """Check that images and labels have the same length."""
    if x.shape[0] != y.shape[0]:
        raise LtbenchError(f"{where}: {x.shape[0]} images but {y.shape[0]} labels")

"""Tiny Fashion-MNIST stand-ins written in the real IDX format, for fast end-to-end tests.

Images are 28×28 noise around a class-dependent brightness (class c ≈ 20 + 22·c), a signal that
survives global pooling, so a tiny model learns it in a few epochs. Point ``$LTBENCH_DATA`` at the folder and the real ``fmnist`` loader reads them.
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding: 0x0000, dtype code 0x08 (uint8), ndim, big-endian dims, then the data."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def make_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    level = 20 + 22 * labels.astype(np.int64)
    x = level[:, None, None] + rng.integers(-8, 9, size=(len(labels), 28, 28))
    return x.clip(0, 255).astype(np.uint8)


def write_tiny_fmnist(root: Path, train_per_class: int = 30, test_per_class: int = 5, seed: int = 0) -> Path:
    """Write ``root/fashion-mnist/*-ubyte.gz`` with 10 balanced classes; returns ``root``."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "fashion-mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, per_class in (("train", train_per_class), ("t10k", test_per_class)):
        y = np.repeat(np.arange(10), per_class)
        rng.shuffle(y)
        x = make_images(y, rng)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(x)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(y)))
    return Path(root)

"""Fashion-MNIST from its IDX files (Xiao, Rasul, Vollgraf 2017).

The files are looked for in ``$LTBENCH_DATA/fashion-mnist`` (or ``<root>/fashion-mnist`` when a
root is passed) if that folder exists, else in ``/usr/share/datasets/fashion-mnist``, where
Debian's ``dataset-fashion-mnist`` package puts them. Each file may be gzip-compressed (``.gz``)
or not.

IDX format: a big-endian header — two zero bytes, a type code (0x08 = unsigned byte), the number
of dimensions d — then d big-endian uint32 sizes, then the data, row-major.
"""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Optional

import torch

from ltbench.data.base import DatasetInfo, RawData
from ltbench.data.common import DATA_ENV, check_pair, data_root, validate_labels
from ltbench.errors import LtbenchError
from ltbench.registry import register_dataset

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
SUBDIR = "fashion-mnist"
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_UBYTE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"


def _expected_text(folder: Path) -> str:
    names = ", ".join(f"{f}.gz" for f in FILES.values())
    return (f"expected {names} (gzip or uncompressed) in {folder}; install them with "
            f"`apt-get install dataset-fashion-mnist` or put them in ${DATA_ENV}/{SUBDIR}")


def read_idx(path: Path) -> torch.Tensor:
    """Read an unsigned-byte IDX file (gzip or plain) into a uint8 tensor of its dimensions.

    Raises :class:`LtbenchError` naming ``path`` when the file is unreadable, not IDX, not
    unsigned bytes, or shorter/longer than its header says.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == _GZIP_MAGIC:
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise LtbenchError(f"cannot read IDX file {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise LtbenchError(f"malformed IDX file {path}: bad magic number {raw[:4].hex() or '(empty)'}")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != _UBYTE:
        raise LtbenchError(f"malformed IDX file {path}: type code 0x{dtype_code:02x}, "
                           f"expected 0x{_UBYTE:02x} (unsigned byte)")
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise LtbenchError(f"malformed IDX file {path}: truncated header ({ndim} dimensions)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    size = 1
    for d in dims:
        size *= d
    if len(raw) - header != size:
        raise LtbenchError(f"malformed IDX file {path}: header says {'×'.join(map(str, dims))} "
                           f"= {size} bytes of data, file has {len(raw) - header}")
    data = torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8) if size else \
        torch.empty(0, dtype=torch.uint8)
    return data.reshape(dims)


def _find(folder: Path, stem: str) -> Optional[Path]:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def fmnist_folder(root: Optional[str | Path] = None) -> Path:
    """The folder the IDX files are read from (see the module docstring)."""
    base = data_root(root)
    if base is not None and (base / SUBDIR).is_dir():
        return base / SUBDIR
    return SYSTEM_DIR


def _load_images(path: Path) -> torch.Tensor:
    x = read_idx(path)
    if x.dim() != 3 or tuple(x.shape[1:]) != (28, 28):
        raise LtbenchError(f"malformed IDX file {path}: expected N×28×28 images, "
                           f"got {'×'.join(map(str, x.shape))}")
    return x.unsqueeze(1).contiguous()


def _load_labels(path: Path) -> torch.Tensor:
    y = read_idx(path)
    if y.dim() != 1:
        raise LtbenchError(f"malformed IDX file {path}: expected 1-d labels, "
                           f"got {'×'.join(map(str, y.shape))}")
    return validate_labels(y, len(CLASS_NAMES), str(path))


def load_fmnist(root: Optional[str | Path] = None) -> RawData:
    """Load Fashion-MNIST: 1×28×28 uint8 images, labels 0–9 (60,000 train, 10,000 test)."""
    folder = fmnist_folder(root)
    if not folder.is_dir():
        raise LtbenchError(f"Fashion-MNIST not found: {folder} does not exist; "
                           + _expected_text(folder))
    paths = {key: _find(folder, stem) for key, stem in FILES.items()}
    missing = [FILES[k] for k, p in paths.items() if p is None]
    if missing:
        raise LtbenchError(f"Fashion-MNIST incomplete in {folder}: missing "
                           f"{', '.join(missing)}; " + _expected_text(folder))
    x_train = _load_images(paths["train_images"])
    y_train = _load_labels(paths["train_labels"])
    x_test = _load_images(paths["test_images"])
    y_test = _load_labels(paths["test_labels"])
    check_pair(x_train, y_train, f"Fashion-MNIST train set in {folder}")
    check_pair(x_test, y_test, f"Fashion-MNIST test set in {folder}")
    return RawData(x_train, y_train, x_test, y_test, list(CLASS_NAMES))


FMNIST = register_dataset("fmnist")(DatasetInfo(
    name="fmnist",
    description="Fashion-MNIST (10 classes, 1×28×28), from IDX files; the embedded default",
    num_classes=10,
    image_shape=(1, 28, 28),
    load=load_fmnist,
    flip=True,  # clothes are roughly left-right symmetric: a mirrored shoe is still a shoe
    crop_padding=2,
    eps=0.1,
    step=0.01,
    mean=(0.2860,),
    std=(0.3530,),
))

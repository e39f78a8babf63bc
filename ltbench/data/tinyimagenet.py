"""Tiny-ImageNet-200 from its standard folder layout (Le & Yang 2015).

``$LTBENCH_DATA/tiny-imagenet-200/`` (or ``<root>/tiny-imagenet-200/``) must hold::

    wnids.txt                            one WordNet id per line; line order = class index
    words.txt                            optional: "wnid<TAB>name, synonym, ..." (class names)
    train/<wnid>/images/*.JPEG           500 training images per class
    val/images/*.JPEG                    10,000 validation images (used as the test set)
    val/val_annotations.txt              "file<TAB>wnid<TAB>box..." for each validation image

Images are 64×64; grayscale ones are converted to RGB. Decoding 110,000 JPEGs takes a while, so
the decoded tensors are cached in ``tiny-imagenet-200/.ltbench-cache.pt`` (about 1.4 GB) when
that folder is writable. The cache is keyed on the file lists and annotation texts and is
rebuilt when they change; delete it freely.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ltbench.data.base import DatasetInfo, RawData
from ltbench.data.common import require_data_root
from ltbench.errors import LtbenchError
from ltbench.registry import register_dataset

SUBDIR = "tiny-imagenet-200"
CACHE_NAME = ".ltbench-cache.pt"
CACHE_VERSION = 1
SIZE = 64
_EXTENSIONS = {".jpeg", ".jpg", ".png"}
_EXPECTED = (f"{SUBDIR}/ with wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG and "
             f"val/val_annotations.txt")


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise LtbenchError(f"Tiny-ImageNet: missing {path}; expected {_EXPECTED}")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LtbenchError(f"cannot read {path}: {exc}") from None


def _images_in(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise LtbenchError(f"Tiny-ImageNet: missing folder {folder}; expected {_EXPECTED}")
    return sorted(e.name for e in os.scandir(folder)
                  if e.is_file() and os.path.splitext(e.name)[1].lower() in _EXTENSIONS)


def _class_names(folder: Path, wnids: list[str]) -> list[str]:
    """First name of each class from ``words.txt``; the wnid itself where there is none."""
    words = folder / "words.txt"
    names: dict[str, str] = {}
    if words.is_file():
        for line in _read_text(words).splitlines():
            wnid, _, text = line.partition("\t")
            if text.strip():
                names[wnid.strip()] = text.split(",")[0].strip()
    return [names.get(w, w) for w in wnids]


def _decode(path: Path) -> torch.Tensor:
    """Decode one image file to a 3×64×64 uint8 tensor (grayscale/CMYK converted to RGB)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise LtbenchError(f"cannot decode image {path}: {exc}") from None
    img = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    if tuple(img.shape) != (3, SIZE, SIZE):
        raise LtbenchError(f"image {path} is {'×'.join(map(str, img.shape))}, "
                           f"expected 3×{SIZE}×{SIZE}")
    return img


def _decode_all(paths: list[Path]) -> torch.Tensor:
    out = torch.empty((len(paths), 3, SIZE, SIZE), dtype=torch.uint8)
    if not paths:
        return out
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, img in enumerate(pool.map(_decode, paths, chunksize=64)):
            out[i] = img
    return out


def _scan(folder: Path) -> tuple[list[str], list[Path], list[int], list[Path], list[int], str]:
    """List every image and its label; return them with a key that identifies this listing."""
    wnids_text = _read_text(folder / "wnids.txt")
    wnids = [w.strip() for w in wnids_text.splitlines() if w.strip()]
    if not wnids:
        raise LtbenchError(f"Tiny-ImageNet: {folder / 'wnids.txt'} lists no classes")
    if len(set(wnids)) != len(wnids):
        raise LtbenchError(f"Tiny-ImageNet: {folder / 'wnids.txt'} lists a class twice")
    index = {w: i for i, w in enumerate(wnids)}
    digest = hashlib.sha256(wnids_text.encode())

    train_paths, train_labels = [], []
    for i, wnid in enumerate(wnids):
        cls_dir = folder / "train" / wnid / "images"
        files = _images_in(cls_dir)
        if not files:
            raise LtbenchError(f"Tiny-ImageNet: no images in {cls_dir}")
        train_paths += [cls_dir / f for f in files]
        train_labels += [i] * len(files)
        digest.update(("\n".join(files) + "\0").encode())

    ann_path = folder / "val" / "val_annotations.txt"
    ann_text = _read_text(ann_path)
    digest.update(ann_text.encode())
    val_dir = folder / "val" / "images"
    present = set(_images_in(val_dir))
    test_paths, test_labels = [], []
    for lineno, line in enumerate(ann_text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise LtbenchError(f"malformed {ann_path} line {lineno}: expected file<TAB>wnid<TAB>box")
        name, wnid = fields[0].strip(), fields[1].strip()
        if wnid not in index:
            raise LtbenchError(f"{ann_path} line {lineno}: class {wnid!r} is not in wnids.txt")
        if name not in present:
            raise LtbenchError(f"{ann_path} line {lineno}: image {val_dir / name} is missing")
        test_paths.append(val_dir / name)
        test_labels.append(index[wnid])
    if not test_paths:
        raise LtbenchError(f"Tiny-ImageNet: {ann_path} lists no images")
    return wnids, train_paths, train_labels, test_paths, test_labels, digest.hexdigest()


def _load_cache(path: Path, key: str) -> Optional[dict]:
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a stale or truncated cache is simply rebuilt
        return None
    if not isinstance(blob, dict) or blob.get("version") != CACHE_VERSION or blob.get("key") != key:
        return None
    return blob


def _save_cache(path: Path, blob: dict) -> None:
    from ltbench.io import save_torch

    try:
        save_torch(path, blob)
    except OSError:  # read-only data folder: no cache, no error
        pass


def load_tinyimagenet(root: Optional[str | Path] = None, cache: bool = True) -> RawData:
    """Load Tiny-ImageNet-200: 3×64×64 uint8 images, 200 classes; ``val`` is the test set."""
    base = require_data_root(root, "Tiny-ImageNet", _EXPECTED)
    folder = base / SUBDIR
    if not folder.is_dir():
        raise LtbenchError(f"Tiny-ImageNet not found: {folder} does not exist; expected {_EXPECTED}")
    wnids, train_paths, train_labels, test_paths, test_labels, key = _scan(folder)
    cache_path = folder / CACHE_NAME
    blob = _load_cache(cache_path, key) if cache else None
    if blob is None:
        blob = {"version": CACHE_VERSION, "key": key,
                "x_train": _decode_all(train_paths), "x_test": _decode_all(test_paths)}
        if cache:
            _save_cache(cache_path, blob)
    return RawData(
        x_train=blob["x_train"],
        y_train=torch.tensor(train_labels, dtype=torch.int64),
        x_test=blob["x_test"],
        y_test=torch.tensor(test_labels, dtype=torch.int64),
        class_names=_class_names(folder, wnids),
    )


TINYIMAGENET_INFO = register_dataset("tinyimagenet")(DatasetInfo(
    name="tinyimagenet",
    description="Tiny-ImageNet-200 (200 classes, 3×64×64), folder layout under $LTBENCH_DATA",
    num_classes=200,
    image_shape=(3, SIZE, SIZE),
    load=load_tinyimagenet,
    flip=True,
    crop_padding=8,
    eps=8 / 255,
    step=2 / 255,
    mean=(0.4802, 0.4481, 0.3975),
    std=(0.2770, 0.2691, 0.2821),
))

"""CIFAR-10 and CIFAR-100 from the standard python-pickle release (Krizhevsky 2009).

Under ``$LTBENCH_DATA`` (or the ``root`` passed to the loader) either the unpacked folder
(``cifar-10-batches-py/`` / ``cifar-100-python/``) or the archive as downloaded
(``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``) is used; the folder wins when both
exist. Archives are read member by member in one forward pass, never extracted to disk.

Each file is a pickle (``encoding='bytes'``) of a dict with ``b'data'`` — N×3072 uint8, channel
major, i.e. 3×32×32 — and ``b'labels'`` (CIFAR-10) or ``b'fine_labels'`` (CIFAR-100).

The files are read by a restricted unpickler (:class:`CifarUnpickler`) that admits only what the
published format holds — dicts, lists, tuples, bytes, strings, numbers and uint8 numpy arrays —
and builds no object from the file: numpy's reconstruction functions are replaced by stand-ins
that only record shape, type code and bytes, from which the array is made with ``np.frombuffer``
after checking them. Any other global in the pickle (``os.system``, …) is refused before
anything runs, and the file is reported as malformed.
"""
from __future__ import annotations

import io
import pickle
import posixpath
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ltbench.data.base import DatasetInfo, RawData
from ltbench.data.common import check_pair, require_data_root, validate_labels
from ltbench.errors import LtbenchError
from ltbench.registry import register_dataset


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR release keeps what."""

    title: str
    folder: str
    archive: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: bytes
    names_key: bytes
    num_classes: int

    def expected(self) -> str:
        files = ", ".join((*self.train_files, self.test_file, self.meta_file))
        return f"{self.folder}/ (with {files}) or {self.archive}"


CIFAR10 = CifarLayout(
    title="CIFAR-10", folder="cifar-10-batches-py", archive="cifar-10-python.tar.gz",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)), test_file="test_batch",
    meta_file="batches.meta", label_key=b"labels", names_key=b"label_names", num_classes=10)
CIFAR100 = CifarLayout(
    title="CIFAR-100", folder="cifar-100-python", archive="cifar-100-python.tar.gz",
    train_files=("train",), test_file="test", meta_file="meta",
    label_key=b"fine_labels", names_key=b"fine_label_names", num_classes=100)


class _ArrayStub:
    """Stands for a numpy array while unpickling: records ``__setstate__``'s (version, shape,
    dtype, Fortran order, bytes); :meth:`array` checks them and makes the array."""

    def __init__(self, state=None):
        self.state = state

    def __setstate__(self, state) -> None:
        self.state = state

    def array(self) -> np.ndarray:
        state = self.state
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]  # (version, shape, dtype, is_fortran, data)
        if not (isinstance(state, tuple) and len(state) == 4):
            raise pickle.UnpicklingError("malformed numpy array")
        shape, dtype, fortran, data = state
        if not isinstance(dtype, _DTypeStub) or dtype.code not in ("u1", "|u1", "uint8", "B"):
            raise pickle.UnpicklingError(f"only uint8 arrays are admitted, got {getattr(dtype, 'code', dtype)!r}")
        if not (isinstance(shape, tuple) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                 for d in shape)):
            raise pickle.UnpicklingError(f"malformed array shape {shape!r}")
        if not isinstance(data, (bytes, bytearray)) or len(data) != int(np.prod(shape, dtype=np.int64)):
            raise pickle.UnpicklingError("array data does not match its shape")
        return np.frombuffer(bytes(data), dtype=np.uint8).reshape(shape, order="F" if fortran else "C")


class _DTypeStub:
    """Stands for ``numpy.dtype(code, align, copy)``; its pickled state is ignored."""

    def __init__(self, code, align=False, copy=True):
        self.code = code.decode("ascii", "replace") if isinstance(code, bytes) else str(code)

    def __setstate__(self, state) -> None:
        pass


class _NDArrayType:
    """Stands for the class ``numpy.ndarray``, the only subtype ``_reconstruct`` is given."""


def _reconstruct(subtype, shape, typecode) -> _ArrayStub:
    if subtype is not _NDArrayType:
        raise pickle.UnpicklingError("only numpy.ndarray may be reconstructed")
    return _ArrayStub()


def _frombuffer(buffer, dtype, shape, order="C") -> _ArrayStub:
    """numpy's protocol-5 form: ``_frombuffer(buffer, dtype, shape, order)``."""
    return _ArrayStub((shape, dtype, order == "F", bytes(buffer) if isinstance(buffer, bytearray) else buffer))


def _encode(text, encoding="latin1") -> bytes:
    """``_codecs.encode(text, 'latin1')``: how protocol-2 pickles written by Python 3 spell bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("only latin-1 text may be encoded")
    return text.encode("latin-1")


class CifarUnpickler(pickle.Unpickler):
    """Admits the globals of the published CIFAR format only, each mapped to a stand-in above."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # numpy < 2 (the release's own files)
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # numpy ≥ 2
        ("numpy.core.numeric", "_frombuffer"): _frombuffer,  # pickle protocol 5
        ("numpy._core.numeric", "_frombuffer"): _frombuffer,
        ("numpy", "ndarray"): _NDArrayType,
        ("numpy", "dtype"): _DTypeStub,
        ("_codecs", "encode"): _encode,
    }

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name} (not part of the CIFAR format)") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not part of the CIFAR format")


def _materialise(obj, depth: int = 0):
    """The unpickled object with every array stand-in turned into its checked numpy array."""
    if depth > 10:
        raise pickle.UnpicklingError("nested too deeply for the CIFAR format")
    if isinstance(obj, _ArrayStub):
        return obj.array()
    if isinstance(obj, (_DTypeStub, _NDArrayType)) or obj is _NDArrayType:
        raise pickle.UnpicklingError("a numpy type outside an array")
    if isinstance(obj, dict):
        return {k: _materialise(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_materialise(v, depth + 1) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialise(v, depth + 1) for v in obj)
    return obj


def safe_unpickle(blob: bytes):
    """Unpickle ``blob`` (``encoding='bytes'``, as the release was written by Python 2) with
    :class:`CifarUnpickler`; raises on anything outside the CIFAR format."""
    return _materialise(CifarUnpickler(io.BytesIO(blob), encoding="bytes").load())


def _unpickle(blob: bytes, where: str) -> dict:
    try:
        obj = safe_unpickle(blob)
    except Exception as exc:  # any unpickling failure means a broken file
        raise LtbenchError(f"malformed CIFAR file {where}: cannot unpickle "
                           f"({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise LtbenchError(f"malformed CIFAR file {where}: expected a dict, got {type(obj).__name__}")
    return obj


def _read_folder(folder: Path, names: list[str], layout: CifarLayout) -> dict[str, bytes]:
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise LtbenchError(f"{layout.title} incomplete in {folder}: missing {', '.join(missing)}; "
                           f"expected {layout.expected()}")
    out = {}
    for n in names:
        try:
            out[n] = (folder / n).read_bytes()
        except OSError as exc:
            raise LtbenchError(f"cannot read {folder / n}: {exc}") from None
    return out


def _read_archive(archive: Path, names: list[str], layout: CifarLayout) -> dict[str, bytes]:
    """Read the wanted members of ``archive`` in a single streaming pass."""
    wanted = {f"{layout.folder}/{n}": n for n in names}
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r|*") as tar:
            for member in tar:
                key = posixpath.normpath(member.name.lstrip("/"))
                if key in wanted and member.isfile():
                    f = tar.extractfile(member)
                    out[wanted[key]] = f.read() if f is not None else b""
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise LtbenchError(f"cannot read archive {archive}: {exc}") from None
    missing = [n for n in names if n not in out]
    if missing:
        raise LtbenchError(f"{layout.title} archive {archive} lacks "
                           f"{', '.join(f'{layout.folder}/{n}' for n in missing)}")
    return out


def _parse_batch(blob: bytes, where: str, layout: CifarLayout) -> tuple[torch.Tensor, torch.Tensor]:
    d = _unpickle(blob, where)
    for key in (b"data", layout.label_key):
        if key not in d:
            raise LtbenchError(f"malformed CIFAR file {where}: no {key!r} entry")
    data = d[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32:
        shape = getattr(data, "shape", None)
        raise LtbenchError(f"malformed CIFAR file {where}: b'data' should be N×3072 uint8, "
                           f"got {type(data).__name__} {getattr(data, 'dtype', '')} {shape}")
    try:
        labels = torch.as_tensor(np.asarray(d[layout.label_key], dtype=np.int64))
    except (TypeError, ValueError) as exc:
        raise LtbenchError(f"malformed CIFAR file {where}: bad labels ({exc})") from None
    x = torch.from_numpy(np.ascontiguousarray(data).reshape(-1, 3, 32, 32).copy())
    y = validate_labels(labels, layout.num_classes, where)
    check_pair(x, y, where)
    return x, y


def _parse_names(blob: bytes, where: str, layout: CifarLayout) -> list[str]:
    d = _unpickle(blob, where)
    names = d.get(layout.names_key)
    if not isinstance(names, (list, tuple)) or len(names) != layout.num_classes:
        raise LtbenchError(f"malformed CIFAR file {where}: {layout.names_key!r} should list "
                           f"{layout.num_classes} class names")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def load_cifar(layout: CifarLayout, root: Optional[str | Path] = None) -> RawData:
    """Load a CIFAR release from its folder or archive under ``root`` / ``$LTBENCH_DATA``."""
    base = require_data_root(root, layout.title, layout.expected())
    folder, archive = base / layout.folder, base / layout.archive
    names = [*layout.train_files, layout.test_file, layout.meta_file]
    if folder.is_dir():
        blobs, where = _read_folder(folder, names, layout), (lambda n: str(folder / n))
    elif archive.is_file():
        blobs, where = _read_archive(archive, names, layout), (lambda n: f"{archive}:{layout.folder}/{n}")
    else:
        raise LtbenchError(f"{layout.title} not found in {base}: expected {layout.expected()}")
    train = [_parse_batch(blobs[n], where(n), layout) for n in layout.train_files]
    x_test, y_test = _parse_batch(blobs[layout.test_file], where(layout.test_file), layout)
    class_names = _parse_names(blobs[layout.meta_file], where(layout.meta_file), layout)
    x_train = torch.cat([x for x, _ in train])
    y_train = torch.cat([y for _, y in train])
    return RawData(x_train, y_train, x_test, y_test, class_names)


def load_cifar10(root: Optional[str | Path] = None) -> RawData:
    """CIFAR-10: 3×32×32 uint8 images, 10 classes (50,000 train, 10,000 test)."""
    return load_cifar(CIFAR10, root)


def load_cifar100(root: Optional[str | Path] = None) -> RawData:
    """CIFAR-100 with its 100 fine labels (50,000 train, 10,000 test)."""
    return load_cifar(CIFAR100, root)


CIFAR10_INFO = register_dataset("cifar10")(DatasetInfo(
    name="cifar10",
    description="CIFAR-10 (10 classes, 3×32×32), python release under $LTBENCH_DATA",
    num_classes=10,
    image_shape=(3, 32, 32),
    load=load_cifar10,
    flip=True,
    crop_padding=4,
    eps=8 / 255,
    step=2 / 255,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
))

CIFAR100_INFO = register_dataset("cifar100")(DatasetInfo(
    name="cifar100",
    description="CIFAR-100 (100 fine classes, 3×32×32), python release under $LTBENCH_DATA",
    num_classes=100,
    image_shape=(3, 32, 32),
    load=load_cifar100,
    flip=True,
    crop_padding=4,
    eps=8 / 255,
    step=2 / 255,
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
))

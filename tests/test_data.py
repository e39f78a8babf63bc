"""Tests of the data layer on tiny files written in each dataset's real on-disk format."""
from __future__ import annotations

import gzip
import io
import json
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ltbench.data import (DeviceAugment, LongTailSplit, PolicyAugment, RawData, get_dataset,
                          load_raw, load_split, long_tail_counts, long_tail_indices,
                          validate_labels)
from ltbench.data import fmnist as fmnist_mod
from ltbench.errors import LtbenchError

from host_reads import HostReadMode, cuda_sync_errors

FMNIST_SYSTEM = Path("/usr/share/datasets/fashion-mnist")


# ---------------------------------------------------------------------------------------------
# Writers for the real formats


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file: 0, 0, 0x08, ndim, big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def make_fmnist(folder: Path, n_train: int = 20, n_test: int = 8, compress: bool = True) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) * 3 % 10).astype(np.uint8),
    }
    for stem, arr in arrays.items():
        if compress:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(idx_bytes(arr)))
        else:
            (folder / stem).write_bytes(idx_bytes(arr))
    return arrays


def cifar_batch(n: int, num_classes: int, label_key: bytes, seed: int) -> tuple[dict, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, num_classes, n)]
    return {b"batch_label": b"x", label_key: labels, b"data": data}, data


def make_cifar10(folder: Path, n: int = 4) -> dict[str, bytes]:
    """Write cifar-10-batches-py/ under ``folder``; return member name → pickled bytes."""
    sub = folder / "cifar-10-batches-py"
    sub.mkdir(parents=True)
    files = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        batch, _ = cifar_batch(n, 10, b"labels", seed=i)
        files[name] = pickle.dumps(batch)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
             b"ship", b"truck"]
    files["batches.meta"] = pickle.dumps({b"label_names": names, b"num_vis": 3072})
    for name, blob in files.items():
        (sub / name).write_bytes(blob)
    return files


def make_tar(archive: Path, prefix: str, files: dict[str, bytes]) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        for name, blob in files.items():
            info = tarfile.TarInfo(f"{prefix}/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


def make_tiny(folder: Path) -> dict:
    """A 3-class Tiny-ImageNet with solid-colour JPEGs (one grayscale) so pixels round-trip."""
    from PIL import Image

    root = folder / "tiny-imagenet-200"
    wnids = ["n001", "n002", "n003"]
    colours = {"n001": (200, 30, 30), "n002": (30, 200, 30), "n003": (30, 30, 200)}
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "words.txt").write_text("n001\tgoldfish, Carassius auratus\nn002\ttabby, cat\n")
    for w in wnids:
        d = root / "train" / w / "images"
        d.mkdir(parents=True)
        (root / "train" / w / f"{w}_boxes.txt").write_text("")  # present in the real release
        for k in range(2):
            Image.new("RGB", (64, 64), colours[w]).save(d / f"{w}_{k}.JPEG", quality=95)
    val = root / "val" / "images"
    val.mkdir(parents=True)
    Image.new("RGB", (64, 64), colours["n003"]).save(val / "val_0.JPEG", quality=95)
    Image.new("L", (64, 64), 128).save(val / "val_1.JPEG", quality=95)  # grayscale
    (root / "val" / "val_annotations.txt").write_text(
        "val_0.JPEG\tn003\t0\t0\t10\t10\nval_1.JPEG\tn001\t1\t2\t30\t40\n")
    return {"root": root, "colours": colours}


# ---------------------------------------------------------------------------------------------
# Registry


def test_registered_datasets():
    for name, shape, classes in [("fmnist", (1, 28, 28), 10), ("cifar10", (3, 32, 32), 10),
                                 ("cifar100", (3, 32, 32), 100),
                                 ("tinyimagenet", (3, 64, 64), 200)]:
        info = get_dataset(name)
        assert info.name == name and info.image_shape == shape and info.num_classes == classes
        assert len(info.mean) == len(info.std) == shape[0]
    fm = get_dataset("fmnist")
    assert (fm.eps, fm.step, fm.crop_padding) == (0.1, 0.01, 2)
    assert get_dataset("cifar10").eps == 8 / 255
    with pytest.raises(LtbenchError, match="fmnist"):
        get_dataset("nope")


def test_validate_labels():
    assert validate_labels(torch.tensor([0, 9], dtype=torch.uint8), 10, "f").dtype == torch.int64
    with pytest.raises(LtbenchError, match=r"labels outside \[0, 10\) in somefile"):
        validate_labels(torch.tensor([0, 10]), 10, "somefile")
    with pytest.raises(LtbenchError, match="outside"):
        validate_labels(torch.tensor([-1]), 10, "x")


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST


@pytest.mark.parametrize("compress", [True, False])
def test_fmnist_idx_roundtrip(tmp_path, monkeypatch, compress):
    arrays = make_fmnist(tmp_path / "fashion-mnist", compress=compress)
    monkeypatch.setenv("LTBENCH_DATA", str(tmp_path))
    raw = load_raw(get_dataset("fmnist"))
    assert raw.x_train.shape == (20, 1, 28, 28) and raw.x_test.shape == (8, 1, 28, 28)
    assert raw.x_train.dtype == torch.uint8 and raw.y_train.dtype == torch.int64
    assert torch.equal(raw.x_train[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert raw.x_test[3, 0, 5, 7] == int(arrays["t10k-images-idx3-ubyte"][3, 5, 7])
    assert raw.y_train.tolist() == [i % 10 for i in range(20)]
    assert raw.y_test.tolist() == [i * 3 % 10 for i in range(8)]
    assert raw.class_names[0] == "T-shirt/top" and raw.class_names[9] == "Ankle boot"


def test_fmnist_explicit_root(tmp_path, monkeypatch):
    monkeypatch.delenv("LTBENCH_DATA", raising=False)
    make_fmnist(tmp_path / "fashion-mnist")
    assert get_dataset("fmnist").load(tmp_path).x_train.shape[0] == 20


def test_fmnist_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("LTBENCH_DATA", str(tmp_path))
    monkeypatch.setattr(fmnist_mod, "SYSTEM_DIR", tmp_path / "nowhere")
    with pytest.raises(LtbenchError, match="apt-get install dataset-fashion-mnist") as e:
        fmnist_mod.load_fmnist()
    assert str(tmp_path / "nowhere") in str(e.value)
    folder = tmp_path / "fashion-mnist"
    make_fmnist(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(LtbenchError, match="missing t10k-labels-idx1-ubyte") as e:
        fmnist_mod.load_fmnist()
    assert str(folder) in str(e.value) and "train-images-idx3-ubyte.gz" in str(e.value)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b"\x08\x00" + b[2:], "bad magic"),
    (lambda b: b[:2] + b"\x0d" + b[3:], "type code"),
    (lambda b: b[:-5], "header says"),
    (lambda b: b[:6], "truncated header"),
    (lambda b: b"", "bad magic"),
])
def test_fmnist_malformed_idx(tmp_path, monkeypatch, damage, message):
    folder = tmp_path / "fashion-mnist"
    make_fmnist(folder, compress=False)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    monkeypatch.setenv("LTBENCH_DATA", str(tmp_path))
    with pytest.raises(LtbenchError, match=message) as e:
        fmnist_mod.load_fmnist()
    assert str(path) in str(e.value)


def test_fmnist_bad_contents(tmp_path, monkeypatch):
    folder = tmp_path / "fashion-mnist"
    monkeypatch.setenv("LTBENCH_DATA", str(tmp_path))
    make_fmnist(folder)
    labels = folder / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(idx_bytes(np.full(20, 10, dtype=np.uint8))))
    with pytest.raises(LtbenchError, match=r"labels outside \[0, 10\)") as e:
        fmnist_mod.load_fmnist()
    assert str(labels) in str(e.value)
    labels.write_bytes(gzip.compress(idx_bytes(np.zeros(19, dtype=np.uint8))))
    with pytest.raises(LtbenchError, match="20 images but 19 labels"):
        fmnist_mod.load_fmnist()
    images = folder / "train-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(idx_bytes(np.zeros((19, 32, 32), dtype=np.uint8))))
    with pytest.raises(LtbenchError, match="N×28×28"):
        fmnist_mod.load_fmnist()
    images.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(LtbenchError, match="cannot read IDX file") as e:
        fmnist_mod.load_fmnist()
    assert str(images) in str(e.value)


@pytest.mark.skipif(not (FMNIST_SYSTEM / "train-images-idx3-ubyte.gz").exists(),
                    reason="dataset-fashion-mnist is not installed")
def test_fmnist_real(monkeypatch):
    monkeypatch.delenv("LTBENCH_DATA", raising=False)
    raw, split = load_split(get_dataset("fmnist"), 0.01, "exp", seed=0)
    assert raw.x_test.shape == (10000, 1, 28, 28)
    assert split.counts == [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]
    assert raw.x_train.shape == (14886, 1, 28, 28)
    assert torch.bincount(raw.y_test).tolist() == [1000] * 10
    assert len(split.indices) == 14886


# ---------------------------------------------------------------------------------------------
# CIFAR


def _check_cifar10(raw: RawData, files: dict[str, bytes]) -> None:
    assert raw.x_train.shape == (20, 3, 32, 32) and raw.x_test.shape == (4, 3, 32, 32)
    assert raw.x_train.dtype == torch.uint8 and raw.y_train.dtype == torch.int64
    first = pickle.loads(files["data_batch_1"])
    # channel-major: the first 1024 values are the red plane
    assert torch.equal(raw.x_train[0, 0].flatten(), torch.from_numpy(first[b"data"][0, :1024]))
    assert raw.x_train[1, 2, 31, 31] == int(first[b"data"][1, 3071])
    last = pickle.loads(files["data_batch_5"])
    assert raw.y_train[-4:].tolist() == last[b"labels"]
    assert raw.y_test.tolist() == pickle.loads(files["test_batch"])[b"labels"]
    assert raw.class_names[0] == "airplane" and len(raw.class_names) == 10


def test_cifar10_folder(tmp_path, monkeypatch):
    files = make_cifar10(tmp_path)
    monkeypatch.setenv("LTBENCH_DATA", str(tmp_path))
    _check_cifar10(load_raw(get_dataset("cifar10")), files)


def test_cifar10_tar(tmp_path, monkeypatch):
    files = make_cifar10(tmp_path / "src")
    make_tar(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py", files)
    monkeypatch.setenv("LTBENCH_DATA", str(tmp_path))
    _check_cifar10(load_raw(get_dataset("cifar10")), files)
    # An archive that lacks a member names it.
    (tmp_path / "cifar-10-python.tar.gz").unlink()
    make_tar(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py",
             {k: v for k, v in files.items() if k != "test_batch"})
    with pytest.raises(LtbenchError, match="cifar-10-batches-py/test_batch") as e:
        load_raw(get_dataset("cifar10"))
    assert "cifar-10-python.tar.gz" in str(e.value)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"garbage")
    with pytest.raises(LtbenchError, match="cannot read archive"):
        load_raw(get_dataset("cifar10"))


def test_cifar100_folder_and_tar(tmp_path, monkeypatch):
    files = {}
    for name, n, seed in [("train", 6, 1), ("test", 3, 2)]:
        batch, _ = cifar_batch(n, 100, b"fine_labels", seed)
        batch[b"coarse_labels"] = [0] * n
        files[name] = pickle.dumps(batch)
    files["meta"] = pickle.dumps({b"fine_label_names": [f"c{i}".encode() for i in range(100)],
                                  b"coarse_label_names": [b"x"] * 20})
    sub = tmp_path / "a" / "cifar-100-python"
    sub.mkdir(parents=True)
    for name, blob in files.items():
        (sub / name).write_bytes(blob)
    (tmp_path / "b").mkdir()
    make_tar(tmp_path / "b" / "cifar-100-python.tar.gz", "./cifar-100-python", files)
    for where in ("a", "b"):
        monkeypatch.setenv("LTBENCH_DATA", str(tmp_path / where))
        raw = load_raw(get_dataset("cifar100"))
        assert raw.x_train.shape == (6, 3, 32, 32) and raw.x_test.shape == (3, 3, 32, 32)
        assert raw.y_train.tolist() == pickle.loads(files["train"])[b"fine_labels"]
        assert raw.x_test[2, 1, 0, 0] == int(pickle.loads(files["test"])[b"data"][2, 1024])
        assert raw.class_names[99] == "c99"


def test_cifar_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("LTBENCH_DATA", raising=False)
    with pytest.raises(LtbenchError, match=r"\$LTBENCH_DATA is not set.*cifar-10-python.tar.gz"):
        load_raw(get_dataset("cifar10"))
    monkeypatch.setenv("LTBENCH_DATA", str(tmp_path))
    with pytest.raises(LtbenchError, match="not found") as e:
        load_raw(get_dataset("cifar100"))
    assert str(tmp_path) in str(e.value) and "cifar-100-python.tar.gz" in str(e.value)

    make_cifar10(tmp_path)
    sub = tmp_path / "cifar-10-batches-py"
    (sub / "data_batch_3").unlink()
    with pytest.raises(LtbenchError, match="missing data_batch_3") as e:
        load_raw(get_dataset("cifar10"))
    assert str(sub) in str(e.value)

    (sub / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(LtbenchError, match="cannot unpickle") as e:
        load_raw(get_dataset("cifar10"))
    assert str(sub / "data_batch_3") in str(e.value)

    batch, _ = cifar_batch(4, 10, b"labels", 0)
    batch[b"labels"][1] = 10
    (sub / "data_batch_3").write_bytes(pickle.dumps(batch))
    with pytest.raises(LtbenchError, match=r"labels outside \[0, 10\)") as e:
        load_raw(get_dataset("cifar10"))
    assert str(sub / "data_batch_3") in str(e.value)

    batch, _ = cifar_batch(4, 10, b"labels", 0)
    batch[b"data"] = batch[b"data"][:, :3000]
    (sub / "data_batch_3").write_bytes(pickle.dumps(batch))
    with pytest.raises(LtbenchError, match="N×3072 uint8"):
        load_raw(get_dataset("cifar10"))

    batch, _ = cifar_batch(4, 10, b"labels", 0)
    batch[b"labels"] = batch[b"labels"][:3]
    (sub / "data_batch_3").write_bytes(pickle.dumps(batch))
    with pytest.raises(LtbenchError, match="4 images but 3 labels"):
        load_raw(get_dataset("cifar10"))


# ---------------------------------------------------------------------------------------------
# Tiny-ImageNet


def test_tinyimagenet_folder(tmp_path, monkeypatch):
    made = make_tiny(tmp_path)
    monkeypatch.setenv("LTBENCH_DATA", str(tmp_path))
    raw = load_raw(get_dataset("tinyimagenet"))
    assert raw.x_train.shape == (6, 3, 64, 64) and raw.x_test.shape == (2, 3, 64, 64)
    assert raw.x_train.dtype == torch.uint8 and raw.y_train.dtype == torch.int64
    assert raw.y_train.tolist() == [0, 0, 1, 1, 2, 2]
    assert raw.y_test.tolist() == [2, 0]
    assert raw.class_names == ["goldfish", "tabby", "n003"]
    for i, w in enumerate(["n001", "n001", "n002", "n002", "n003", "n003"]):
        got = raw.x_train[i, :, 10, 10].int()
        assert (got - torch.tensor(made["colours"][w])).abs().max() <= 3, (w, got)
    gray = raw.x_test[1].int()
    assert (gray - 128).abs().max() <= 3  # grayscale expanded to three equal channels
    # The decoded tensors are cached and reused.
    assert (made["root"] / ".ltbench-cache.pt").is_file()
    again = load_raw(get_dataset("tinyimagenet"))
    assert torch.equal(again.x_train, raw.x_train) and torch.equal(again.x_test, raw.x_test)


def test_tinyimagenet_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("LTBENCH_DATA", str(tmp_path))
    with pytest.raises(LtbenchError, match="tiny-imagenet-200") as e:
        load_raw(get_dataset("tinyimagenet"))
    assert str(tmp_path) in str(e.value)
    root = make_tiny(tmp_path)["root"]
    ann = root / "val" / "val_annotations.txt"
    ann.write_text("val_0.JPEG\tn999\t0\t0\t1\t1\n")
    with pytest.raises(LtbenchError, match="n999") as e:
        load_raw(get_dataset("tinyimagenet"))
    assert str(ann) in str(e.value)
    ann.write_text("val_9.JPEG\tn001\t0\t0\t1\t1\n")
    with pytest.raises(LtbenchError, match="val_9.JPEG is missing"):
        load_raw(get_dataset("tinyimagenet"))
    ann.unlink()
    with pytest.raises(LtbenchError, match="missing .*val_annotations.txt"):
        load_raw(get_dataset("tinyimagenet"))
    make_tiny(tmp_path / "other")
    bad = tmp_path / "other" / "tiny-imagenet-200" / "train" / "n002" / "images" / "n002_1.JPEG"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(LtbenchError, match="cannot decode") as e:
        get_dataset("tinyimagenet").load(tmp_path / "other")
    assert str(bad) in str(e.value)


# ---------------------------------------------------------------------------------------------
# Long-tailed splits


def test_long_tail_counts_facts():
    assert long_tail_counts(6000, 10, 0.01) == [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]
    c = long_tail_counts(5000, 10, 0.02)
    assert c == [5000, 3237, 2096, 1357, 878, 568, 368, 238, 154, 100] and sum(c) == 13996
    c = long_tail_counts(5000, 10, 0.01)
    assert c == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50] and sum(c) == 12406
    assert sum(long_tail_counts(6000, 10, 0.01)) == 14886


def test_long_tail_counts_edges():
    assert long_tail_counts(500, 10, 1.0) == [500] * 10
    assert long_tail_counts(500, 1, 0.01) == [500]
    assert long_tail_counts(100, 10, 0.1, "step") == [100] * 5 + [10] * 5
    assert long_tail_counts(100, 3, 0.1, "step") == [100, 100, 10]
    assert long_tail_counts(500, 100, 0.01)[-1] == 5
    assert min(long_tail_counts(10, 10, 0.001)) == 1  # never an empty class
    for bad in (0, 0.0, 1.5, -0.1, float("nan")):
        with pytest.raises(LtbenchError, match=r"\(0, 1\]"):
            long_tail_counts(100, 10, bad)
    with pytest.raises(LtbenchError, match="profile"):
        long_tail_counts(100, 10, 0.1, "linear")


def test_long_tail_indices():
    y = torch.arange(10).repeat_interleave(60)[torch.randperm(600, generator=torch.Generator().manual_seed(1))]
    split = long_tail_indices(y, 0.1, "exp", seed=3)
    assert split.counts == long_tail_counts(60, 10, 0.1)
    assert split.indices.dtype == torch.int64
    assert torch.equal(split.indices, split.indices.sort().values)
    assert len(split.indices.unique()) == len(split.indices) == sum(split.counts)
    assert torch.bincount(y[split.indices], minlength=10).tolist() == split.counts
    split.check(y)
    again = long_tail_indices(y, 0.1, "exp", seed=3)
    assert torch.equal(again.indices, split.indices)
    other = long_tail_indices(y, 0.1, "exp", seed=4)
    assert not torch.equal(other.indices, split.indices)
    balanced = long_tail_indices(y, 1.0, "exp", seed=0)
    assert balanced.counts == [60] * 10 and torch.equal(balanced.indices, torch.arange(600))
    with pytest.raises(LtbenchError):
        long_tail_indices(y, 0.0)
    with pytest.raises(LtbenchError):
        long_tail_indices(y, 1.5)


def test_long_tail_indices_caps_at_available():
    y = torch.tensor([0] * 10 + [1] * 3 + [2] * 8)
    split = long_tail_indices(y, 0.5, seed=0)
    assert split.counts == [10, 3, 5]  # class 1 wants int(10·0.5^0.5) = 7 but has 3
    with pytest.raises(LtbenchError, match=r"\[3\]"):
        long_tail_indices(y, 0.5, num_classes=4)


def test_split_save_load(tmp_path):
    y = torch.arange(5).repeat(20)
    split = long_tail_indices(y, 0.2, "step", seed=7)
    split.dataset = "toy"
    path = split.save(tmp_path / "run" / "split.json")
    d = json.loads(path.read_text())
    assert d["ratio"] == 0.2 and d["profile"] == "step" and d["seed"] == 7 and d["dataset"] == "toy"
    back = LongTailSplit.load(path)
    assert torch.equal(back.indices, split.indices) and back.counts == split.counts
    assert (back.ratio, back.profile, back.seed, back.dataset) == (0.2, "step", 7, "toy")
    assert not list((tmp_path / "run").glob("*.tmp"))
    path.write_text("{not json")
    with pytest.raises(LtbenchError, match=str(path)):
        LongTailSplit.load(path)
    d["counts"][0] += 1
    path.write_text(json.dumps(d))
    with pytest.raises(LtbenchError, match="malformed split file"):
        LongTailSplit.load(path)


def test_load_split_on_files(tmp_path, monkeypatch):
    make_fmnist(tmp_path / "fashion-mnist", n_train=40)
    monkeypatch.setenv("LTBENCH_DATA", str(tmp_path))
    info = get_dataset("fmnist")
    raw, split = load_split(info, 0.5, "exp", seed=0)
    assert split.counts == long_tail_counts(4, 10, 0.5) and split.dataset == "fmnist"
    assert raw.x_train.shape[0] == sum(split.counts) and raw.x_test.shape[0] == 8
    assert torch.bincount(raw.y_train, minlength=10).tolist() == split.counts
    full = load_raw(info)
    assert torch.equal(raw.x_train, full.x_train[split.indices])
    raw2, split2 = load_split(info, 0.5, "exp", seed=0, split=LongTailSplit.load(split.save(tmp_path / "s.json")))
    assert torch.equal(raw2.x_train, raw.x_train)
    with pytest.raises(LtbenchError, match="does not match"):
        load_split(info, 0.5, "exp", seed=1, split=split)


# ---------------------------------------------------------------------------------------------
# Augmentation


def reference_crop_flip(x, dy, dx, flip, p):
    """Slow per-sample reference: pad, slice, maybe mirror."""
    out = []
    H, W = x.shape[-2:]
    for b in range(x.shape[0]):
        padded = torch.nn.functional.pad(x[b], (p, p, p, p))
        crop = padded[:, dy[b]:dy[b] + H, dx[b]:dx[b] + W]
        out.append(crop.flip(-1) if flip[b] else crop)
    return torch.stack(out)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_device_augment_matches_reference(dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 8, 10), generator=g).to(dtype)
    aug = DeviceAugment(crop_padding=3, flip=True)
    dy = torch.randint(0, 7, (16,), generator=g)
    dx = torch.randint(0, 7, (16,), generator=g)
    flip = torch.rand(16, generator=g) < 0.5
    out = aug.apply(x, dy, dx, flip)
    assert out.shape == x.shape and out.dtype == dtype
    assert torch.equal(out, reference_crop_flip(x, dy, dx, flip, 3))


def test_device_augment_flip_only_chosen():
    x = torch.rand(6, 2, 5, 5)
    aug = DeviceAugment(crop_padding=0, flip=True)
    flip = torch.tensor([True, False, False, True, True, False])
    zero = torch.zeros(6, dtype=torch.long)
    out = aug.apply(x, zero, zero, flip)
    for b in range(6):
        assert torch.equal(out[b], x[b].flip(-1) if flip[b] else x[b])


def test_device_augment_random():
    x = torch.arange(32 * 32, dtype=torch.float32).view(1, 1, 32, 32).repeat(64, 3, 1, 1)
    aug = DeviceAugment(crop_padding=4, flip=True)
    out = aug(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    distinct = {tuple(o.flatten()[:40].tolist()) for o in out[:, 0]}
    assert len(distinct) > 20  # different samples get different crops
    again = aug(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    # channels_last in, channels_last out
    xcl = x.contiguous(memory_format=torch.channels_last)
    assert aug(xcl).is_contiguous(memory_format=torch.channels_last)
    # no flip and no padding: the identity
    assert DeviceAugment(0, False)(x) is x
    unflipped = DeviceAugment(2, False)(x, generator=torch.Generator().manual_seed(1))
    dy, dx, flip = DeviceAugment(2, False).sample(64, "cpu", torch.Generator().manual_seed(1))
    assert not flip.any()
    assert torch.equal(unflipped, reference_crop_flip(x, dy, dx, flip, 2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_device_augment_no_host_sync():
    x = torch.rand(32, 3, 32, 32, device="cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    aug = DeviceAugment(4, True)
    aug(x, generator=g)  # warm-up (lazy initialisation may sync)
    with cuda_sync_errors():
        out = aug(x, generator=g)
        out8 = aug((x * 255).to(torch.uint8))
    assert out.shape == x.shape and out8.dtype == torch.uint8


def test_device_augment_reads_nothing_on_the_host_cpu_stand_in():
    """The same on the CPU with tests/host_reads.py's stand-in."""
    x = torch.rand(32, 3, 32, 32)
    aug = DeviceAugment(4, True)
    with HostReadMode():
        aug(x, generator=torch.Generator().manual_seed(0))
        aug((x * 255).to(torch.uint8))


def test_policy_augment_per_sample():
    x = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8).repeat(12, 1, 1, 1)
    for kind in ("randaugment", "autoaugment"):
        aug = PolicyAugment(kind)
        out = aug(x, generator=torch.Generator().manual_seed(0))
        assert out.shape == x.shape and out.dtype == torch.uint8
        assert len({o.sum().item() for o in out}) > 3  # identical inputs, different outputs
        assert torch.equal(out, aug(x, generator=torch.Generator().manual_seed(0)))
    gray = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    assert PolicyAugment("randaugment")(gray).shape == gray.shape
    with pytest.raises(LtbenchError):
        PolicyAugment("mixup")
    with pytest.raises(LtbenchError, match="policy"):
        PolicyAugment("autoaugment", policy="mnist")

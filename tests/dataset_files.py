"""Tiny data sets written in torchvision's on-disk formats (IDX for MNIST and Fashion-MNIST,
Python 2 pickles for CIFAR), and a pickle that proves code ran when unpickled.

Nothing here downloads anything: every file a loader reads in the tests is written here.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np


# --- MNIST / Fashion-MNIST: IDX files ---------------------------------------------------------

def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    """Write ``array`` (uint8) in LeCun's IDX format; ``gz`` adds ``.gz`` and compresses."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    blob = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape) + array.tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        blob = gzip.compress(blob)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return path


def class_images(labels: np.ndarray, channels: int, size: int, seed: int) -> np.ndarray:
    """uint8 images (N, C, size, size): noise plus a bright bar whose row encodes the class."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, size=(len(labels), channels, size, size), dtype=np.uint8)
    rows = np.linspace(0, size - 2, 10).astype(int)
    for i, c in enumerate(labels):
        images[i, :, rows[c % 10] : rows[c % 10] + 2, :] = 250
    return images


@dataclass
class TinySet:
    root: Path
    x_train: np.ndarray  # uint8, (N, C, H, W)
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


MNIST_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


def write_mnist(folder: Path, kind: str = "mnist", gz: bool = False, n_train: int = 60, n_test: int = 20) -> TinySet:
    """A tiny MNIST-style tree under a new root in ``folder``; ``gz`` compresses the files."""
    root = folder / f"{kind}-{'gz' if gz else 'plain'}-root"
    raw = root / MNIST_FOLDERS[kind] / "raw"
    rng = np.random.default_rng(1)
    ytr = rng.integers(0, 10, n_train).astype(np.uint8)
    yte = rng.integers(0, 10, n_test).astype(np.uint8)
    xtr, xte = class_images(ytr, 1, 28, 2), class_images(yte, 1, 28, 3)
    write_idx(raw / "train-images-idx3-ubyte", xtr[:, 0], gz)
    write_idx(raw / "train-labels-idx1-ubyte", ytr, gz)
    write_idx(raw / "t10k-images-idx3-ubyte", xte[:, 0], gz)
    write_idx(raw / "t10k-labels-idx1-ubyte", yte, gz)
    return TinySet(root, xtr, ytr, xte, yte)


# --- CIFAR: pickled batches -----------------------------------------------------------------

class Py2StylePickler(pickle._Pickler):  # type: ignore[name-defined]
    """Pickles the way Python 2's cPickle wrote the real CIFAR files: byte strings as
    BINSTRING, and numpy's rebuilders under ``numpy.core``."""

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_bytes(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes

    def save_global(self, obj, name=None):
        module = getattr(obj, "__module__", "") or ""
        name = name or obj.__qualname__
        if module.startswith("numpy._core"):
            self.write(pickle.GLOBAL + f"{module.replace('numpy._core', 'numpy.core')}\n{name}\n".encode())
            self.memoize(obj)
            return
        super().save_global(obj, name)


def write_cifar_pickle(path: Path, obj, protocol: int | str = "py2") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        if protocol == "py2":
            Py2StylePickler(fh, protocol=2).dump(obj)
        else:
            pickle.dump(obj, fh, protocol=int(protocol))


def write_cifar(folder: Path, kind: str = "cifar10", protocol: int | str = "py2", per_batch: int = 6) -> TinySet:
    """A tiny cifar-10-batches-py or cifar-100-python tree under a new root in ``folder``."""
    root = folder / f"{kind}-{protocol}-root"
    rng = np.random.default_rng(4)
    k = 10 if kind == "cifar10" else 100

    def batch(n: int, seed: int):
        y = rng.integers(0, k, n)
        x = class_images(y, 3, 32, seed)
        return x, y

    if kind == "cifar10":
        base = root / "cifar-10-batches-py"
        xs, ys = [], []
        for i in range(1, 6):
            x, y = batch(per_batch, 10 + i)
            xs.append(x)
            ys.append(y)
            write_cifar_pickle(base / f"data_batch_{i}", {
                b"batch_label": f"training batch {i} of 5".encode(), b"labels": [int(v) for v in y],
                b"data": x.reshape(len(x), -1), b"filenames": [f"img{j}.png".encode() for j in range(len(y))]},
                protocol)
        xte, yte = batch(per_batch, 20)
        write_cifar_pickle(base / "test_batch", {b"batch_label": b"testing batch 1 of 1",
                                                 b"labels": [int(v) for v in yte],
                                                 b"data": xte.reshape(len(xte), -1)}, protocol)
        names = [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                      "ship", "truck")]
        write_cifar_pickle(base / "batches.meta", {b"label_names": names, b"num_vis": 3072,
                                                   b"num_cases_per_batch": per_batch}, protocol)
        return TinySet(root, np.concatenate(xs), np.concatenate(ys), xte, yte)
    base = root / "cifar-100-python"
    xtr, ytr = batch(5 * per_batch, 30)
    xte, yte = batch(per_batch, 31)
    for name, x, y in (("train", xtr, ytr), ("test", xte, yte)):
        write_cifar_pickle(base / name, {b"filenames": [b"x.png"] * len(y), b"batch_label": name.encode(),
                                         b"fine_labels": [int(v) for v in y],
                                         b"coarse_labels": [int(v) // 5 for v in y],
                                         b"data": x.reshape(len(x), -1)}, protocol)
    write_cifar_pickle(base / "meta", {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                                       b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]},
                       protocol)
    return TinySet(root, xtr, ytr, xte, yte)


# --- a malicious pickle -------------------------------------------------------------------------

class MarkerPayload:
    """Unpickling this object creates ``marker`` (via builtins.open): proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))

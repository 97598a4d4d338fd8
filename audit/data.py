"""Data sets named by a ``--data SPEC``, loaded into memory as float tensors in [0, 1].

Specs: ``digits`` (scikit-learn's bundled 8x8 digits, the default), ``mnist``,
``fashion-mnist``, ``cifar10``, ``cifar100`` (torchvision's on-disk formats under
``--data-root``; nothing is ever downloaded), ``npz:PATH`` and ``folder:PATH``.

Every training example's id is its index in ``x_train``; forget requests use these ids.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from audit.errors import InputError, closest

DIGITS_TEST_FRACTION = 0.25


@dataclass
class Dataset:
    """A classification data set held in memory.

    ``x_*`` are float32 tensors of shape (N, C, H, W) with values in [0, 1];
    ``y_*`` are int64 tensors of shape (N,).
    """

    spec: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    class_names: list[str]
    root: str | None = None
    split: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and standard deviation of the training images."""
        x = self.x_train.transpose(0, 1).reshape(self.x_train.shape[1], -1)
        std = x.std(dim=1).clamp_min(1e-6)
        return x.mean(dim=1).tolist(), std.tolist()

    def sha256(self) -> str:
        """A digest of the exact arrays (and split) this data set holds; computed once (0.6 s on
        Fashion-MNIST, asked for by every cache key), as the arrays are never changed in place."""
        arrays = (self.x_train, self.y_train, self.x_test, self.y_test)
        memo = self.__dict__.get("_sha256")
        if memo is not None and memo[0] == tuple(id(t) for t in arrays):
            return memo[1]
        h = hashlib.sha256()
        for t in arrays:
            h.update(str(tuple(t.shape)).encode())
            h.update(t.contiguous().numpy().tobytes())
        self.__dict__["_sha256"] = (tuple(id(t) for t in arrays), h.hexdigest())
        return h.hexdigest()

    def describe(self) -> dict:
        """What the model file records about the data (JSON-able)."""
        return {
            "spec": self.spec,
            "root": self.root,
            "n_train": int(self.x_train.shape[0]),
            "n_test": int(self.x_test.shape[0]),
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "split": dict(self.split),
            "sha256": self.sha256(),
        }


def load_dataset(spec: str = "digits", root: str | None = None) -> Dataset:
    """Load a data set by spec; raises :class:`InputError` with one actionable line."""
    spec = (spec or "digits").strip()
    kind, _, arg = spec.partition(":")
    kind = kind.lower()
    if kind == "digits" and not arg:
        return _digits()
    if kind in ("mnist", "fashion-mnist") and not arg:
        return _mnist(kind, _need_root(kind, root))
    if kind in ("cifar10", "cifar100") and not arg:
        return _cifar(kind, _need_root(kind, root))
    if kind == "npz" and arg:
        return _npz(arg)
    if kind == "folder" and arg:
        return _image_folder(arg)
    near = closest(spec, ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100"))
    raise InputError(
        f"unknown data spec {spec!r}{f'; did you mean {near}? Use' if near else ': use'} digits, mnist, "
        "fashion-mnist, cifar10, cifar100 (with --data-root DIR), npz:PATH or folder:PATH"
    )


#: Where Debian's packages put a data set (``apt-get install dataset-fashion-mnist``): used when
#: ``--data-root`` is not given; the flag still wins.
DEBIAN_FOLDERS = {"fashion-mnist": "/usr/share/datasets/fashion-mnist", "mnist": "/usr/share/datasets/mnist"}


def _need_root(kind: str, root: str | None) -> Path:
    if not root and kind in DEBIAN_FOLDERS and Path(DEBIAN_FOLDERS[kind]).is_dir():
        return Path(DEBIAN_FOLDERS[kind])
    if not root:
        debian = (f" (or install Debian's dataset-{kind} package, which puts it in {DEBIAN_FOLDERS[kind]})"
                  if kind == "fashion-mnist" else "")
        raise InputError(f"--data {kind} needs --data-root DIR, the folder that holds torchvision's files{debian}")
    path = Path(root)
    if not path.is_dir():
        raise InputError(f"--data-root {root!r} is not a folder; point it at the folder that holds {kind}'s files")
    return path


def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy((bunch.images / 16.0).astype(np.float32)).unsqueeze(1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    # A fixed, seeded permutation: the split is part of the data spec, recorded in model.pt.
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    n_test = int(round(len(y) * DIGITS_TEST_FRACTION))
    test_idx, train_idx = order[:n_test], order[n_test:]
    return Dataset(
        spec="digits",
        x_train=x[train_idx].contiguous(),
        y_train=y[train_idx].contiguous(),
        x_test=x[test_idx].contiguous(),
        y_test=y[test_idx].contiguous(),
        num_classes=10,
        class_names=[str(i) for i in range(10)],
        split={"seed": 0, "test_fraction": DIGITS_TEST_FRACTION, "source": "sklearn.datasets.load_digits"},
    )


# --- MNIST and Fashion-MNIST: IDX files as torchvision stores them -------------------

_MNIST_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_FASHION_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format), plain or gzipped."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise InputError(f"{path} is not an unsigned-byte IDX file; expected MNIST's IDX format")
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise InputError(f"{path} is truncated: its header says {dims} but it holds {data.size} bytes")
    return data.reshape(dims)


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _mnist(kind: str, root: Path) -> Dataset:
    sub = _MNIST_FOLDERS[kind]
    folders = [root / sub / "raw", root / sub, root]
    for folder in folders:
        found = [_find(folder, n) for n in _MNIST_FILES]
        if all(found):
            break
    else:
        raise InputError(
            f"{kind} files not found: expected {', '.join(_MNIST_FILES)} (optionally .gz) "
            f"in {root / sub / 'raw'}"
        )
    xtr, ytr, xte, yte = (read_idx(p) for p in found)  # type: ignore[arg-type]
    if xtr.ndim != 3 or xte.ndim != 3 or len(xtr) != len(ytr) or len(xte) != len(yte):
        raise InputError(f"{kind} files in {folder} disagree: image and label counts or shapes do not match")
    names = _FASHION_NAMES if kind == "fashion-mnist" else [str(i) for i in range(10)]
    return _from_uint8(kind, xtr[:, None], ytr, xte[:, None], yte, 10, names, str(root))


# --- CIFAR: pickled python batches, read with an allow-list unpickler ----------------

class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles CIFAR's batches, refusing every global but numpy's array rebuilders.

    CIFAR's python format is a pickle; a full unpickler would run whatever code a
    tampered file names. This one can build only dicts, lists, bytes, numbers and
    numpy arrays.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        # Batches re-saved from Python 3: protocols 2-3 spell bytes as _codecs.encode(str,
        # "latin1"), protocol 5 rebuilds arrays with _frombuffer. Both only convert data.
        ("_codecs", "encode"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str):  # noqa: D401
        if (module, name) in self._ALLOWED:
            import importlib

            try:
                return getattr(importlib.import_module(module), name)
            except ModuleNotFoundError:  # numpy 1 vs 2 module names
                return getattr(importlib.import_module(module.replace("numpy._core", "numpy.core")), name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: CIFAR batches hold only arrays")


def _read_cifar_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            obj = _ArrayOnlyUnpickler(io.BufferedReader(fh), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise InputError(f"{path} is not a CIFAR python batch ({exc}); use the files of cifar-*-python.tar.gz") from None
    if not isinstance(obj, dict):
        raise InputError(f"{path} is not a CIFAR python batch (no dictionary inside)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _cifar(kind: str, root: Path) -> Dataset:
    if kind == "cifar10":
        folder, train_files, test_files, label_key, meta_file, meta_key = (
            "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels", "batches.meta", "label_names")
        num_classes = 10
    else:
        folder, train_files, test_files, label_key, meta_file, meta_key = (
            "cifar-100-python", ["train"], ["test"], "fine_labels", "meta", "fine_label_names")
        num_classes = 100
    base = root / folder
    missing = [n for n in train_files + test_files if not (base / n).is_file()]
    if missing:
        raise InputError(f"{kind} files not found: expected {', '.join(train_files + test_files)} in {base}")

    def stack(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for n in names:
            batch = _read_cifar_batch(base / n)
            if "data" not in batch or label_key not in batch:
                raise InputError(f"{base / n} lacks 'data' or '{label_key}'; is it a {kind} batch?")
            try:
                data = np.asarray(batch["data"], dtype=np.uint8)
                labels = np.asarray(batch[label_key], dtype=np.int64)
            except (ValueError, TypeError, OverflowError):
                raise InputError(f"{base / n}: 'data' must hold bytes and '{label_key}' whole numbers; "
                                 f"is it a {kind} batch?") from None
            if data.ndim != 2 or data.shape[1] != 3072:
                raise InputError(f"{base / n}: 'data' has shape {data.shape}, expected (N, 3072)")
            if labels.ndim != 1 or len(labels) != len(data):
                raise InputError(f"{base / n} holds {len(data)} images but {labels.size} labels; "
                                 f"replace it with an intact {kind} batch")
            xs.append(data.reshape(-1, 3, 32, 32))
            ys.append(labels)
        return np.concatenate(xs), np.concatenate(ys)

    xtr, ytr = stack(train_files)
    xte, yte = stack(test_files)
    names = [str(i) for i in range(num_classes)]
    if (base / meta_file).is_file():
        meta = _read_cifar_batch(base / meta_file)
        if meta_key in meta and len(meta[meta_key]) == num_classes:
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[meta_key]]
    return _from_uint8(kind, xtr, ytr, xte, yte, num_classes, names, str(root))


def _from_uint8(spec, xtr, ytr, xte, yte, num_classes, names, root) -> Dataset:
    def conv(x):
        # np.array copies into a writable float32 array (IDX arrays are read-only views of bytes).
        return torch.from_numpy(np.array(x, dtype=np.float32, order="C")).div_(255.0)

    ytr_t = torch.from_numpy(np.asarray(ytr, dtype=np.int64).copy())
    yte_t = torch.from_numpy(np.asarray(yte, dtype=np.int64).copy())
    _check_labels(spec, ytr_t, yte_t, num_classes)
    _check_image_size(spec, tuple(np.shape(xtr)[1:]))
    return Dataset(spec, conv(xtr), ytr_t, conv(xte), yte_t, num_classes, names, root=root,
                   split={"source": "files' own train/test split"})


# Below 2x2 pixels there is no image to learn from (and pooling layers cannot run).
MIN_IMAGE_SIDE = 2
# More classes than this is a damaged or hostile label, not a data set: the model's last
# layer is sized by it (ImageNet-21k, the largest common label set, has 21,841 classes).
MAX_CLASSES = 100_000


def _check_image_size(spec: str, chw: tuple[int, ...]) -> None:
    if len(chw) != 3 or min(chw[1:]) < MIN_IMAGE_SIDE:
        size = "x".join(str(v) for v in chw[1:])
        raise InputError(f"{spec}: images are {size} pixels; they must be at least "
                         f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} (resize them first)")
    if chw[0] < 1:
        raise InputError(f"{spec}: images have no channel; store them as (N, H, W), (N, H, W, C) or (N, C, H, W)")


def _check_labels(spec: str, ytr: torch.Tensor, yte: torch.Tensor, num_classes: int) -> None:
    for name, y in (("train", ytr), ("test", yte)):
        if len(y) == 0:
            raise InputError(f"{spec}: the {name} set is empty")
        if int(y.min()) < 0 or int(y.max()) >= num_classes:
            raise InputError(f"{spec}: {name} labels must lie in 0..{num_classes - 1}")


# --- npz and image folders -------------------------------------------------------------

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not a POSIX system
        return None


def _check_npz_claims(path: Path) -> None:
    """Compare what each array's header claims with the bytes the archive holds, before loading.

    numpy allocates an array of the claimed shape before reading it, so a small file that
    claims a billion pixels would take the memory first and fail only afterwards.
    """
    try:
        with zipfile.ZipFile(path) as z:
            members = {info.filename: info for info in z.infolist()}
            total = 0
            for key in _NPZ_KEYS:
                info = members.get(key + ".npy")
                if info is None:
                    continue
                with z.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                    shape, _, dtype = reader(fh)
                claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if claimed > info.file_size:
                    raise InputError(f"{path}: {key} claims shape {tuple(shape)} ({claimed:,} bytes) but holds "
                                     f"{info.file_size:,} bytes; the file is damaged, save it again with np.savez")
                total += info.file_size
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path} is not a readable .npz without pickled objects ({_squeeze(exc)})") from None
    memory = _memory_bytes()
    # The float32 copies (and the uint8 or float64 originals) are held side by side.
    if memory is not None and 2 * total > memory:
        raise InputError(f"{path} unpacks to {total / 1e9:.1f} GB, more than this machine's "
                         f"{memory / 1e9:.1f} GB of memory can load; use a smaller data set")


def _squeeze(exc: BaseException, limit: int = 160) -> str:
    return " ".join(str(exc).split())[:limit]


def _npz(path_str: str) -> Dataset:
    path = Path(path_str)
    if not path.is_file():
        what = "is not a regular file (a folder, FIFO or device); name an .npz file" if path.exists() else "not found"
        raise InputError(f"npz file {path} {what}")
    _check_npz_claims(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in _NPZ_KEYS if k in z}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path} is not a readable .npz without pickled objects ({_squeeze(exc)})") from None
    missing = set(_NPZ_KEYS) - arrays.keys()
    if missing:
        raise InputError(f"{path} lacks arrays {', '.join(sorted(missing))}; it needs x_train, y_train, x_test, y_test")
    xs = []
    for key in ("x_train", "x_test"):
        x = np.asarray(arrays[key])
        if x.dtype.kind not in "biuf":
            raise InputError(f"{path}: {key} holds {x.dtype} values; store pixel values as real numbers")
        if x.ndim == 2:
            raise InputError(f"{path}: {key} is flat; store images as (N, H, W), (N, H, W, C) or (N, C, H, W)")
        if x.ndim == 3:
            x = x[:, None]
        elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
            x = x.transpose(0, 3, 1, 2)
        elif x.ndim != 4:
            raise InputError(f"{path}: {key} has shape {x.shape}; expected 3 or 4 dimensions")
        x = x.astype(np.float32)
        if x.size and not np.isfinite(x).all():
            # One NaN pixel makes the normalisation, and then every weight, NaN.
            raise InputError(f"{path}: {key} holds NaN or infinite pixel values (or values too large for float32); "
                             "replace them with values in [0, 1] or 0..255")
        xs.append(x)
    ranges = {key: (float(x.min()), float(x.max())) for key, x in zip(("x_train", "x_test"), xs) if x.size}
    for key, (lo, hi) in ranges.items():
        if lo < 0 or hi > 255:
            raise InputError(f"{path}: {key}'s pixel values run from {lo:g} to {hi:g}; images must hold values in "
                             "[0, 1] or 0..255 (store them unnormalised)")
    # One scale for both splits: 0..255 pixel values when either holds values above 1.
    if any(hi > 1.0 for _, hi in ranges.values()):
        xs = [x / np.float32(255.0) for x in xs]
    xs = [torch.from_numpy(np.ascontiguousarray(x)) for x in xs]
    ys = []
    for key in ("y_train", "y_test"):
        labels = np.asarray(arrays[key]).reshape(-1)
        whole = labels.dtype.kind in "biu" or (labels.dtype.kind == "f" and bool(np.isfinite(labels).all())
                                                 and bool(np.all(np.mod(labels, 1) == 0)))
        if labels.size and not whole:
            raise InputError(f"{path}: {key} holds labels that are not whole numbers; store class indices 0..C-1")
        if labels.size and (labels.min() < 0 or labels.max() >= MAX_CLASSES):
            bad = labels.min() if labels.min() < 0 else labels.max()
            raise InputError(f"{path}: {key} holds label {bad.item()}; labels are class indices 0..C-1 with at most "
                             f"{MAX_CLASSES:,} classes")
        ys.append(torch.from_numpy(labels.astype(np.int64)))
    ytr, yte = ys
    if len(ytr) != len(xs[0]) or len(yte) != len(xs[1]) or xs[0].shape[1:] != xs[1].shape[1:]:
        raise InputError(f"{path}: x and y counts or image shapes of train and test disagree")
    num_classes = int(max(ytr.max(), yte.max())) + 1 if len(ytr) and len(yte) else 0
    _check_labels(f"npz:{path}", ytr, yte, max(num_classes, 1))
    _check_image_size(f"npz:{path}", tuple(xs[0].shape[1:]))
    return Dataset(f"npz:{path}", xs[0], ytr, xs[1], yte, num_classes, [str(i) for i in range(num_classes)],
                   split={"source": "the file's own train/test split"})


_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def _is_image_file(f: Path) -> bool:
    return f.suffix.lower() in _IMAGE_SUFFIXES and f.is_file()


def _read_image(f: Path, mode: str | None) -> tuple[np.ndarray, str]:
    """One image as uint8 (H, W) or (H, W, 3); ``mode`` is the first image's (L or RGB)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            # Pillow warns, then refuses, past its pixel limit; the refusal is reported below.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(f) as im:
                mode = mode or ("L" if im.mode in ("L", "1") else "RGB")
                arr = np.asarray(im.convert(mode), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise InputError(f"{f} is not a readable image ({_squeeze(exc, 120)}); replace or remove it") from None
    return arr, mode


def _image_folder(path_str: str) -> Dataset:
    root = Path(path_str)
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        raise InputError(f"folder:{root} needs train/ and test/ sub-folders, each with one folder per class")
    classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    if not classes:
        raise InputError(f"{root / 'train'} holds no class folders")
    for cls in classes:
        # An empty folder would be a class the model can never learn, yet one it must output.
        if not any(_is_image_file(f) for f in (root / "train" / cls).iterdir()):
            raise InputError(f"class folder {root / 'train' / cls} holds no images; add images or remove the folder")
    mode = None
    out = []
    for part in ("train", "test"):
        xs, ys = [], []
        for label, cls in enumerate(classes):
            folder = root / part / cls
            if not folder.is_dir():
                continue
            for f in sorted(folder.iterdir()):
                if not _is_image_file(f):
                    continue
                arr, mode = _read_image(f, mode)
                xs.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
                ys.append(label)
        if not xs:
            raise InputError(f"{root / part} holds no images ({', '.join(sorted(_IMAGE_SUFFIXES))})")
        if len({x.shape for x in xs}) != 1:
            raise InputError(f"images under {root / part} differ in size; resize them to one size first")
        out.append((np.stack(xs), np.asarray(ys)))
    (xtr, ytr), (xte, yte) = out
    if xtr.shape[1:] != xte.shape[1:]:
        raise InputError(f"train and test images under {root} differ in size")
    ds = _from_uint8(f"folder:{root}", xtr, ytr, xte, yte, len(classes), classes, None)
    ds.split = {"source": "the folder's train/ and test/"}
    return ds

"""Shared fixtures for the foundation tests (issue 2): tiny on-disk data sets written in
torchvision's formats, a runner for the ``audit`` command, and one trained digits model.

Nothing here downloads anything: every file a loader reads is written by these fixtures.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

AUDIT = Path(sys.executable).with_name("audit")


# --- the command line ---------------------------------------------------------------------

@dataclass
class CliRun:
    """One finished ``audit`` command."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    cwd: Path

    def error_lines(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.strip()]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["AUDIT_NO_PROGRESS"] = "1"
    env.pop("AUDIT_DEBUG", None)
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    # Tiny models: one thread is faster, and far faster on a busy two-core machine.
    env["OMP_NUM_THREADS"] = "1"
    return env


def run_audit(args: list[str], cwd: Path, timeout: float = 300) -> CliRun:
    """Run the installed ``audit`` console script in ``cwd``."""
    entry = [str(AUDIT)] if AUDIT.exists() else [sys.executable, "-c", "from audit.cli import main; main()"]
    cmd = [*entry, *args]
    proc = subprocess.run(cmd, cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout)
    return CliRun(list(args), proc.returncode, proc.stdout, proc.stderr, Path(cwd))


def run_audit_inprocess(args: list[str], cwd: Path) -> CliRun:
    """Run ``audit.cli.main`` in this process (same code path as the console script, minus
    the interpreter start-up); used for the many bad-input variants."""
    import contextlib
    import io

    from audit.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved_env = {k: os.environ.get(k) for k in ("AUDIT_NO_PROGRESS", "AUDIT_DEBUG")}
    old_cwd, old_argv = os.getcwd(), sys.argv
    os.environ["AUDIT_NO_PROGRESS"] = "1"
    os.environ.pop("AUDIT_DEBUG", None)
    sys.argv = ["audit", *args]
    code = 0
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.chdir(old_cwd)
        sys.argv = old_argv
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return CliRun(list(args), code, out.getvalue(), err.getvalue(), Path(cwd))


def run_audit_many(cases: dict[str, tuple[list[str], Path]], workers: int = 4) -> dict[str, CliRun]:
    """Run independent ``audit`` commands side by side (each mostly waits on imports)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {key: pool.submit(run_audit, args, cwd) for key, (args, cwd) in cases.items()}
        return {key: f.result() for key, f in futures.items()}


def assert_one_line_failure(run: CliRun, code: int = 2, *needles: str) -> str:
    """Exit ``code``, exactly one non-empty stderr line starting ``error:``, no traceback."""
    lines = run.error_lines()
    assert run.returncode == code, f"{run.args}: exit {run.returncode}, stderr:\n{run.stderr}"
    assert "Traceback" not in run.stderr, run.stderr
    assert len(lines) == 1, f"{run.args}: expected one line on stderr, got:\n{run.stderr}"
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Train the tiny models here on one thread (see cli_env); restore the setting after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def digits():
    from audit.data import load_dataset

    return load_dataset("digits")


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


@pytest.fixture
def make_mnist(tmp_path):
    """``make_mnist(kind, gz)`` writes a tiny MNIST-style tree under a new root and returns it."""

    def make(kind: str = "mnist", gz: bool = False, n_train: int = 60, n_test: int = 20) -> TinySet:
        root = tmp_path / f"{kind}-{'gz' if gz else 'plain'}-root"
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

    return make


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


@pytest.fixture
def make_cifar(tmp_path):
    """``make_cifar(kind, protocol)`` writes a tiny cifar-10-batches-py or cifar-100-python tree."""

    def make(kind: str = "cifar10", protocol: int | str = "py2", per_batch: int = 6) -> TinySet:
        root = tmp_path / f"{kind}-{protocol}-root"
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

    return make


# --- a malicious pickle -------------------------------------------------------------------------

class MarkerPayload:
    """Unpickling this object creates ``marker`` (via builtins.open): proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# --- one trained model, shared --------------------------------------------------------------------

@dataclass
class TrainedModel:
    path: Path
    train: CliRun
    info: dict


@pytest.fixture(scope="session")
def acceptance_model(tmp_path_factory) -> TrainedModel:
    """Issue 2's acceptance run: digits, smallcnn, 20 epochs, seed 0, recording class 3."""
    work = tmp_path_factory.mktemp("acceptance")
    args = ["train", "--data", "digits", "--arch", "smallcnn", "--epochs", "20", "--seed", "0",
            "--record", "class=3", "--out", "m.pt"]
    train = run_audit(args, work)
    assert train.returncode == 0, train.stderr
    info = run_audit(["info", "m.pt", "--json"], work)
    assert info.returncode == 0, info.stderr
    return TrainedModel(work / "m.pt", train, json.loads(info.stdout))


# --- helpers as fixtures (test modules do not import conftest) -------------------------------------

class Cli:
    """The ``audit`` command for tests: ``run``, ``run_many`` and ``one_line_failure``."""

    run = staticmethod(run_audit)
    run_inprocess = staticmethod(run_audit_inprocess)
    env = staticmethod(cli_env)
    run_many = staticmethod(run_audit_many)
    one_line_failure = staticmethod(assert_one_line_failure)


@pytest.fixture(scope="session")
def cli() -> Cli:
    return Cli()


@pytest.fixture(scope="session")
def idx_writer():
    return write_idx


@pytest.fixture(scope="session")
def marker_payload():
    return MarkerPayload


@pytest.fixture(scope="session")
def cifar_pickle_writer():
    return write_cifar_pickle

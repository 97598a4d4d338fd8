"""Fixtures shared by every test folder: the ``audit`` command, the embedded digits, tiny
on-disk data sets in torchvision's formats, and digits models trained once per session.

Helpers the test modules import directly live beside this file: ``tests/cli_runner.py`` (the
one CLI runner) and ``tests/dataset_files.py`` (the file writers). Fixtures used by one
folder alone stay in that folder's ``conftest.py``.

Under pytest-xdist each worker is a session of its own; the models below are trained once
for all workers (:func:`once_for_all_workers`) and reference models are cached in one
folder that every worker shares, as concurrent ``audit run`` commands may.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from filelock import FileLock

from tests import cli_runner
from tests.cli_runner import CliRun, run_audit
from tests.dataset_files import MarkerPayload, write_cifar, write_cifar_pickle, write_mnist

# --- one folder for the whole run, shared by xdist's workers -----------------------------------


def _run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's temporary root: under xdist, the folder above each worker's own."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def once_for_all_workers(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """``build(folder)`` once per test run, whichever xdist worker asks first; the folder.

    A ``.done`` marker written after ``build`` returns tells later callers the folder is whole.
    """
    folder = _run_folder(tmp_path_factory) / f"shared-{name}"
    with FileLock(str(folder) + ".lock"):
        done = folder / ".done"
        if not done.exists():
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session", autouse=True)
def reference_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``AMNESIA_AUDIT_CACHE`` for every command the tests run, unless a test sets its own:
    the same reference models are trained once per run, and nothing lands in the user's cache."""
    cache = _run_folder(tmp_path_factory) / "reference-cache"
    cache.mkdir(exist_ok=True)
    before = os.environ.get("AMNESIA_AUDIT_CACHE")
    os.environ["AMNESIA_AUDIT_CACHE"] = str(cache)
    yield cache
    if before is None:
        os.environ.pop("AMNESIA_AUDIT_CACHE", None)
    else:
        os.environ["AMNESIA_AUDIT_CACHE"] = before


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models train faster on one thread, and far faster on a busy two-core machine (or
    beside another xdist worker); subprocesses get ``OMP_NUM_THREADS=1`` from ``cli_env``.
    Session-wide, so that it holds before the session's models are trained; a test that needs
    torch's default takes ``default_threads`` (tests/robustness/test_executor_threads.py)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- the command line ---------------------------------------------------------------------------


class Cli:
    """The ``audit`` command for tests that take it as a fixture (see ``tests/cli_runner.py``)."""

    run = staticmethod(run_audit)
    env = staticmethod(cli_runner.cli_env)
    run_many = staticmethod(cli_runner.run_audit_many)
    one_line_failure = staticmethod(cli_runner.assert_one_line_failure)


@pytest.fixture(scope="session")
def cli() -> Cli:
    return Cli()


# --- data ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def digits():
    """The embedded digits as ``audit.data`` loads them (1348 train / 449 test, 8x8, [0, 1])."""
    from audit.data import load_dataset

    return load_dataset("digits")


@pytest.fixture
def make_mnist(tmp_path):
    """``make_mnist(kind, gz)`` writes a tiny MNIST-style tree under a new root and returns it."""
    return lambda *args, **kwargs: write_mnist(tmp_path, *args, **kwargs)


@pytest.fixture
def make_cifar(tmp_path):
    """``make_cifar(kind, protocol)`` writes a tiny cifar-10-batches-py or cifar-100-python tree."""
    return lambda *args, **kwargs: write_cifar(tmp_path, *args, **kwargs)


@pytest.fixture(scope="session")
def marker_payload():
    return MarkerPayload


@pytest.fixture(scope="session")
def cifar_pickle_writer():
    return write_cifar_pickle


# --- digits models, trained once per run ---------------------------------------------------------


@dataclass
class TrainedModel:
    path: Path
    train: CliRun
    info: dict


@pytest.fixture(scope="session")
def acceptance_model(tmp_path_factory) -> TrainedModel:
    """Issue 2's acceptance run: ``audit train`` on digits, smallcnn, 20 epochs, seed 0, recording
    class 3 (m.pt and m.pt.updates), with what the command printed and ``audit info --json``.

    The one model of the default recipe: the ``audit run`` tests audit it too (read only)."""

    def build(folder: Path) -> None:
        args = ["train", "--data", "digits", "--arch", "smallcnn", "--epochs", "20", "--seed", "0",
                "--record", "class=3", "--out", "m.pt"]
        train = run_audit(args, folder)
        assert train.returncode == 0, train.stderr
        info = run_audit(["info", "m.pt", "--json"], folder)
        assert info.returncode == 0, info.stderr
        (folder / "train.json").write_text(json.dumps({"args": train.args, "returncode": train.returncode,
                                                         "stdout": train.stdout, "stderr": train.stderr}))
        (folder / "info.json").write_text(info.stdout)

    folder = once_for_all_workers(tmp_path_factory, "acceptance", build)
    train = CliRun(**json.loads((folder / "train.json").read_text()), cwd=folder)
    return TrainedModel(folder / "m.pt", train, json.loads((folder / "info.json").read_text()))


@pytest.fixture(scope="session")
def digits_model(acceptance_model) -> Path:
    """The default digits model with the update log of class 3 (do not write beside it)."""
    return acceptance_model.path


@pytest.fixture(scope="session")
def leaky_model(tmp_path_factory) -> tuple[Path, Path]:
    """A model that memorises: the first 300 training digits only, 30 epochs (model file, npz data)."""

    def build(folder: Path) -> None:
        import numpy as np

        from audit.data import load_dataset

        data = load_dataset("digits")
        np.savez(folder / "digits300.npz", x_train=data.x_train[:300, 0].numpy(),
                 y_train=data.y_train[:300].numpy(), x_test=data.x_test[:, 0].numpy(), y_test=data.y_test.numpy())
        proc = run_audit(["train", "--data", "npz:digits300.npz", "--epochs", "30", "--seed", "0", "--record", "none",
                          "--out", "leaky.pt"], folder)
        assert proc.returncode == 0, proc.stderr

    folder = once_for_all_workers(tmp_path_factory, "leaky", build)
    return folder / "leaky.pt", folder / "digits300.npz"


@dataclass
class TrainedDigits:
    data: object  # audit.data.Dataset
    path: Path
    model_file: object  # audit.modelfile.ModelFile


# Fewer epochs than the default recipe (20): enough for ~99% test accuracy on digits.
TRAINED_DIGITS_EPOCHS = 8


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory, digits) -> TrainedDigits:
    """smallcnn on digits (8 epochs, seed 0) whose log records every batch that held a 3 (float32)."""
    from audit.modelfile import load_model
    from audit.training import train_model
    from unlearning import TrainConfig

    def build(folder: Path) -> None:
        train_model(digits, folder / "m.pt", "smallcnn", TrainConfig(epochs=TRAINED_DIGITS_EPOCHS, seed=0),
                    record="class=3", show_progress=False)

    path = once_for_all_workers(tmp_path_factory, "trained-digits", build) / "m.pt"
    return TrainedDigits(digits, path, load_model(path))

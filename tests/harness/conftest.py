"""A digits model trained once per session with an update log for class 3, and a CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_runner import run_audit


@pytest.fixture(scope="session")
def audit_env(tmp_path_factory) -> dict:
    env = dict(os.environ)
    env["AUDIT_NO_PROGRESS"] = "1"
    env["AMNESIA_AUDIT_CACHE"] = str(tmp_path_factory.mktemp("reference-cache"))
    env.pop("AUDIT_FAULT", None)
    # Tiny models: one thread is faster, and far faster on a busy two-core machine.
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory, audit_env) -> Path:
    path = tmp_path_factory.mktemp("model") / "m.pt"
    proc = run_audit(["train", "--data", "digits", "--epochs", "20", "--seed", "0", "--record", "class=3",
                      "--out", path], audit_env)
    assert proc.returncode == 0, proc.stderr
    return path


@pytest.fixture(scope="session")
def leaky_model(tmp_path_factory, audit_env) -> tuple[Path, Path]:
    """A model that memorises: the first 300 training digits only, 30 epochs (model file, npz data)."""
    import numpy as np

    from audit.data import load_dataset

    folder = tmp_path_factory.mktemp("leaky")
    data = load_dataset("digits")
    npz = folder / "digits300.npz"
    np.savez(npz, x_train=data.x_train[:300, 0].numpy(), y_train=data.y_train[:300].numpy(),
             x_test=data.x_test[:, 0].numpy(), y_test=data.y_test.numpy())
    path = folder / "leaky.pt"
    proc = run_audit(["train", "--data", f"npz:{npz}", "--epochs", "30", "--seed", "0", "--record", "none",
                      "--out", path], audit_env)
    assert proc.returncode == 0, proc.stderr
    return path, npz

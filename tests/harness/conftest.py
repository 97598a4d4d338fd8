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
    return env


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory, audit_env) -> Path:
    path = tmp_path_factory.mktemp("model") / "m.pt"
    proc = run_audit(["train", "--data", "digits", "--epochs", "20", "--seed", "0", "--record", "class=3",
                      "--out", path], audit_env)
    assert proc.returncode == 0, proc.stderr
    return path

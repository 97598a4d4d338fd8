"""Helpers of the hardening tests (issue 11), imported by their modules: the CLI runner of
``tests/foundation/conftest.py`` (imported from there, not copied) plus runs with extra
environment variables, and ``audit train`` in one call.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `tests.foundation`

from tests.foundation.conftest import (  # noqa: E402
    CliRun,
    assert_one_line_failure,
    cli_env,
    run_audit,
    run_audit_inprocess,
)

__all__ = ["CliRun", "assert_one_line_failure", "cli_env", "run_audit", "run_audit_env", "run_audit_inprocess", "train"]


def run_audit_env(args: list[str], cwd: Path, timeout: float = 300, **extra_env: str) -> CliRun:
    """``run_audit`` with extra environment variables (``AUDIT_FAULT_STOP=...``)."""
    entry = [sys.executable, "-c", "from audit.cli import main; main()"]
    proc = subprocess.run([*entry, *args], cwd=cwd, env={**cli_env(), **extra_env}, capture_output=True, text=True,
                          timeout=timeout)
    return CliRun(list(args), proc.returncode, proc.stdout, proc.stderr, Path(cwd))


def train(cwd: Path, out: str, *extra: str, epochs: int = 2, **extra_env: str) -> CliRun:
    """``audit train --epochs N ... --out OUT`` in ``cwd``; asserts nothing."""
    return run_audit_env(["train", "--epochs", str(epochs), *extra, "--out", out], cwd, **extra_env)

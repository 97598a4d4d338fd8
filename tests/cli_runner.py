"""Run the ``audit`` CLI as a subprocess, the way a user or a CI job does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

AUDIT = [sys.executable, "-m", "audit.cli"]


def run_audit(args: list, env: dict, cwd: Path | None = None, extra_env: dict | None = None):
    return subprocess.run(AUDIT + [str(a) for a in args], capture_output=True, text=True, cwd=cwd,
                          env={**env, **(extra_env or {})}, timeout=600)

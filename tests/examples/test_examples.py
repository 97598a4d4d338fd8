"""The scripts in examples/ run as a user would run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run_example(name: str) -> subprocess.CompletedProcess:
    # The checkout's packages first, ahead of any installed copy.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)
    return subprocess.run([sys.executable, str(ROOT / "examples" / name)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_record_own_loop():
    run = _run_example("record_own_loop.py")
    assert run.returncode == 0, run.stderr
    assert "forget accuracy: before" in run.stdout


def test_record_packed_loop():
    run = _run_example("record_packed_loop.py")
    assert run.returncode == 0, run.stderr
    # 89 recordable digits in two batches of their own per epoch: 20 of 290 steps, none holding a retained one.
    assert "recorded 20 of 290 steps" in run.stdout
    assert "holding 0 retained examples" in run.stdout

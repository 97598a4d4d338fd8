"""The scripts in examples/ run as a user would run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.slow  # heavy (an end-to-end audit or more): `make test-slow` and CI run it; `make test` stays within 5 minutes
def test_record_packed_loop():
    run = _run_example("record_packed_loop.py")
    assert run.returncode == 0, run.stderr
    # 89 recordable digits in two batches of their own per epoch: 20 of 290 steps, none holding a retained one.
    assert "recorded 20 of 290 steps" in run.stdout
    assert "holding 0 retained examples" in run.stdout


@pytest.mark.slow  # heavy (an end-to-end audit or more): `make test-slow` and CI run it; `make test` stays within 5 minutes
def test_examples_run(tmp_path):
    """The README's examples run as a user would run them: from Python, and from the command line."""
    env = dict(os.environ, AUDIT_NO_PROGRESS="1", OMP_NUM_THREADS="1", AMNESIA_AUDIT_CACHE=str(tmp_path / "cache"))
    env.pop("AUDIT_FAULT", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # python and audit of this venv
    proc = subprocess.run([sys.executable, "examples/audit_in_python.py"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("verdict ")
    out = tmp_path / "cli-example"
    proc = subprocess.run(["bash", "examples/audit_from_cli.sh", str(out)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads((out / "audit" / "results.json").read_text())
    assert doc["targets"][0]["verdict"] in ("pass", "fail") and (out / "audit" / "report.html").is_file()

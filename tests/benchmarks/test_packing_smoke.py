"""The packing benchmarks (issue 18) run end to end at toy size and write where they are told."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, script: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args, "--out-dir", str(tmp_path),
                           "--out-name", "smoke"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert (tmp_path / "smoke.md").is_file()
    return json.loads((tmp_path / "smoke.json").read_text())


@pytest.mark.slow  # a benchmark script, not the product: `make test-all` runs it
def test_resnet_run_quick(tmp_path):
    doc = _run(tmp_path, "scale.py", "--resnet-run", "--quick", "--only", "p1,u1,r1pct")
    packed, unpacked = doc["recorded"]
    assert packed["packed"] and not unpacked["packed"]
    assert packed["recorded"] < unpacked["recorded"] and packed["log_bytes"] < unpacked["log_bytes"]
    assert all(m["retained_in_removed"] == 0 for m in packed["removals"] if m["request"] == "1%")
    assert doc["retrain"][0]["seconds"] > 0


@pytest.mark.slow
def test_packing_quality_quick(tmp_path):
    doc = _run(tmp_path, "packing_quality.py", "--seeds", "1", "--verdict-seeds", "0", "--settings", "random 1%")
    on, off = doc["cells"]
    assert on["packing"] == "on" and off["packing"] == "off" and on["recorded"] < off["recorded"]
    assert doc["retrain"][0]["seconds"] > 0

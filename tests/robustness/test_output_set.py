"""A run's outputs appear together or not at all (issue 11, item 4): killed while staging, the
earlier set stays whole; killed while swapping, no old file is left beside a new one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_runner import CliRun, run_audit

ARGS = ["--forget", "class=3", "--method", "relabel", "--reference", "none", "--attacks", "mia", "--mia", "loss",
        "--format", "html", "--inconclusive", "pass", "--quiet", "--out", "out"]


def _run(args: list[str], cwd: Path, **env: str) -> CliRun:
    return run_audit(args, cwd, env={"AMNESIA_AUDIT_CACHE": str(cwd / "cache"), **env})


def _outputs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("outputs")
    assert _run(["train", "--epochs", "3", "--record", "none", "--out", "m.pt"], work).returncode == 0
    proc = _run(["run", "m.pt", *ARGS], work)
    assert proc.returncode in (0, 1), proc.stderr
    assert {"results.json", "junit.xml", "report.html"} <= set(_outputs(work / "out"))
    return work


def test_killed_while_staging_keeps_the_earlier_set(first_run):
    before = _outputs(first_run / "out")
    proc = _run(["run", "m.pt", *ARGS, "--seed", "1"], first_run, AUDIT_FAULT_STOP="outputs-staged")
    assert proc.returncode == 137
    assert _outputs(first_run / "out") == before


def test_killed_while_swapping_leaves_no_old_file_beside_a_new_one(first_run):
    out = first_run / "out"
    old = json.loads((out / "results.json").read_text())["created"]
    old_report = (out / "report.html").read_bytes()
    proc = _run(["run", "m.pt", *ARGS, "--seed", "2"], first_run, AUDIT_FAULT_STOP="outputs-swapping")
    assert proc.returncode == 137
    names = set(_outputs(out))
    assert names == {"results.json"}  # the first file of the new set, and nothing of the old one
    doc = json.loads((out / "results.json").read_text())
    assert doc["provenance"]["seed"] == 2 and (doc["created"] != old or not (out / "report.html").exists())
    assert not (out / "report.html").exists() or (out / "report.html").read_bytes() != old_report
    # The next complete run restores a whole, consistent set.
    assert _run(["run", "m.pt", *ARGS, "--seed", "2"], first_run).returncode in (0, 1)
    assert {"results.json", "junit.xml", "report.html"} <= set(_outputs(out))

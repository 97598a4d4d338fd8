"""A run's outputs appear together or not at all (issue 11, item 4): killed while staging, the
earlier set stays whole; killed while swapping, no old file is left beside a new one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_runner import CliRun, assert_one_line_failure, run_audit

ARGS = ["--forget", "class=3", "--method", "relabel", "--reference", "none", "--attacks", "mia", "--mia", "loss",
        "--format", "html", "--inconclusive", "pass", "--quiet", "--out", "out"]


def _run(args: list[str], cwd: Path, **env: str) -> CliRun:
    return run_audit(args, cwd, env={"AMNESIA_AUDIT_CACHE": str(cwd / "cache"), **env})


def _outputs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and not p.name.startswith(".")}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("outputs")
    assert _run(["train", "--epochs", "3", "--record", "none", "--out", "m.pt"], work).returncode == 0
    proc = _run(["run", "m.pt", *ARGS], work)
    assert proc.returncode in (0, 1), proc.stderr
    assert {"results.json", "junit.xml", "report.html"} <= set(_outputs(work / "out"))
    return work


@pytest.mark.slow  # heavy (an end-to-end audit or more): `make test-slow` and CI run it; `make test` stays within 5 minutes
def test_killed_while_staging_keeps_the_earlier_set(first_run):
    before = _outputs(first_run / "out")
    proc = _run(["run", "m.pt", *ARGS, "--seed", "1"], first_run, AUDIT_FAULT_STOP="outputs-staged")
    assert proc.returncode == 137
    assert _outputs(first_run / "out") == before


@pytest.mark.slow  # heavy (an end-to-end audit or more): `make test-slow` and CI run it; `make test` stays within 5 minutes
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


# --- Issue 23, item 4: never delete what the run did not write -----------------------------------

def test_out_dot_never_removes_or_replaces_the_users_own_files(digits_model, tmp_path):
    """``--out .`` in a folder holding the user's ``inversion/notes.txt`` and ``report.pdf``: refused
    before any work."""
    (tmp_path / "m.pt").symlink_to(digits_model)  # the session's model: this test trains nothing
    (tmp_path / "inversion").mkdir()
    (tmp_path / "inversion" / "notes.txt").write_text("mine")
    (tmp_path / "report.pdf").write_bytes(b"%PDF mine")
    args = [a if a != "out" else "." for a in ARGS]
    proc = run_audit(["run", "m.pt", *args], tmp_path, in_process=True)
    assert_one_line_failure(proc, 2, "--out . holds report.pdf and 1 more, which no earlier audit wrote")
    assert (tmp_path / "inversion" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "report.pdf").read_bytes() == b"%PDF mine"
    assert not (tmp_path / "results.json").exists()


@pytest.mark.slow  # a full audit: `make test-slow` and CI run it; the refusal above stays in `make test`
def test_out_dot_writes_its_set_beside_the_users_other_files(digits_model, tmp_path):
    """Beside files of the user's that no audit writes, a run writes its set and keeps theirs
    (a later run replaces only what the manifest lists: the tests above)."""
    (tmp_path / "m.pt").symlink_to(digits_model)
    args = [a if a != "out" else "." for a in ARGS]
    (tmp_path / "my-report.pdf").write_bytes(b"%PDF mine")
    (tmp_path / "notes.txt").write_text("mine")
    proc = run_audit(["run", "m.pt", *args], tmp_path, in_process=True)
    assert proc.returncode in (0, 1), proc.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "my-report.pdf").exists()
    manifest = json.loads((tmp_path / ".amnesia-audit-outputs.json").read_text())["files"]
    assert {"results.json", "junit.xml", "report.html"} <= set(manifest) and "notes.txt" not in manifest

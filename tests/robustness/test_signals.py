"""Issue 11, item 9: SIGTERM (a CI cancel) and SIGINT (Ctrl-C) stop any command with one
line and a documented exit code (143, 130), removing what it had staged under temporary
names; earlier outputs stay as they were.

Each test starts a real command, waits until it is in the middle of its work (a staged
file or a half-written log on disk), then signals it.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path
from typing import Callable

import pytest

from audit.modelfile import load_model

from tests.cli_runner import CliRun, assert_one_line_failure, run_audit, start_audit, train


def _interrupt_when(args: list[str], cwd: Path, ready: Callable[[], bool], sig: int, env: dict | None = None,
                    tries: int = 4, settle: float = 0.0) -> CliRun:
    """Run ``audit ARGS``; send ``sig`` ``settle`` seconds after ``ready()``. Retried if the command ends first."""
    for _ in range(tries):
        proc = start_audit(args, cwd, env=env)
        deadline = time.monotonic() + 120
        while proc.poll() is None and not ready() and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(settle)
        if proc.poll() is None:
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=120)
            return CliRun(list(args), proc.returncode, out, err, cwd)
        proc.communicate()
    pytest.fail(f"audit {' '.join(args)} finished {tries} times before it could be interrupted")


def _tmp_files(*folders: Path) -> list[Path]:
    return [p for folder in folders if folder.exists() for p in folder.rglob("*") if p.name.endswith(".tmp")]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def audited(tmp_path_factory) -> Path:
    """m.pt (digits, 3 epochs, class 3 recorded) and an audit of it in audit-out/ with every report."""
    work = tmp_path_factory.mktemp("audited")
    res = train(work, "m.pt", "--record", "class=3", epochs=3)
    assert res.returncode == 0, res.stderr
    run = run_audit(["run", "m.pt", "--forget", "class=3", "--method", "relabel", "--reference", "none",
                     "--attacks", "mia", "--mia", "loss", "--format", "html,pdf", "--quiet",
                     "--out", "audit-out"], work, in_process=True)
    assert run.returncode in (0, 1), run.stderr  # the verdict does not matter here, only the outputs
    # Without retrained models the membership test keeps each model's own permutation null, and says so.
    [membership] = [t for t in json.loads((work / "audit-out" / "results.json").read_text())["targets"][0]["tests"]
                    if t["name"] == "membership"]
    assert membership["detail"]["null"] == "permutation"
    report = run_audit(["report", "audit-out/results.json", "--format", "html,pdf,junit"], work, in_process=True)
    assert report.returncode == 0, report.stderr
    return work


def _assert_interrupted(run: CliRun, sig: int) -> None:
    code = {signal.SIGTERM: 143, signal.SIGINT: 130}[sig]
    line = assert_one_line_failure(run, code, f"interrupted by {signal.Signals(sig).name}")
    assert "earlier outputs are as they were" in line


@pytest.mark.slow  # an audit with every report first: `make test-slow` and CI run it
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_report_interrupted_while_writing_leaves_the_earlier_reports(audited, tmp_path, sig):
    work = tmp_path / "work"
    shutil.copytree(audited, work)
    out = work / "audit-out"
    before = _files(out)
    # Signalled while the PDF renders (report.html is staged by then): reports/ creates each
    # temporary a few instructions before it registers it for clean-up, a window that
    # reports/ must close itself, so the signal is sent 50 ms after the PDF's appears.
    run = _interrupt_when(["report", "audit-out/results.json", "--format", "html,pdf,junit"], work,
                          lambda: any(p.name.startswith(".report.pdf.") for p in _tmp_files(out)), sig, settle=0.05)
    _assert_interrupted(run, sig)
    assert _tmp_files(work) == []
    assert _files(out) == before


@pytest.mark.slow  # heavy (an end-to-end audit or more): `make test-slow` and CI run it; `make test` stays within 5 minutes
def test_run_interrupted_while_training_reference_models(audited, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(audited, work)
    out, cache = work / "audit-out", tmp_path / "cache"
    before = _files(out)
    args = ["run", "m.pt", "--forget", "class=3", "--method", "relabel", "--reference", "none", "--attacks", "mia",
            "--mia", "lira_online", "--reference-models", "4", "--format", "html,pdf", "--quiet", "--out", "audit-out"]
    # The first reference model is in the cache: the run is in the middle of training the others.
    run = _interrupt_when(args, work, lambda: any(cache.glob("*.safetensors")), signal.SIGTERM,
                          env={"AMNESIA_AUDIT_CACHE": str(cache)})
    _assert_interrupted(run, signal.SIGTERM)
    assert _tmp_files(work, cache) == []
    assert _files(out) == before
    # What was cached is complete: the next run uses it.
    rerun = run_audit(args, work, env={"AMNESIA_AUDIT_CACHE": str(cache)}, timeout=300)
    assert rerun.returncode in (0, 1) and "warning" not in rerun.stderr, rerun.stderr


@pytest.mark.slow  # heavy (an end-to-end audit or more): `make test-slow` and CI run it; `make test` stays within 5 minutes
def test_run_interrupted_while_writing_its_outputs(audited, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(audited, work)
    out = work / "audit-out"
    before = _files(out)
    args = ["run", "m.pt", "--forget", "class=3", "--method", "relabel", "--reference", "none", "--attacks", "mia",
            "--mia", "loss", "--format", "html,pdf", "--quiet", "--out", "audit-out"]
    # The moment results.json is staged (audit.atomic), the staging of the outputs begins.
    run = _interrupt_when(args, work, lambda: any(p.name.startswith(".results.json.") for p in _tmp_files(out)),
                          signal.SIGTERM)
    _assert_interrupted(run, signal.SIGTERM)
    assert _tmp_files(work) == []
    after = _files(out)
    # Each file is the earlier one or a complete new one (results.json may already be renamed into place).
    assert set(after) == set(before)
    json.loads(after["results.json"])
    assert after["report.html"].rstrip().endswith(b"</html>") and after["junit.xml"].rstrip().endswith(b">")
    assert after["report.pdf"].startswith(b"%PDF") and b"%%EOF" in after["report.pdf"][-64:]


def test_train_interrupted_keeps_the_old_model_and_log(digits_model, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(digits_model, work / "m.pt")  # the session's model and its log: this test trains no fixture
    shutil.copytree(load_model(digits_model).log_dir, work / "m.pt.updates")
    before = _files(work)
    run = _interrupt_when(["train", "--epochs", "40", "--record", "class=3", "--seed", "1", "--out", "m.pt"], work,
                          lambda: any(work.glob("*.partial/batches/*")), signal.SIGTERM)
    _assert_interrupted(run, signal.SIGTERM)
    assert _files(work) == before  # no partial log, no staged model: the old pair as it was
    assert sorted(p.name for p in work.iterdir()) == ["m.pt", "m.pt.updates"]

"""Issue 11, item 5: training into an existing model path replaces the model file and its
update log as one unit. A kill -9 at every stage of the replacement (``AUDIT_FAULT_STOP``,
stages documented in ``audit/training.py``) leaves a usable pair: the old one before the
model file is renamed into place, the new one after; the next run sweeps the leftovers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from audit.modelfile import load_model

from tests.cli_runner import run_audit, train

BEFORE_COMMIT = ["log-open", "log-closed", "model-staged"]
AFTER_COMMIT = ["model-replaced", "old-log-removing"]


@pytest.fixture(scope="module")
def old_pair(tmp_path_factory) -> Path:
    """m.pt (seed 0) with the log of class 3's batches."""
    work = tmp_path_factory.mktemp("old-pair")
    res = train(work, "m.pt", "--record", "class=3", "--seed", "0")
    assert res.returncode == 0, res.stderr
    assert (work / "m.pt.updates").is_dir()
    return work


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _usable(folder: Path) -> dict:
    """The model at m.pt verifies against the log it names, and amnesiac unlearning from it works."""
    info = run_audit(["info", "m.pt", "--json"], folder, in_process=True)
    assert info.returncode == 0, info.stderr
    status = json.loads(info.stdout)["update_log"]
    assert status["verified"] is True, status
    out = folder.parent / f"{folder.name}-u.pt"
    unlearn = run_audit(["unlearn", "m.pt", "--forget", "class=3", "--method", "amnesiac", "--epochs", "0",
                         "--out", str(out)], folder, in_process=True)
    assert unlearn.returncode == 0, unlearn.stderr
    out.unlink()
    return status


def _only_the_pair(folder: Path) -> None:
    """Nothing but m.pt and the one log it names: no partial log, no orphan, no .tmp, no trash."""
    named = load_model(folder / "m.pt").log_dir.name
    assert sorted(p.name for p in folder.iterdir()) == sorted(["m.pt", named])


# One stage in `make test`; every stage in `make test-slow` (and CI).
@pytest.mark.parametrize("stage", [s if s == "model-staged" else pytest.param(s, marks=pytest.mark.slow)
                                   for s in BEFORE_COMMIT + AFTER_COMMIT])
def test_a_kill_at_any_stage_leaves_a_usable_pair(old_pair, tmp_path, stage):
    folder = tmp_path / "work"
    shutil.copytree(old_pair, folder)
    old = _files(folder)

    killed = train(folder, "m.pt", "--record", "class=3", "--seed", "1", AUDIT_FAULT_STOP=stage)
    assert killed.returncode == 137, (stage, killed.returncode, killed.stderr)

    mf = load_model(folder / "m.pt")
    if stage in BEFORE_COMMIT:
        # The old pair, byte for byte: the old model still names the old, untouched log.
        assert (folder / "m.pt").read_bytes() == old["m.pt"]
        assert mf.log_dir.name == "m.pt.updates"
        assert {k: v for k, v in _files(folder).items() if k.startswith("m.pt.updates/") or k == "m.pt"} == old
    else:
        # The new pair: the new model names its own new log.
        assert (folder / "m.pt").read_bytes() != old["m.pt"] and mf.seed == 1
        assert mf.log_dir.name.startswith("m.pt.updates.") and mf.log_dir.is_dir()
    _usable(folder)

    # The next run replaces the pair again and sweeps what the killed run left.
    again = run_audit(["train", "--epochs", "2", "--record", "class=3", "--seed", "2", "--out", "m.pt"],
                      folder, in_process=True)
    assert again.returncode == 0, again.stderr
    assert load_model(folder / "m.pt").seed == 2
    _usable(folder)
    _only_the_pair(folder)


@pytest.mark.slow  # heavy (an end-to-end audit or more): `make test-slow` and CI run it; `make test` stays within 5 minutes
def test_retraining_keeps_no_old_log_and_a_failed_retraining_keeps_the_old_pair(old_pair, tmp_path):
    folder = tmp_path / "work"
    shutil.copytree(old_pair, folder)
    res = train(folder, "m.pt", "--record", "class=3", "--seed", "1")
    assert res.returncode == 0, res.stderr
    _only_the_pair(folder)
    new = _files(folder)

    # A run that fails (training diverges at an absurd learning rate) changes nothing.
    failed = run_audit(["train", "--epochs", "2", "--record", "class=3", "--lr", "1e30",
                        "--out", "m.pt"], folder, in_process=True)
    assert failed.returncode == 3, failed.stderr
    assert len([ln for ln in failed.stderr.splitlines() if ln.strip()]) == 1
    assert _files(folder) == new

    # Retraining without a log removes the old log with the old model.
    res = run_audit(["train", "--epochs", "2", "--record", "none", "--out", "m.pt"], folder, in_process=True)
    assert res.returncode == 0, res.stderr
    assert load_model(folder / "m.pt").update_log is None
    assert [p.name for p in folder.iterdir()] == ["m.pt"]

"""Issue 11, item 1: a tampered update log is refused, never used to remove too little.

Every file of the log (header, covered ids, journal, step files) is checked against the
digest that model.pt records, in ``audit unlearn``, ``audit run`` and ``audit info``,
through the one opener ``UpdateLog.open_trusted``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from audit.errors import InputError
from audit.modelfile import load_model
from audit.unlearn import open_trusted_log
from unlearning import UpdateLog, UpdateLogError

from tests.cli_runner import assert_one_line_failure, run_audit

N_TRAIN = 1348  # digits' training split


def _copy(model: Path, folder: Path) -> Path:
    """The model file and the log it names, copied into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(model, folder / model.name)
    log = load_model(model).log_dir
    shutil.copytree(log, folder / log.name)
    return folder / model.name


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _log(model: Path) -> Path:
    return load_model(model).log_dir


def _cover_everything(model: Path) -> None:
    """The issue's tampering: covered.safetensors claims every training id is covered."""
    save_file({"ids": torch.arange(N_TRAIN, dtype=torch.int64)}, str(_log(model) / "covered.safetensors"))


def _assert_refused_and_untouched(run, folder: Path, before: dict, *needles: str) -> str:
    line = assert_one_line_failure(run, 2, *needles)
    assert run.stdout == ""
    assert _snapshot(folder) == before  # nothing written, nothing staged, the inputs as they were
    return line


@pytest.mark.slow  # heavy (an end-to-end audit or more): `make test-slow` and CI run it; `make test` stays within 5 minutes
def test_the_issues_tampered_covered_ids_are_refused_by_unlearn(r5_model, tmp_path):
    model = _copy(r5_model, tmp_path / "in")
    _cover_everything(model)
    before = _snapshot(model.parent)
    run = run_audit(["unlearn", model.name, "--forget", "class=5", "--method", "amnesiac", "--epochs", "0",
                     "--out", "u.pt"], model.parent)
    line = _assert_refused_and_untouched(run, model.parent, before, "covered.safetensors", "--method relabel")
    assert "amnesiac forgot" not in run.stdout and "checksum" in line


def test_tampered_covered_ids_are_refused_by_audit_run(r5_model, tmp_path):
    model = _copy(r5_model, tmp_path / "in")
    _cover_everything(model)
    before = _snapshot(model.parent)
    run = run_audit(["run", model.name, "--forget", "class=5", "--method", "amnesiac", "--reference", "none",
                     "--attacks", "mia", "--mia", "loss", "--format", "none", "--out", "audit-out", "--quiet"],
                    model.parent)
    line = assert_one_line_failure(run, 2, "covered.safetensors", "--method relabel")
    assert "amnesiac" in line
    assert not (model.parent / "audit-out" / "results.json").exists()
    assert {k: v for k, v in _snapshot(model.parent).items() if not k.startswith("audit-out")} == before


def test_info_and_auto_method_see_a_tampered_log_as_unusable(r5_model, tmp_path, digits):
    from audit.forget import parse_forget
    from audit.unlearn import choose_method
    from audit.inspect import log_status

    model = _copy(r5_model, tmp_path / "in")
    _cover_everything(model)
    mf = load_model(model)
    status = log_status(mf)
    assert status["verified"] is False and "covered.safetensors" in status["problem"]
    assert set(status) == {"dir", "record", "dtype", "total_steps", "batches", "bytes", "verified", "problem", "packing"}
    choice = choose_method("auto", mf, parse_forget("class=5", digits.y_train, digits.num_classes))
    assert choice.name == "relabel" and "covered.safetensors" in choice.reason and choice.log is None
    info = run_audit(["info", model.name], model.parent, in_process=True)
    assert info.returncode == 0 and "NOT verified" in info.stdout


def _rewrite_covered_and_journal(model: Path) -> None:
    """A forger who also fixes the journal's checksum of covered.safetensors: self-consistent, not the original."""
    import hashlib

    log = _log(model)
    _cover_everything(model)
    journal = log / "journal.jsonl"
    lines = journal.read_text().splitlines()
    first = json.loads(lines[0])
    first["covered_sha256"] = hashlib.sha256((log / "covered.safetensors").read_bytes()).hexdigest()
    journal.write_text("\n".join([json.dumps(first, sort_keys=True)] + lines[1:]) + "\n")


def _edit_header(model: Path) -> None:
    header = _log(model) / "header.json"
    doc = json.loads(header.read_text())
    doc["record"] = "all"
    header.write_text(json.dumps(doc, indent=1))


def _drop_covered(model: Path) -> None:
    (_log(model) / "covered.safetensors").unlink()


def _swap_two_steps(model: Path) -> None:
    a, b = sorted((_log(model) / "batches").iterdir())[:2]
    blob = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(blob)


def _remove_log(model: Path) -> None:
    shutil.rmtree(_log(model))


TAMPERING = {
    "covered ids and their journal checksum rewritten": (_rewrite_covered_and_journal, "not the one"),
    "header edited": (_edit_header, "header.json"),
    "covered ids deleted": (_drop_covered, "covered.safetensors"),
    "two step files swapped": (_swap_two_steps, "checksum"),
    "log folder missing": (_remove_log, "is missing"),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_every_file_of_the_log_is_checked(r5_model, tmp_path, case):
    tamper, needle = TAMPERING[case]
    model = _copy(r5_model, tmp_path / "in")
    tamper(model)
    before = _snapshot(model.parent)
    # random=5@0 is the recorded set itself: an intact log would cover it.
    run = run_audit(["unlearn", model.name, "--forget", "random=5@0", "--method", "amnesiac",
                     "--epochs", "0", "--out", "u.pt"], model.parent, in_process=True)
    _assert_refused_and_untouched(run, model.parent, before, needle, "--method relabel")
    with pytest.raises(InputError, match=needle):
        open_trusted_log(load_model(model))


def test_an_intact_log_is_used(r5_model, tmp_path):
    model = _copy(r5_model, tmp_path / "in")
    run = run_audit(["unlearn", model.name, "--forget", "random=5@0", "--method", "amnesiac",
                     "--epochs", "0", "--out", "u.pt"], model.parent, in_process=True)
    assert run.returncode == 0, run.stderr
    assert "amnesiac forgot random=5@0" in run.stdout
    assert open_trusted_log(load_model(model)).closed


def _as_written_before_the_full_digest(model: Path) -> None:
    """Rewrite model.pt the way older versions wrote it: its log record holds the journal's SHA-256 only."""
    doc = torch.load(model, map_location="cpu", weights_only=True)
    del doc["update_log"]["log_sha256"]
    torch.save(doc, model)


def test_an_older_model_file_is_verified_through_its_journal_digest(r5_model, tmp_path):
    model = _copy(r5_model, tmp_path / "ok")
    _as_written_before_the_full_digest(model)
    assert "log_sha256" not in load_model(model).update_log
    run = run_audit(["unlearn", model.name, "--forget", "random=5@0", "--method", "amnesiac",
                     "--epochs", "0", "--out", "u.pt"], model.parent, in_process=True)
    assert run.returncode == 0, run.stderr

    # The journal's digest vouches for the journal, and the journal for every other file.
    for name, (tamper, needle) in TAMPERING.items():
        model = _copy(r5_model, tmp_path / name.replace(" ", "-"))
        _as_written_before_the_full_digest(model)
        tamper(model)
        before = _snapshot(model.parent)
        run = run_audit(["unlearn", model.name, "--forget", "random=5@0", "--method", "amnesiac",
                         "--epochs", "0", "--out", "u.pt"], model.parent, in_process=True)
        _assert_refused_and_untouched(run, model.parent, before, "--method relabel")


def test_a_model_file_that_records_no_digest_is_refused(r5_model, tmp_path):
    model = _copy(r5_model, tmp_path / "in")
    doc = torch.load(model, map_location="cpu", weights_only=True)
    del doc["update_log"]["log_sha256"], doc["update_log"]["journal_sha256"]
    torch.save(doc, model)
    before = _snapshot(model.parent)
    run = run_audit(["unlearn", model.name, "--forget", "random=5@0", "--method", "amnesiac",
                     "--epochs", "0", "--out", "u.pt"], model.parent, in_process=True)
    _assert_refused_and_untouched(run, model.parent, before, "records no digest", "--method relabel")


def test_open_trusted_checks_lazily_read_steps_when_read(r5_model, tmp_path):
    model = _copy(r5_model, tmp_path / "in")
    digest = load_model(model).update_log["log_sha256"]
    log = UpdateLog.open_trusted(_log(model), digest)
    assert log.digest == digest
    step = _log(model) / log.entries[0].file
    blob = bytearray(step.read_bytes())
    blob[-1] ^= 0x01  # same size: only its SHA-256 tells
    step.write_bytes(bytes(blob))
    with pytest.raises(UpdateLogError, match="checksum"):
        UpdateLog.open_trusted(_log(model), digest)
    lazy = UpdateLog.open_trusted(_log(model), digest, lazy_steps=True)
    with pytest.raises(UpdateLogError, match="checksum"):
        lazy.read_step(lazy.entries[0])

"""Issue 16, item 13: a forged update log that is consistent with itself (every file matches
its journal, the journal is well formed) is still refused, because it is not the log whose
digest model.pt records (``log_sha256``, which covers every file of the log).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from audit.modelfile import load_model
from unlearning import UpdateLog, UpdateLogError

from tests.cli_runner import assert_one_line_failure, run_audit


def _copy(model: Path, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(model, folder / model.name)
    log = load_model(model).log_dir
    shutil.copytree(log, folder / log.name)
    return folder / model.name, folder / log.name


def _journal(log: Path) -> list[dict]:
    return [json.loads(line) for line in (log / "journal.jsonl").read_text().splitlines()]


def _write_journal(log: Path, records: list[dict]) -> None:
    (log / "journal.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def _zero_a_step(log: Path) -> None:
    """The first recorded step keeps its ids but its deltas become zeros: removing it would undo nothing."""
    records = _journal(log)
    entry = next(r for r in records[1:] if "file" in r)
    step = log / entry["file"]
    tensors = {k: (torch.zeros_like(v) if not k == "ids" else v) for k, v in load_file(str(step)).items()}
    save_file(tensors, str(step), metadata={"step": str(entry["step"]), "epoch": str(entry["epoch"])})
    entry["sha256"] = hashlib.sha256(step.read_bytes()).hexdigest()
    entry["bytes"] = step.stat().st_size
    _write_journal(log, records)


def _drop_a_step(log: Path) -> None:
    """The first recorded step vanishes from the journal and the folder; the closing line is fixed to match."""
    records = _journal(log)
    entry = next(r for r in records[1:] if "file" in r)
    (log / entry["file"]).unlink()
    records.remove(entry)
    closing = records[-1]
    closing["recorded"] -= 1
    closing["bytes"] -= entry["bytes"]
    _write_journal(log, records)


FORGERIES = {"a step's deltas zeroed": _zero_a_step, "a step dropped": _drop_a_step}


@pytest.mark.parametrize("case", list(FORGERIES))
def test_a_self_consistent_forged_log_is_refused_by_its_digest(r5_model, tmp_path, case):
    model, log = _copy(r5_model, tmp_path / "in")
    recorded = load_model(model).update_log["log_sha256"]
    FORGERIES[case](log)
    # The forgery is consistent with itself: checked against its own journal only, it opens.
    forged = UpdateLog.open_trusted(log, None)
    assert forged.closed and forged.digest != recorded
    with pytest.raises(UpdateLogError, match="digest differs"):
        UpdateLog.open_trusted(log, recorded)
    before = sorted(p.name for p in model.parent.rglob("*"))
    run = run_audit(["unlearn", model.name, "--forget", "random=5@0", "--method", "amnesiac", "--epochs",
                     "0", "--out", "u.pt"], model.parent, in_process=True)
    assert_one_line_failure(run, 2, "not the one its model was saved with", "--method relabel")
    assert sorted(p.name for p in model.parent.rglob("*")) == before  # nothing written

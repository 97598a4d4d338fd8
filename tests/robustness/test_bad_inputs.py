"""Issue 11, items 8 and 10: bad forget specs, ids files, configs, journals and unlearning
options exit 2 with one line before any work starts (not 3 after it), and write nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from audit.data import load_dataset
from audit.errors import InputError
from audit.forget import MAX_SPEC_CHARS, parse_forget
from audit.training import train_model
from unlearning import TrainConfig, UpdateLog, UpdateLogError

from tests.cli_runner import listing, refused, run_audit


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A digits smallcnn after one epoch, recording the batches of class 3."""
    folder = tmp_path_factory.mktemp("trained")
    train_model(load_dataset("digits"), folder / "m.pt", "smallcnn", TrainConfig(epochs=1, seed=0),
                record="class=3", show_progress=False)
    return folder / "m.pt"


@pytest.fixture
def work(tmp_path, trained) -> Path:
    """A folder holding a copy of the model and its update log."""
    shutil.copy(trained, tmp_path / "m.pt")
    shutil.copytree(trained.with_name("m.pt.updates"), tmp_path / "m.pt.updates")
    return tmp_path


def _unlearn(work: Path, *args: str):
    before = listing(work)
    run = run_audit(["unlearn", "m.pt", "--out", "u.pt", *args], work, in_process=True)
    return run, before


@pytest.mark.parametrize("ids, needle", [
    ("3\n99999999999999999999\n", "training id 99999999999999999999"),
    ("3\n-1\n", "training id -1"),
])
def test_ids_file_with_ids_beyond_int64_or_range(work, ids, needle):
    (work / "ids.txt").write_text(ids)
    run, before = _unlearn(work, "--forget", "samples=ids.txt", "--method", "relabel", "--epochs", "1")
    refused(run, 2, needle, "out of range", "ids run from 0 to 1347")
    assert listing(work) == before


@pytest.mark.parametrize("array, needle", [
    (np.zeros(3, dtype=[("id", "<i8"), ("w", "<f4")]), "not integer ids"),
    (np.array([3, 2**62], dtype=np.uint64), "out of range"),
    (np.array([3.0, np.nan]), "non-integer"),
])
def test_npy_ids_that_are_structured_huge_or_nan(work, array, needle):
    np.save(work / "ids.npy", array)
    run, before = _unlearn(work, "--forget", "samples=ids.npy", "--method", "relabel", "--epochs", "1")
    refused(run, 2, "ids.npy", needle)
    assert listing(work) == before


def test_random_spec_with_a_seed_beyond_64_bits(work):
    run, before = _unlearn(work, "--forget", "random=5@99999999999999999999999", "--method", "relabel")
    refused(run, 2, "seed", "too large")
    assert listing(work) == before


def test_a_two_megabyte_forget_spec_is_refused_in_one_short_line(work):
    spec = "class=" + "3," * 1_000_000
    run, before = _unlearn(work, "--forget", spec, "--method", "relabel")
    line = refused(run, 2, "characters long", "samples=PATH")
    assert len(line) < 400
    assert listing(work) == before
    with pytest.raises(InputError):
        parse_forget("class=" + "3" * MAX_SPEC_CHARS, load_dataset("digits").y_train, 10)


def test_forgetting_every_training_example_is_refused(work):
    run, before = _unlearn(work, "--forget", "random=1.0@0", "--method", "retrain")
    refused(run, 2, "selects all 1348 training examples", "no retain set")
    assert listing(work) == before


@pytest.mark.parametrize("method", ["retrain", "finetune", "relabel"])
def test_zero_epochs_that_would_train_nothing_are_refused(work, method):
    run, before = _unlearn(work, "--forget", "class=3", "--method", method, "--epochs", "0")
    refused(run, 2, f"--epochs 0 with --method {method}", "--epochs 1 or more")
    assert listing(work) == before


def test_zero_repair_epochs_remain_valid_for_amnesiac(work):
    run, _ = _unlearn(work, "--forget", "class=3", "--method", "amnesiac", "--epochs", "0", "--quiet")
    assert run.returncode == 0, run.stderr
    assert (work / "u.pt").is_file()


def _edit_journal(work: Path, edit) -> Path:
    journal = work / "m.pt.updates" / "journal.jsonl"
    lines = [json.loads(ln) for ln in journal.read_text().splitlines()]
    edit(lines)
    journal.write_text("".join(json.dumps(ln, sort_keys=True) + "\n" for ln in lines))
    return journal


@pytest.mark.parametrize("edit, needle", [
    (lambda lines: lines[1].update(note="hello"), "line 2 has unexpected keys ['note']"),
    (lambda lines: lines[-1].update(total_steps="many"), "'total_steps' that is not a whole number"),
    (lambda lines: lines[1].update(step=1.5), "'step' that is not a whole number"),
    (lambda lines: lines[1].update(file="../../m.pt"), "outside the log's batches/ folder"),
    (lambda lines: lines.insert(1, [1, 2]), "line 2 is not a JSON object"),
])
def test_journal_lines_with_extra_keys_or_wrong_types(work, edit, needle):
    journal = _edit_journal(work, edit)
    run, before = _unlearn(work, "--forget", "class=3", "--method", "amnesiac")
    refused(run, 2, needle, "cannot be trusted")
    assert listing(work) == before
    with pytest.raises(UpdateLogError, match="cannot be trusted"):
        UpdateLog.open(journal.parent)


@pytest.mark.parametrize("text, needle", [
    ('tool = "x"\n', "'tool'"),
    ("[tool.audit]\nseed = 99999999999999999999999\n", "too large"),
])
def test_config_files_that_are_not_shaped_as_expected(work, text, needle):
    (work / "audit.toml").write_text(text)
    before = listing(work)
    run = run_audit(["run", "m.pt", "--forget", "class=3", "--config", "audit.toml"], work, in_process=True)
    refused(run, 2, "audit.toml", needle)
    assert listing(work) == before

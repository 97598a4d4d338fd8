"""``audit unlearn`` end to end, and every bad input: exit code 2, one line, no output file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from audit.forget import parse_forget
from audit.modelfile import file_sha256, load_model
from audit.unlearn import unlearn_model

from tests.cli_runner import CliRun, run_audit


def _audit(*args: str, in_process: bool = False) -> CliRun:
    return run_audit(list(args), timeout=300, in_process=in_process)


def _copy_model(trained_digits, folder: Path, with_log: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "m.pt"
    shutil.copy(trained_digits.path, target)
    if with_log:
        shutil.copytree(trained_digits.model_file.log_dir, folder / "m.pt.updates")
    return target


def test_unlearn_writes_a_model_file_with_its_lineage(trained_digits, tmp_path):
    out = tmp_path / "out" / "u.pt"
    res = _audit("unlearn", str(trained_digits.path), "--forget", "class=3", "--method", "amnesiac",
                 "--epochs", "0", "--out", str(out))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1 and "forget accuracy" in lines[0] and "retain accuracy" in lines[0]
    info = _audit("info", str(out), "--json")
    assert info.returncode == 0, info.stderr
    doc = json.loads(info.stdout)
    lineage = doc["lineage"]
    assert lineage["method"] == "amnesiac" and lineage["forget"]["spec"] == "class=3"
    assert lineage["parent_sha256"] == file_sha256(trained_digits.path)
    assert lineage["forget"]["n"] == int((trained_digits.data.y_train == 3).sum())
    assert lineage["details"]["batches_removed"] > 0 and doc["update_log"] is None
    assert "lineage: amnesiac forgot class=3" in _audit("info", str(out)).stdout


def test_unlearn_model_relabel_records_the_accuracies(trained_digits):
    data = trained_digits.data
    mf = load_model(trained_digits.path)
    forget = parse_forget("class=3", data.y_train, data.num_classes)
    new, result = unlearn_model(mf, data, forget, "relabel", epochs=1, seed=0, show_progress=False)
    assert new.metrics["forget_accuracy"] <= 0.05
    assert new.metrics["test_accuracy_kept_classes"] >= 0.9
    assert new.metrics["per_class_test_accuracy"][3] <= 0.05
    assert new.lineage["epochs"] == 1 and new.lineage["method"] == "relabel" and result.method == "relabel"


def test_the_auto_choice_hands_its_verified_log_to_the_removal(trained_digits, monkeypatch):
    from audit.unlearn import choose_method, unlearn
    from unlearning import UpdateLog

    data = trained_digits.data
    mf = load_model(trained_digits.path)
    forget = parse_forget("class=3", data.y_train, data.num_classes)
    opened = []
    open_trusted = UpdateLog.open_trusted.__func__

    def counted(cls, *args, **kwargs):
        opened.append(args[0])
        return open_trusted(cls, *args, **kwargs)

    monkeypatch.setattr(UpdateLog, "open_trusted", classmethod(counted))
    choice = choose_method("auto", mf, forget)
    assert choice.name == "amnesiac" and choice.log is not None and len(opened) == 1
    handed = unlearn(mf, data, forget, choice.name, 0, 0, False, choice.log)
    assert len(opened) == 1  # the log the choice verified, not opened and hashed again
    reopened = unlearn(mf, data, forget, "amnesiac", 0, 0, False)
    assert len(opened) == 2
    for a, b in zip(handed.model.state_dict().values(), reopened.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_accuracies_from_one_pass_per_split_equal_those_of_each_subset(trained_digits):
    from audit.forget_accuracy import accuracies, forget_metrics
    from unlearning import accuracy, retain_mask

    data = trained_digits.data
    mf = load_model(trained_digits.path)
    for model in (mf.model, mf.fresh_model(seed=1).eval()):  # trained, and untrained (near-ties everywhere)
        for spec in ("class=3,7", "random=50@2"):
            forget = parse_forget(spec, data.y_train, data.num_classes)
            keep = retain_mask(len(data.y_train), forget.ids)
            kept = ~torch.isin(data.y_test, torch.tensor(forget.classes or (-1,)))
            want = {"forget": accuracy(model, data.x_train[forget.ids], data.y_train[forget.ids]),
                    "retain": accuracy(model, data.x_train[keep], data.y_train[keep]),
                    "test": accuracy(model, data.x_test, data.y_test),
                    "test_other_classes": accuracy(model, data.x_test[kept], data.y_test[kept])}
            assert accuracies(model, data, forget) == want, spec
            gone = forget_metrics(model, data, forget)["forgotten_classes_test_accuracy"]
            assert gone == (accuracy(model, data.x_test[~kept], data.y_test[~kept]) if forget.classes else None)


def _tamper(folder: Path) -> None:
    step = sorted((folder / "m.pt.updates" / "batches").iterdir())[3]
    raw = bytearray(step.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    step.write_bytes(bytes(raw))


def _drop_a_step(folder: Path) -> None:
    sorted((folder / "m.pt.updates" / "batches").iterdir())[0].unlink()


def _rewrite_journal(folder: Path) -> None:
    # A forger who also rewrites the journal's checksums is caught by the model file's journal digest.
    journal = folder / "m.pt.updates" / "journal.jsonl"
    lines = journal.read_text().splitlines()
    first = json.loads(lines[1])
    (folder / "m.pt.updates" / first["file"]).unlink()
    closing = json.loads(lines[-1])
    closing.update(recorded=closing["recorded"] - 1, bytes=closing["bytes"] - first["bytes"])
    journal.write_text("\n".join([lines[0]] + lines[2:-1] + [json.dumps(closing, sort_keys=True)]) + "\n")


BAD = {
    "missing log": (lambda f: None, False, ["--forget", "class=3"], "no update log"),
    "tampered log": (_tamper, True, ["--forget", "class=3"], "checksum"),
    "log missing a step": (_drop_a_step, True, ["--forget", "class=3"], "missing"),
    "log with rewritten journal": (_rewrite_journal, True, ["--forget", "class=3"], "not the one"),
    "log not covering the forget set": (lambda f: None, True, ["--forget", "class=5"], "uncovered"),
    "spec selecting nothing": (lambda f: (f / "ids.txt").write_text("# none\n"), True,
                               ["--forget", "samples={dir}/ids.txt", "--method", "relabel"], "selects no"),
    "unknown method": (lambda f: None, True, ["--forget", "class=3", "--method", "forgetful"], "unknown"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_inputs_exit_2_with_one_line_and_no_output(trained_digits, tmp_path, case):
    prepare, with_log, args, expected = BAD[case]
    folder = tmp_path / "in"
    model = _copy_model(trained_digits, folder, with_log)
    prepare(folder)
    out = tmp_path / "out" / "u.pt"
    # In this process: each case is refused before any work, so the interpreter's start-up would dominate.
    res = _audit("unlearn", str(model), *[a.format(dir=folder) for a in args], "--out", str(out), in_process=True)
    _assert_refused(res, expected, out)
    if case.endswith("log") or "log " in case:
        assert "relabel" in res.stderr


def test_retrain_of_a_file_without_recipe_is_refused(trained_digits, tmp_path):
    bare = tmp_path / "weights.pt"
    torch.save(trained_digits.model_file.model.net.state_dict(), bare)
    out = tmp_path / "out" / "u.pt"
    res = _audit("unlearn", str(bare), "--arch", "smallcnn", "--data", "digits", "--forget", "class=3",
                 "--method", "retrain", "--out", str(out))
    _assert_refused(res, "no training recipe", out)


def test_an_output_path_that_is_a_directory_is_refused(trained_digits, tmp_path):
    out = tmp_path / "a-folder"
    out.mkdir()
    res = _audit("unlearn", str(trained_digits.path), "--forget", "class=3", "--out", str(out))
    _assert_refused(res, "is a directory", out / "u.pt")
    assert list(out.iterdir()) == []


def _assert_refused(res: CliRun, expected: str, out: Path) -> None:
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in res.stderr and res.stdout == ""
    assert not out.exists()
    if out.parent.exists():
        assert [p.name for p in out.parent.iterdir()] == []


def test_an_output_that_is_the_input_model_is_refused(trained_digits):
    before = trained_digits.path.read_bytes()
    res = _audit("unlearn", str(trained_digits.path), "--forget", "class=3", "--method", "relabel",
                 "--out", str(trained_digits.path))
    assert res.returncode == 2 and "is the input model" in res.stderr and "Traceback" not in res.stderr
    assert trained_digits.path.read_bytes() == before


def test_an_output_under_a_file_is_refused(trained_digits, tmp_path):
    (tmp_path / "afile").write_text("x")
    res = _audit("unlearn", str(trained_digits.path), "--forget", "class=3", "--out", str(tmp_path / "afile" / "u.pt"))
    assert res.returncode == 2 and "lies under a file" in res.stderr and "Traceback" not in res.stderr


def test_a_class_removal_keeps_the_full_repair_epoch(trained_digits):
    """A class removal repairs its full epoch (adaptive stopping left the class reconstructable by MI-Face);
    the adaptive repair itself is tested in tests/unlearning/test_amnesiac.py, and sample removals use it."""
    data = trained_digits.data
    mf = load_model(trained_digits.path)
    forget = parse_forget("class=3", data.y_train, data.num_classes)
    new, result = unlearn_model(mf, data, forget, "amnesiac", seed=0, show_progress=False)
    details = new.lineage["details"]
    assert new.lineage["epochs"] == 1 and details["repair_epochs"] == 1 and "repair" not in details
    assert details["batchnorm_reestimated_layers"] == 3
    assert new.metrics["forget_accuracy"] <= 0.05 and new.metrics["test_accuracy_kept_classes"] >= 0.95

"""``audit train`` and ``audit info`` end to end: the acceptance run, bad inputs, determinism."""

from __future__ import annotations

import pytest
import torch

from unlearning import UpdateLog


def test_acceptance_run_reaches_95_percent_and_writes_the_log(acceptance_model):
    run = acceptance_model.train
    assert run.stderr.strip() == ""  # progress bar off, no warnings
    summary = run.stdout.strip().splitlines()
    assert len(summary) == 1
    line = summary[0]
    assert line.startswith("wrote m.pt: train accuracy") and "test accuracy" in line
    assert "update log" in line and "MB" in line  # the summary states the log's size
    assert acceptance_model.path.with_name("m.pt.updates").is_dir()


def test_info_json_reports_accuracy_and_the_log(acceptance_model, digits):
    doc = acceptance_model.info
    assert doc["test_accuracy"] >= 0.95
    assert doc["train_accuracy"] >= doc["test_accuracy"] - 0.05
    per_class = doc["per_class_test_accuracy"]
    assert isinstance(per_class, list) and len(per_class) == 10
    assert all(0.0 <= v <= 1.0 for v in per_class)
    # The per-class figures are consistent with the overall one.
    counts = torch.bincount(digits.y_test, minlength=10).tolist()
    assert sum(a * n for a, n in zip(per_class, counts)) / sum(counts) == pytest.approx(doc["test_accuracy"])

    log = doc["update_log"]
    assert log["verified"] is True and log["problem"] is None
    assert log["record"] == "class=3" and log["dtype"] == "float32" and log["packing"] == "on"
    # Packed (the default with a --record spec): the 137 threes in batches of their own, 64 + 64 + 9;
    # the other 1211 in 18 x 64 + 59 (a short last batch of either kind is merged only below 8).
    assert log["total_steps"] == 20 * (3 + 19)
    assert log["batches"] == 20 * 3
    opened = UpdateLog.open(acceptance_model.path.with_name("m.pt.updates"))
    assert log["batches"] == len(opened.entries) and log["bytes"] == opened.bytes > 0
    # Every recorded batch holds a class-3 example, and every class-3 example is covered.
    threes = torch.nonzero(digits.y_train == 3).flatten()
    assert torch.equal(opened.covered_ids, threes)
    for entry in opened.entries[:25]:
        assert torch.isin(opened.read(entry)[2], threes).any()


def test_model_file_has_ordinary_permissions(acceptance_model):
    import os

    umask = os.umask(0o022)
    os.umask(umask)
    assert acceptance_model.path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_info_text(acceptance_model, cli):
    run = cli.run(["info", "m.pt"], acceptance_model.path.parent)
    assert run.returncode == 0, run.stderr
    text = run.stdout
    assert "smallcnn" in text and "digits" in text and "test accuracy per class" in text
    assert "verified" in text and "NOT verified" not in text


# --- bad inputs: exit 2, one line, nothing written ----------------------------------------------

BAD_INPUTS = {
    "unknown data spec": (["train", "--data", "imagenet"], "unknown data spec 'imagenet'"),
    "missing data root": (["train", "--data", "mnist"], "needs --data-root"),
    "data root not a folder": (["train", "--data", "cifar10", "--data-root", "no-such-dir"], "is not a folder"),
    "mnist files missing": (["train", "--data", "fashion-mnist", "--data-root", "."], "train-images-idx3-ubyte"),
    "out is a directory": (["train", "--out", "existing-dir"], "is a directory"),
    "out inside a file": (["train", "--out", "existing-file/m.pt"], "is a file, not a folder"),
    "unknown arch": (["train", "--arch", "no-such-net"], "unknown architecture 'no-such-net'"),
    "unknown optimizer": (["train", "--optimizer", "adagrad"], "optimizer 'adagrad' is unknown"),
    "bad log dtype": (["train", "--log-dtype", "int8"], "--log-dtype"),
    "unknown option": (["train", "--epoch", "3"], "No such option"),
}

# The console script in a fresh interpreter for these; audit.cli.main in-process for the rest.
IN_A_SUBPROCESS = {"unknown data spec", "out is a directory", "unknown option"}


@pytest.fixture(scope="module")
def bad_input_runs(tmp_path_factory, cli):
    cases = {}
    for name, (args, _) in BAD_INPUTS.items():
        work = tmp_path_factory.mktemp("bad")
        if name == "out is a directory":
            (work / "existing-dir").mkdir()
        if name == "out inside a file":
            (work / "existing-file").write_text("")
        full = list(args) + ([] if "--out" in args else ["--out", "m.pt"]) + ["--epochs", "1"] * (name != "unknown option")
        cases[name] = (full, work)
    return cli.run_many(cases, in_a_subprocess=IN_A_SUBPROCESS)


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(bad_input_runs, cli, name):
    run = bad_input_runs[name]
    cli.one_line_failure(run, 2, BAD_INPUTS[name][1])
    leftovers = [p.name for p in run.cwd.iterdir() if p.name not in ("existing-dir", "existing-file")]
    assert leftovers == [], leftovers
    if name == "out is a directory":
        assert list((run.cwd / "existing-dir").iterdir()) == []


def test_refused_retrain_keeps_the_existing_model_and_log(acceptance_model, tmp_path, cli):
    """A bad --record against an existing model.pt leaves that model and its log untouched."""
    import shutil

    shutil.copy(acceptance_model.path, tmp_path / "m.pt")
    shutil.copytree(acceptance_model.path.with_name("m.pt.updates"), tmp_path / "m.pt.updates")
    before = {p.relative_to(tmp_path): p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    run = cli.run(["train", "--epochs", "1", "--record", "class=42", "--out", "m.pt"], tmp_path)
    cli.one_line_failure(run, 2, "out of range")
    after = {p.relative_to(tmp_path): p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    assert after == before


# --- determinism ------------------------------------------------------------------------------------

def test_same_seed_twice_gives_identical_weights(tmp_path, cli):
    """Once through the console script in a fresh interpreter, once in this process."""
    from audit.data import load_dataset
    from audit.modelfile import load_model
    from audit.training import train_model
    from unlearning import TrainConfig

    run = cli.run(["train", "--epochs", "2", "--seed", "5", "--record", "none", "--out", "a.pt"], tmp_path)
    assert run.returncode == 0, run.stderr
    assert "no update log" in run.stdout
    assert not (tmp_path / "a.pt.updates").exists()
    a = torch.load(tmp_path / "a.pt", weights_only=True)["state_dict"]
    assert load_model(tmp_path / "a.pt").recipe["seed"] == 5

    digits = load_dataset("digits")
    torch.manual_seed(123)  # whatever the global RNG holds, the seed decides
    b = train_model(digits, tmp_path / "b.pt", "smallcnn", TrainConfig(epochs=2, seed=5), record="none",
                    show_progress=False).model_file.model.net.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key

    # A different seed gives different weights (so the check above can fail).
    c = train_model(digits, tmp_path / "c.pt", "smallcnn", TrainConfig(epochs=2, seed=6), record="none",
                    show_progress=False).model_file.model.net.state_dict()
    assert not torch.equal(c["head.3.weight"], a["head.3.weight"])

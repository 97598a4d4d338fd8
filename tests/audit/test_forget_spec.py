"""Forget specs, one grammar for every command: class=, samples=PATH, random=."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audit.errors import InputError
from audit.forget import parse_forget


def _parse(spec, digits):
    return parse_forget(spec, digits.y_train, digits.num_classes)


def test_class_specs(digits):
    three = _parse("class=3", digits)
    assert torch.equal(three.ids, torch.nonzero(digits.y_train == 3).flatten())
    assert three.classes == (3,) and len(three) == int((digits.y_train == 3).sum())
    both = _parse("class=7,3", digits)
    assert both.classes == (3, 7)
    assert torch.equal(both.ids, torch.nonzero((digits.y_train == 3) | (digits.y_train == 7)).flatten())
    assert torch.equal(_parse(" class = 3 , 7 ", digits).ids, both.ids)
    described = both.describe()
    assert {k: described[k] for k in ("spec", "n", "classes", "file_sha256")} == {
        "spec": "class=7,3", "n": len(both), "classes": [3, 7], "file_sha256": None}
    assert described["ids_sha256"] == _parse("class=3,7", digits).describe()["ids_sha256"]  # the ids, not the words


def test_a_request_is_recorded_with_the_digests_of_its_ids_and_of_its_file(digits, tmp_path):
    """The ids digest is what `sort -n -u ids.txt | sha256sum` gives; the file digest, the file's bytes'."""
    import hashlib

    ids = tmp_path / "ids.txt"
    ids.write_text("# deletion requests of November\n17\n3\n17\n1200\n")
    described = _parse(f"samples={ids}", digits).describe()
    assert described["ids_sha256"] == hashlib.sha256(b"3\n17\n1200\n").hexdigest()
    assert described["file_sha256"] == hashlib.sha256(ids.read_bytes()).hexdigest()
    other = tmp_path / "same-ids.csv"
    other.write_text("id\n1200\n3\n17\n")
    again = _parse(f"samples={other}", digits).describe()
    assert again["ids_sha256"] == described["ids_sha256"] and again["file_sha256"] != described["file_sha256"]
    assert _parse("random=0.01@0", digits).describe()["file_sha256"] is None


@pytest.mark.parametrize("fmt", ["txt", "csv", "npy", "npy-float"])
def test_samples_files(digits, tmp_path, fmt):
    wanted = [5, 17, 3, 17, 1347, 0]
    if fmt == "txt":
        path = tmp_path / "ids.txt"
        path.write_text("# ids to forget\n" + "\n".join(map(str, wanted)) + "\n")
    elif fmt == "csv":
        path = tmp_path / "ids.csv"
        path.write_text("id\n" + "\n".join(map(str, wanted)) + "\n")
    elif fmt == "npy":
        path = tmp_path / "ids.npy"
        np.save(path, np.array(wanted, dtype=np.int32))
    else:
        path = tmp_path / "ids.npy"
        np.save(path, np.array(wanted, dtype=np.float64))
    fs = _parse(f"samples={path}", digits)
    assert fs.ids.tolist() == [0, 3, 5, 17, 1347]
    assert fs.ids.dtype == torch.int64 and fs.classes is None


def test_samples_comma_separated_row(digits, tmp_path):
    path = tmp_path / "ids.csv"
    path.write_text("4,8,15,16,23,42\n")
    assert _parse(f"samples={path}", digits).ids.tolist() == [4, 8, 15, 16, 23, 42]


@pytest.mark.parametrize("amount, count", [("0.01", 13), ("50", 50), ("1", 1), ("1.0", 1348)])
def test_random_specs(digits, amount, count):
    fs = _parse(f"random={amount}@7", digits)
    assert len(fs) == count
    assert fs.ids.unique().numel() == count
    assert int(fs.ids.min()) >= 0 and int(fs.ids.max()) < len(digits.y_train)
    assert torch.equal(fs.ids, fs.ids.sort().values)
    assert torch.equal(fs.ids, _parse(f"random={amount}@7", digits).ids)  # the seed fixes the draw


def test_random_seed_changes_the_draw(digits):
    assert not torch.equal(_parse("random=50@1", digits).ids, _parse("random=50@2", digits).ids)


@pytest.mark.parametrize("spec, message", [
    ("class=", "malformed"),
    ("class", "malformed"),
    ("class=three", "not a whole number"),
    ("class=-1", "not a whole number"),
    ("class=10", "out of range"),
    ("class=3,10", "out of range"),
    ("colour=3", "unknown forget spec"),
    ("random=abc", "malformed"),
    ("random=1.5@0", "must lie in (0, 1]"),
    ("random=5000@0", "asks for 5000 ids"),
    ("random=0@0", "selects no training example"),
    ("samples=/nonexistent/ids.txt", "not found"),
])
def test_bad_specs_raise_one_line(digits, spec, message):
    with pytest.raises(InputError) as err:
        _parse(spec, digits)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("content, message", [
    ("1\n1348\n", "training id 1348"),
    ("-1\n", "training id -1"),
    ("1\nseven\n", "'seven' is not a training id"),
    ("", "selects no training example"),
    ("id\n", "selects no training example"),
    ("5,3\n10,3\n", "several columns"),
    ("index,label\n5,3\n", "none is named 'id'"),
])
def test_bad_samples_files(digits, tmp_path, content, message):
    path = tmp_path / "ids.txt"
    path.write_text(content)
    with pytest.raises(InputError) as err:
        _parse(f"samples={path}", digits)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_csv_with_an_id_column(digits, tmp_path):
    path = tmp_path / "requests.csv"
    path.write_text("label,id\n3,5\n3,10\n")
    assert _parse(f"samples={path}", digits).ids.tolist() == [5, 10]


def test_bad_npy_files(digits, tmp_path):
    np.save(tmp_path / "half.npy", np.array([1.5, 2.0]))
    with pytest.raises(InputError, match="non-integer"):
        _parse(f"samples={tmp_path / 'half.npy'}", digits)
    np.save(tmp_path / "empty.npy", np.array([], dtype=np.int64))
    with pytest.raises(InputError, match="selects no training example"):
        _parse(f"samples={tmp_path / 'empty.npy'}", digits)
    mask = np.zeros(20, dtype=bool)
    mask[[5, 10]] = True
    np.save(tmp_path / "mask.npy", mask)
    with pytest.raises(InputError, match="boolean mask"):
        _parse(f"samples={tmp_path / 'mask.npy'}", digits)
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(InputError, match="cannot read training ids"):
        _parse(f"samples={tmp_path / 'junk.npy'}", digits)


# --- through the CLI: exit 2, one line, nothing written ------------------------------------------

BAD_RECORD_SPECS = {
    "malformed": ("bogus", "malformed forget spec"),
    "class out of range": ("class=10", "out of range"),
    "class not a number": ("class=3,x", "not a whole number"),
    "id out of range": ("samples=INPUTS/oob.txt", "training id 5000"),
    "empty ids file": ("samples=INPUTS/empty.txt", "selects no training example"),
    "empty npy": ("samples=INPUTS/empty.npy", "selects no training example"),
    "missing ids file": ("samples=INPUTS/missing.txt", "not found"),
    "random selects nothing": ("random=0@1", "selects no training example"),
}
# These go through the installed console script in a fresh interpreter; the rest call the
# same entry point (audit.cli.main) in this process, which saves an interpreter start each.
IN_A_SUBPROCESS = {"malformed", "class out of range", "empty ids file"}


@pytest.fixture(scope="module")
def bad_record_runs(tmp_path_factory, cli):
    inputs = tmp_path_factory.mktemp("inputs")
    (inputs / "oob.txt").write_text("3\n5000\n")
    (inputs / "empty.txt").write_text("")
    np.save(inputs / "empty.npy", np.array([], dtype=np.int64))
    cases = {}
    for name, (spec, _) in BAD_RECORD_SPECS.items():
        work = tmp_path_factory.mktemp("work")
        args = ["train", "--epochs", "1", "--record", spec.replace("INPUTS", str(inputs)), "--out", "m.pt"]
        cases[name] = (args, work)
    return cli.run_many(cases, in_a_subprocess=IN_A_SUBPROCESS)


@pytest.mark.parametrize("name", list(BAD_RECORD_SPECS))
def test_bad_record_spec_through_the_cli(bad_record_runs, cli, name):
    run = bad_record_runs[name]
    cli.one_line_failure(run, 2, BAD_RECORD_SPECS[name][1])
    assert list(run.cwd.iterdir()) == [], "a refused spec must leave no model file and no log"


def test_samples_spec_through_the_cli_records_those_ids(digits, tmp_path, cli):
    from unlearning import UpdateLog

    (tmp_path / "forget.csv").write_text("id\n11\n400\n1200\n")
    run = cli.run(["train", "--epochs", "1", "--record", "samples=forget.csv", "--out", "m.pt"], tmp_path)
    assert run.returncode == 0, run.stderr
    log = UpdateLog.open(tmp_path / "m.pt.updates")
    assert log.covered_ids.tolist() == [11, 400, 1200]
    assert 1 <= len(log.entries) <= 3
    recorded = torch.cat([log.read(e)[2] for e in log])
    assert set(recorded.tolist()) >= {11, 400, 1200}
    assert log.header["record"] == "samples=forget.csv"

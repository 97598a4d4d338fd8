"""The command line as typer/click users expect it (issue 25, item 5): "did you mean" for a
near miss, errors that name the page answering them, ``audit info`` for the user's own
models, plain progress lines without a terminal. Cheap: untrained weights, no audit run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from audit.progress import plain_lines_without_terminal, progress_bar
from tests.cli_runner import assert_one_line_failure, run_audit

ROOT = Path(__file__).resolve().parents[2]
OWN = ROOT / "examples" / "own_model"


@pytest.fixture(scope="module")
def own(tmp_path_factory) -> Path:
    """The user's network (examples/own_model/mynet.py), untrained, as a bare state_dict, and the digits as npz."""
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("own")
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)
    np.savez(folder / "digits.npz", x_train=x[:1300], y_train=digits.target[:1300], x_test=x[1300:],
             y_test=digits.target[1300:])
    sys.path.insert(0, str(OWN))
    try:
        from mynet import make_net
    finally:
        sys.path.remove(str(OWN))
    torch.manual_seed(0)
    torch.save(make_net().state_dict(), folder / "weights.pt")
    return folder


def test_a_factory_written_with_a_dot_gets_did_you_mean(own):
    run = run_audit(["info", "weights.pt", "--arch", "mynet.make_net", "--data", "npz:digits.npz"], own,
                    in_process=True)
    assert_one_line_failure(run, 2, "unknown architecture 'mynet.make_net'", "did you mean mynet:make_net",
                            "docs/own-model.md")


def test_a_misspelt_architecture_gets_did_you_mean(tmp_path):
    run = run_audit(["train", "--arch", "resnet19", "--out", "m.pt"], tmp_path, in_process=True)
    assert_one_line_failure(run, 2, "unknown architecture 'resnet19'", "did you mean resnet18")
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("flag, value, meant", [("--method", "amnesic", "amnesiac"),
                                                ("--reference", "retrained", "retrain"),
                                                ("--inconclusive", "fial", "fail"),
                                                ("--executor", "rya", "ray"),
                                                ("--mia", "lira_onlne", "lira_online")])
def test_a_mistyped_option_value_gets_did_you_mean_and_the_choices(tmp_path, flag, value, meant):
    run = run_audit(["run", "model.pt", "-f", "class=3", flag, value], tmp_path, in_process=True)
    line = assert_one_line_failure(run, 2, f"{flag} '{value}' is unknown", f"did you mean {meant}?")
    assert "Use one of:" in line and not (tmp_path / "audit-out").exists()


def test_a_value_far_from_every_choice_gets_the_choices_only(tmp_path):
    run = run_audit(["run", "model.pt", "-f", "class=3", "--method", "zzz"], tmp_path, in_process=True)
    line = assert_one_line_failure(run, 2, "--method 'zzz' is unknown; use one of: auto (the default), amnesiac")
    assert "did you mean" not in line


def test_the_fit_signature_error_points_to_the_page_that_answers_it(own):
    run = run_audit(["run", "weights.pt", "--data", "npz:digits.npz", "--arch", "mynet:make_net", "--code-path",
                     str(OWN), "--train", "mynet:make_net", "-f", "class=3"], own, in_process=True)
    line = assert_one_line_failure(run, 2, "--train mynet:make_net has the signature", "see docs/own-model.md")
    page = line.split("see docs/own-model.md, '")[1].split("'")[0]
    text = (ROOT / "docs" / "own-model.md").read_text()
    assert f"## {page}" in text  # the section named exists
    section = text.split(f"## {page}")[1].split("\n## ")[0]
    assert "def fit(model" in section and "epochs" in section  # and it holds the signature


def test_info_describes_the_users_own_model_as_run_loads_it(own):
    run = run_audit(["info", "weights.pt", "--arch", "mynet:make_net", "--code-path", str(OWN), "--data",
                     "npz:digits.npz", "--json"], own, in_process=True)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["kind"] == "state_dict" and doc["arch"] == "mynet:make_net" and doc["num_classes"] == 10
    assert doc["input_shape"] == [1, 8, 8] and 0 <= doc["test_accuracy"] <= 1
    assert run.stderr == ""  # silence on success; what loading assumed is part of the description
    [assumed] = doc["assumed"]
    assert assumed.startswith("weights.pt records no input normalisation")
    text = run_audit(["info", "weights.pt", "--arch", "mynet:make_net", "--code-path", str(OWN), "--data",
                      "npz:digits.npz"], own, in_process=True).stdout
    assert f"assumed: {assumed}" in text.splitlines()


def test_info_describes_a_bare_state_dict_from_its_tensors(own):
    run = run_audit(["info", "weights.pt"], own, in_process=True)
    assert run.returncode == 0, run.stderr
    sd = torch.load(own / "weights.pt", weights_only=True)
    values = sum(t.numel() for t in sd.values())
    assert run.stdout.startswith(f"weights.pt: bare state_dict, {len(sd)} tensors, {values:,} values (float32)")
    assert "pass --arch NAME (or your package.module:factory) and --data SPEC" in run.stdout
    doc = json.loads(run_audit(["info", "weights.pt", "--data", "npz:digits.npz", "--json"], own,
                               in_process=True).stdout)
    assert doc["tensors"] == len(sd) and doc["to_say_more"].startswith("pass --arch NAME")


def test_info_refuses_a_factory_it_cannot_import_in_one_line(own):
    run = run_audit(["info", "weights.pt", "--arch", "notmynet:make_net", "--data", "npz:digits.npz"], own,
                    in_process=True)
    assert_one_line_failure(run, 2, "module 'notmynet' cannot be imported", "--code-path DIR")


def test_without_a_terminal_progress_is_a_plain_line_per_finished_model(capsys):
    from audit.executor import LocalExecutor

    plain_lines_without_terminal(True)
    try:
        out = LocalExecutor(show_progress=True, workers=1).map(lambda n: n * n, [1, 2, 3], "squares")
        with progress_bar("a step of batches", 50) as advance:
            for _ in range(50):
                advance(1)
        with pytest.raises(RuntimeError), progress_bar("a failed step", 5) as advance:
            raise RuntimeError("stopped")
        with progress_bar("quiet", 3, enabled=False, each=True) as advance:
            advance(1)
    finally:
        plain_lines_without_terminal(False)
    assert out == [1, 4, 9]
    lines = capsys.readouterr().err.splitlines()
    assert [ln.split(" (")[0] for ln in lines] == ["squares: 1/3 done", "squares: 2/3 done", "squares: 3/3 done",
                                                    "a step of batches: done"]
    assert all(ln.endswith("s)") and float(ln.rsplit("(", 1)[1][:-2]) >= 0 for ln in lines)


def test_the_library_alone_prints_no_progress_without_a_terminal(capsys):
    with progress_bar("library", 2, each=True) as advance:
        advance(2)
    assert capsys.readouterr().err == ""


def test_audit_train_prints_plain_progress_lines_and_nothing_with_quiet(tmp_path):
    run = run_audit(["train", "--epochs", "1", "-o", "m.pt"], tmp_path, env={"AUDIT_NO_PROGRESS": None},
                    in_process=True)
    assert run.returncode == 0, run.stderr
    [line] = run.error_lines()
    assert line.startswith("training smallcnn on digits: done (") and line.endswith("s)")
    run = run_audit(["train", "--epochs", "1", "-q", "-o", "m2.pt"], tmp_path, env={"AUDIT_NO_PROGRESS": None},
                    in_process=True)
    assert run.returncode == 0 and run.stdout == "" and run.stderr == ""


def test_every_settings_key_is_documented_in_cli_md():
    from audit.config import KEYS, RECIPE_KEYS

    text = (ROOT / "docs" / "cli.md").read_text()
    settings = text.split("## Settings files")[1].split("\n## ")[0]
    missing = [key for key in KEYS if f"`{key}`" not in settings and f"`[tool.audit.{key}]`" not in settings]
    assert not missing, f"docs/cli.md, 'Settings files', does not name: {missing}"
    assert all(f"--{key.replace('_', '-')}" in settings for key in RECIPE_KEYS if key != "seed")


def test_ray_is_an_optional_extra_that_the_tests_still_install():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.lower().startswith("ray")]
    assert any(d.startswith("ray") for d in project["optional-dependencies"]["ray"])
    assert any(d.startswith("ray") for d in project["optional-dependencies"]["test"])  # make test runs Ray's tests


def test_executor_ray_without_ray_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed: importing it fails
    (tmp_path / "model.pt").write_bytes(b"not read: the missing extra is said first")
    run = run_audit(["run", "model.pt", "-f", "class=3", "--executor", "ray"], tmp_path, in_process=True)
    assert_one_line_failure(run, 2, "--executor ray needs Ray", "amnesia-audit[ray] (pip install 'ray>=2.9')")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]

    from audit.errors import InputError
    from audit.executor import RayExecutor

    with pytest.raises(InputError, match=r"amnesia-audit\[ray\]"):
        RayExecutor().start()


def test_a_mistyped_gate_metric_gets_did_you_mean_and_the_page(tmp_path):
    from tests.reports.report_documents import write_results

    results = write_results(tmp_path / "audit-out")
    run = run_audit(["gate", results, "--fail-on", "residual_leakage_uper>0.5"], tmp_path, in_process=True)
    assert_one_line_failure(run, 2, "unknown metric 'residual_leakage_uper'", "did you mean residual_leakage_upper?",
                            "(docs/ci.md, 'Gates')")
    run = run_audit(["gate", results, "--fail-on", "leakiness>0.1"], tmp_path, in_process=True)
    line = assert_one_line_failure(run, 2, "unknown metric 'leakiness' in gate 'leakiness>0.1'; known: residual_leakage, ")
    assert "did you mean" not in line


def test_a_mistyped_data_or_forget_spec_gets_did_you_mean():
    from audit.data import load_dataset
    from audit.errors import InputError
    from audit.forget import parse_forget

    with pytest.raises(InputError, match=r"unknown data spec 'digit'; did you mean digits\? Use digits, mnist"):
        load_dataset("digit")
    with pytest.raises(InputError, match=r"unknown data spec 'imagenet': use digits"):
        load_dataset("imagenet")
    y = torch.arange(20) % 10
    with pytest.raises(InputError, match=r"unknown forget spec 'clas' in 'clas=3'; did you mean class=\? Use class=3"):
        parse_forget("clas=3", y, 10)
    with pytest.raises(InputError, match=r"unknown forget spec 'colour' in 'colour=3': use class=3"):
        parse_forget("colour=3", y, 10)


def test_executor_ray_with_a_broken_ray_is_one_line_from_a_real_process(own, tmp_path):
    """A subprocess, so that the run goes through the supervisor that --executor ray starts: a Ray
    that is found but cannot be imported is still the missing extra, exit 2, one line."""
    fake = tmp_path / "fake"
    (fake / "ray").mkdir(parents=True)
    (fake / "ray" / "__init__.py").write_text("raise ImportError('no Ray here')\n")
    path = os.pathsep.join([str(fake), str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    run = run_audit(["run", own / "weights.pt", "--data", f"npz:{own / 'digits.npz'}", "--arch", "mynet:make_net",
                     "--code-path", OWN, "--train", "mynet:fit", "--normalize", "0,1", "-f", "class=3", "--executor", "ray", "-o", tmp_path / "out"], tmp_path,
                    env={"PYTHONPATH": path}, timeout=300)
    assert_one_line_failure(run, 2, "--executor ray needs Ray", "amnesia-audit[ray] (pip install 'ray>=2.9')")
    assert not (tmp_path / "out").exists()

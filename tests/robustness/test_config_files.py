"""Issue 16, item 1: code named by a config file nobody named on the command line.

A ``pyproject.toml`` or ``audit.toml`` in the current folder is read (the pytest and ruff
convention), but the run says in one line which file and which keys it took; a factory
the run does not need (a toolkit model.pt records its architecture) is never imported;
``--isolated`` ignores every config file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from audit.config import read_settings
from audit.data import load_dataset
from audit.training import train_model
from unlearning import TrainConfig

from tests.cli_runner import refused, run_audit

# Importing this module, or calling its factory, leaves a marker: proof that code ran.
EVIL = '''
import pathlib
pathlib.Path("IMPORTED").touch()


def f(**kwargs):
    pathlib.Path("CALLED").touch()
    raise RuntimeError("the factory ran")
'''


@pytest.fixture(scope="module")
def toolkit_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "model.pt"
    train_model(load_dataset("digits"), path, "smallcnn", TrainConfig(epochs=1, seed=0), record="none",
                show_progress=False)
    return path


def _folder(tmp_path: Path, module: str, config: str, name: str = "pyproject.toml") -> Path:
    (tmp_path / f"{module}.py").write_text(EVIL)
    (tmp_path / name).write_text(config)
    return tmp_path


def test_a_toolkit_model_never_imports_the_factory_a_pyproject_names(tmp_path, toolkit_model):
    work = _folder(tmp_path, "evil_a", '[tool.audit]\narch = "evil_a:f"\ncode_path = ["."]\n')
    (work / "model.pt").symlink_to(toolkit_model)
    # class=99 does not exist: refused after the model has loaded, before any training.
    run = run_audit(["run", "model.pt", "--forget", "class=99", "--format", "none"], work, in_process=True)
    assert run.returncode == 2, run.stderr
    note, error = run.error_lines()
    assert note.startswith(f"note: settings from {work / 'pyproject.toml'} [tool.audit]: code_path; not used: "
                           "arch (the model file records its architecture)"), note
    assert "--isolated" in note and error.startswith("error: ") and "99" in error
    assert not (work / "IMPORTED").exists()


def test_a_pyproject_that_supplies_the_factory_is_said_by_name(tmp_path):
    work = _folder(tmp_path, "evil_b", '[tool.audit]\narch = "evil_b:f"\narch_args = {width = 3}\ncode_path = ["."]\n')
    torch.save({"w": torch.zeros(2)}, work / "weights.pt")
    run = run_audit(["run", "weights.pt", "--data", "digits", "--forget", "class=3", "--quiet"], work, in_process=True)
    assert run.returncode == 2, run.stderr
    note, error = run.error_lines()  # said even with --quiet: a file nobody named supplies code that runs
    assert note == (f"note: settings from {work / 'pyproject.toml'} [tool.audit]: arch, arch_args, code_path "
                    "(found in the current folder; --isolated ignores config files)")
    assert "the factory ran" in error and (work / "CALLED").exists()  # the convention holds, and was announced


def test_isolated_ignores_every_config_file(tmp_path):
    work = _folder(tmp_path, "evil_c", 'arch = "evil_c:f"\ncode_path = ["."]\n', name="audit.toml")
    torch.save({"w": torch.zeros(2)}, work / "weights.pt")
    run = run_audit(["run", "weights.pt", "--data", "digits", "--forget", "class=3", "--isolated"], work,
                    in_process=True)
    refused(run, 2, "weights.pt is a bare state_dict: pass --arch")
    assert not (work / "IMPORTED").exists()
    run = run_audit(["run", "weights.pt", "--forget", "class=3", "--isolated", "--config", "audit.toml"],
                    work, in_process=True)
    refused(run, 2, "--isolated ignores every config file", "--config audit.toml")


def test_a_builtin_function_is_never_a_factory(tmp_path):
    work = _folder(tmp_path, "unused", '[tool.audit]\narch = "os:system"\narch_args = {command = "touch PWNED"}\n')
    torch.save({"w": torch.zeros(2)}, work / "weights.pt")
    run = run_audit(["run", "weights.pt", "--data", "digits", "--forget", "class=3"], work, in_process=True)
    assert run.returncode == 2 and "--arch os:system is a built-in function" in run.error_lines()[-1]
    assert not (work / "PWNED").exists()


def test_read_settings_says_where_and_what(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.audit]\nseed = 4\ntrain = "m:fit"\n')
    source = read_settings(None, tmp_path)
    assert source.keys == ["seed", "train"] and not source.named and source.path == tmp_path / "pyproject.toml"
    assert read_settings(None, tmp_path, isolated=True).path is None
    assert read_settings(tmp_path / "pyproject.toml").named

"""Issue 16, items 3 to 6: the user's own factory and training function, as users write them.

A ``sys.exit(0)`` inside user code is a failed step (exit 3), never a silent exit 0; a
``fit`` that returns another network is refused; a model whose output does not fit the
data is refused by one probe forward pass before any training (exit 2); a model near
chance is flagged loudly; ``def fit(..., epochs=25)`` gets its own default for the full
recipe. Real torch on the embedded digits (as an npz), a linear model: seconds each.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.cli_runner import refused, run_audit

USER = '''
import sys
import torch
from torch import nn
from torch.nn import functional as F


def make(outputs=10):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, outputs))


def _train(model, x, y, epochs):
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    for _ in range(epochs):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def fit_natural(model, x, y, seed=0, epochs=25):
    with open("epochs.log", "a") as fh:
        fh.write(f"{epochs}\\n")
    return _train(model, x, y, epochs)


def fit_exits(model, x, y, *, seed, epochs=None):
    sys.exit(0)


def fit_raises(model, x, y, *, seed, epochs=None):
    raise ValueError("the batch does not fit")


def fit_other_model(model, x, y, *, seed, epochs=None):
    return _train(nn.Sequential(nn.Linear(64, 10)), x.flatten(1), y, 2)


def _factory_calls():
    # The calls are counted on disk: a factory is tried in a process of its own, then called in the audit's.
    with open("factory-calls.log", "a+") as fh:
        fh.write("1\\n")
        fh.seek(0)
        return len(fh.read().split())


def make_exits_later():
    if _factory_calls() > 2:  # the model loads (tried, then built); the first reference model ends the interpreter
        raise SystemExit(0)
    return make()


def make_exits_now():
    raise SystemExit(0)


def make_os_exit_later():
    if _factory_calls() > 2:
        import os
        os._exit(0)
    return make()


def fit_os_exit(model, x, y, *, seed, epochs=None):
    import os
    os._exit(0)


def fit_hostile(model, x, y, *, seed, epochs=None):
    """Everything a training loop may do to its process: none of it may reach the audit."""
    import os
    import threading
    import time
    torch.set_num_threads(4)
    torch.set_default_dtype(torch.float64)
    threading.Thread(target=lambda: time.sleep(3600)).start()  # not a daemon: it never ends
    os.chdir("/")
    return _train(model, x, y, 2)
'''

FAST = ["--method", "relabel", "--reference-models", "1", "--retrains", "1", "--mia", "loss", "--attacks", "mia",
        "--format", "none"]


@pytest.fixture(scope="module")
def data_npz(tmp_path_factory) -> Path:
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("usercode-data")
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)
    np.savez(folder / "d.npz", x_train=x[:1300], y_train=d.target[:1300], x_test=x[1300:], y_test=d.target[1300:])
    return folder / "d.npz"


def _line_of(text: str) -> int:
    return next(i for i, line in enumerate(USER.splitlines(), 1) if text in line)


@dataclass
class Work:
    path: Path
    module: str

    def __truediv__(self, name: str) -> Path:
        return self.path / name


@pytest.fixture
def work(tmp_path, data_npz, monkeypatch, request) -> Work:
    """A folder with the data, the user's module (a name of its own per test: imports are
    cached in this process) and a trained linear model's state_dict ``lin.pt``."""
    monkeypatch.setenv("AMNESIA_AUDIT_CACHE", str(tmp_path / "cache"))
    name = "user_" + request.node.name.replace("[", "_").replace("]", "").replace("-", "_")
    (tmp_path / f"{name}.py").write_text(USER)
    (tmp_path / "d.npz").symlink_to(data_npz)
    d = np.load(data_npz)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.tensor(d["x_train"]).unsqueeze(1), torch.tensor(d["y_train"]).long()
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    torch.save(model.state_dict(), tmp_path / "lin.pt")
    return Work(tmp_path, name)


def _run(work: Work, factory: str, fit: str | None, *extra: str, model: str = "lin.pt"):
    mod = work.module
    args = ["run", model, "--data", "npz:d.npz", "--arch", f"{mod}:{factory}", "--code-path", ".",
            "--normalize", "0,1", "--forget", "class=3", "--out", "out", *FAST, *extra]
    if fit:
        args += ["--train", f"{mod}:{fit}"]
    return run_audit(args, work.path, in_process=True)


def _target(work: Work) -> dict:
    [target] = json.loads((work / "out" / "results.json").read_text())["targets"]
    return target


@pytest.mark.parametrize("fit", ["fit_exits", "fit_raises"])
def test_a_fit_that_exits_or_raises_is_a_failed_step_naming_it(work, fit):
    run = _run(work, "make", fit)
    assert run.returncode == 3, run.stderr
    error = _target(work)["error"]
    want = "SystemExit: 0" if fit == "fit_exits" else "ValueError: the batch does not fit"
    assert f"--train {work.module}:{fit} raised {want}" in error
    assert f"{fit}(<Classifier>, <tensor 1300x1x8x8 float32>, <tensor 1300 int64>, seed=0, epochs=2)" in error
    line = _line_of("raise ValueError" if fit == "fit_raises" else "sys.exit(0)")
    assert f"{work.module}.py:{line}" in error, error
    assert "ERROR class=3" in run.stderr


@pytest.mark.parametrize("factory, said", [("make_exits_later", "raised SystemExit"),
                                            ("make_os_exit_later", "ended its process (exit status 0")],
                         ids=["sys_exit", "os_exit"])
def test_a_factory_that_exits_after_loading_is_a_failed_step(work, factory, said):
    run = _run(work, factory, None, "--epochs", "1")
    assert run.returncode == 3, run.stderr
    assert said in _target(work)["error"] and f"{factory}()" in _target(work)["error"]


def test_a_factory_that_exits_while_the_model_loads_is_bad_input(work):
    """Issue 23 (minor): before any work, a factory that cannot build the model is the input's fault: exit 2, one
    line naming it, nothing written (docs/own-model.md says so; exit 3 is for a factory failing later)."""
    run = _run(work, "make_exits_now", None, "--epochs", "1")
    refused(run, 2, f"model factory --arch {work.module}:make_exits_now raised SystemExit", "check the factory")
    assert not (work / "out").exists()


def test_a_fit_returning_another_network_is_refused(work):
    run = _run(work, "make", "fit_other_model")
    assert run.returncode == 3, run.stderr
    error = _target(work)["error"]
    assert f"training function {work.module}:fit_other_model returned a Sequential" in error
    assert "not the model it was given" in error


def test_natural_epochs_default_is_the_full_recipe(work):
    """``def fit(model, x, y, seed=0, epochs=25)``: the retrain gets 25 (its own default), relabel 2."""
    run = _run(work, "make", "fit_natural")
    assert run.returncode in (0, 1), run.stderr
    calls = (work / "epochs.log").read_text().split()
    assert calls.count("25") == 1 and calls.count("2") == 1, calls  # one retrain, one relabel
    assert _target(work)["error"] is None


@pytest.mark.parametrize("outputs", [20, 3])
def test_a_model_whose_outputs_do_not_fit_the_classes_is_refused_before_training(work, outputs):
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(64, outputs)).state_dict(), work / "wrong.pt")
    run = _run(work, "make", "fit_natural", "--arch-args", json.dumps({"outputs": outputs}), model="wrong.pt")
    refused(run, 2, f"wrong.pt answers 3 images of npz:d.npz with output (3, {outputs}), not (3, 10)")
    assert not (work / "epochs.log").exists() and not (work / "out").exists()  # nothing trained, nothing written


def test_an_export_with_a_fixed_batch_size_is_refused_before_training(work):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    model.load_state_dict(torch.load(work / "lin.pt"))
    torch.export.save(torch.export.export(model, (torch.rand(2, 1, 8, 8),)), str(work / "fixed.pt2"))
    run = _run(work, "make", "fit_natural", "--original", "lin.pt", "--method", "auto", model="fixed.pt2")
    refused(run, 2, "fixed.pt2 fails on a batch of 3", "fixed batch size", "torch.export.Dim")
    assert not (work / "epochs.log").exists()


def test_a_model_near_chance_is_flagged_in_the_summary_and_the_report(work):
    torch.manual_seed(1)
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).state_dict(), work / "untrained.pt")
    run = _run(work, "make", None, "--method", "none", "--reference", "none", "--quiet", model="untrained.pt")
    assert run.returncode in (1, 0), run.stderr
    warning = [ln for ln in run.stderr.splitlines() if ln.startswith("WARNING: the original model scores")]
    assert len(warning) == 1 and "near chance" in warning[0] and "--arch, --normalize or --data" in warning[0]
    notes = json.loads((work / "out" / "results.json").read_text())["notes"]
    assert sum(n.startswith("Warning: the original model scores") for n in notes) == 1
    from reports import render_files

    [html] = render_files(work / "out" / "results.json", ["html"], work / "out")
    assert "<strong>Warning:</strong> the original model scores" in html.read_text()
    # Control: the trained model is not flagged.
    run = _run(work, "make", None, "--method", "none", "--reference", "none", "--quiet")
    assert "WARNING" not in run.stderr


def test_a_module_that_exits_while_importing_is_refused_not_a_silent_exit_0(work):
    (work / "exits_on_import.py").write_text("import sys\nsys.exit(0)\n")
    run = run_audit(["run", "lin.pt", "--data", "npz:d.npz", "--arch", "exits_on_import:make",
                     "--code-path", ".", "--forget", "class=3", "--out", "out", *FAST], work.path, in_process=True)
    refused(run, 2, "--arch exits_on_import:make: importing exits_on_import failed (SystemExit: 0)")


def test_guarded_user_functions_keep_their_identity_and_pickle(work):
    """The guard is invisible to the cache key (module, name, source digest) and travels to Ray workers."""
    import functools
    import importlib
    import pickle
    import sys

    from audit.usercode import code_identity, guard

    sys.path.insert(0, str(work.path))
    try:
        user = importlib.import_module(work.module)
    finally:
        sys.path.remove(str(work.path))
    for fn in (user.fit_natural, functools.partial(user.make, outputs=10), nn.Linear):
        guarded = guard(fn, "test")
        assert code_identity(guarded) == code_identity(fn)
        assert code_identity(pickle.loads(pickle.dumps(guarded))) == code_identity(fn)


# --- Issue 23, item 3: user code runs in a process of its own ------------------------------------

def test_a_fit_calling_os_exit_is_a_failed_step_naming_it_not_a_silent_exit_0(work):
    run = _run(work, "make", "fit_os_exit")
    assert run.returncode == 3, run.stderr
    error = _target(work)["error"]
    assert f"--train {work.module}:fit_os_exit ended its process (exit status 0, e.g. os._exit)" in error, error
    assert "fit_os_exit(<Classifier>" in error


def test_threads_thread_counts_chdir_and_torch_state_of_a_fit_do_not_reach_the_audit(work):
    import threading

    threads_before, count_before = torch.get_num_threads(), threading.active_count()
    run = _run(work, "make", "fit_hostile")
    assert run.returncode in (0, 1), run.stderr  # it ended: no thread of the user's held it open
    assert _target(work)["error"] is None
    assert (work / "out" / "results.json").is_file() and not Path("/out").exists()  # outputs where --out said
    assert torch.get_num_threads() == threads_before and threading.active_count() == count_before
    assert torch.get_default_dtype() == torch.float32


def test_a_training_functions_result_comes_back_as_tensors_never_unpickled(monkeypatch):
    """The forked child sends back weights read with weights_only=True: no pickle.loads in the audit."""
    import pickle

    from audit.usercode import guard

    def fit_returns_eval(model, x, y, *, seed, epochs=None):
        torch.manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        return model.eval()

    def fit_in_place(model, x, y, *, seed, epochs=None):
        with torch.no_grad():
            model[1].bias.fill_(3.0)

    def refuse(*_a, **_k):
        raise AssertionError("the audit unpickled the child's result")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    x, y = torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.BatchNorm1d(10)).train()
    expected = [p.detach().clone() for p in model.parameters()]
    torch.manual_seed(7)
    for e in expected:
        e.add_(torch.randn_like(e))
    out = guard(fit_returns_eval, "test fit")(model, x, y, seed=7)
    assert out is model and not model.training and not model[2].training  # its modes came back too
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), expected))
    model.train()
    assert guard(fit_in_place, "test fit")(model, x, y, seed=0) is None
    assert torch.equal(model[1].bias, torch.full((10,), 3.0)) and model.training


@pytest.mark.slow  # a real process that trains with the user's function: about half a minute on two cores
def test_a_fit_that_raises_torchs_thread_count_does_not_hang_a_real_process(work):
    """As a user runs it: a fresh process whose torch uses every core (no OMP_NUM_THREADS=1, which the tests
    otherwise set) before it forks the user's code, whose set_num_threads(4) then waited for ever on OpenMP
    threads that do not exist in the forked child. It is now said and left without effect."""
    mod = work.module
    run = run_audit(["run", "lin.pt", "--data", "npz:d.npz", "--arch", f"{mod}:make", "--code-path", ".",
                     "--normalize", "0,1", "--forget", "class=3", "--out", "out", *FAST, "--train",
                     f"{mod}:fit_hostile"], work.path, env={"OMP_NUM_THREADS": None}, timeout=600)
    assert run.returncode in (0, 1), run.stderr
    assert _target(work)["error"] is None
    assert "called torch.set_num_threads(4), which the audit ignores" in run.stderr

"""Issue 16, items 11 and 12: archives and weights the toolkit did not write.

A TorchScript MLP trained elsewhere is audited from the archive and the data alone, its
fresh copies re-initialised as torch's layers initialise; a ``.pt2`` or an unknown layer
given a recipe says what to pass. Weights of the wrong type, an ``--original`` that is the
model itself or another network, an empty error string and a missing method are each said
or refused, never passed over.
"""

from __future__ import annotations

import copy
import io
import json
import pickle
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from audit.scripted import ScriptedNet

from tests.cli_runner import refused, run_audit

FAST = ["--reference-models", "1", "--retrains", "1", "--mia", "loss", "--attacks", "mia", "--format", "none"]
RECIPE = ["--epochs", "5", "--lr", "0.1", "--optimizer", "sgd", "--momentum", "0.9"]


class MLP(nn.Module):
    def __init__(self, hidden: int = 32):
        super().__init__()
        self.flat = nn.Flatten()
        self.l1 = nn.Linear(64, hidden)
        self.l2 = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(torch.relu(self.l1(self.flat(x))))


class Scaled(nn.Module):
    """A layer of the user's own with a parameter: its initialisation is unknown to the toolkit."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def _trained(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(15):
        for start in range(0, len(y), 64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[start:start + 64]), y[start:start + 64]).backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """digits as an npz; ``ext.pt``: a scripted MLP trained outside the toolkit; its state_dict."""
    from sklearn.datasets import load_digits

    work = tmp_path_factory.mktemp("archives")
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)
    np.savez(work / "d.npz", x_train=x[:1300], y_train=d.target[:1300], x_test=x[1300:], y_test=d.target[1300:])
    xt, yt = torch.tensor(x[:1300]).unsqueeze(1), torch.tensor(d.target[:1300]).long()
    torch.manual_seed(0)
    model = _trained(MLP(), xt, yt)
    torch.jit.script(model).save(str(work / "ext.pt"))
    torch.save(model.state_dict(), work / "weights.pt")
    torch.export.save(torch.export.export(model, (xt[:4],), dynamic_shapes=({0: torch.export.Dim("n")},)),
                      str(work / "ext.pt2"))
    torch.manual_seed(1)
    torch.jit.script(_trained(MLP(hidden=48), xt, yt)).save(str(work / "other.pt"))
    torch.jit.script(nn.Sequential(MLP(), Scaled())).save(str(work / "custom.pt"))
    return work


@pytest.fixture
def work(folder, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("AMNESIA_AUDIT_CACHE", str(tmp_path / "cache"))
    for path in folder.iterdir():
        (tmp_path / path.name).symlink_to(path)
    return tmp_path


def _run(work: Path, model: str, *extra: str):
    return run_audit(["run", model, "--data", "npz:d.npz", "--forget", "class=5", "--out", "out",
                      *FAST, *extra], work, in_process=True)


def test_a_scripted_model_trained_elsewhere_is_audited_with_a_recipe(work):
    run = _run(work, "ext.pt", "--method", "relabel", *RECIPE)
    assert run.returncode in (0, 1), run.stderr
    said = [ln for ln in run.stderr.splitlines() if "TorchScript without a factory" in ln]
    assert len(said) == 1 and said[0].startswith("warning: ext.pt") and "re-initialised" in said[0]
    assert "TorchScript without a factory" not in run.stdout  # one line per cause: no "note: Assumed:" again
    doc = json.loads((work / "out" / "results.json").read_text())
    assert any(n.startswith("Assumed: ext.pt is TorchScript without a factory") for n in doc["notes"])
    [target] = doc["targets"]
    assert target["error"] is None and target["method"]["name"] == "relabel"
    assert target["accuracy"]["original"]["forget"] > 0.9 > target["accuracy"]["unlearned"]["forget"]
    assert target["accuracy"]["reference"]["test_other_classes"] > 0.8  # the re-initialised copy trained well


def test_fresh_copies_initialise_as_torch_layers_do(folder):
    scripted = ScriptedNet(torch.jit.load(str(folder / "ext.pt")))
    fresh = scripted.reinitialised(seed=3)
    torch.manual_seed(3)
    expected = MLP()  # the same layers, drawn in the same order from the same seed
    for key, value in expected.state_dict().items():
        assert torch.equal(fresh.module.state_dict()[key], value), key
    assert not torch.equal(fresh.module.l1.weight, scripted.module.l1.weight)
    assert all(p.is_leaf and p.requires_grad for p in copy.deepcopy(fresh).parameters())
    clone = pickle.loads(pickle.dumps(fresh))  # Ray ships models between processes
    assert torch.equal(clone.module.l2.bias, fresh.module.l2.bias)


@pytest.mark.parametrize("model, needle", [
    ("ext.pt2", "it is a torch.export graph (.pt2), which runs forward only"),
    ("custom.pt", "its layer 1 (Scaled) holds parameters whose initialisation is not known"),
])
def test_an_archive_a_recipe_cannot_train_names_what_to_pass(work, model, needle):
    run = _run(work, model, "--method", "relabel", *RECIPE)
    refused(run, 2, f"{model} cannot be rebuilt", needle, "--arch package.module:factory")
    assert not (work / "out").exists()


MLP_SOURCE = (
    "import torch\nfrom torch import nn\n\n\nclass MLP(nn.Module):\n    def __init__(self):\n"
    "        super().__init__()\n        self.flat = nn.Flatten()\n        self.l1 = nn.Linear(64, 32)\n"
    "        self.l2 = nn.Linear(32, 10)\n\n    def forward(self, x):\n"
    "        return self.l2(torch.relu(self.l1(self.flat(x))))\n")


def _run_state_dict(work: Path, name: str, sd: dict):
    torch.save(sd, work / name)
    (work / "mlp_user.py").write_text(MLP_SOURCE)
    return _run(work, name, "--arch", "mlp_user:MLP", "--code-path", ".", "--method", "none", "--reference", "none",
                "--normalize", "0,1", "--quiet")


@pytest.mark.parametrize("dtype", [torch.int32, torch.bool, torch.complex64])
def test_weights_that_are_not_floating_point_are_refused(work, dtype):
    sd = torch.load(work / "weights.pt")
    sd["l1.weight"] = sd["l1.weight"].to(dtype)
    run = _run_state_dict(work, "cast.pt", sd)
    refused(run, 2, f"cast.pt: l1.weight is stored as {str(dtype).replace('torch.', '')}, but the model's weights "
                    "are float32")
    assert not (work / "out").exists()


def test_a_float64_state_dict_is_cast_with_a_word(work):
    run = _run_state_dict(work, "double.pt", {k: v.double() for k, v in torch.load(work / "weights.pt").items()})
    assert run.returncode in (0, 1), run.stderr
    assert "warning: double.pt stores 4 weight tensor(s) as float64 (e.g. l1.weight); they are cast to float32" \
        in run.stderr


def test_original_rules(work):
    # --method none with --original is refused like every other method: no unlearning runs.
    run = _run(work, "ext.pt", "--original", "ext.pt", "--method", "none", "--reference", "none")
    refused(run, 2, "--original audits a model unlearned elsewhere", "drop --method none")
    # The same model as its own original is the no-op control: allowed, but said and recorded.
    run = _run(work, "ext.pt", "--original", "ext.pt", "--reference", "none")
    assert run.returncode == 1, run.stderr
    assert "is the same model as --original ext.pt, so nothing was unlearned" in run.stderr
    doc = json.loads((work / "out" / "results.json").read_text())
    assert any("no-op control" in n for n in doc["notes"])
    # A TorchScript original of another network is refused before any work.
    run = _run(work, "ext.pt", "--original", "other.pt", "--reference", "none")
    refused(run, 2, "ext.pt is not the network of --original other.pt", "l1.weight has shape [32, 64], not [48, 64]")


def test_an_empty_error_is_still_an_error_and_a_missing_method_prints_plainly(work):
    from audit.summary import print_summary
    from reports import validate

    run = _run(work, "ext.pt", "--method", "relabel", *RECIPE)
    assert run.returncode in (0, 1), run.stderr
    doc = json.loads((work / "out" / "results.json").read_text())
    doc["targets"][0]["error"] = ""
    (work / "forged.json").write_text(json.dumps(doc))
    gated = run_audit(["gate", "forged.json"], work, in_process=True)
    assert gated.returncode == 3, gated.stderr  # a step failed (with no message): never a pass
    del doc["targets"][0]["method"]
    doc["targets"][0]["error"] = None
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        print_summary(validate(doc), quiet=False, out=None)
    assert "None (None)" not in out.getvalue() and "no unlearning method recorded" in out.getvalue()

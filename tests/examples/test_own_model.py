"""The user's own model (issue 10): their network class, their training loop, their data,
audited from the command line and in memory, archives for attack-only audits, bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.cli_runner import CliRun, run_audit

ROOT = Path(__file__).resolve().parents[2]
OWN = ROOT / "examples" / "own_model"
# The user's own module, imported as their code imports it: their folder on the path.
sys.path.insert(0, str(OWN))

from mynet import fit, make_net  # noqa: E402

FAST = ["--reference-models", "4", "--retrains", "2", "--format", "none"]


def _audit(args: list, cwd: Path, cache: Path) -> CliRun:
    return run_audit(args, cwd, env={"AMNESIA_AUDIT_CACHE": str(cache)}, timeout=900)


@pytest.fixture(scope="module")
def own(tmp_path_factory) -> dict:
    """A model the toolkit did not train: the user's class and loop on an npz split of the digits."""
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("own")
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)
    npz = folder / "digits.npz"
    np.savez(npz, x_train=x[:1300], y_train=digits.target[:1300], x_test=x[1300:], y_test=digits.target[1300:])
    x_train, y_train = torch.tensor(x[:1300]).unsqueeze(1), torch.tensor(digits.target[:1300])
    x_test, y_test = torch.tensor(x[1300:]).unsqueeze(1), torch.tensor(digits.target[1300:])
    torch.manual_seed(0)
    model = fit(make_net(), x_train, y_train, seed=0)
    torch.save(model.state_dict(), folder / "weights.pt")
    return {"folder": folder, "npz": npz, "model": model, "train": (x_train, y_train), "test": (x_test, y_test),
            "cache": folder / "cache"}


USER = ["--arch", "mynet:make_net", "--code-path", OWN, "--train", "mynet:fit"]


@pytest.mark.slow  # heavy (an end-to-end audit or more): `make test-slow` and CI run it; `make test` stays within 5 minutes
def test_cli_and_python_give_the_same_audit(own):
    """End to end from the CLI with LiRA/RMIA references built by the user's factory and fit,
    then the same in memory: identical figures for the same seed."""
    folder = own["folder"]
    proc = _audit(["run", "weights.pt", "--data", f"npz:{own['npz']}", *USER, "--forget", "class=3",
                   "--method", "relabel", "--mia", "loss,lira_online,rmia", "--out", "cli", *FAST], folder,
                  own["cache"])
    assert proc.returncode in (0, 1), proc.stderr
    # A bare state_dict records no normalisation: one line says what was assumed.
    assert "records no input normalisation" in proc.stderr
    doc = json.loads((folder / "cli" / "results.json").read_text())
    [target] = doc["targets"]
    assert target["verdict"] in ("pass", "fail") and proc.returncode == (0 if target["verdict"] == "pass" else 1)
    assert {m["attack"] for m in target["membership"]} == {"loss", "lira_online", "rmia"}
    model = doc["provenance"]["model"]
    assert model["arch"] == "mynet:make_net" and model["train_fn"].startswith("mynet:fit@")
    assert target["accuracy"]["original"]["forget"] > 0.9 > target["accuracy"]["unlearned"]["forget"]

    import audit

    report = audit.evaluate(own["model"], train=own["train"], held_out=own["test"], forget="class=3",
                            unlearned="relabel", model_factory=make_net, train_fn=fit, reference_models=4,
                            retrains=2, mia_attacks=["loss", "lira_online", "rmia"], cache_dir=own["cache"])
    [mine] = json.loads(report.document.to_json())["targets"]  # as results.json would hold it
    for key in ("verdict", "p_value", "power_p_value", "residual_leakage", "overforgetting"):
        assert mine[key] == target[key], key
    assert [t["p_original"] for t in mine["tests"]] == [t["p_original"] for t in target["tests"]]
    for a, b in zip(mine["membership"], target["membership"]):
        assert a["original"]["auc"] == b["original"]["auc"] and a["unlearned"]["auc"] == b["unlearned"]["auc"]
    assert mine["accuracy"] == target["accuracy"]
    assert report.out is None and report.files == []  # nothing written without out=


@pytest.mark.slow  # heavy (an end-to-end audit or more): `make test-slow` and CI run it; `make test` stays within 5 minutes
def test_noop_in_memory_cannot_pass(own):
    import audit

    report = audit.evaluate(own["model"], train=own["train"], held_out=own["test"], forget=[[3, 17, 256], "class=5"],
                            unlearned="none", model_factory=make_net, train_fn=fit, reference_models=4, retrains=2,
                            attacks=["mia"], cache_dir=own["cache"])
    verdicts = {t.name.split("@")[0].split("=")[0]: t.verdict for t in report.targets}
    assert verdicts["class"] == "fail"
    assert verdicts["ids"] in ("fail", "inconclusive")  # three examples: probably not detectable
    assert report.exit_code == 1


@pytest.mark.slow  # two audits of exported archives: `make test-slow` and CI run it
@pytest.mark.parametrize("kind", ["torchscript", "pt2"])
def test_archives_in_an_attack_only_audit(own, kind):
    """A model unlearned elsewhere, shipped as TorchScript or torch.export: only forward passes are needed."""
    from unlearning import TrainConfig, relabel_unlearn

    folder = own["folder"]
    x_train, y_train = own["train"]
    forget = torch.nonzero(y_train == 3).flatten()
    unlearned = relabel_unlearn(own["model"], x_train, y_train, forget, TrainConfig(epochs=2), num_classes=10,
                                train_fn=fit).model.eval()
    path = folder / f"unlearned.{'ts' if kind == 'torchscript' else 'pt2'}"
    if kind == "torchscript":
        torch.jit.trace(unlearned, x_train[:2]).save(str(path))
    else:
        batch = torch.export.Dim("batch", min=1, max=4096)
        torch.export.save(torch.export.export(unlearned, (x_train[:2],), dynamic_shapes=({0: batch},)), str(path))
    out = f"archive-{kind}"
    proc = _audit(["run", path, "--original", "weights.pt", "--data", f"npz:{own['npz']}", *USER, "--normalize",
                   "0,1", "--forget", "class=3", "--out", out, *FAST], folder, own["cache"])
    assert proc.returncode in (0, 1), proc.stderr
    [target] = json.loads((folder / out / "results.json").read_text())["targets"]
    assert target["method"]["name"] == "given"
    assert target["accuracy"]["unlearned"]["forget"] < 0.2
    assert target["verdict"] in ("pass", "fail")


def test_bad_user_code_exits_2_with_one_line(own, tmp_path):
    folder = own["folder"]
    bad = tmp_path / "badcode"
    bad.mkdir()
    (bad / "badfit.py").write_text("def fit(model, x):\n    return model\n\n"
                                   "def boom(**kwargs):\n    raise RuntimeError('no GPU here')\n")
    (tmp_path / "bad.toml").write_text('[tool.audit.recipe]\nepochs = "ten"\n')
    base = ["run", "weights.pt", "--data", f"npz:{own['npz']}", "--forget", "class=3", *FAST]
    cases = [
        (["--arch", "mynet:nope", "--code-path", OWN], "has no 'nope'"),
        (["--arch", "notapackage.nets:make", "--code-path", OWN], "cannot be imported"),
        (["--arch", "badfit:boom", "--code-path", bad], "raised RuntimeError"),
        (["--arch", "mynet:make_net", "--code-path", OWN, "--arch-args", '{"width": 8}'], "does not fit the model"),
        (["--arch", "mynet:make_net", "--code-path", OWN, "--arch-args", "{width: 8}"], "not valid JSON"),
        ([*USER[:4], "--train", "badfit:fit", "--code-path", bad], "cannot be called as fit(model, x, y"),
        ([*USER, "--config", tmp_path / "bad.toml"], "recipe setting 'epochs'"),
        ([*USER, "--lr-schedule", "sometimes"], "lr_schedule"),
        ([*USER, "--normalize", "0.5"], "--normalize"),
    ]
    for i, (extra, needle) in enumerate(cases):
        out = tmp_path / f"out{i}"
        # Refused before any work: in process (the subprocess path is the same code, tested elsewhere).
        proc = run_audit([*base, *extra, "--out", out], folder, env={"AMNESIA_AUDIT_CACHE": str(own["cache"])},
                         in_process=True)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(lines) == 1, (extra, proc.stderr)
        assert needle in lines[0] and "Traceback" not in proc.stderr, (needle, lines[0])
        assert not out.exists()

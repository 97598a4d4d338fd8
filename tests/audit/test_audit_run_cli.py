"""``audit run`` and ``audit gate`` end to end on digits, through the CLI as a subprocess."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from tests.cli_runner import run_audit

FAST = ["--mia", "loss,lira_online,rmia", "--reference-models", "4", "--format", "none"]


def _one_line_error(proc) -> str:
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.mark.slow  # heavy (an end-to-end audit or more): `make test-slow` and CI run it; `make test` stays within 5 minutes
def test_amnesiac_unlearning_of_a_class_passes(digits_model, tmp_path):
    out = tmp_path / "out"
    proc = run_audit(["run", digits_model, "--forget", "class=3", "--fail-on", "residual_leakage_upper>0.5",
                      "--out", out, *FAST[:-2], "--format", "html,pdf"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "report.html").stat().st_size > 10_000 and (out / "report.pdf").read_bytes()[:5] == b"%PDF-"
    doc = json.loads((out / "results.json").read_text())
    assert doc["verdict"] == "pass" and doc["exit_code"] == 0 and doc["schema_version"] == 2
    [target] = doc["targets"]
    assert target["verdict"] == "pass" and target["power_p_value"] <= 0.05 < target["p_value"]
    assert target["method"]["name"] == "amnesiac"
    # Tested against the retrained models; the pass shows the removal under the recorded margin.
    assert target["tests"][0]["name"] == "membership" and target["tests"][0]["detail"]["null"] == "retrained"
    assert doc["config"]["max_residual"] == target["max_residual"] == 0.5
    assert "at most" in target["verdict_reason"] and "below 0.5" in target["verdict_reason"]
    acc = target["accuracy"]
    assert acc["original"]["forget"] > 0.9
    assert acc["unlearned"]["forget"] < 0.5 * acc["original"]["forget"]
    assert acc["reference"]["forget"] < 0.1
    assert 0.0 <= target["residual_leakage"] <= target["residual_leakage_upper"] <= 0.5
    # Three retrained models, none with the target's seed; the class tests are there.
    assert len(target["retrains"]) == 3 and 0 not in {r["seed"] for r in target["retrains"]}
    assert {t["name"] for t in target["tests"]} == {"membership", "class_accuracy", "inversion"}
    assert {m["attack"] for m in target["membership"]} == {"loss", "lira_online", "rmia"}
    inv = target["inversion"]
    assert inv["n_reconstructions"] >= 16 and len(inv["retrains"]) == 3
    assert all((out / p).is_file() for p in inv["unlearned"]["images"])
    assert inv["original"]["recognised"] > max(r["recognised"] for r in inv["retrains"])
    assert doc["provenance"]["model"]["sha256"] and doc["provenance"]["data"]["sha256"]
    assert doc["config"]["retrains"] == 3 and doc["config"]["alpha"] == 0.05 and doc["config"]["inconclusive"] == "fail"
    suite = ET.parse(out / "junit.xml").getroot()
    assert suite.iter("testcase") and not list(suite.iter("failure"))


@pytest.mark.slow  # heavy (an end-to-end audit or more): `make test-slow` and CI run it; `make test` stays within 5 minutes
def test_original_audits_a_model_unlearned_elsewhere(digits_model, tmp_path):
    unlearned = tmp_path / "u.pt"
    made = run_audit(["unlearn", digits_model, "--forget", "class=3", "--method", "relabel", "--out", unlearned,
                      "--quiet"])
    assert made.returncode == 0, made.stderr
    out = tmp_path / "out"
    proc = run_audit(["run", unlearned, "--original", digits_model, "--forget", "class=3", "--out", out, *FAST])
    doc = json.loads((out / "results.json").read_text())
    [target] = doc["targets"]
    assert target["method"]["name"] == "given" and target["timings"]["unlearn"] < 1.0
    assert target["accuracy"]["unlearned"]["forget"] < 0.2 < target["accuracy"]["original"]["forget"]
    assert doc["provenance"]["original"]["sha256"]
    assert proc.returncode == (0 if target["verdict"] == "pass" else 1)
    # The same file given as its own original forgot nothing: it fails.
    same = run_audit(["run", digits_model, "--original", digits_model, "--forget", "class=3", "--attacks", "mia",
                      "--out", tmp_path / "same", *FAST])
    assert same.returncode == 1
    assert json.loads((tmp_path / "same" / "results.json").read_text())["targets"][0]["verdict"] == "fail"


@pytest.mark.slow  # heavy (an end-to-end audit or more): `make test-slow` and CI run it; `make test` stays within 5 minutes
def test_a_failed_attack_exits_3_and_fails_closed(digits_model, tmp_path):
    out = tmp_path / "out"
    proc = run_audit(["run", digits_model, "--forget", "class=3", "--fail-on", "residual_leakage>0.99",
                      "--attacks", "mia", "--out", out, *FAST], env={"AUDIT_FAULT": "attack"})
    assert "ERROR class=3" in proc.stderr
    assert proc.returncode == 3, proc.stdout + proc.stderr
    doc = json.loads((out / "results.json").read_text())
    assert doc["verdict"] == "error"
    assert doc["targets"][0]["error"] and not doc["targets"][0]["passed"]
    assert all(not g["passed"] for g in doc["targets"][0]["gates"])
    assert list(ET.parse(out / "junit.xml").getroot().iter("error"))
    assert run_audit(["gate", out / "results.json", "--fail-on", "residual_leakage>1"], in_process=True).returncode == 3


@pytest.mark.slow  # heavy (an end-to-end audit or more): `make test-slow` and CI run it; `make test` stays within 5 minutes
def test_bad_inputs_exit_2_with_one_line_and_no_results(digits_model, tmp_path):
    import numpy as np

    from audit.modelfile import ModelFile, save_model
    from audit.models import build_model

    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("fail_on = [")
    typed_config = tmp_path / "typed.toml"
    typed_config.write_text("fail_on = [1]")
    other_arch = tmp_path / "other.pt"  # another network on the same data (untrained: only its kind matters)
    save_model(other_arch, ModelFile(build_model("resnet18", 1, 10, [0.5], [0.3], seed=0), "resnet18", (1, 8, 8), 10,
                                     [0.5], [0.3], data={"spec": "digits"}, recipe={"epochs": 1}))
    small = tmp_path / "small.npz"  # 8x8 digits, but not the ones the model was trained on
    rng0 = np.random.default_rng(1)
    np.savez(small, x_train=rng0.random((40, 8, 8)), y_train=np.arange(40) % 10,
             x_test=rng0.random((20, 8, 8)), y_test=np.arange(20) % 10)
    big = tmp_path / "big.npz"  # 16x16 images: not what the 8x8 model takes
    rng = np.random.default_rng(0)
    np.savez(big, x_train=rng.random((40, 16, 16)), y_train=np.arange(40) % 10,
             x_test=rng.random((20, 16, 16)), y_test=np.arange(20) % 10)
    cases = [
        (["run", digits_model, "--forget", "class=3", "--fail-on", "leakiness>0.1"], "unknown metric"),
        (["run", tmp_path / "missing.pt", "--forget", "class=3"], "not found"),
        (["run", digits_model, "--forget", "class=12"], "out of range"),
        (["run", digits_model, "--forget", "class=3", "--config", bad_config], "TOML"),
        (["run", digits_model, "--forget", "bogus"], "forget spec"),
        (["run", digits_model, "--forget", "class=3", "--config", typed_config], "list of strings"),
        (["run", digits_model, "--forget", "class=3", "--fail-on", "mia.lira.auc>0.3"], "unknown metric"),
        (["run", digits_model, "--forget", "class=3", "--data", f"npz:{big}"], "does not fit"),
        (["run", digits_model, "--forget", "class=3", "--format", "docx"], "--format"),
        # The first target is audited, the second refused: nothing of the first may be left.
        (["run", digits_model, "--forget", "class=3", "--forget", "class=5", "--method", "amnesiac"], "relabel"),
        (["run", digits_model, "--forget", "class=3", "--alpha", "0"], "--alpha"),
        (["run", digits_model, "--forget", "class=3", "--alpha", "1.5"], "--alpha"),
        (["run", digits_model, "--forget", "class=3", "--retrains", "0"], "--retrains"),
        (["run", digits_model, "--forget", "class=3", "--inconclusive", "maybe"], "--inconclusive"),
        (["run", digits_model, "--forget", "class=3", "--seed", "99999999999999999999999"], "--seed"),
        (["run", digits_model, "--forget", "class=3", "--out", bad_config / "sub"], "is a file"),
        (["run", digits_model, "--original", other_arch, "--forget", "class=3"], "not the same network"),
        (["run", digits_model, "--original", digits_model, "--forget", "class=3", "--method", "relabel"],
         "--original"),
        (["run", digits_model, "--original", digits_model, "--forget", "class=3", "--data", f"npz:{small}"],
         "other data"),
    ]
    for i, (args, needle) in enumerate(cases):
        out = tmp_path / f"out{i}"
        fast = [a for a in FAST if a not in ("--format", "none")] if "--format" in args else FAST
        where = [] if "--out" in args else ["--out", out]
        # In this process: each case is refused before any work, so the interpreter's start-up would dominate.
        proc = run_audit([*args, *where, *fast], tmp_path, in_process=True)
        assert proc.returncode == 2, (args, proc.stderr)
        assert needle in _one_line_error(proc), proc.stderr
        assert not (out / "results.json").exists() and not (out / "inversion").exists()


@pytest.mark.slow
def test_art_attacks_run_inside_the_audit(digits_model, tmp_path):
    """ART's shadow-model and label-only attacks through the harness (minutes: kept out of make test)."""
    out = tmp_path / "out"
    proc = run_audit(["run", digits_model, "--forget", "class=3", "--attacks", "mia", "--mia", "shadow,label_only",
                      "--reference-models", "2", "--out", out, "--format", "none"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((out / "results.json").read_text())
    entries = {m["attack"]: m for m in doc["targets"][0]["membership"]}
    assert set(entries) == {"shadow", "label_only"}
    assert all(0.0 <= entries[a]["original"]["auc"] <= 1.0 for a in entries)

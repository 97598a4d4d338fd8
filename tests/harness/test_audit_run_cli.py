"""``audit run`` and ``audit gate`` end to end on digits, through the CLI as a subprocess."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from cli_runner import run_audit

FAST = ["--mia", "loss,lira_online,rmia", "--reference-models", "4", "--format", "none"]


def _one_line_error(proc) -> str:
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_amnesiac_unlearning_passes_its_gate(digits_model, audit_env, tmp_path):
    out = tmp_path / "out"
    proc = run_audit(["run", digits_model, "--forget", "class=3", "--fail-on", "residual_leakage>0.5",
                      "--out", out, *FAST[:-2], "--format", "html,pdf"], audit_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "report.html").stat().st_size > 10_000 and (out / "report.pdf").read_bytes()[:5] == b"%PDF-"
    doc = json.loads((out / "results.json").read_text())
    assert doc["verdict"] == "pass" and doc["exit_code"] == 0
    [target] = doc["targets"]
    assert target["method"]["name"] == "amnesiac"
    assert "covers" in target["method"]["reason"]
    acc = target["accuracy"]
    assert acc["original"]["forget"] > 0.9
    assert acc["unlearned"]["forget"] < 0.5 * acc["original"]["forget"]
    assert acc["reference"]["forget"] < 0.1
    assert 0.0 <= target["residual_leakage"] <= 0.5
    assert {m["attack"] for m in target["membership"]} == {"loss", "lira_online", "rmia"}
    inv = target["inversion"]
    assert len(inv["original"]["images"]) == inv["n_reconstructions"]
    assert all((out / p).is_file() for p in inv["unlearned"]["images"])
    # The original model's inversions of class 3 are recognised far more often than the retrained model's.
    assert inv["original"]["attack_accuracy"] > inv["reference"]["attack_accuracy"]
    assert doc["provenance"]["model"]["sha256"] and doc["provenance"]["data"]["sha256"]
    suite = ET.parse(out / "junit.xml").getroot()
    assert suite.iter("testcase") and not list(suite.iter("failure"))


def test_impossibly_tight_gate_fails_with_exit_1_and_junit_failure(digits_model, audit_env, tmp_path):
    out = tmp_path / "out"
    proc = run_audit(["run", digits_model, "--forget", "class=3", "--fail-on", "residual_leakage>=0",
                      "--attacks", "mia", "--out", out, "--json", *FAST], audit_env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL class=3" in proc.stderr
    printed = json.loads(proc.stdout)  # --json: the results document, and nothing else, on stdout
    assert printed["verdict"] == "fail" and printed["targets"][0]["gates"][0]["passed"] is False
    assert list(ET.parse(out / "junit.xml").getroot().iter("failure"))
    # audit gate re-applies gates without recomputing: a loose gate passes, a tight one fails.
    assert run_audit(["gate", out / "results.json", "--fail-on", "residual_leakage>1"], audit_env).returncode == 0
    tight = run_audit(["gate", out / "results.json", "--fail-on", "mia_auc>0", "--quiet"], audit_env)
    assert tight.returncode == 1 and tight.stdout == "" and "FAIL" in tight.stderr


def test_a_failed_attack_exits_3_and_fails_closed(digits_model, audit_env, tmp_path):
    out = tmp_path / "out"
    proc = run_audit(["run", digits_model, "--forget", "class=3", "--fail-on", "residual_leakage>0.99",
                      "--attacks", "mia", "--out", out, *FAST], audit_env, extra_env={"AUDIT_FAULT": "attack"})
    assert proc.returncode == 3, proc.stdout + proc.stderr
    doc = json.loads((out / "results.json").read_text())
    assert doc["verdict"] == "error"
    assert doc["targets"][0]["error"] and not doc["targets"][0]["passed"]
    assert all(not g["passed"] for g in doc["targets"][0]["gates"])
    assert list(ET.parse(out / "junit.xml").getroot().iter("error"))
    assert run_audit(["gate", out / "results.json", "--fail-on", "residual_leakage>1"], audit_env).returncode == 3


def test_bad_inputs_exit_2_with_one_line_and_no_results(digits_model, audit_env, tmp_path):
    import numpy as np

    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("fail_on = [")
    typed_config = tmp_path / "typed.toml"
    typed_config.write_text("fail_on = [1]")
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
    ]
    for i, (args, needle) in enumerate(cases):
        out = tmp_path / f"out{i}"
        fast = [a for a in FAST if a not in ("--format", "none")] if "--format" in args else FAST
        proc = run_audit([*args, "--out", out, *fast], audit_env)
        assert proc.returncode == 2, (args, proc.stderr)
        assert needle in _one_line_error(proc), proc.stderr
        assert not (out / "results.json").exists() and not (out / "inversion").exists()


def test_same_seed_gives_identical_results(digits_model, audit_env, tmp_path):
    docs = []
    for name in ("a", "b"):
        out = tmp_path / name
        proc = run_audit(["run", digits_model, "--forget", "class=3", "--forget", "random=20@1", "--seed", "0",
                          "--out", out, *FAST], audit_env)
        assert proc.returncode == 0, proc.stderr
        docs.append(_strip_volatile(json.loads((out / "results.json").read_text())))
    assert docs[0] == docs[1]
    assert len(docs[0]["targets"]) == 2 and docs[0]["targets"][1]["forget"]["n"] == 20
    # Relabel over-forgets 20 random samples (they look less like members than unseen data): said in words.
    assert docs[0]["targets"][1]["method"]["name"] == "relabel"
    assert any(n.startswith("random=20@1:") and "over-forgotten" in n for n in docs[0]["notes"])


def _strip_volatile(obj):
    """Drop timestamps, durations and output-folder paths."""
    if isinstance(obj, dict):
        return {k: _strip_volatile(v) for k, v in obj.items()
                if k not in ("created", "timings", "command", "images_per_second") and not k.endswith("seconds")}
    if isinstance(obj, list):
        return [_strip_volatile(v) for v in obj]
    return obj


@pytest.mark.slow
def test_art_attacks_run_inside_the_audit(digits_model, audit_env, tmp_path):
    """ART's shadow-model and label-only attacks through the harness (minutes: kept out of make test)."""
    out = tmp_path / "out"
    proc = run_audit(["run", digits_model, "--forget", "class=3", "--attacks", "mia", "--mia", "shadow,label_only",
                      "--reference-models", "2", "--out", out, "--format", "none"], audit_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((out / "results.json").read_text())
    entries = {m["attack"]: m for m in doc["targets"][0]["membership"]}
    assert set(entries) == {"shadow", "label_only"}
    assert all(0.0 <= entries[a]["original"]["auc"] <= 1.0 for a in entries)

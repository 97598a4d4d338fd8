"""``audit run``'s verdicts on controls, end to end through the CLI: the no-op control fails,
a retrain does not, an inconclusive target fails closed unless chosen, the same seed gives
the same document. (Kept apart from test_audit_run_cli.py so that the two halves of the
end-to-end suite run on different workers.)"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from tests.audit.test_audit_run_cli import FAST
from tests.cli_runner import run_audit


def test_noop_control_fails_on_a_class_target(digits_model, tmp_path):
    """The product's reason to exist: a model that forgot nothing cannot pass."""
    out = tmp_path / "out"
    proc = run_audit(["run", digits_model, "--forget", "class=3", "--method", "none", "--out", out, "--json",
                      *FAST])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL class=3" in proc.stderr
    printed = json.loads(proc.stdout)  # --json: the results document, and nothing else, on stdout
    [target] = printed["targets"]
    assert target["verdict"] == "fail" and target["method"]["name"] == "none"
    assert target["p_value"] <= 0.05 and target["residual_leakage"] == pytest.approx(1.0)
    assert target["gates"][0]["expr"] == "verdict" and not target["gates"][0]["passed"]
    assert list(ET.parse(out / "junit.xml").getroot().iter("failure"))
    # A gate cannot rescue a failed verdict, and audit gate re-applies without recomputing.
    assert run_audit(["gate", out / "results.json", "--fail-on", "residual_leakage>2"], in_process=True).returncode == 1
    assert run_audit(["gate", out / "results.json", "--inconclusive", "pass"], in_process=True).returncode == 1


@pytest.mark.slow  # heavy (an end-to-end audit or more): `make test-slow` and CI run it; `make test` stays within 5 minutes
def test_leaky_target_noop_fails_and_retrain_does_not(leaky_model, tmp_path):
    model, npz = leaky_model
    common = ["--forget", "random=0.2@0", "--data", f"npz:{npz}", "--reference-models", "8", "--mia", "loss",
              "--format", "none"]
    noop = run_audit(["run", model, "--method", "none", "--out", tmp_path / "noop", *common])
    assert noop.returncode == 1, noop.stdout + noop.stderr
    [target] = json.loads((tmp_path / "noop" / "results.json").read_text())["targets"]
    assert target["verdict"] == "fail" and target["power_p_value"] <= 0.05
    # Exact unlearning with another seed: the control that must not fail.
    retrain = run_audit(["run", model, "--method", "retrain", "--seed", "5", "--out", tmp_path / "retrain",
                         *common])
    [target] = json.loads((tmp_path / "retrain" / "results.json").read_text())["targets"]
    assert target["verdict"] in ("pass", "inconclusive"), target["verdict_reason"]
    assert retrain.returncode == (0 if target["verdict"] == "pass" else 1)
    # Relabel over-forgets random samples: its own signed metric, not residual leakage.
    relabel = run_audit(["run", model, "--method", "relabel", "--out", tmp_path / "relabel", *common])
    doc = json.loads((tmp_path / "relabel" / "results.json").read_text())
    [target] = doc["targets"]
    assert relabel.returncode in (0, 1)
    # Over-forgetting is its own signed metric beside residual leakage, with its own p-value and gate.
    over = target["overforgetting"]
    assert over is not None and target["overforgetting_p_value"] is not None and target["residual_leakage"] < 0.5
    gated = run_audit(["gate", tmp_path / "relabel" / "results.json", "--inconclusive", "pass",
                       "--fail-on", f"overforgetting>={over - 1e-9}"], in_process=True)
    assert gated.returncode == 1 and "overforgetting" in gated.stderr


@pytest.mark.slow  # heavy (an end-to-end audit or more): `make test-slow` and CI run it; `make test` stays within 5 minutes
def test_inconclusive_fails_closed_unless_chosen(digits_model, tmp_path):
    out = tmp_path / "out"
    # Five random examples of a model that generalises well: even the original is not detectable.
    args = ["run", digits_model, "--forget", "random=5@3", "--method", "none", "--attacks", "mia", *FAST]
    proc = run_audit([*args, "--out", out])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads((out / "results.json").read_text())
    [target] = doc["targets"]
    assert target["verdict"] == "inconclusive" and target["power_p_value"] > 0.05
    assert target["residual_leakage"] is None and "--reference-models" in target["advice"]
    assert "inconclusive" in proc.stderr and "fails closed" in proc.stderr
    [failure] = ET.parse(out / "junit.xml").getroot().iter("failure")
    assert "inconclusive" in failure.get("message")
    assert run_audit(["gate", out / "results.json", "--inconclusive", "pass"], in_process=True).returncode == 0
    chosen = run_audit([*args, "--inconclusive", "pass", "--out", tmp_path / "chosen"])
    assert chosen.returncode == 0, chosen.stderr
    assert json.loads((tmp_path / "chosen" / "results.json").read_text())["config"]["inconclusive"] == "pass"


@pytest.mark.slow  # heavy (an end-to-end audit or more): `make test-slow` and CI run it; `make test` stays within 5 minutes
def test_same_seed_gives_identical_results(digits_model, tmp_path):
    docs = []
    for name in ("a", "b"):
        out = tmp_path / name
        proc = run_audit(["run", digits_model, "--forget", "class=3", "--forget", "random=20@1", "--seed", "0",
                          "--out", out, *FAST])
        assert proc.returncode in (0, 1), proc.stderr
        docs.append(_strip_volatile(json.loads((out / "results.json").read_text())))
    assert docs[0] == docs[1]
    assert len(docs[0]["targets"]) == 2 and docs[0]["targets"][1]["forget"]["n"] == 20
    assert docs[0]["targets"][1]["method"]["name"] == "relabel"
    assert docs[0]["targets"][0]["per_example"] == docs[1]["targets"][0]["per_example"]


def _strip_volatile(obj):
    """Drop timestamps, durations and output-folder paths."""
    if isinstance(obj, dict):
        return {k: _strip_volatile(v) for k, v in obj.items()
                if k not in ("created", "timings", "command", "images_per_second", "from_cache")
                and not k.endswith("seconds")}
    if isinstance(obj, list):
        return [_strip_volatile(v) for v in obj]
    return obj

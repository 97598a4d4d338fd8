"""Reference models and retrains as Ray tasks (issue 12): the same models as the local
executor, a shared cache that no concurrent writer corrupts, retries, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_runner import run_audit, start_audit

pytest.importorskip("ray")

FAST = ["--forget", "random=0.1@2", "--method", "none", "--attacks", "mia", "--mia", "loss,lira_online",
        "--reference-models", "4", "--retrains", "2", "--format", "none", "--inconclusive", "pass"]


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ray-model") / "m.pt"
    proc = run_audit(["train", "--data", "digits", "--epochs", "4", "--seed", "0", "--record", "none", "--out", path])
    assert proc.returncode == 0, proc.stderr
    return path


def _figures(out: Path) -> dict:
    doc = json.loads((out / "results.json").read_text())
    figures: dict = {"reference_digests": doc["provenance"]["reference_models"]["digests"],
                     "executor": doc["provenance"]["executor"]["executor"], "targets": []}
    for target in doc["targets"]:
        figures["targets"].append({
            "name": target["name"], "retrain_digests": [r["digest"] for r in target["retrains"]],
            "verdict": target["verdict"], "p_value": target["p_value"], "power_p_value": target["power_p_value"],
            "tests": [(t["name"], t["p_original"], t["p_unlearned"], t["effect_original"]) for t in target["tests"]],
            "aucs": [(m["attack"], m["original"]["auc"], (m["reference"] or {}).get("auc")) for m in target["membership"]]})
    return figures


@pytest.mark.slow  # heavy (an end-to-end audit or more): `make test-slow` and CI run it; `make test` stays within 5 minutes
def test_ray_trains_the_same_models_as_local_even_after_retries(small_model, tmp_path):
    two = ["--forget", "random=5@3"]  # with a second target, the targets themselves are tasks too
    local = run_audit(["run", small_model, *FAST, *two, "--out", tmp_path / "local"],
                      env={"AMNESIA_AUDIT_CACHE": str(tmp_path / "cache-local")})
    assert local.returncode in (0, 1), local.stderr  # the no-op may be caught or inconclusive: either is a result
    # Every Ray task fails on its first attempt and is retried: the models must not change.
    env = {"AMNESIA_AUDIT_CACHE": str(tmp_path / "cache-ray"), "AUDIT_FAULT": "task-once",
           "AUDIT_FAULT_DIR": str(tmp_path / "faults")}
    ray = run_audit(["run", small_model, *FAST, *two, "--executor", "ray", "--cpus-per-model", "1", "--out",
                     tmp_path / "ray"], env=env)
    assert ray.returncode == local.returncode, ray.stderr
    # The 4 reference-model tasks and the 2 target tasks each failed once and were retried.
    assert len(list((tmp_path / "faults").glob(".fault-*"))) == 6
    a, b = _figures(tmp_path / "local"), _figures(tmp_path / "ray")
    assert (a.pop("executor"), b.pop("executor")) == ("local", "ray")
    assert a == b  # the same state_dict hashes and the same figures


@pytest.mark.slow  # heavy (an end-to-end audit or more): `make test-slow` and CI run it; `make test` stays within 5 minutes
def test_a_task_that_keeps_failing_exits_3_with_the_error(small_model, tmp_path):
    env = {"AMNESIA_AUDIT_CACHE": str(tmp_path / "cache"), "AUDIT_FAULT": "task"}
    proc = run_audit(["run", small_model, *FAST, "--executor", "ray", "--out", tmp_path / "out"], env=env)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    error = doc["targets"][0]["error"]
    assert "failed after 2 retries" in error and "injected by AUDIT_FAULT=task" in error
    assert doc["verdict"] == "error" and not doc["targets"][0]["passed"]


@pytest.mark.slow  # two Ray clusters at once: the heaviest Ray case; `make test-all` and CI run it
def test_two_ray_audits_sharing_a_cache_leave_no_broken_entry(small_model, tmp_path):
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    from attacks.reference import state_digest
    from audit.pool_signals import logits_digest

    cache = tmp_path / "shared-cache"
    env = {"AMNESIA_AUDIT_CACHE": str(cache)}
    procs = [start_audit(["run", small_model, *FAST, "--executor", "ray", "--out", tmp_path / f"out{i}"], env=env)
             for i in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=900)
        assert proc.returncode in (0, 1), err
    assert _figures(tmp_path / "out0") == _figures(tmp_path / "out1")
    # A sample request is judged against the pool (no retrains): the 4 reference models, the
    # pool's cached logits and the original's, once each, whatever the two writers raced over.
    entries = sorted(cache.rglob("*.safetensors"))
    logits = [p for p in entries if p.parent.name == "pool-logits"]
    models = [p for p in entries if p.parent.name != "pool-logits"]
    assert (len(models), len(logits)) == (4, 2) and not [p for p in cache.rglob("*") if p.name.endswith(".tmp")]
    for entry in entries:  # every entry is whole and matches the digest stored with it
        with safe_open(str(entry), framework="pt") as f:
            stored = (f.metadata() or {}).get("sha256")
        state = load_file(str(entry))
        digest = logits_digest(state["logits"]) if entry in logits else state_digest(state)
        assert stored == digest and all(bool(torch.isfinite(v).all()) for v in state.values())


@pytest.mark.slow  # heavy (an end-to-end audit or more): `make test-slow` and CI run it; `make test` stays within 5 minutes
def test_bad_executor_input_exits_2_with_one_line(small_model, tmp_path):
    cases = [
        (["--executor", "ray", "--ray-address", "127.0.0.1:9"], "cannot reach the Ray cluster"),
        (["--executor", "ray", "--ray-address", "nonsense"], "is not HOST:PORT"),
        (["--gpus-per-model", "1"], "has none"),
        (["--executor", "spark"], "--executor"),
        (["--ray-address", "127.0.0.1:9"], "needs --executor ray"),
    ]
    for i, (extra, needle) in enumerate(cases):
        out = tmp_path / f"out{i}"
        # Refused before any work: in this process unless Ray itself is asked for.
        proc = run_audit(["run", small_model, *FAST, *extra, "--out", out], in_process="ray" not in extra)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], (extra, proc.stderr)
        assert not out.exists()

"""benchmarks/scale.py --quick runs end to end and writes its tables where it is told, not
over the committed results."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "scale.py"


def _run(tmp_path: Path, *extra: str) -> dict:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out-dir", str(tmp_path),
                           "--out-name", "scale-smoke", *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert (tmp_path / "scale-smoke.md").is_file()
    assert not (ROOT / "benchmarks" / "results" / "scale-smoke.json").exists()
    return json.loads((tmp_path / "scale-smoke.json").read_text())


def _positive(*values: float) -> None:
    for v in values:
        assert isinstance(v, (int, float)) and v > 0, v


def _check_costs(doc: dict) -> None:
    assert {"command", "machine", "settings", "resnet18", "anchor", "journal", "cifar10", "reference_models",
            "assumptions", "projection", "flops_per_image"} <= doc.keys()
    _positive(*doc["flops_per_image"].values())
    assert [r["num_classes"] for r in doc["resnet18"]] == [10, 100]
    for r in doc["resnet18"]:
        _positive(*r["train_step_s"], *r["repair_step_s"])
        for dt, bytes_per_value in (("float32", 4), ("float16", 2)):
            f = r[dt]
            _positive(f["update_bytes"], f["amnesiac_one_step_s"], f["amnesiac_all_steps_s"],
                      *f["recorded_step_s"], *f["read_verify_subtract_s"])
            # one update holds every parameter and float buffer, plus a small header and the ids
            raw = bytes_per_value * (r["parameters"] + r["float_buffer_values"])
            assert raw < f["update_bytes"] < raw * 1.01
        assert r["float32"]["max_weight_error_after_removing_all"] < 1e-5
    cifar = doc["cifar10"]
    assert cifar["total_steps"] == 7820
    assert [g["recordable_fraction"] for g in cifar["logs"]] == [0.01, 0.1, 1.0]
    assert 0.47 < cifar["logs"][0]["recorded_fraction"] < 0.48  # 1 - 0.99**64
    assert len(cifar["rows"]) == 8
    for row in cifar["rows"]:
        _positive(row["removed_batches"], row["removal_s_float32"], row["removal_s_float16"], row["retrain_s"],
                  row["ratio_float32"], row["ratio_float16"], row["ratio_with_repair"], row["ratio_gpu_assumed"])
    _positive(doc["reference_models"]["sequential_s"], doc["projection"]["per_model_cpu_s"],
              *[r["gpus_s"] for r in doc["projection"]["rows"]])


@pytest.mark.slow  # a benchmark script, not the product: `make test-all` runs it
def test_scale_quick_without_ray(tmp_path):
    doc = _run(tmp_path, "--no-ray")
    _check_costs(doc)
    assert "skipped" in doc["reference_models"]["ray"]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed")
def test_scale_quick_with_ray(tmp_path):
    doc = _run(tmp_path)
    _check_costs(doc)
    ray = doc["reference_models"]["ray"]
    _positive(ray["init_s"], ray["tasks_s"], ray["warm_tasks_s"], ray["speedup_tasks"])
    assert ray["identical_weights"] is True
    executor = doc["reference_models"]["audit_executor"]
    assert "skipped" in executor or (executor["identical_weights"] is True and executor["tasks_s"] > 0)

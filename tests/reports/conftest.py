"""Realistic results documents (schema version 1, reports/schema.py) with real PNG images on disk.

Two targets: ``class=3`` (amnesiac, passes its gate, with model inversion images) and
``samples=forget-ids.txt`` (relabel, fails its gate). The failing one comes second in
the document so that "failures first" is tested, not given.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.stats import norm

GATE = "residual_leakage>0.1"


def roc(separation: float, n: int = 120) -> dict:
    """A binormal ROC curve, log-spaced in FPR as the harness writes it (<= 200 points)."""
    fpr = np.r_[0.0, np.logspace(-3, 0, n - 1)]
    tpr = norm.cdf(norm.ppf(np.clip(fpr, 1e-12, 1)) + separation)
    tpr[0] = 0.0
    return {"fpr": [round(float(v), 6) for v in fpr], "tpr": [round(float(v), 6) for v in tpr]}


def metrics(separation: float, n_members: int, n_nonmembers: int) -> dict:
    auc = float(norm.cdf(separation / math.sqrt(2)))
    tpr1 = float(norm.cdf(norm.ppf(0.01) + separation))
    tpr01 = float(norm.cdf(norm.ppf(0.001) + separation))
    grid = np.linspace(0.001, 0.999, 999)
    advantage = float(np.max(norm.cdf(norm.ppf(grid) + separation) - grid))
    eps = max(0.0, math.log(max(tpr1, 1e-9) / 0.01)) if separation > 0.3 else 0.0
    return {"auc": round(auc, 4), "tpr_at_1pct_fpr": round(tpr1, 4), "tpr_at_0.1pct_fpr": round(tpr01, 4),
            "balanced_accuracy": round(0.5 + advantage / 2, 4), "advantage": round(advantage, 4),
            "precision": round(0.5 + advantage / 3, 4), "recall": round(0.5 + advantage / 2, 4),
            "threshold": 1.3, "epsilon_lower_bound": round(eps, 3),
            "epsilon_ci95": [round(max(0.0, eps - 0.8), 3), round(eps + 0.9, 3)],
            "n_members": n_members, "n_nonmembers": n_nonmembers, "roc": roc(separation)}


def membership(attack: str, label: str, assumes: str, seps: tuple, n: int) -> dict:
    return {"attack": attack, "label": label, "assumes": assumes,
            **{role: metrics(s, n, 45) for role, s in zip(("original", "unlearned", "reference"), seps)}}


def accuracy(forget: float, retain: float, test: float, other: float) -> dict:
    return {"forget": forget, "retain": retain, "test": test, "test_other_classes": other}


def write_digit_images(folder: Path, role: str, strength: float, count: int = 4) -> list[str]:
    """Small greyscale 'reconstructions' of a 3 (8x8, like the digits data), saved as PNG."""
    rng = np.random.default_rng(abs(hash(role)) % 2**32)
    three = np.zeros((8, 8))
    three[1, 2:6] = three[3, 3:6] = three[6, 2:6] = 1
    three[1:7, 5] = 1
    paths = []
    for i in range(count):
        pixels = np.clip(strength * three + (1 - strength) * rng.random((8, 8)), 0, 1)
        rel = Path("inversion") / "class=3" / f"{role}-{i}.png"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((pixels * 255).astype(np.uint8), mode="L").save(folder / rel)
        paths.append(rel.as_posix())
    return paths


def build_document(folder: Path) -> dict:
    """A results document as `audit run` writes it, plus the inversion PNGs under ``folder``."""
    mia_assumes = {"lira": "black-box logits; reference models trained on halves of the auditor's data",
                   "loss": "the per-example loss; no reference models"}
    passing = {
        "name": "class=3",
        "forget": {"spec": "class=3", "n": 137, "classes": [3]},
        "method": {"name": "amnesiac", "reason": "the update log covers every forget example", "seconds": 0.41,
                   "details": {"batches_removed": 429, "batches_total": 440, "fraction_removed": 0.975,
                               "repair_epochs": 1, "log_bytes": 40814064}},
        "accuracy": {"original": accuracy(0.993, 0.995, 0.971, 0.969), "unlearned": accuracy(0.0, 0.981, 0.884, 0.979),
                     "reference": accuracy(0.0, 0.999, 0.889, 0.985)},
        "timings": {"unlearn": 0.41, "reference": 4.2, "attacks": 12.3},
        "membership": [membership("lira", "LiRA (Carlini et al. 2022)", mia_assumes["lira"], (1.6, 0.15, 0.1), 137),
                       membership("loss", "LOSS threshold (Yeom et al. 2018)", mia_assumes["loss"], (0.9, 0.05, 0.05), 137)],
        "inversion": {"classes": [3],
                      "original": {"attack_accuracy": 0.9, "similarity": 0.62, "confidence": 0.99,
                                   "images": write_digit_images(folder, "original", 0.9)},
                      "unlearned": {"attack_accuracy": 0.05, "similarity": 0.08, "confidence": 0.31,
                                    "images": write_digit_images(folder, "unlearned", 0.1)},
                      "reference": {"attack_accuracy": 0.05, "similarity": 0.07, "confidence": 0.28,
                                    "images": write_digit_images(folder, "reference", 0.05)}},
        "residual_leakage": 0.04, "residual_leakage_basis": "reference",
        "residual_components": {"mia:lira": 0.04, "mia:loss": 0.0, "inversion": 0.0},
        "gates": [{"expr": GATE, "value": 0.04, "passed": True, "message": "residual_leakage = 0.04, gate fails above 0.1"}],
        "passed": True, "error": None,
    }
    failing = {
        "name": "samples=forget-ids.txt",
        "forget": {"spec": "samples=forget-ids.txt", "n": 50, "classes": None},
        "method": {"name": "relabel", "reason": "the update log does not cover every forget example", "seconds": 2.7,
                   "details": {"epochs": 2, "lr": 0.001}},
        "accuracy": {"original": accuracy(1.0, 0.995, 0.971, 0.971), "unlearned": accuracy(0.62, 0.990, 0.962, 0.962),
                     "reference": accuracy(0.94, 0.999, 0.970, 0.970)},
        "timings": {"unlearn": 2.7, "reference": 4.1, "attacks": 10.8},
        "membership": [membership("lira", "LiRA (Carlini et al. 2022)", mia_assumes["lira"], (1.2, 0.9, 0.2), 50),
                       membership("loss", "LOSS threshold (Yeom et al. 2018)", mia_assumes["loss"], (0.6, 0.5, 0.1), 50)],
        "inversion": None,
        "residual_leakage": 0.37, "residual_leakage_basis": "reference",
        "residual_components": {"mia:lira": 0.37, "mia:loss": 0.21},
        "gates": [{"expr": GATE, "value": 0.37, "passed": False, "message": "residual_leakage = 0.37, gate fails above 0.1"}],
        "passed": False, "error": None,
    }
    return {
        "schema": "amnesia-audit/results", "schema_version": 1, "created": "2026-11-28T00:10:00+00:00",
        "verdict": "fail", "exit_code": 1,
        "tool": {"name": "amnesia-audit", "version": "0.1.0",
                 "libraries": {"python": "3.11.7", "torch": "2.14.1", "numpy": "2.3.1", "art": "1.20.1"}},
        "provenance": {
            "command": f"audit run model.pt --forget class=3 --forget samples=forget-ids.txt --fail-on '{GATE}'",
            "model": {"path": "model.pt", "sha256": "9f2c" + "a1" * 30, "arch": "smallcnn", "parameters": 23034},
            "data": {"spec": "digits", "sha256": "4be1" + "c3" * 30, "n_train": 1348, "n_test": 449, "num_classes": 10,
                     "class_names": [str(i) for i in range(10)]},
            "seed": 0, "machine": {"platform": "Linux-6.1-x86_64", "cpus": 2}},
        "config": {"method": "auto", "reference": "retrain", "attacks": ["mia", "inversion"],
                   "mia_attacks": ["lira", "loss"], "reference_models": 8, "gates": [GATE]},
        "targets": [passing, failing],
        "notes": ["Individually listed samples have no class, so model inversion ran only for class=3."],
    }


def write_results(folder: Path, doc: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    doc = build_document(folder) if doc is None else doc
    path = folder / "results.json"
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path


@pytest.fixture()
def results_doc(tmp_path: Path) -> tuple[dict, Path]:
    """A fresh document and the folder holding its images (mutate freely)."""
    return build_document(tmp_path), tmp_path


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> dict:
    """results.json rendered once to html, pdf and junit (WeasyPrint takes seconds; share it)."""
    from reports import render_files

    folder = tmp_path_factory.mktemp("audit-out")
    results = write_results(folder)
    files = render_files(results, ["html", "pdf", "junit"], folder)
    return {"folder": folder, "results": results, "doc": json.loads(results.read_text()),
            "files": {p.suffix.lstrip("."): p for p in files}}

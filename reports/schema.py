'''The results document (``results.json``): a plain, versioned, JSON-able structure.

The harness (``audit run``) writes it; everything in ``reports/`` renders it and CI
gates read it. Version 1, all fractions in [0, 1], times in seconds::

    {
      "schema": "amnesia-audit/results",
      "schema_version": 1,
      "created": "2026-11-28T00:10:00+00:00",          # UTC, ISO 8601
      "verdict": "pass" | "fail" | "error",             # fail: a gate failed; error: a step failed
      "exit_code": 0 | 1 | 3,
      "tool": {"name": "amnesia-audit", "version": "0.1.0",
               "libraries": {"python": "3.11.7", "torch": "...", "numpy": "...", "art": "..."}},
      "provenance": {
        "command": "audit run model.pt --forget class=3",
        "model": {"path": "model.pt", "sha256": "...", "arch": "smallcnn", "parameters": 23034},
        "data": {"spec": "digits", "sha256": "...", "n_train": 1348, "n_test": 449, "num_classes": 10},
        "seed": 0,
        "machine": {"platform": "...", "cpus": 2}
      },
      "config": {
        "method": "auto" | "amnesiac" | "relabel" | "finetune",
        "reference": "retrain" | "none",
        "attacks": ["mia", "inversion"],
        "mia_attacks": ["loss", "lira", "rmia", "shokri"],
        "reference_models": 8,
        "gates": ["residual_leakage>0.1"]
      },
      "targets": [ TARGET, ... ],
      "notes": ["free text lines the reader must see, e.g. 'no reference: absolute scores'"]
    }

TARGET::

    {
      "name": "class=3",
      "forget": {"spec": "class=3", "n": 137, "classes": [3]},    # classes: null for sample sets
      "method": {"name": "amnesiac", "reason": "the update log covers every forget example",
                 "seconds": 0.41,
                 "details": {"batches_removed": 429, "batches_total": 440,
                             "fraction_removed": 0.975, "repair_epochs": 1, "log_bytes": 40814064}},
      "accuracy": {                      # each: {"forget", "retain", "test", "test_other_classes"}
        "original": {...}, "unlearned": {...}, "reference": {...} | null
      },
      "timings": {"unlearn": 0.41, "reference": 4.2, "attacks": 12.3},
      "membership": [                    # one entry per attack
        {"attack": "lira", "label": "LiRA (offline)",
         "assumes": "black-box scores; reference models on the auditor's data",
         "original": METRICS, "unlearned": METRICS, "reference": METRICS | null}
      ],
      "inversion": null | {
        "classes": [3],
        "original":  {"attack_accuracy": 0.9, "similarity": 0.2, "confidence": 0.99,
                      "images": ["inversion/class=3/original-3.png", ...]},
        "unlearned": {...}, "reference": {...} | null
      },
      "residual_leakage": 0.04,          # headline, in [0, 1] (README, "Residual leakage")
      "residual_leakage_basis": "reference" | "absolute",
      "residual_components": {"mia:lira": 0.04, "inversion": 0.0},
      "gates": [{"expr": "residual_leakage>0.1", "value": 0.04, "passed": true,
                 "message": "residual_leakage = 0.04, gate fails above 0.1"}],
      "passed": true,
      "error": null | "one line: what failed"
    }

METRICS (one attack on one model: the forget set as members against held-out
non-members)::

    {"auc": 0.61, "tpr_at_1pct_fpr": 0.05, "tpr_at_0.1pct_fpr": 0.01,
     "balanced_accuracy": 0.58, "advantage": 0.16, "precision": 0.6, "recall": 0.55,
     "threshold": 1.3, "epsilon_lower_bound": 0.4, "epsilon_ci95": [0.0, 0.9],
     "n_members": 137, "n_nonmembers": 45,
     "roc": {"fpr": [...], "tpr": [...]}}              # <= 200 points, log-spaced in FPR

Image paths are relative to the folder holding results.json.
'''

from __future__ import annotations

SCHEMA = "amnesia-audit/results"
SCHEMA_VERSION = 1

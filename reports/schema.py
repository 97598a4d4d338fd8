'''The results document (``results.json``): a plain, versioned, JSON-able structure.

The harness (``audit run``, ``audit.evaluate``) writes it; everything in ``reports/``
renders it and CI gates read it. Version 2 (version 1 had no per-target verdict and is
refused with one line), fractions in [0, 1], times in seconds::

    {
      "schema": "amnesia-audit/results",
      "schema_version": 2,
      "created": "2026-11-28T00:10:00+00:00",          # UTC, ISO 8601
      "verdict": "pass" | "fail" | "error",             # of the run: fail if any target or gate failed
      "exit_code": 0 | 1 | 3,
      "tool": {"name": "amnesia-audit", "version": "0.1.0", "libraries": {...}},
      "provenance": {
        "command": "audit run model.pt --forget class=3",
        "model": {"path", "sha256", "arch", "kind", "parameters", "normalization": {"mean", "std"},
                  "recipe", "factory", "train_fn", "update_log"},   # factory/train_fn: module:name@source digest
        "original": null | {"path", "sha256"},                       # --original: the model unlearned from
        "data": {"spec", "sha256", "n_train", "n_test", "num_classes", "class_names"},
        "seed": 0,
        "reference_models": null | {"num_models", "seeds", "from_cache", "digests", "train_fraction", ...},
        "machine": {"platform", "cpus"},
        "executor": {"executor": "local" | "ray", "address", "cpus_per_model", "gpus_per_model", "retries", "tasks"}
      },
      "config": {"method", "reference", "attacks", "mia_attacks", "reference_models", "retrains",
                 "alpha": 0.05, "max_residual": 0.5, "inconclusive": "fail" | "pass", "inversion_iterations",
                 "gates": [...]},
      "targets": [ TARGET, ... ],
      "notes": ["free text lines the reader must see"]
    }

TARGET::

    {
      "name": "class=3",
      "forget": {"spec": "class=3", "n": 137, "classes": [3]},      # classes: null for sample sets
      "method": {"name": "amnesiac" | "relabel" | "finetune" | "retrain" | "none" | "given",
                 "reason": "...", "seconds": 0.41, "details": {...}},
      "accuracy": {"original": ACC, "unlearned": ACC, "reference": ACC | null},   # reference: the first retrain
      "retrains": [{"seed", "from_cache", "digest", "accuracy": ACC}, ...],
      "timings": {"unlearn": 0.41, "reference": 4.2, "attacks": 12.3},
      "verdict": "pass" | "fail" | "inconclusive" | "error",
      "verdict_reason": "one sentence",
      "advice": null | "what would give the attacks power (inconclusive targets)",
      "alpha": 0.05,
      "max_residual": 0.5,               # a pass needs residual_leakage_upper below this
      "power_p_value": 0.0003,           # smallest Holm-adjusted p-value on the original model, in [0, 1]
      "p_value": 0.61,                   # the same on the unlearned model, in [0, 1]
      "residual_leakage": 0.04,          # 0 or more (1: as much as the original; may exceed 1)
      "residual_leakage_ci95": [0.0, 0.2] | [0.0, null] | null,    # null high end: unbounded
      "residual_leakage_upper": 0.2 | null,
      "overforgetting": -0.1 | null,     # signed; positive: the deletion itself is visible
      "overforgetting_p_value": 0.7 | null,
      "tests": [{"name": "membership" | "class_accuracy" | "inversion", "label": "...",
                 "p_original", "p_unlearned", "p_original_holm", "p_unlearned_holm",
                 "effect_original", "effect_unlearned", "effect_retrained": [...],
                 "residual", "residual_ci95",
                 "detail": {...}}],              # membership: detail.null "retrained" | "permutation"
      "per_example": {"original": [...], "unlearned": [...], "retrained": [...], "held_out_original": [...]},
      "membership": [{"attack", "label", "assumes", "original": METRICS, "unlearned": METRICS,
                      "reference": METRICS | null}],          # population attacks: diagnostics only
      "inversion": null | {"classes", "restarts": 16, "iterations", "n_reconstructions", "evaluator",
                           "original": INV, "unlearned": INV, "reference": INV | null,
                           "retrains": [{"attack_accuracy", "recognised"}]},
      "gates": [{"expr": "verdict", "value": null, "passed": true, "message": "pass: ..."},
                {"expr": "residual_leakage_upper>0.5", "value": 0.2, "passed": true, "message": "..."}],
      "passed": true,
      "error": null | "one line: what failed"
    }

ACC: {"forget", "retain", "test", "test_other_classes"}. INV: {"attack_accuracy", "recognised",
"similarity", "similarity_other", "nearest_is_target", "confidence", "seconds", "images": [paths]}.

METRICS (one attack on one model: the forget set as members against held-out
non-members)::

    {"auc": 0.61, "tpr_at_1pct_fpr": 0.05, "tpr_at_0.1pct_fpr": 0.01,
     "balanced_accuracy": 0.58, "advantage": 0.16, "precision": 0.6, "recall": 0.55,
     "threshold": 1.3, "epsilon": 0.5, "epsilon_lower_bound": 0.4, "epsilon_ci95": [0.0, 0.9],
     # epsilon_lower_bound: threshold chosen on one half of the examples, bounded on the other
     "n_members": 137, "n_non_members": 45, "delta": 1e-05,
     "roc": {"fpr": [...], "tpr": [...]}}              # <= 200 points, log-spaced in FPR

Image paths are relative to the folder holding results.json.
'''

from __future__ import annotations

import math
from typing import Any

SCHEMA = "amnesia-audit/results"
SCHEMA_VERSION = 2


class ReportError(ValueError):
    """A results document that cannot be read or rendered; ``str()`` is one line a user can act on."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


VERDICTS = ("pass", "fail", "error")
ROLES = ("original", "unlearned", "reference")
METRIC_NUMBERS = ("auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "balanced_accuracy", "advantage",
                  "precision", "recall", "threshold", "epsilon_lower_bound")
ACCURACY_SPLITS = ("forget", "retain", "test", "test_other_classes")
INVERSION_NUMBERS = ("attack_accuracy", "similarity", "confidence")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else type(value).__name__


class _Checker:
    """Type checks that name the offending field, e.g. ``targets[1].gates[0].passed``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, expected: str, value: Any) -> None:
        raise ReportError(f"{self.source}: {where} should be {expected}, not {_kind(value)}; "
                          "regenerate it with `audit run` or fix the file")

    def obj(self, parent: dict, key: str, where: str, *, required: bool = True, nullable: bool = False) -> dict | None:
        value = self.field(parent, key, where, required)
        if value is None and (nullable or not required):
            return None
        if not isinstance(value, dict):
            self.fail(where, "an object" + (" or null" if nullable else ""), value)
        return value

    def lst(self, parent: dict, key: str, where: str, *, required: bool = True, nullable: bool = False) -> list:
        value = self.field(parent, key, where, required)
        if value is None and (nullable or not required):
            return []
        if not isinstance(value, list):
            self.fail(where, "a list", value)
        return value

    def text(self, parent: dict, key: str, where: str, *, required: bool = True, nullable: bool = False) -> None:
        value = self.field(parent, key, where, required)
        if value is None and (nullable or not required):
            return
        if not isinstance(value, str):
            self.fail(where, "text", value)

    def number(self, parent: dict, key: str, where: str, *, required: bool = False, nullable: bool = True) -> None:
        value = self.field(parent, key, where, required)
        if value is None and (nullable or not required):
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(where, "a finite number" + (" or null" if nullable else ""), value)

    def boolean(self, parent: dict, key: str, where: str) -> None:
        value = self.field(parent, key, where, True)
        if not isinstance(value, bool):
            self.fail(where, "true or false", value)

    def field(self, parent: dict, key: str, where: str, required: bool) -> Any:
        if key not in parent:
            if required:
                raise ReportError(f"{self.source}: {where} is missing; regenerate it with `audit run` or fix the file")
            return None
        return parent[key]


def validate(doc: Any, source: str = "results document") -> dict:
    """Check ``doc`` against schema version 1 (above); return it unchanged or raise :class:`ReportError`.

    Checks what the renderers rely on: the version, the required fields and the type of
    every field they read. Unknown extra fields are allowed (later minor additions).
    """
    if not isinstance(doc, dict):
        raise ReportError(f"{source}: expected a JSON object at the top level, not {_kind(doc)}")
    if doc.get("schema") != SCHEMA:
        raise ReportError(f"{source}: not an amnesia-audit results document "
                          f"(\"schema\" is {json_repr(doc.get('schema'))}, expected \"{SCHEMA}\")")
    version = doc.get("schema_version")
    if version == 1 and not isinstance(version, bool):
        raise ReportError(f"{source}: schema_version 1 was written by an earlier amnesia-audit, before targets had a "
                          "verdict (pass, fail or inconclusive) resting on a power check; rerun `audit run` to "
                          "audit again with this version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise ReportError(f"{source}: schema_version {json_repr(version)} is not supported; this amnesia-audit "
                          f"reads version {SCHEMA_VERSION}: rerun `audit run` or use a matching amnesia-audit")
    c = _Checker(source)
    c.text(doc, "created", "created")
    c.text(doc, "verdict", "verdict")
    if doc["verdict"] not in VERDICTS:
        raise ReportError(f"{source}: verdict {json_repr(doc['verdict'])} is not one of {', '.join(VERDICTS)}")
    c.number(doc, "exit_code", "exit_code")
    tool = c.obj(doc, "tool", "tool")
    c.text(tool, "version", "tool.version", required=False, nullable=True)
    c.obj(tool, "libraries", "tool.libraries", required=False, nullable=True)
    prov = c.obj(doc, "provenance", "provenance")
    c.text(prov, "command", "provenance.command", required=False, nullable=True)
    for part in ("model", "data", "machine"):
        c.obj(prov, part, f"provenance.{part}", required=False, nullable=True)
    config = c.obj(doc, "config", "config")
    c.lst(config, "gates", "config.gates", required=False, nullable=True)
    for i, note in enumerate(c.lst(doc, "notes", "notes", required=False, nullable=True)):
        if not isinstance(note, str):
            c.fail(f"notes[{i}]", "text", note)
    targets = c.lst(doc, "targets", "targets")
    for i, target in enumerate(targets):
        _validate_target(c, target, f"targets[{i}]")
    return doc


TARGET_VERDICTS = ("pass", "fail", "inconclusive", "error")
# Documented ranges of a target's headline numbers (README, "The verdict"): outside them a
# document is corrupt or edited, and must not be rendered or gated as if it were sound.
TARGET_RANGES = {"residual_leakage": (0.0, None), "residual_leakage_upper": (0.0, None), "p_value": (0.0, 1.0),
                 "power_p_value": (0.0, 1.0), "overforgetting": (None, None), "overforgetting_p_value": (0.0, 1.0),
                 "alpha": (0.0, 1.0), "max_residual": (0.0, 1.0)}


def _validate_target(c: _Checker, target: Any, where: str) -> None:
    if not isinstance(target, dict):
        c.fail(where, "an object", target)
    c.text(target, "name", f"{where}.name")
    c.boolean(target, "passed", f"{where}.passed")
    c.text(target, "error", f"{where}.error", required=False, nullable=True)
    c.text(target, "verdict", f"{where}.verdict", required=True, nullable=True)
    if target["verdict"] is not None and target["verdict"] not in TARGET_VERDICTS:
        raise ReportError(f"{c.source}: {where}.verdict {json_repr(target['verdict'])} is not one of "
                          f"{', '.join(TARGET_VERDICTS)}")
    c.text(target, "verdict_reason", f"{where}.verdict_reason", required=False, nullable=True)
    for name, (low, high) in TARGET_RANGES.items():
        c.number(target, name, f"{where}.{name}")
        value = target.get(name)
        if value is not None and ((low is not None and value < low) or (high is not None and value > high)):
            span = f"[{low:g}, {'infinity' if high is None else f'{high:g}'}]"
            raise ReportError(f"{c.source}: {where}.{name} is {value}, outside its range {span}; "
                              "regenerate it with `audit run` or fix the file")
    ci = target.get("residual_leakage_ci95")
    # The upper end is null when the interval is unbounded (the original's effect vanished in some bootstrap draws).
    if ci is not None and (not isinstance(ci, list) or len(ci) != 2
                           or any(v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))
                                  for v in ci)):
        c.fail(f"{where}.residual_leakage_ci95", "a pair of numbers [low, high] (high null: unbounded) or null", ci)
    for j, test in enumerate(c.lst(target, "tests", f"{where}.tests", required=False, nullable=True)):
        tw = f"{where}.tests[{j}]"
        if not isinstance(test, dict):
            c.fail(tw, "an object", test)
        c.text(test, "name", f"{tw}.name")
        c.text(test, "label", f"{tw}.label", required=False, nullable=True)
        for name in ("p_original", "p_unlearned", "p_original_holm", "p_unlearned_holm"):
            c.number(test, name, f"{tw}.{name}")
        for name in ("effect_original", "effect_unlearned", "residual"):
            c.number(test, name, f"{tw}.{name}")
    per_example = c.obj(target, "per_example", f"{where}.per_example", required=False, nullable=True) or {}
    for role, values in per_example.items():
        if not isinstance(values, list) or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
            c.fail(f"{where}.per_example.{role}", "a list of numbers", values)
    forget = c.obj(target, "forget", f"{where}.forget", required=False, nullable=True) or {}
    c.number(forget, "n", f"{where}.forget.n")
    method = c.obj(target, "method", f"{where}.method", required=False, nullable=True) or {}
    c.text(method, "name", f"{where}.method.name", required=False, nullable=True)
    c.obj(method, "details", f"{where}.method.details", required=False, nullable=True)
    accuracy = c.obj(target, "accuracy", f"{where}.accuracy", required=False, nullable=True) or {}
    for role in ROLES:
        split = c.obj(accuracy, role, f"{where}.accuracy.{role}", required=False, nullable=True) or {}
        for name in ACCURACY_SPLITS:
            c.number(split, name, f"{where}.accuracy.{role}.{name}")
    timings = c.obj(target, "timings", f"{where}.timings", required=False, nullable=True) or {}
    for name in timings:
        c.number(timings, name, f"{where}.timings.{name}")
    for j, attack in enumerate(c.lst(target, "membership", f"{where}.membership", required=False, nullable=True)):
        _validate_attack(c, attack, f"{where}.membership[{j}]")
    inversion = c.obj(target, "inversion", f"{where}.inversion", required=False, nullable=True)
    if inversion is not None:
        for role in ROLES:
            part = c.obj(inversion, role, f"{where}.inversion.{role}", required=False, nullable=True) or {}
            for name in INVERSION_NUMBERS:
                c.number(part, name, f"{where}.inversion.{role}.{name}")
            for k, image in enumerate(c.lst(part, "images", f"{where}.inversion.{role}.images",
                                            required=False, nullable=True)):
                if not isinstance(image, str):
                    c.fail(f"{where}.inversion.{role}.images[{k}]", "a path", image)
                if "\x00" in image:
                    raise ReportError(f"{c.source}: {where}.inversion.{role}.images[{k}] holds a NUL byte, which "
                                      "no file path can; regenerate it with `audit run` or fix the file")
    components = c.obj(target, "residual_components", f"{where}.residual_components", required=False, nullable=True)
    for name in components or {}:
        c.number(components, name, f"{where}.residual_components.{name}")
    for j, gate in enumerate(c.lst(target, "gates", f"{where}.gates")):
        gw = f"{where}.gates[{j}]"
        if not isinstance(gate, dict):
            c.fail(gw, "an object", gate)
        c.text(gate, "expr", f"{gw}.expr")
        c.boolean(gate, "passed", f"{gw}.passed")
        c.number(gate, "value", f"{gw}.value")
        c.text(gate, "message", f"{gw}.message", required=False, nullable=True)


def _validate_attack(c: _Checker, attack: Any, where: str) -> None:
    if not isinstance(attack, dict):
        c.fail(where, "an object", attack)
    c.text(attack, "attack", f"{where}.attack")
    c.text(attack, "label", f"{where}.label", required=False, nullable=True)
    c.text(attack, "assumes", f"{where}.assumes", required=False, nullable=True)
    for role in ROLES:
        metrics = c.obj(attack, role, f"{where}.{role}", required=False, nullable=True)
        if metrics is None:
            continue
        for name in METRIC_NUMBERS:
            c.number(metrics, name, f"{where}.{role}.{name}")
        ci = metrics.get("epsilon_ci95")
        if ci is not None and (not isinstance(ci, list) or len(ci) != 2
                               or any(v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))
                                      for v in ci)):
            c.fail(f"{where}.{role}.epsilon_ci95", "a pair of numbers [low, high]", ci)
        roc = c.obj(metrics, "roc", f"{where}.{role}.roc", required=False, nullable=True)
        if roc is not None:
            fpr = c.lst(roc, "fpr", f"{where}.{role}.roc.fpr")
            tpr = c.lst(roc, "tpr", f"{where}.{role}.roc.tpr")
            if len(fpr) != len(tpr) or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in fpr + tpr):
                c.fail(f"{where}.{role}.roc", "two lists of numbers of equal length (fpr, tpr)", roc)


def json_repr(value: Any) -> str:
    """A short JSON-ish rendering of a value for error messages."""
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 40 else text[:37] + "..."

"""Build the results document (schema in reports/schema.py) and write the outputs."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from audit.atomic import write_text
from audit.errors import StepError
from audit.gates import verdict
from audit.modelfile import ModelFile, file_sha256
from audit.usercode import code_identity
from reports.schema import SCHEMA, SCHEMA_VERSION


def library_versions() -> dict:
    import numpy
    import torch

    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}
    try:
        import art

        versions["art"] = art.__version__
    except Exception:  # noqa: BLE001 - reported as absent
        versions["art"] = None
    import sklearn

    versions["scikit-learn"] = sklearn.__version__
    return versions


def build_document(opts, mf: ModelFile, data, targets, started: float, ctx=None) -> dict:
    from audit import __version__

    outcome, code = verdict([t.document for t in targets])
    notes = [f"Assumed: {line}." for line in getattr(opts, "assumptions", [])]
    if opts.reference == "none":
        notes.append("No retrained models (--reference none): the class tests and the over-forgetting baseline "
                     "are left out; the verdict rests on the membership test alone.")
    if ctx is not None and not ctx.has_reference:
        notes.append("No reference models: the membership test compares losses (a population test), which has far "
                     "less power than the per-example test; expect inconclusive verdicts.")
    counts = {v: sum(1 for t in targets if t.document.get("verdict") == v) for v in ("inconclusive", "fail")}
    if counts["inconclusive"]:
        how = "pass" if opts.inconclusive == "pass" else "fail"
        notes.append(f"{counts['inconclusive']} target(s) were inconclusive: the attacks could not detect the forget "
                     f"set even in the original model. By the chosen policy (--inconclusive {how}) they {how}.")
    for t in targets:
        reason = ((t.document.get("method") or {}).get("reason") or "")
        if reason.startswith("the update log cannot be used"):
            notes.append(f"Warning for {t.name}: {reason}; relabel was used instead. Check the log's integrity.")
        over, over_p = t.document.get("overforgetting"), t.document.get("overforgetting_p_value")
        if over is not None and over_p is not None and over > 0 and over_p <= opts.alpha:
            notes.append(f"{t.name}: the forget set looks less like training data than unseen data does "
                         f"(over-forgetting {over:.2f}, p = {over_p:.2g}): the deletion itself is visible to an "
                         "attacker. This is reported as the overforgetting metric; gate on it with "
                         "--fail-on 'overforgetting>0.5'.")
    from audit.preflight import chance_warnings

    notes.extend(chance_warnings([t.document for t in targets], data.y_test, data.num_classes))
    n_non = [m["unlearned"]["n_non_members"] for t in targets for m in t.document.get("membership") or []
             if (m.get("unlearned") or {}).get("n_non_members")]
    if n_non and min(n_non) < 1000:
        n = min(n_non)
        which = "TPR at 1% and at 0.1% FPR" if n < 100 else "TPR at 0.1% FPR"
        notes.append(f"With {n} held-out non-members, {which} can only be read at the lowest measurable FPR, "
                     f"1/{n}; the AUC-based figures are the reliable ones here.")
    return clean({
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds"),
        "verdict": outcome,
        "exit_code": code,
        "tool": {"name": "amnesia-audit", "version": __version__, "libraries": library_versions()},
        "provenance": {
            "command": opts.command or " ".join(sys.argv),
            "model": {"path": str(opts.model), "sha256": model_sha256(opts.model, mf), "arch": mf.arch,
                      "kind": mf.kind, "parameters": int(sum(p.numel() for p in mf.model.parameters())),
                      "normalization": {"mean": list(mf.mean), "std": list(mf.std)},
                      "recipe": mf.recipe,
                      "factory": code_identity(mf.factory), "train_fn": code_identity(mf.train_fn),
                      "update_log": mf.update_log and {k: mf.update_log.get(k) for k in
                                                       ("dir", "record", "recorded", "total_steps", "bytes", "dtype")}},
            "data": {"spec": data.spec, "sha256": data.sha256(), "n_train": int(len(data.y_train)),
                     "n_test": int(len(data.y_test)), "num_classes": data.num_classes,
                     "class_names": data.class_names},
            "seed": opts.seed,
            "original": ({"path": str(opts.original), "sha256": model_sha256(opts.original, mf)}
                         if getattr(opts, "original", None) else None),
            "reference_models": (ctx.reference_models().to_dict() | {"train_fraction": ctx.train_fraction}
                                 if ctx is not None and ctx.has_reference and ctx._reference is not None else None),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
            "executor": ctx.executor.describe() if ctx is not None and ctx.executor is not None else {"executor": "local"},
        },
        "config": {
            "method": opts.method,
            "reference": opts.reference,
            "attacks": list(opts.attacks),
            "mia_attacks": list(opts.mia_attacks) if "mia" in opts.attacks else [],
            "reference_models": opts.reference_models,
            "retrains": opts.retrains if opts.reference == "retrain" else 0,
            "alpha": opts.alpha,
            "max_residual": opts.max_residual,
            "inconclusive": opts.inconclusive,
            "inversion_iterations": opts.inversion_iterations,
            "gates": list(opts.fail_on),
        },
        "targets": [t.document for t in targets],
        "notes": notes,
    })


def model_sha256(path, mf: ModelFile) -> str:
    """The model file's SHA-256, or for a model given in memory the SHA-256 of its state_dict's tensors."""
    if mf.kind != "memory" and path is not None and Path(path).is_file():
        return file_sha256(path)
    from attacks import model_digest

    return model_digest(mf.model)


def clean(obj):
    """JSON-safe copy: NaN and infinities become null, numpy scalars plain numbers."""
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


OUTPUT_SET = ("results.json", "junit.xml", "report.html", "report.pdf", "inversion")


def write_outputs(doc: dict, opts, images: dict | None = None) -> list[Path]:
    """Write a run's outputs as one set: results.json, junit.xml, the reports and the inversion images.

    Everything is first written to a staging folder inside ``--out``; only when the whole
    set is ready is the earlier run's set removed and the new one moved into place. A run
    killed before that point leaves the earlier set untouched; one killed during the swap
    leaves part of the new set, never old files beside new ones (crash points for tests:
    ``AUDIT_FAULT_STOP=outputs-staged`` and ``outputs-swapping``). A report that fails to
    render fails the step (exit 3) and nothing of the set is replaced.
    """
    import contextlib
    import tempfile

    from audit.atomic import crash_point
    from audit.attacking import save_png
    from reports import render_files, render_junit

    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".staging-*.tmp"):  # left by a run killed with kill -9; an hour old, not a concurrent run's
        if stale.is_dir() and time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", suffix=".tmp", dir=out))
    try:
        os.chmod(staging, 0o755)
        for rel, image in (images or {}).items():
            save_png(image, staging / rel)
        write_text(staging / "results.json", json.dumps(doc, indent=1, allow_nan=False) + "\n")
        write_text(staging / "junit.xml", render_junit(doc))
        if opts.formats:
            try:
                render_files(staging / "results.json", list(opts.formats), staging)
            except Exception as exc:  # noqa: BLE001 - the report step failed: the earlier set stays
                raise StepError(f"writing the report failed, so the outputs in {out} were left as they were: "
                                f"{exc}") from None
        crash_point("outputs-staged")
        for name in OUTPUT_SET:  # the earlier set goes first, so old and new never sit side by side
            old = out / name
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            elif old.exists() or old.is_symlink():
                old.unlink()
        for name in OUTPUT_SET:
            if (staging / name).exists():
                os.replace(staging / name, out / name)
                crash_point("outputs-swapping")
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
    return [out / name for name in OUTPUT_SET if (out / name).is_file()]

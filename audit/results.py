"""Build the results document (typed in reports/document.py) and write the outputs."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from audit.atomic import write_text
from audit.output_folder import MANIFEST, OUTPUT_SET, check_out_folder, present, written_before
from audit.errors import StepError
from audit.gates import verdict
from audit.modelfile import ModelFile, file_sha256
from audit.options import AuditOptions
from reports.document import (Config, DataProvenance, Document, FileProvenance, Machine, ModelProvenance,
                              Normalization, Provenance, Target, Tool)
from audit.usercode import code_identity


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


def build_document(opts: AuditOptions, mf: ModelFile, data, targets: list[Target], started: float,
                   ctx=None) -> Document:
    """The results document of a run: its verdict, provenance, configuration, targets and notes."""
    from audit import __version__

    outcome, code = verdict(targets)
    inputs, v = opts.inputs, opts.verdict
    ex = ctx.executor.describe() if ctx is not None and ctx.executor is not None else {"executor": "local"}
    references = (ctx.reference_models().to_dict() | {"train_fraction": ctx.train_fraction,
                                                       "design": "leave-part-out", "parts": ctx.pool_parts,
                                                       "pool_seed": ctx.pool_seed}
                  if ctx is not None and ctx.has_reference and ctx._reference is not None else None)
    log = mf.update_log and {k: mf.update_log.get(k) for k in ("dir", "record", "recorded", "total_steps", "bytes",
                                                               "dtype")}
    doc = Document(
        created=_dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds"),
        verdict=outcome,
        exit_code=code,
        tool=Tool(name="amnesia-audit", version=__version__, libraries=library_versions()),
        provenance=Provenance(
            command=opts.output.command or " ".join(sys.argv),
            model=ModelProvenance(path=str(inputs.model), sha256=model_sha256(inputs.model, mf), arch=mf.arch,
                                  kind=mf.kind, parameters=int(sum(p.numel() for p in mf.model.parameters())),
                                  normalization=Normalization(mean=list(mf.mean), std=list(mf.std)),
                                  recipe=mf.recipe, factory=code_identity(mf.factory),
                                  train_fn=code_identity(mf.train_fn), update_log=log),
            data=DataProvenance(spec=data.spec, sha256=data.sha256(), n_train=int(len(data.y_train)),
                                n_test=int(len(data.y_test)), num_classes=data.num_classes,
                                class_names=data.class_names),
            seed=opts.seed,
            original=(FileProvenance(path=str(inputs.original), sha256=model_sha256(inputs.original, mf))
                      if inputs.original else None),
            reference_models=references,
            machine=Machine(platform=platform.platform(), cpus=os.cpu_count()),
            executor=ex),
        config=Config(method=opts.method, reference=v.reference, attacks=list(opts.attack.attacks),
                      mia_attacks=opts.mia_attacks, reference_models=opts.attack.reference_models,
                      retrains=v.retrains if v.reference in ("retrain", "auto") else 0, alpha=v.alpha,
                      max_residual=v.max_residual, inconclusive=v.inconclusive,
                      max_memorised_auc=v.max_memorised_auc, not_memorised=v.not_memorised,
                      inversion_iterations=opts.attack.inversion_iterations, gates=list(v.fail_on)),
        targets=targets,
        notes=run_notes(opts, data, targets, ctx))
    if opts.output.sign_key_env:
        from audit.signing import sign

        sign(doc, opts.output.sign_key_env)  # last: the signature covers everything above
    return doc


def run_notes(opts: AuditOptions, data, targets: list[Target], ctx=None) -> list[str]:
    """Lines the reader must see: what was assumed, what the run could not do, what to look at."""
    from audit.preflight import chance_warnings

    notes = [f"Assumed: {line}." for line in opts.assumptions]
    if opts.verdict.reference == "none":
        notes.append("No retrained models (--reference none): the class tests and the over-forgetting baseline "
                     "are left out; the verdict rests on the membership test alone.")
    if ctx is not None and not ctx.has_reference:
        notes.append("No reference models: the membership test compares losses (a population test), which has far "
                     "less power than the per-example test; expect inconclusive verdicts.")
    undetected = sum(1 for t in targets if t.verdict == "inconclusive"
                     and (t.power_p_value is None or t.alpha is None or t.power_p_value > t.alpha))
    unshown = sum(1 for t in targets if t.verdict == "inconclusive") - undetected
    how = "pass" if opts.verdict.inconclusive == "pass" else "fail"
    if undetected:
        notes.append(f"{undetected} target(s) were inconclusive: the attacks could not detect the forget set even in "
                     "the original model, and could not bound its memorisation either. By the chosen policy "
                     f"(--inconclusive {how}) they {how}.")
    if unshown:
        notes.append(f"{unshown} target(s) were inconclusive: the original model was detected and the unlearned one "
                     "was not, but the removal is not shown (the residual leakage's bound reaches --max-residual "
                     f"{opts.verdict.max_residual:g}). By the chosen policy (--inconclusive {how}) they {how}.")
    quiet_ones = sum(1 for t in targets if t.verdict == "not_memorised")
    if quiet_ones:
        how = "pass" if opts.verdict.not_memorised == "pass" else "fail"
        notes.append(f"{quiet_ones} target(s) were not memorised: no test detected the forget set before or after "
                     f"unlearning, and the original's membership AUC is bounded at most "
                     f"{opts.verdict.max_memorised_auc:g}. By the chosen policy (--not-memorised {how}) they {how}.")
    for t in targets:
        reason = (t.method.reason if t.method is not None else None) or ""
        if reason.startswith("the update log cannot be used"):
            notes.append(f"Warning for {t.name}: {reason}; relabel was used instead. Check the log's integrity.")
        over, over_p = t.overforgetting, t.overforgetting_p_value
        if over is not None and over_p is not None and over > 0 and over_p <= opts.verdict.alpha:
            notes.append(f"{t.name}: the forget set looks less like training data than unseen data does "
                         f"(over-forgetting {over:.2f}, p = {over_p:.2g}): the deletion itself is visible to an "
                         "attacker. This is reported as the overforgetting metric; gate on it with "
                         "--fail-on 'overforgetting>0.5'.")
    notes.extend(chance_warnings(targets, data.y_test, data.num_classes))
    n_non = [m.unlearned.n_non_members for t in targets for m in t.membership
             if m.unlearned is not None and m.unlearned.n_non_members]
    if n_non and min(n_non) < 1000:
        n = min(n_non)
        which = "TPR at 1% and at 0.1% FPR" if n < 100 else "TPR at 0.1% FPR"
        notes.append(f"With {n} held-out non-members, {which} can only be read at the lowest measurable FPR, "
                     f"1/{n}; the AUC-based figures are the reliable ones here.")
    return notes


def model_sha256(path, mf: ModelFile) -> str:
    """The model file's SHA-256, or for a model given in memory the SHA-256 of its state_dict's tensors."""
    if mf.kind != "memory" and path is not None and Path(path).is_file():
        return file_sha256(path)
    from attacks import model_digest

    return model_digest(mf.model)


def write_outputs(doc: Document, opts: AuditOptions, images: dict | None = None) -> list[Path]:
    """Write a run's outputs as one set: results.json, junit.xml, the reports and the inversion images.

    Everything is first written to a staging folder inside ``--out``; only when the whole
    set is ready is the earlier run's set removed and the new one moved into place. A run
    killed before that point leaves the earlier set untouched; one killed during the swap
    leaves part of the new set, never old files beside new ones (crash points for tests:
    ``AUDIT_FAULT_STOP=outputs-staged`` and ``outputs-swapping``). A report that fails to
    render fails the step (exit 3) and nothing of the set is replaced.
    """
    import contextlib
    import json
    import tempfile

    from audit.atomic import crash_point
    from audit.attacking import save_png
    from reports import render_files, render_junit

    out = Path(opts.output.out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".staging-*.tmp"):  # left by a run killed with kill -9; an hour old, not a concurrent run's
        if stale.is_dir() and time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", suffix=".tmp", dir=out))
    try:
        os.chmod(staging, 0o755)
        for rel, image in (images or {}).items():
            save_png(image, staging / rel)
        write_text(staging / "results.json", doc.to_json())  # serialised here, once
        write_text(staging / "junit.xml", render_junit(doc))  # always: CI gates read it
        reports = [f for f in opts.output.formats if f != "junit"]  # junit.xml is written just above
        if reports:
            try:
                render_files(doc, reports, staging, base_dir=staging)
            except Exception as exc:  # noqa: BLE001 - the report step failed: the earlier set stays
                raise StepError(f"writing the report failed, so the outputs in {out} were left as they were: "
                                f"{exc}") from None
        new_files = present(staging)
        crash_point("outputs-staged")
        check_out_folder(out)  # again: a file of the user's may have appeared while the audit ran
        ours = written_before(out)
        # The manifest first names old and new (a kill mid-swap leaves nothing of ours unlisted) ...
        write_text(out / MANIFEST, json.dumps({"files": sorted(ours | set(new_files))}, indent=1) + "\n")
        for rel in sorted(ours, reverse=True):  # ... the earlier set goes, file by file, only what we wrote ...
            old = out / rel
            if (old.is_file() or old.is_symlink()) and rel.split("/")[0] in OUTPUT_SET:
                old.unlink()
        for name in OUTPUT_SET:  # ... with the folders it leaves empty
            folder = out / name
            if folder.is_dir() and not folder.is_symlink():
                for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
                    with contextlib.suppress(OSError):
                        sub.rmdir()
                with contextlib.suppress(OSError):
                    folder.rmdir()
        for name in OUTPUT_SET:
            if (staging / name).exists():
                os.replace(staging / name, out / name)
                crash_point("outputs-swapping")
        write_text(out / MANIFEST, json.dumps({"files": sorted(new_files)}, indent=1) + "\n")
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
    return [out / name for name in OUTPUT_SET if (out / name).is_file()]

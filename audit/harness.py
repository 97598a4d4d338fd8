"""``audit run``: attack the model, unlearn, attack again, compare with a retrained
reference, score the residual leakage per forget target, apply the gates, write outputs.

Python API::

    import audit
    result = audit.run("model.pt", forget=["class=3"], fail_on=["residual_leakage>0.1"])
    result.exit_code, result.targets[0].residual_leakage, result.document  # results.json
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from audit.attacking import (
    DEFAULT_MIA,
    MIA_ATTACKS,
    NEEDS_REFERENCE,
    AttackContext,
    fault,
    membership_set,
    run_inversion,
    run_membership,
)
from audit.data import load_dataset
from audit.errors import AuditError, InputError
from audit.forget import ForgetSet, parse_forget
from audit.gates import Gate, gate_target, parse_gates
from audit.inspect import log_status
from audit.modelfile import ModelFile, load_model
from audit.progress import progress_bar
from audit.scoring import distinguishability, inversion_component, membership_component
from audit.training import load_data_for
from audit.unlearn import forget_metrics, unlearn_model
from unlearning import UpdateLog, UpdateLogError, accuracy

METHODS = ("auto", "amnesiac", "relabel", "finetune")
REFERENCES = ("retrain", "none")
ATTACK_FAMILIES = ("mia", "inversion")


@dataclass
class AuditOptions:
    """Everything ``audit run`` takes; the CLI, a config file and the Python API fill it."""

    model: Path
    forget: list[str]
    method: str = "auto"
    reference: str = "retrain"
    attacks: list[str] = field(default_factory=lambda: list(ATTACK_FAMILIES))
    mia_attacks: list[str] = field(default_factory=lambda: list(DEFAULT_MIA))
    reference_models: int = 8
    data: str | None = None
    data_root: str | None = None
    arch: str | None = None
    out: Path = Path("audit-out")
    seed: int = 0
    fail_on: list[str] = field(default_factory=list)
    inversion_iterations: int = 400
    cache_dir: Path | None = None
    show_progress: bool = True
    formats: list[str] = field(default_factory=lambda: ["html", "pdf"])
    command: str = ""

    def validate(self) -> list[Gate]:
        if not self.forget:
            raise InputError("nothing to forget: pass at least one --forget SPEC (e.g. --forget class=3)")
        if len(set(self.forget)) != len(self.forget):
            twice = next(f for f in self.forget if self.forget.count(f) > 1)
            raise InputError(f"--forget {twice} is given twice; each target once")
        if self.reference_models < 1:
            raise InputError("--reference-models must be a positive whole number")
        if self.method not in METHODS:
            raise InputError(f"--method {self.method!r} is unknown; use {', '.join(METHODS)}")
        if self.reference not in REFERENCES:
            raise InputError(f"--reference {self.reference!r} is unknown; use retrain or none")
        bad = [a for a in self.attacks if a not in ATTACK_FAMILIES]
        if bad or not self.attacks:
            raise InputError(f"--attacks {','.join(self.attacks)!r} is not valid; use mia, inversion or mia,inversion")
        bad = [a for a in self.mia_attacks if a not in MIA_ATTACKS]
        if bad:
            raise InputError(f"unknown membership attack {bad[0]!r}; use {', '.join(MIA_ATTACKS)}")
        if self.reference_models < 2 and NEEDS_REFERENCE & set(self.mia_attacks):
            raise InputError("--reference-models must be at least 2 for the LiRA, RMIA and shadow attacks")
        bad = [f for f in self.formats if f not in ("html", "pdf", "junit")]
        if bad:
            raise InputError(f"--format {bad[0]!r} is unknown; use html, pdf (or none)")
        if self.inversion_iterations < 1:
            raise InputError("inversion_iterations must be a positive whole number")
        if self.out.exists() and not self.out.is_dir():
            raise InputError(f"--out {self.out} is a file; give a folder for the audit's outputs")
        return parse_gates(self.fail_on)


@dataclass
class TargetResult:
    """One forget target's outcome; ``document`` is its part of results.json."""

    name: str
    residual_leakage: float | None
    passed: bool
    error: str | None
    document: dict
    images: dict = field(default_factory=dict, repr=False)  # inversion PNGs to write, by relative path


@dataclass
class AuditResult:
    exit_code: int
    verdict: str
    targets: list[TargetResult]
    document: dict
    out: Path
    files: list[Path]


def choose_method(requested: str, mf: ModelFile, forget: ForgetSet) -> tuple[str, str]:
    """(method, why): amnesiac when the update log covers the target, relabel otherwise."""
    if requested != "auto":
        return requested, f"requested with --method {requested}"
    status = log_status(mf)
    if status is None:
        return "relabel", "the model has no update log, so amnesiac unlearning is impossible"
    if not status["verified"]:
        return "relabel", f"the update log cannot be used ({status['problem']})"
    try:
        log = UpdateLog.open(mf.log_dir, verify=False)
    except UpdateLogError as exc:
        return "relabel", f"the update log cannot be used ({exc})"
    missing = log.uncovered(forget.ids)
    if missing.numel():
        return "relabel", f"the update log does not cover {missing.numel()} of the {len(forget)} forget examples"
    return "amnesiac", "the update log covers every forget example"


def accuracies(model: torch.nn.Module, data, forget: ForgetSet) -> dict:
    """Forget, retain and test accuracy (all classes, and classes not forgotten)."""
    m = forget_metrics(model, data, forget)
    return {"forget": m["forget_accuracy"], "retain": m["retain_accuracy"],
            "test": accuracy(model, data.x_test, data.y_test), "test_other_classes": m["test_accuracy_kept_classes"]}


def audit_target(ctx: AttackContext, opts: AuditOptions, forget: ForgetSet, gates: list[Gate]) -> TargetResult:
    mf, data = ctx.model_file, ctx.data
    doc: dict = {"name": forget.spec, "forget": forget.describe(), "method": None, "accuracy": {},
                 "timings": {}, "membership": [], "inversion": None, "residual_leakage": None,
                 "residual_leakage_basis": None, "residual_components": {}, "gates": [], "passed": False,
                 "error": None}
    images: dict = {}
    try:
        method, why = choose_method(opts.method, mf, forget)
        fault("unlearn")
        start = time.perf_counter()
        unlearned_mf, outcome = unlearn_model(mf, data, forget, method, None, opts.seed, opts.show_progress)
        doc["timings"]["unlearn"] = time.perf_counter() - start
        doc["method"] = {"name": method, "reason": why, "seconds": outcome.seconds, "details": outcome.details}
        models = {"original": mf.model, "unlearned": unlearned_mf.model}
        if opts.reference == "retrain":
            start = time.perf_counter()
            ref_mf, _ = unlearn_model(mf, data, forget, "retrain", None, opts.seed, opts.show_progress)
            doc["timings"]["reference"] = time.perf_counter() - start
            models["reference"] = ref_mf.model
        doc["accuracy"] = {role: accuracies(m, data, forget) for role, m in models.items()}
        doc["accuracy"].setdefault("reference", None)

        start = time.perf_counter()
        components: dict[str, float] = {}
        basis = "reference" if "reference" in models else "absolute"
        if "mia" in opts.attacks:
            ms = membership_set(ctx, forget)
            total = len(ctx.mia_attacks) * len(models)
            with progress_bar(f"membership attacks on {forget.spec}", total, opts.show_progress) as advance:
                outcomes = run_membership(ctx, models, ms, advance)
            doc["membership"] = [o.to_dict() for o in outcomes]
            for o, entry in zip(outcomes, doc["membership"]):
                auc = {role: m["auc"] for role, m in o.metrics.items()}
                components[f"mia:{o.attack}"], basis = membership_component(
                    auc, ms.n_members, int((~ms.is_member).sum()))
                if "reference" in o.forget_scores:
                    ref = o.forget_scores["reference"]
                    entry["distinguishability"] = {
                        "unlearned_vs_reference": distinguishability(o.forget_scores["unlearned"], ref),
                        "original_vs_reference": distinguishability(o.forget_scores["original"], ref)}
        if "inversion" in opts.attacks and forget.classes:
            inv, images = run_inversion(ctx, models, list(forget.classes), forget.spec)
            doc["inversion"] = inv
            acc = {role: inv[role]["attack_accuracy"] for role in models}
            components["inversion"], _ = inversion_component(acc, inv["n_reconstructions"], data.num_classes)
        doc["timings"]["attacks"] = time.perf_counter() - start
        doc["residual_components"] = components
        doc["residual_leakage"] = max(components.values()) if components else None
        doc["residual_leakage_basis"] = basis
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - fail closed: any failure of a step is recorded, exit 3
        doc["error"] = f"{type(exc).__name__}: {exc}" if not isinstance(exc, AuditError) else str(exc)
    gate_target(doc, gates)  # fails every gate of a target whose step failed
    return TargetResult(forget.spec, doc["residual_leakage"], doc["passed"], doc["error"], doc,
                        images if doc["inversion"] else {})


def run(model: str | Path, forget: list[str] | str, **options) -> AuditResult:
    """Audit ``model`` for each forget spec; see :class:`AuditOptions` for the options."""
    from audit.results import build_document, write_outputs

    opts = AuditOptions(model=Path(model), forget=[forget] if isinstance(forget, str) else list(forget), **options)
    opts.out = Path(opts.out)
    gates = opts.validate()
    given = load_dataset(opts.data, opts.data_root) if opts.data else None
    # A bare state_dict takes its input shape and classes from --data.
    mf = load_model(opts.model, arch=opts.arch, input_shape=given.input_shape if given else None,
                    num_classes=given.num_classes if given else None)
    data = load_data_for(opts.data, opts.data_root, mf, loaded=given)
    if tuple(mf.input_shape) != tuple(data.input_shape) or mf.num_classes != data.num_classes:
        raise InputError(f"the data {data.spec!r} ({'x'.join(map(str, data.input_shape))} images, {data.num_classes} "
                         f"classes) does not fit {opts.model} ({'x'.join(map(str, mf.input_shape))}, "
                         f"{mf.num_classes} classes); pass the --data the model was trained on")
    forget_sets = [parse_forget(spec, data.y_train, data.num_classes) for spec in opts.forget]
    if mf.recipe is None and (opts.reference == "retrain" or NEEDS_REFERENCE & set(opts.mia_attacks)):
        raise InputError(f"{opts.model} carries no training recipe, so it cannot be retrained or shadowed; "
                         "pass --reference none --mia loss, or train it with audit train")
    import attacks

    cache_dir = Path(opts.cache_dir) if opts.cache_dir else attacks.default_cache_dir()
    ctx = AttackContext(mf, data, opts.seed, opts.reference_models, cache_dir,
                        opts.mia_attacks if "mia" in opts.attacks else [], opts.inversion_iterations)
    started = time.time()
    targets = [audit_target(ctx, opts, fs, gates) for fs in forget_sets]
    doc = build_document(opts, mf, data, targets, started)
    files = write_outputs(doc, opts, {k: v for t in targets for k, v in t.images.items()})
    return AuditResult(doc["exit_code"], doc["verdict"], targets, doc, opts.out, files)

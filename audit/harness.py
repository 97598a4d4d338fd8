"""``audit run``: unlearn each forget target (or take a model unlearned elsewhere), test
the original and the unlearned model against retrained ones, reach a verdict per target
(pass, fail or inconclusive: :mod:`audit.scoring`), apply the gates, write the outputs.

Python API::

    import audit
    result = audit.run("model.pt", forget=["class=3"], fail_on=["residual_leakage_upper>0.5"])
    result.exit_code, result.targets[0].verdict, result.document  # results.json, typed
    audit.run("unlearned.pt", forget="class=3", original="model.pt")  # unlearned elsewhere
"""

from __future__ import annotations

import copy
import functools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import attacks

from audit.advice import pool_advice
from audit.attacking import AttackContext, fault, membership_set, run_inversion, run_membership
from audit.data import load_dataset
from audit.errors import AuditError, InputError
from audit.evidence import class_accuracy_evidence, inversion_evidence, membership_test, per_example_picture
from audit.forget import ForgetSet, parse_forget
from audit.forget_accuracy import accuracies
from audit.gates import Gate, gate_target
from audit.modelfile import ModelFile, load_model, say_assumptions
from audit.options import AuditOptions
from audit.progress import progress_bar
from audit.recompute import recorded_membership_evidence
from audit.scoring import Verdict, decide
from audit.training import load_data_for
from audit.unlearn import choose_method, unlearn
from reports.document import Document, Inversion, MembershipResult, Method, ModelAccuracies, Retrain, Target


@dataclass
class TargetRun:
    """One forget target's part of the document, and the inversion images it shows (by relative path)."""

    target: Target
    images: dict[str, np.ndarray] = field(default_factory=dict, repr=False)


@dataclass
class AuditResult:
    """The audit's outcome: exit code and verdict, the targets, and the results document (typed)."""

    exit_code: int
    verdict: str
    targets: list[Target]
    document: Document
    out: Path | None
    files: list[Path]


def unlearn_step(ctx: AttackContext, opts: AuditOptions, forget: ForgetSet,
                 unlearned_given: ModelFile | None) -> tuple[torch.nn.Module, Method]:
    """The unlearned model and how it came about (given, the no-op control, or a method run here)."""
    mf = ctx.model_file
    if unlearned_given is not None:
        return unlearned_given.model, Method(
            name="given", reason=f"unlearned elsewhere: {unlearned_given.path or 'a model given in memory'}, "
            f"audited against the original {mf.path or 'given in memory'}; no unlearning step ran",
            seconds=None, details={"lineage": unlearned_given.lineage})
    if opts.method == "none":
        return copy.deepcopy(mf.model), Method(
            name="none", reason="the no-op control (--method none): the weights are left unchanged, so this target "
            "must not pass", seconds=0.0, details={})
    choice = choose_method(opts.method, mf, forget)  # opens and checks the update log once, and hands it on
    outcome = unlearn(mf, ctx.data, forget, choice.name, None, opts.seed, opts.execution.show_progress, choice.log)
    return outcome.model, Method(name=choice.name, reason=choice.reason, seconds=outcome.seconds,
                                 details=outcome.details)


def null_for(opts: AuditOptions, ctx: AttackContext, forget: ForgetSet) -> str:
    """What the unlearned model is compared with for this target (``--reference``):

    ``pool`` (the shared reference models that never trained on each example: no retraining
    per request) for sample requests, ``retrained`` (models retrained without the forget
    set, cached per request) for class requests, where the pool's models saw the class's
    other examples; ``permutation`` with ``--reference none``.
    """
    reference = opts.verdict.reference
    if reference == "none":
        return "permutation"
    if reference == "retrain":
        return "retrained"
    if forget.classes:
        if reference == "pool":
            raise InputError(f"--reference pool cannot audit {forget.spec}: the pool's models learned the class from "
                             "its other examples; a class request needs retrained models (--reference retrain or "
                             "auto)")
        return "retrained"
    if not ctx.has_reference:
        if reference == "pool":
            raise InputError("--reference pool needs reference models: pass --reference-models 2 or more and a "
                             "model that can be retrained")
        return "retrained"
    return "pool"


def record_verdict(target: Target, verdict: Verdict) -> None:
    """Copy the verdict and its headline figures into the target."""
    target.verdict, target.verdict_reason, target.advice = verdict.verdict, verdict.reason, verdict.advice
    target.alpha, target.max_residual = verdict.alpha, verdict.max_residual
    target.power_p_value, target.p_value = verdict.power_p_value, verdict.p_value
    target.residual_leakage, target.residual_leakage_ci95 = verdict.residual_leakage, verdict.residual_leakage_ci95
    target.residual_leakage_upper = verdict.residual_leakage_upper
    target.overforgetting, target.overforgetting_p_value = verdict.overforgetting, verdict.overforgetting_p_value
    target.memorised_auc, target.memorised_auc_ci95 = verdict.memorised_auc, verdict.memorised_auc_ci95
    target.memorised_auc_upper = verdict.memorised_auc_upper
    target.max_memorised_auc = verdict.max_memorised_auc


def audit_target(ctx: AttackContext, opts: AuditOptions, forget: ForgetSet, gates: list[Gate],
                 unlearned_given: ModelFile | None = None) -> TargetRun:
    """Unlearn one target, retrain without it, run the tests and attacks, decide, gate."""
    data, show = ctx.data, opts.execution.show_progress
    target = Target(name=forget.spec, forget=forget.describe(), verdict=None, alpha=opts.verdict.alpha,
                    max_residual=opts.verdict.max_residual, gates=[], passed=False)
    images: dict = {}
    try:
        fault("unlearn")
        start = time.perf_counter()
        unlearned, target.method = unlearn_step(ctx, opts, forget, unlearned_given)
        target.timings["unlearn"] = time.perf_counter() - start
        models = {"original": ctx.model_file.model, "unlearned": unlearned}
        retrain_roles: list[str] = []
        null = null_for(opts, ctx, forget)
        if null == "retrained":
            start = time.perf_counter()
            retrains = opts.verdict.retrains
            retrained = ctx.retrained_models(forget, retrains)  # the executor shows each model's progress
            for k, (model, seed, hit) in enumerate(retrained):
                role = "reference" if k == 0 else f"retrain_{k}"
                models[role] = model
                retrain_roles.append(role)
                target.retrains.append(Retrain(seed=seed, from_cache=hit, digest=attacks.model_digest(model)))
            target.timings["reference"] = time.perf_counter() - start
        retrained_accuracy = [accuracies(models[role], data, forget, ctx.predictions(models[role]))
                              for role in retrain_roles]
        for retrain, accuracy in zip(target.retrains, retrained_accuracy):
            retrain.accuracy = accuracy
        target.accuracy = ModelAccuracies(original=accuracies(models["original"], data, forget,
                                                              ctx.predictions(models["original"])),
                                          unlearned=accuracies(models["unlearned"], data, forget,
                                                               ctx.predictions(models["unlearned"])),
                                          reference=retrained_accuracy[0] if retrained_accuracy else None)

        start = time.perf_counter()
        ms = membership_set(ctx, forget)
        # Every model's logits on the audited examples, once: the verdict's tests and the attacks read them.
        logits = {role: ctx.logits_on(m, ms.ids, ms.x) for role, m in models.items()}
        # The verdict's membership test: per example, every model, the same examples.
        paired, label, stats, tested_ids = membership_test(ctx, logits, ms, opts.seed, null)
        null_roles = paired.null_roles
        # The evidence is the test rerun from the float32 statistics results.json records (audit.recompute).
        evidence, stats = recorded_membership_evidence(
            stats, ms.is_member[tested_ids], label, null_roles, null_roles, paired.null, opts.seed,
            paired.n_permutations, paired.n_bootstrap)
        target.tests.append(evidence)
        target.per_example = per_example_picture(stats, np.arange(len(tested_ids)) < evidence.detail["n_forget"],
                                                 null_roles, np.asarray(ms.ids[tested_ids]))
        if forget.classes and retrain_roles:
            target.tests.append(class_accuracy_evidence(forget, ms, logits, retrain_roles))
        # Population attacks: ROC diagnostics on the original, unlearned and first retrained model.
        shown = {role: models[role] for role in ("original", "unlearned", "reference") if role in models}
        if "mia" in opts.attack.attacks and ctx.mia_attacks:
            with progress_bar(f"membership attacks on {forget.spec}", len(ctx.mia_attacks) * len(shown),
                              show) as advance:
                outcomes = run_membership(ctx, shown, ms, advance, logits)
            target.membership = [MembershipResult.model_validate(o.to_dict()) for o in outcomes]
        if "inversion" in opts.attack.attacks and forget.classes:
            with progress_bar(f"model inversion on {forget.spec}", 1, show) as advance:
                found, images = run_inversion(ctx, models, list(forget.classes), forget.spec)
                advance(1)
            target.inversion = Inversion.model_validate(found)
            if retrain_roles:
                target.tests.append(inversion_evidence(target.inversion))
        target.timings["attacks"] = time.perf_counter() - start
        verdict = decide(target.tests, opts.verdict.alpha, opts.verdict.max_residual, opts.verdict.max_memorised_auc)
        if verdict.verdict == "inconclusive" and null == "pool":
            verdict.advice = pool_advice(ctx, paired, ms.ids[tested_ids], stats, verdict,
                                         opts.attack.reference_models) or verdict.advice
        record_verdict(target, verdict)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - fail closed: any failure of a step is recorded, exit 3
        target.error = (f"{type(exc).__name__}: {exc}" if not isinstance(exc, AuditError) else str(exc)) \
            or type(exc).__name__  # never "": an empty message is still a failed step
        target.verdict = "error"
    gate_target(target, gates, opts.verdict.inconclusive,  # fails every gate of a target whose step failed
                opts.verdict.not_memorised)
    return TargetRun(target, images if target.inversion else {})


def run(model: str | Path, forget: list[str] | str, **options) -> AuditResult:
    """Audit ``model`` for each forget spec; the options are :class:`audit.options.AuditOptions`'s flat names.

    With ``original=PATH``, ``model`` is a model unlearned elsewhere and PATH the model it
    was unlearned from: no unlearning step runs, the given model is audited.
    """
    opts = AuditOptions.from_flat(model, forget, **options)
    gates = opts.validate()
    inputs = opts.inputs
    user = user_code(opts)
    given = load_dataset(inputs.data, inputs.data_root) if inputs.data else None
    # A bare state_dict takes its input shape and classes from --data.
    shape = dict(arch=inputs.arch, input_shape=given.input_shape if given else None,
                 num_classes=given.num_classes if given else None, user=user)
    unlearned_given = None
    if inputs.original is not None:
        mf = load_model(inputs.original, **shape)
        unlearned_given = load_model(inputs.model, **{**shape, "arch": inputs.arch or mf.arch})
    else:
        mf = load_model(inputs.model, **shape)
    data = load_data_for(inputs.data, inputs.data_root, mf, loaded=given)
    forget_sets = [parse_forget(spec, data.y_train, data.num_classes) for spec in opts.forget]
    return audit_loaded(opts, gates, mf, data, forget_sets, unlearned_given)


def _check_cache_dir(cache_dir: Path, named_by: str) -> None:
    """The reference-model cache must be a folder (or one that can be made): a file there is bad input, said
    before any work (an unwritable folder is only a warning: the audit trains what it cannot keep)."""
    blocked = next((p for p in (cache_dir, *cache_dir.parents) if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        what = "is a file" if blocked == cache_dir else f"lies under {blocked}, which is a file"
        raise InputError(f"the reference-model cache {cache_dir} ({named_by}) {what}; name a folder (or unset "
                         "AMNESIA_AUDIT_CACHE to use ~/.cache/amnesia-audit)")


def _audit_one(ctx: AttackContext, opts: AuditOptions, gates: list[Gate], unlearned_given: ModelFile | None,
               forget: ForgetSet) -> TargetRun | InputError:
    """One forget target as a task; bad input comes back as a value (no retry can mend it)."""
    try:
        return audit_target(ctx, opts, forget, gates, unlearned_given)
    except InputError as exc:
        return exc


def audit_targets_as_tasks(ctx: AttackContext, opts: AuditOptions, forget_sets: list[ForgetSet], gates: list[Gate],
                           unlearned_given: ModelFile | None) -> list[TargetRun]:
    """Independent forget targets as tasks of the executor (Ray), sharing what every target needs.

    The reference models (and their logits) and the inversion evaluator are built first,
    once, with their training spread over the cluster; each target task then unlearns,
    retrains and tests in its worker. Targets come back in order.
    """
    if ctx.has_reference:
        ctx.reference_models()
        ctx.reference_confidence  # noqa: B018 - computed here, shipped with the context
    if "inversion" in opts.attack.attacks and any(fs.classes for fs in forget_sets):
        ctx.evaluator()
    worker = copy.copy(ctx)  # the cached reference models and signals travel; the cluster handle does not
    worker.executor = None
    results = ctx.executor.map(functools.partial(_audit_one, worker, opts.quiet(), gates, unlearned_given),
                               forget_sets, "forget requests")
    for result in results:
        if isinstance(result, InputError):
            raise result
    return results


def user_code(opts: AuditOptions):
    """The user's factory, training function, normalisation and recipe, when any is named."""
    from audit.usercode import UserCode, is_reference

    i = opts.inputs
    if not (is_reference(i.arch) or i.train or i.normalize or i.recipe or i.arch_args or i.code_paths):
        return None
    code = UserCode.load(i.arch, i.arch_args, i.train, i.normalize, i.code_paths)
    if i.recipe:
        from unlearning import TrainConfig

        try:
            config = TrainConfig.from_dict(i.recipe)
            config.validate()
        except (TypeError, ValueError) as exc:
            raise InputError(f"the training recipe is not valid: {exc}") from None
        code.recipe = config.to_dict()
    return code


def audit_loaded(opts: AuditOptions, gates: list[Gate], mf: ModelFile, data, forget_sets: list[ForgetSet],
                 unlearned_given: ModelFile | None = None) -> AuditResult:
    """The core every entry point shares (files: :func:`run`; memory: :func:`audit.evaluate`).

    Checks that the pieces fit, audits every target, builds the results document and,
    when an output folder is set, writes the outputs.
    """
    from audit import supervise
    from audit.executor import make_executor
    from audit.preflight import check_fit

    check_fit(opts, mf, data, forget_sets, unlearned_given)
    opts.assumptions = say_assumptions(mf, unlearned_given)  # every input checked: now say what was assumed
    ex = opts.execution
    cache_dir = Path(ex.cache_dir) if ex.cache_dir else attacks.default_cache_dir()
    _check_cache_dir(cache_dir, "--cache-dir" if ex.cache_dir else "AMNESIA_AUDIT_CACHE" if
                     os.environ.get("AMNESIA_AUDIT_CACHE") else "the default cache folder")
    executor = make_executor(ex.executor, ex.ray_address, ex.cpus_per_model, ex.gpus_per_model, ex.show_progress,
                             opts.inputs.code_paths)
    if executor.name == "ray" and not supervise.drives_ray_here():
        # Ray's native code may end the process that drives it (status 1, no exception): the caller's
        # process must not be that one, so the rest runs in a child process (audit.supervise).
        doc, files = supervise.audit_in_child(audit_checked, (opts, gates, mf, data, forget_sets, unlearned_given,
                                                              cache_dir))
        return AuditResult(doc.exit_code, doc.verdict, doc.targets, doc, opts.output.out, files)
    return audit_checked(opts, gates, mf, data, forget_sets, unlearned_given, cache_dir, executor)


def audit_checked(opts: AuditOptions, gates: list[Gate], mf: ModelFile, data, forget_sets: list[ForgetSet],
                  unlearned_given: ModelFile | None, cache_dir: Path, executor=None) -> AuditResult:
    """:func:`audit_loaded` once every input is checked: train, attack, decide, write."""
    from audit.executor import make_executor, torch_threads
    from audit.results import build_document, write_outputs

    ex = opts.execution
    if executor is None:
        executor = make_executor(ex.executor, ex.ray_address, ex.cpus_per_model, ex.gpus_per_model,
                                 ex.show_progress, opts.inputs.code_paths)
    if executor.name == "ray":
        executor.start()  # an unreachable cluster is bad input (exit 2), found before any work
    ctx = AttackContext(mf, data, opts.seed, opts.attack.reference_models, cache_dir, opts.mia_attacks,
                        opts.attack.inversion_iterations,
                        use_reference=mf.trainable and opts.attack.reference_models >= 2, executor=executor)
    started = time.time()
    try:
        # Unlearning, the evaluator, the attacks' own models and every figure run on the thread count of
        # the training tasks, not the machine's core count (issue 16, item 8).
        with torch_threads(executor.threads):
            if executor.name == "ray" and len(forget_sets) > 1:
                runs = audit_targets_as_tasks(ctx, opts, forget_sets, gates, unlearned_given)
            else:
                runs = [audit_target(ctx, opts, fs, gates, unlearned_given) for fs in forget_sets]
    finally:
        executor.close()
    doc = build_document(opts, mf, data, [r.target for r in runs], started, ctx)
    out = opts.output.out
    files = write_outputs(doc, opts, {k: v for r in runs for k, v in r.images.items()}) if out is not None else []
    return AuditResult(doc.exit_code, doc.verdict, doc.targets, doc, out, files)
